// Package devpki is the development PKI that the demo and the tests share:
// a throwaway certificate authority, the certificates it signs for loopback
// servers and gateways, TLS configurations built from them, and the PEM
// files that brokers, openssl and the emulated modem load.
//
// It reports every failure as an error and does not import testing, so a
// binary (cellgate-demo) can carry it; sdk/plugintest wraps it for tests.
// Never use it for anything real: keys are written world-readable and
// nothing is kept secret.
package devpki

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
	"time"
)

// KeyType selects the ECDSA curve of the keys a CA makes, its own and
// those of the certificates it issues.
type KeyType int

const (
	// P256 is the default: small and fast.
	P256 KeyType = iota
	// P521 is what openssl s_server with -named_curve secp521r1 (the
	// SIMCom seed document's server) needs in TLS 1.2.
	P521
)

func (k KeyType) curve() elliptic.Curve {
	if k == P521 {
		return elliptic.P521()
	}
	return elliptic.P256()
}

// Identity is a certificate and its private key, in PEM (the key as
// PKCS#8) and parsed.
type Identity struct {
	CertPEM []byte
	KeyPEM  []byte
	Cert    *x509.Certificate
	Key     crypto.Signer
}

// TLSCertificate returns the identity for a crypto/tls configuration.
func (id Identity) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{id.Cert.Raw}, PrivateKey: id.Key, Leaf: id.Cert}
}

// CA is a self-signed certificate authority.
type CA struct {
	Identity
	keyType KeyType
}

// NewCA makes a certificate authority named name with a key of type kt.
func NewCA(kt KeyType, name string) (*CA, error) {
	id, err := newIdentity(kt, &x509.Certificate{
		Subject:               subject(name),
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(defaultValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("devpki: CA %q: %w", name, err)
	}
	return &CA{Identity: id, keyType: kt}, nil
}

// defaultValidity is how long certificates are valid from now unless a
// Leaf says otherwise: past the agent's tls.renew_before default (30
// days), so a fresh development certificate neither warns nor rotates.
const defaultValidity = 90 * 24 * time.Hour

// Leaf describes a certificate for CA.Issue. Every leaf may serve as a
// TLS server and as a TLS client.
type Leaf struct {
	// CommonName is the subject's CN; a broker with
	// use_identity_as_username takes it as the user name.
	CommonName string
	// Hosts are the DNS names and IP addresses the certificate is valid
	// for. Nil means localhost, 127.0.0.1 and ::1; an empty list, none.
	Hosts []string
	// NotBefore and NotAfter bound the validity; zero means an hour ago
	// and 90 days from now. An expired certificate is a valid Leaf.
	NotBefore, NotAfter time.Time
}

// Issue makes a key of the CA's type and a certificate for it, as l
// describes, signed by the CA.
func (ca *CA) Issue(l Leaf) (Identity, error) {
	tmpl := &x509.Certificate{
		Subject:     subject(l.CommonName),
		NotBefore:   l.NotBefore,
		NotAfter:    l.NotAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(defaultValidity)
	}
	hosts := l.Hosts
	if hosts == nil {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	id, err := newIdentity(ca.keyType, tmpl, &ca.Identity)
	if err != nil {
		return Identity{}, fmt.Errorf("devpki: certificate %q: %w", l.CommonName, err)
	}
	return id, nil
}

// CertPool returns a pool that holds the CA alone.
func (ca *CA) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// PKI is a CA with a server identity (for localhost, 127.0.0.1 and ::1)
// and a client identity it signed: everything a mutual-TLS exchange on
// loopback needs.
type PKI struct {
	CA     *CA
	Server Identity
	Client Identity
}

// New makes a PKI whose keys are all of type kt.
func New(kt KeyType) (*PKI, error) {
	ca, err := NewCA(kt, "cellgate development CA")
	if err != nil {
		return nil, err
	}
	server, err := ca.Issue(Leaf{CommonName: "cellgate development server"})
	if err != nil {
		return nil, err
	}
	client, err := ca.Issue(Leaf{CommonName: "cellgate development client"})
	if err != nil {
		return nil, err
	}
	return &PKI{CA: ca, Server: server, Client: client}, nil
}

// CertPool returns a pool that holds the CA alone.
func (p *PKI) CertPool() *x509.CertPool { return p.CA.CertPool() }

// ServerTLS is a server configuration that presents the server identity
// and requires a client certificate signed by the CA, TLS 1.2 or later.
// The caller may set MaxVersion.
func (p *PKI) ServerTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.Server.TLSCertificate()},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.CertPool(),
		MinVersion:   tls.VersionTLS12,
	}
}

// ClientTLS is a client configuration that trusts the CA alone and
// presents the client identity.
func (p *PKI) ClientTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.Client.TLSCertificate()},
		RootCAs:      p.CertPool(),
		MinVersion:   tls.VersionTLS12,
	}
}

// WriteFiles writes ca.pem, ca.key, server.pem, server.key, client.pem and
// client.key into dir, which must exist. Every file but client.key is
// readable by other users, keys included: a broker started as root drops
// to its own user before it reads them. client.key is the gateway's and
// 0600, as the agent's checks demand of tls.key.
func (p *PKI) WriteFiles(dir string) error {
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"ca.pem", p.CA.CertPEM, 0o644}, {"ca.key", p.CA.KeyPEM, 0o644},
		{"server.pem", p.Server.CertPEM, 0o644}, {"server.key", p.Server.KeyPEM, 0o644},
		{"client.pem", p.Client.CertPEM, 0o644}, {"client.key", p.Client.KeyPEM, 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("devpki: %w", err)
		}
	}
	return nil
}

func subject(cn string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: []string{"cellgate development PKI"}}
}

// newIdentity makes a key of type kt and a certificate from tmpl for it,
// signed by issuer, or self-signed when issuer is nil.
func newIdentity(kt KeyType, tmpl *x509.Certificate, issuer *Identity) (Identity, error) {
	key, err := ecdsa.GenerateKey(kt.curve(), rand.Reader)
	if err != nil {
		return Identity{}, fmt.Errorf("generate key: %w", err)
	}
	tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return Identity{}, fmt.Errorf("serial number: %w", err)
	}
	parent, signer := tmpl, crypto.Signer(key)
	if issuer != nil {
		parent, signer = issuer.Cert, issuer.Key
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
		Cert:    cert,
		Key:     key,
	}, nil
}
