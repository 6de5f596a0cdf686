// Package pki is cellgate's small certificate authority and the key and
// CSR helpers the gateway's certificate rotation uses: `cellgate pki init`
// makes a CA, `cellgate pki serve` signs the CSRs gateways publish, and
// the agent makes a new key and its PKCS#10 request without the key ever
// leaving the gateway.
//
// It is meant for tests, demos and small fleets. A CA directory holds
// ca.pem (the certificate, 0644) and ca.key (its PKCS#8 key, 0600); a key
// file readable by anyone else is refused when the CA is loaded.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cellgate/cellgate/internal/atomicfile"
	"github.com/cellgate/cellgate/internal/duration"
)

// The files of a CA directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca.key"
)

// Limits and defaults of what the CA signs.
const (
	// DefaultValidity is how long an issued certificate is valid.
	DefaultValidity = 90 * 24 * time.Hour
	// MaxValidity bounds any issued certificate: a stolen key is useful
	// for this long at most.
	MaxValidity = 397 * 24 * time.Hour
	// DefaultCAValidity is the life of a CA made by Init.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// backdate covers gateways whose clock runs a little behind.
	backdate = 5 * time.Minute
)

// KeyTypes are the key types NewKey makes, by their configuration names
// (tls.key_type).
var KeyTypes = []string{"p256", "p384", "p521", "rsa2048"}

// NewKey makes a private key of type kt: "p256" (also ""), "p384",
// "p521" or "rsa2048".
func NewKey(kt string) (crypto.Signer, error) {
	switch kt {
	case "", "p256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p521":
		return ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "rsa2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("key type %q: want one of %s", kt, strings.Join(KeyTypes, ", "))
}

// MarshalKey returns key as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey parses an unencrypted PEM private key (PKCS#8, SEC 1 or
// PKCS#1). Errors never quote the key's bytes.
func ParseKey(pemData []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemData)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("PEM block %q: %w", block.Type, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("PEM block %q: %T cannot sign", block.Type, k)
	}
	return s, nil
}

// NewCSR returns a PEM PKCS#10 request for key with subject's common name
// and organisation.
func NewCSR(key crypto.Signer, subject pkix.Name) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR for %q: %w", subject.CommonName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCSR parses a PEM "CERTIFICATE REQUEST" and checks its signature.
func ParseCSR(pemData []byte) (*x509.CertificateRequest, error) {
	block, rest := pem.Decode(pemData)
	if block == nil {
		return nil, errors.New("CSR: no PEM block found")
	}
	if block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("CSR: PEM block %q, want CERTIFICATE REQUEST", block.Type)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("CSR: %d bytes after the PEM block", len(rest))
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("CSR for %q: bad signature: %w", csr.Subject.CommonName, err)
	}
	return csr, nil
}

// ParseValidity parses a validity such as "90d", "720h" or "1d12h" with
// internal/duration (Go's durations plus whole days with the suffix d) and
// refuses one that is not positive.
func ParseValidity(s string) (time.Duration, error) {
	d, err := duration.Parse(s)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q is not a positive validity (want e.g. 90d or 720h)", s)
	}
	return d, nil
}

// CA is a certificate authority loaded from its directory.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer
}

// InitOptions say what Init makes; zero fields are the defaults.
type InitOptions struct {
	// Name is the CA's common name; empty means "cellgate fleet CA".
	Name string
	// KeyType is as NewKey takes it; empty means p256.
	KeyType string
	// Validity is the CA certificate's life; 0 means DefaultCAValidity.
	Validity time.Duration
	// PermittedDNS, when set, adds a name constraint: the CA may only
	// issue for these DNS domains (the devices' certificates carry none,
	// and client authentication by CN is not affected).
	PermittedDNS []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Init makes a new CA in dir (created 0700 when missing): ca.key, 0600,
// and ca.pem. It refuses to overwrite an existing CA.
func Init(dir string, o InitOptions) (*CA, error) {
	if o.Name == "" {
		o.Name = "cellgate fleet CA"
	}
	if o.Validity == 0 {
		o.Validity = DefaultCAValidity
	}
	now := time.Now()
	if o.Now != nil {
		now = o.Now()
	}
	for _, f := range []string{CACertFile, CAKeyFile} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("pki init: %s already exists: a CA is never overwritten", filepath.Join(dir, f))
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki init: %w", err)
	}
	key, err := NewKey(o.KeyType)
	if err != nil {
		return nil, fmt.Errorf("pki init: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          mustSerial(),
		Subject:               pkix.Name{CommonName: o.Name},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(o.Validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:          keyID(key.Public()),
	}
	if len(o.PermittedDNS) > 0 {
		tmpl.PermittedDNSDomains, tmpl.PermittedDNSDomainsCritical = o.PermittedDNS, true
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki init: sign the CA certificate: %w", err)
	}
	keyPEM, err := MarshalKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki init: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := atomicfile.Write(dir, CAKeyFile, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("pki init: %w", err)
	}
	if err := atomicfile.Write(dir, CACertFile, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("pki init: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Cert: cert, CertPEM: certPEM, Key: key}, nil
}

// Load reads the CA in dir. A ca.key that group or others may read is
// refused, as is a key that is not the certificate's.
func Load(dir string) (*CA, error) {
	keyPath := filepath.Join(dir, CAKeyFile)
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load CA: %s has mode %04o: the CA key must be readable by its owner only (chmod 600)", keyPath, fi.Mode().Perm())
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA: %s: %w", keyPath, err)
	}
	certPath := filepath.Join(dir, CACertFile)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("load CA: %s: no CERTIFICATE PEM block", certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load CA: %s: %w", certPath, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("load CA: %s is not a CA certificate", certPath)
	}
	if !SamePublicKey(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("load CA: %s is not the key of %s", keyPath, certPath)
	}
	return &CA{Cert: cert, CertPEM: certPEM, Key: key}, nil
}

// SignRequest is one CSR to sign.
type SignRequest struct {
	// CSR is the PEM request; its signature is checked.
	CSR []byte
	// DeviceID is who asked (the topic's device id): the CSR's common
	// name must equal it.
	DeviceID string
	// Validity is the certificate's life; 0 means DefaultValidity, more
	// than MaxValidity is refused.
	Validity time.Duration
	// Now is the signing time; zero means time.Now().
	Now time.Time
}

// Sign checks r and returns the PEM certificate for the CSR's key: client
// authentication only, subject CN = the device id, valid from a few
// minutes ago for r.Validity and never beyond the CA's own expiry.
func (ca *CA) Sign(r SignRequest) ([]byte, *x509.Certificate, error) {
	csr, err := ParseCSR(r.CSR)
	if err != nil {
		return nil, nil, err
	}
	if r.DeviceID == "" || csr.Subject.CommonName != r.DeviceID {
		return nil, nil, fmt.Errorf("CSR common name %q is not the device id %q", csr.Subject.CommonName, r.DeviceID)
	}
	validity := r.Validity
	if validity == 0 {
		validity = DefaultValidity
	}
	if validity < 0 || validity > MaxValidity {
		return nil, nil, fmt.Errorf("validity %s: want up to %s", validity, MaxValidity)
	}
	now := r.Now
	if now.IsZero() {
		now = time.Now()
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, nil, fmt.Errorf("the CA certificate expired on %s", ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:   mustSerial(),
		Subject:        csr.Subject,
		NotBefore:      now.Add(-backdate),
		NotAfter:       notAfter,
		KeyUsage:       usage,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		SubjectKeyId:   keyID(csr.PublicKey),
		AuthorityKeyId: ca.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate for %q: %w", r.DeviceID, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cert, nil
}

// SamePublicKey reports whether a and b are the same public key.
func SamePublicKey(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}

// mustSerial returns a random 128-bit serial number.
func mustSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n.Add(n, big.NewInt(1))
}

// keyID is the subject key identifier of pub (SHA-256, truncated).
func keyID(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256(der)
	return sum[:20]
}
