package plugintest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Identity is a certificate and its key, PEM-encoded.
type Identity struct {
	CertPEM []byte
	KeyPEM  []byte
	cert    *x509.Certificate
	key     crypto.Signer
}

// TLSCertificate returns the identity for a crypto/tls config.
func (id Identity) TLSCertificate(t testing.TB) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(id.CertPEM, id.KeyPEM)
	if err != nil {
		t.Fatalf("plugintest: identity key pair: %v", err)
	}
	return c
}

// PKI is a throwaway certificate authority with a server and a client
// identity, for tests. The server certificate is valid for 127.0.0.1,
// ::1 and localhost.
type PKI struct {
	CA     Identity
	Server Identity
	Client Identity
}

// Curve selects the key type of a test PKI. openssl s_server with
// -named_curve secp521r1 needs P-521 certificates in TLS 1.2.
type Curve int

const (
	// P256 is the default: small and fast.
	P256 Curve = iota
	// P521 matches the seed document's server (-named_curve secp521r1).
	P521
)

// NewPKI generates a CA and a server and a client certificate it signed.
func NewPKI(t testing.TB, curve Curve) *PKI {
	t.Helper()
	p, err := GeneratePKI(curve)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	return p
}

// GeneratePKI is NewPKI outside tests (the demo's development PKI).
func GeneratePKI(curve Curve) (*PKI, error) {
	ca, err := newIdentity(curve, "cellgate test CA", nil, true)
	if err != nil {
		return nil, err
	}
	server, err := newIdentity(curve, "cellgate test server", &ca, false)
	if err != nil {
		return nil, err
	}
	client, err := newIdentity(curve, "cellgate test client", &ca, false)
	if err != nil {
		return nil, err
	}
	return &PKI{CA: ca, Server: server, Client: client}, nil
}

// NewClient issues another client identity from the same CA (a rotation).
func (p *PKI) NewClient(t testing.TB, name string) Identity {
	t.Helper()
	curve := P256
	if p.CA.cert.PublicKeyAlgorithm == x509.ECDSA && p.CA.cert.PublicKey.(*ecdsa.PublicKey).Curve == elliptic.P521() {
		curve = P521
	}
	id, err := newIdentity(curve, name, &p.CA, false)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	return id
}

// CertPool returns a pool holding the CA.
func (p *PKI) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.CA.cert)
	return pool
}

// WriteFiles writes ca.pem, server.pem, server.key, client.pem and
// client.key into dir, readable by other users (mosquitto drops to its own
// user and must read them), and returns dir.
func (p *PKI) WriteFiles(t testing.TB, dir string) string {
	t.Helper()
	if err := p.Write(dir); err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	return dir
}

// Write is WriteFiles outside tests. Keys are written 0644 because test
// brokers run as another user; never use this PKI for anything real.
func (p *PKI) Write(dir string) error {
	files := map[string][]byte{
		"ca.pem": p.CA.CertPEM, "ca.key": p.CA.KeyPEM,
		"server.pem": p.Server.CertPEM, "server.key": p.Server.KeyPEM,
		"client.pem": p.Client.CertPEM, "client.key": p.Client.KeyPEM,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

func newIdentity(curve Curve, cn string, issuer *Identity, isCA bool) (Identity, error) {
	c := elliptic.P256()
	if curve == P521 {
		c = elliptic.P521()
	}
	key, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		return Identity{}, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return Identity{}, fmt.Errorf("serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"cellgate tests"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if isCA {
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	parent, signer := tmpl, crypto.Signer(key)
	if issuer != nil {
		parent, signer = issuer.cert, issuer.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return Identity{}, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Identity{}, fmt.Errorf("parse certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Identity{}, fmt.Errorf("marshal key: %w", err)
	}
	return Identity{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		cert:    cert,
		key:     key,
	}, nil
}
