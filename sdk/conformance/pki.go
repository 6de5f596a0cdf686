package conformance

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"github.com/cellgate/cellgate/internal/devpki"
)

// Identity is a certificate and its key, PEM-encoded.
type Identity struct {
	CertPEM []byte
	KeyPEM  []byte
}

// TLSCertificate returns the identity for a crypto/tls configuration, or
// an error when the PEM does not hold a matching certificate and key.
func (id Identity) TLSCertificate() (tls.Certificate, error) {
	c, err := tls.X509KeyPair(id.CertPEM, id.KeyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("conformance: identity key pair: %w", err)
	}
	return c, nil
}

// PKI is a throwaway certificate authority with a server and a client
// identity: the good CA of a certification run, or a rogue one. Its server
// certificate is valid for 127.0.0.1, ::1 and localhost unless NewPKIFor
// named other hosts. Never use it for anything real.
type PKI struct {
	CA     Identity
	Server Identity
	Client Identity

	dev *devpki.PKI
}

// Curve selects the key type of a PKI: P256 (the default, small and fast)
// or P521, which openssl s_server with -named_curve secp521r1 needs in
// TLS 1.2.
type Curve = devpki.KeyType

// The curves a PKI can use.
const (
	P256 = devpki.P256
	P521 = devpki.P521
)

// NewPKI generates a CA and a server and a client certificate it signed.
func NewPKI(curve Curve) (*PKI, error) {
	dev, err := devpki.New(curve)
	if err != nil {
		return nil, err
	}
	return fromDev(dev), nil
}

// NewPKIFor is NewPKI with a server certificate valid for hosts (DNS names
// or IP addresses) in addition to localhost, 127.0.0.1 and ::1: the names a
// modem on a real network dials to reach an echo server.
func NewPKIFor(curve Curve, hosts []string) (*PKI, error) {
	dev, err := devpki.New(curve)
	if err != nil {
		return nil, err
	}
	if len(hosts) > 0 {
		all := append([]string{"localhost", "127.0.0.1", "::1"}, hosts...)
		dev.Server, err = dev.CA.Issue(devpki.Leaf{CommonName: "cellgate verify echo server", Hosts: all})
		if err != nil {
			return nil, err
		}
	}
	return fromDev(dev), nil
}

func fromDev(dev *devpki.PKI) *PKI {
	return &PKI{CA: identity(dev.CA.Identity), Server: identity(dev.Server), Client: identity(dev.Client), dev: dev}
}

func identity(id devpki.Identity) Identity { return Identity{CertPEM: id.CertPEM, KeyPEM: id.KeyPEM} }

// NewClient issues another client identity from the same CA, as a
// certificate rotation would bring.
func (p *PKI) NewClient(name string) (Identity, error) {
	id, err := p.dev.CA.Issue(devpki.Leaf{CommonName: name})
	if err != nil {
		return Identity{}, err
	}
	return identity(id), nil
}

// CertPool returns a pool holding the CA.
func (p *PKI) CertPool() *x509.CertPool { return p.dev.CertPool() }

// Write writes ca.pem, ca.key, server.pem, server.key, client.pem and
// client.key into dir, all but client.key readable by other users (a test
// broker drops to its own user and must read them). Use it for test
// fixtures only: it writes the CA's key.
func (p *PKI) Write(dir string) error { return p.dev.WriteFiles(dir) }

// MutualTLS is a server configuration that presents the PKI's server
// identity and requires a client certificate signed by its CA; maxVersion
// caps the TLS version (0: any).
func MutualTLS(p *PKI, maxVersion uint16) *tls.Config {
	cfg := p.dev.ServerTLS()
	cfg.MaxVersion = maxVersion
	return cfg
}
