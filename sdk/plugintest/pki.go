package plugintest

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/cellgate/cellgate/internal/devpki"
)

// Identity is a certificate and its key, PEM-encoded.
type Identity struct {
	CertPEM []byte
	KeyPEM  []byte
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

	dev *devpki.PKI
}

// Curve selects the key type of a test PKI: P256 (the default, small and
// fast) or P521, which openssl s_server with -named_curve secp521r1 (the
// seed document's server) needs in TLS 1.2.
type Curve = devpki.KeyType

// The curves a test PKI can use.
const (
	P256 = devpki.P256
	P521 = devpki.P521
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

// GeneratePKI is NewPKI for code that has no testing.TB, such as a plugin
// author's own certification command.
func GeneratePKI(curve Curve) (*PKI, error) {
	dev, err := devpki.New(curve)
	if err != nil {
		return nil, err
	}
	return &PKI{CA: identity(dev.CA.Identity), Server: identity(dev.Server), Client: identity(dev.Client), dev: dev}, nil
}

func identity(id devpki.Identity) Identity { return Identity{CertPEM: id.CertPEM, KeyPEM: id.KeyPEM} }

// NewClient issues another client identity from the same CA (a rotation).
func (p *PKI) NewClient(t testing.TB, name string) Identity {
	t.Helper()
	id, err := p.dev.CA.Issue(devpki.Leaf{CommonName: name})
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	return identity(id)
}

// CertPool returns a pool holding the CA.
func (p *PKI) CertPool() *x509.CertPool { return p.dev.CertPool() }

// WriteFiles writes ca.pem, ca.key, server.pem, server.key, client.pem and
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
func (p *PKI) Write(dir string) error { return p.dev.WriteFiles(dir) }
