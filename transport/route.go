package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/cellgate/cellgate/sdk"
)

// Dialer opens a fresh connection to the upstream; each call is a new modem
// session. The conn it returns is already secured: in modem-TLS mode it is a
// *Conn whose TLS the modem terminates, in host mode it is wrapped in
// crypto/tls with the handshake done. A Dialer honours ctx while it dials;
// the conn it returns does not depend on ctx afterwards. The caller owns the
// conn and closes it.
type Dialer func(ctx context.Context) (net.Conn, error)

// SessionDialer opens modem sessions. The agent's plugin host and any
// sdk.SecureTransport (a launched plugin) are one.
type SessionDialer interface {
	Dial(ctx context.Context, req sdk.DialRequest) (sdk.Session, error)
}

// TLSMode says where TLS runs for an upstream connection.
type TLSMode string

const (
	// TLSByModem lets the modem's own TLS stack terminate TLS (1.2 on
	// SIMCom modules) with the certificates provisioned into it.
	TLSByModem TLSMode = "modem"
	// TLSByHost opens a plain modem socket and runs TLS 1.3 on the
	// gateway: the keys never leave it.
	TLSByHost TLSMode = "host"
)

// Endpoint is where an upstream connection goes and how it is secured.
type Endpoint struct {
	// Address is host:port.
	Address string
	Mode    TLSMode
	// ServerName overrides the TLS server name (SNI and, in host mode, the
	// name the certificate is verified against). Empty: the host when it
	// is a name; for an IP address no SNI is sent and host-mode
	// verification uses the certificate's IP SANs.
	ServerName string
	// Profile is the modem's SSL context in modem mode.
	Profile int
	// Credentials are the PEM files host-mode TLS uses (CA, client
	// certificate and key, Insecure). Modem mode ignores them: the modem
	// holds its own copies (SecureTransport.Provision).
	Credentials sdk.Bundle
}

// Route is how a client reaches its upstream through the modem.
type Route struct {
	// Target is the endpoint's host:port, for logs and RemoteAddr.
	Target string
	// Dial returns a secured conn: TLS terminated by the modem, or by
	// crypto/tls here over a plain modem socket.
	Dial Dialer
	// Plain and HostTLS are set in host mode only: a plain modem socket
	// and the gateway's TLS config, for clients that run TLS themselves
	// (net/http through Transport.DialContext).
	Plain   Dialer
	HostTLS *tls.Config
}

// NewRoute checks ep and returns the route to it over sessions from d.
// Nothing is dialled yet.
func NewRoute(d SessionDialer, ep Endpoint) (Route, error) {
	host, port, err := splitHostPort(ep.Address)
	if err != nil {
		return Route{}, err
	}
	target := ep.Address
	session := func(req sdk.DialRequest) Dialer {
		return func(ctx context.Context) (net.Conn, error) {
			sess, err := d.Dial(ctx, req)
			if err != nil {
				return nil, err
			}
			return NewConn(sess, target), nil
		}
	}
	switch ep.Mode {
	case TLSByModem:
		return Route{Target: target, Dial: session(ModemDialRequest(host, port, ep.Profile, ep.ServerName))}, nil
	case TLSByHost:
		name := ep.ServerName
		if name == "" {
			name = host // crypto/tls checks an IP against IP SANs and sends no SNI for it
		}
		tc, err := HostTLSConfig(ep.Credentials, name)
		if err != nil {
			return Route{}, err
		}
		plain := session(sdk.DialRequest{Host: host, Port: port, Mode: sdk.DialPlainTCP})
		secure := func(ctx context.Context) (net.Conn, error) {
			c, err := plain(ctx)
			if err != nil {
				return nil, err
			}
			conn := tls.Client(c, tc)
			if err := conn.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, fmt.Errorf("TLS handshake with %s: %w", target, err)
			}
			return conn, nil
		}
		return Route{Target: target, Dial: secure, Plain: plain, HostTLS: tc}, nil
	}
	return Route{}, fmt.Errorf("TLS mode %q: want %s or %s", ep.Mode, TLSByModem, TLSByHost)
}

func splitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("upstream address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("upstream address %q: port must be 1-65535", addr)
	}
	if host == "" {
		return "", 0, fmt.Errorf("upstream address %q: no host", addr)
	}
	return host, port, nil
}

// ModemDialRequest is the session request for modem-terminated TLS. The SNI
// is serverName when set (a plugin whose modem can only send the dialled
// host refuses a different one, which beats verifying against a name the
// operator did not ask for), else the host unless it is an IP address.
func ModemDialRequest(host string, port, profile int, serverName string) sdk.DialRequest {
	req := sdk.DialRequest{Host: host, Port: port, Profile: profile, Mode: sdk.DialModemTLS, ServerName: serverName}
	if serverName == "" && net.ParseIP(host) == nil {
		req.ServerName = host
	}
	return req
}

// CredentialError says which of the credentials host-mode TLS could not use;
// callers name it in their own terms (a config key, a flag).
type CredentialError struct {
	// Field is "ca", "key" (it cannot be decrypted: see sdk.DecryptKeyPEM)
	// or "cert/key".
	Field string
	Err   error
}

func (e *CredentialError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *CredentialError) Unwrap() error { return e.Err }

// HostTLSConfig is cellgate's one TLS policy for gateway-side TLS: TLS 1.3
// (the gateway speaks to upstreams it is configured for, so there is no old
// peer to accommodate), the server verified against the bundle's CA, or the
// system's roots when it has none, unless Insecure; the client certificate
// when the bundle has one. An encrypted key (PKCS#8 or legacy PEM) is
// decrypted here, in memory, with the bundle's KeyPassword; it is never
// written out. A bad CA, key password or key pair is a *CredentialError.
func HostTLSConfig(b sdk.Bundle, serverName string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: serverName}
	if b.Insecure {
		c.InsecureSkipVerify = true
	} else if len(b.CA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b.CA) {
			return nil, &CredentialError{Field: "ca", Err: errors.New("no PEM certificate in it")}
		}
		c.RootCAs = pool
	}
	if len(b.Cert) > 0 || len(b.Key) > 0 {
		key := b.Key
		if sdk.KeyPEMEncrypted(key) {
			plain, err := sdk.DecryptKeyPEM(key, b.KeyPassword)
			if err != nil {
				return nil, &CredentialError{Field: "key", Err: err}
			}
			key = plain
		}
		pair, err := tls.X509KeyPair(b.Cert, key)
		if err != nil {
			return nil, &CredentialError{Field: "cert/key", Err: err}
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}
