package plugintest

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/cellgate/cellgate/sdk/conformance"
)

// Identity is a certificate and its key, PEM-encoded.
type Identity struct {
	CertPEM []byte
	KeyPEM  []byte
}

// TLSCertificate returns the identity for a crypto/tls config.
func (id Identity) TLSCertificate(t testing.TB) tls.Certificate {
	t.Helper()
	c, err := conformance.Identity(id).TLSCertificate()
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	return c
}

// PKI is a throwaway certificate authority with a server and a client
// identity, for tests: conformance.PKI for a testing.TB. The server
// certificate is valid for 127.0.0.1, ::1 and localhost.
type PKI struct {
	CA     Identity
	Server Identity
	Client Identity

	c *conformance.PKI
}

// Curve selects the key type of a test PKI: P256 (the default, small and
// fast) or P521, which openssl s_server with -named_curve secp521r1 (the
// seed document's server) needs in TLS 1.2.
type Curve = conformance.Curve

// The curves a test PKI can use.
const (
	P256 = conformance.P256
	P521 = conformance.P521
)

// NewPKI generates a CA and a server and a client certificate it signed.
func NewPKI(t testing.TB, curve Curve) *PKI {
	t.Helper()
	p, err := conformance.NewPKI(curve)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	return &PKI{CA: Identity(p.CA), Server: Identity(p.Server), Client: Identity(p.Client), c: p}
}

// NewClient issues another client identity from the same CA (a rotation).
func (p *PKI) NewClient(t testing.TB, name string) Identity {
	t.Helper()
	id, err := p.c.NewClient(name)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	return Identity(id)
}

// CertPool returns a pool holding the CA.
func (p *PKI) CertPool() *x509.CertPool { return p.c.CertPool() }

// WriteFiles writes ca.pem, ca.key, server.pem, server.key, client.pem and
// client.key into dir, all but client.key readable by other users
// (mosquitto drops to its own user and must read them), and returns dir.
func (p *PKI) WriteFiles(t testing.TB, dir string) string {
	t.Helper()
	if err := p.c.Write(dir); err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	return dir
}
