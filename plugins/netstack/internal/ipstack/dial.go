package ipstack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// defaultDialTimeout bounds connect and handshake when the request names
// no timeout.
const defaultDialTimeout = 60 * time.Second

// Dial opens a session to req.Host:req.Port from the Open'd source
// address. In sdk.DialModemTLS mode this process runs TLS (1.2 or later)
// with profile req.Profile: the server is verified against its CA and the
// name req.ServerName, or req.Host when ServerName is empty (then no SNI is
// sent), and the client certificate is presented. In sdk.DialPlainTCP mode
// the session is the TCP connection. Failures are *sdk.NetError (see
// netError); when ctx ends first, the error wraps ctx.Err().
func (t *Transport) Dial(ctx context.Context, req sdk.DialRequest) (sdk.Session, error) {
	if req.Host == "" || req.Port < 1 || req.Port > 65535 {
		return nil, &sdk.NetError{Op: "open", Session: -1, Kind: sdk.NetInvalid, Text: fmt.Sprintf("address %q port %d", req.Host, req.Port)}
	}
	if req.Mode != sdk.DialModemTLS && req.Mode != sdk.DialPlainTCP {
		return nil, &sdk.ModemError{Op: "open", Code: -1, Text: fmt.Sprintf("dial mode %v is not one the netstack plugin knows", req.Mode)}
	}
	t.mu.Lock()
	local := t.local
	prof, provisioned := t.store.profiles[req.Profile]
	t.mu.Unlock()
	if req.Mode == sdk.DialModemTLS && !provisioned {
		return nil, &sdk.NetError{Op: "open", Session: -1, Kind: sdk.NetCertificate, Text: fmt.Sprintf("no bundle provisioned for TLS profile %d", req.Profile)}
	}
	id, err := t.reserve()
	if err != nil {
		return nil, err
	}
	conn, err := dial(ctx, req, local, prof)
	if err != nil {
		t.release(id)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("open session %d to %s: %w", id, req.Host, ctx.Err())
		}
		return nil, netError("open", id, err)
	}
	s := newSession(id, conn, t.release, t.log)
	t.mu.Lock()
	t.sessions[id] = s
	t.mu.Unlock()
	t.log.Info("session open", "op", "open", "session", id, "host", req.Host, "port", req.Port, "mode", req.Mode.String())
	return s, nil
}

// reserve takes the lowest free session id.
func (t *Transport) reserve() (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range maxSessions {
		if _, used := t.sessions[id]; !used {
			t.sessions[id] = nil
			return id, nil
		}
	}
	return 0, &sdk.NetError{Op: "open", Session: -1, Kind: sdk.NetBusy, Text: fmt.Sprintf("all %d sessions in use", maxSessions)}
}

func (t *Transport) release(id int) {
	t.mu.Lock()
	delete(t.sessions, id)
	t.mu.Unlock()
}

// dial connects and, in modem-TLS mode, shakes hands, within req.Timeout
// (or defaultDialTimeout) and ctx.
func dial(ctx context.Context, req sdk.DialRequest, local net.Addr, p profile) (net.Conn, error) {
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := net.Dialer{LocalAddr: local}
	addr := net.JoinHostPort(req.Host, strconv.Itoa(req.Port))
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if req.Mode == sdk.DialPlainTCP {
		return conn, nil
	}
	tc := tls.Client(conn, tlsConfig(req, p))
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, handshakeError{err}
	}
	return tc, nil
}

// tlsConfig is the client side of profile p for req. Verification is done
// in VerifyConnection so that the name checked need not be sent as SNI.
func tlsConfig(req sdk.DialRequest, p profile) *tls.Config {
	cfg := &tls.Config{
		ServerName:         req.ServerName,
		MinVersion:         tls.VersionTLS12,
		MaxVersion:         p.maxVersion,
		InsecureSkipVerify: true, // verified below, unless the bundle is Insecure
	}
	if p.identity != nil {
		cfg.Certificates = []tls.Certificate{*p.identity}
	}
	if p.insecure {
		return cfg
	}
	name := req.ServerName
	if name == "" {
		name = req.Host
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the server sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: name, Roots: p.roots, Intermediates: inter})
		if err != nil {
			return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
		}
		return nil
	}
	return cfg
}

// handshakeError marks an error of the TLS handshake, as opposed to the
// TCP connect before it.
type handshakeError struct{ err error }

func (e handshakeError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e handshakeError) Unwrap() error { return e.err }

// netError maps an error of the host's network stack to a *sdk.NetError of
// the neutral kind that fits: a name that did not resolve is NetDNS; a
// verification of the server's certificate that failed is NetCertificate;
// any other handshake failure (an alert from the server refusing our
// certificate, a protocol error, the server hanging up) is NetHandshake; a
// connection reset or closed by the peer is NetPeerClosed; a refused or
// unreachable connect is NetConnect (NetNoNetwork when no route exists);
// a timeout is NetTimeout. Go's words go in Text; there is no vendor code.
func netError(op string, session int, err error) *sdk.NetError {
	ne := &sdk.NetError{Op: op, Session: session, Kind: sdk.NetOther, Text: err.Error()}
	var (
		dnsErr  *net.DNSError
		verify  *tls.CertificateVerificationError
		hs      handshakeError
		timeout interface{ Timeout() bool }
	)
	switch {
	case errors.As(err, &dnsErr):
		ne.Kind = sdk.NetDNS
	case errors.As(err, &verify):
		ne.Kind = sdk.NetCertificate
	case errors.As(err, &timeout) && timeout.Timeout():
		ne.Kind = sdk.NetTimeout
	case errors.As(err, &hs):
		ne.Kind = sdk.NetHandshake
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		ne.Kind = sdk.NetPeerClosed
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EADDRNOTAVAIL):
		ne.Kind = sdk.NetNoNetwork
	case op == "open":
		ne.Kind = sdk.NetConnect
	}
	return ne
}
