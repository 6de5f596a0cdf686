package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cellgate/cellgate/internal/devpki"
	"github.com/cellgate/cellgate/transport"
)

// This file holds what the uplink tests share: the development PKI as
// they use it and TLS dialers standing in for the modem (a net.Conn
// carrying TLS, as a modem session is). Logs, ports and waiting come from
// internal/testutil.

// testPKI is the development PKI (internal/devpki) as the uplink tests use
// it: a CA with a server certificate for 127.0.0.1/localhost, two client
// certificates it signed, and one client certificate from a CA nobody
// trusts. Its PEM files are world-readable: mosquitto started as root
// drops to user mosquitto before it loads them.
type testPKI struct {
	dir  string
	pool *x509.CertPool

	caFile, serverCertFile, serverKeyFile string

	server     tls.Certificate
	client     tls.Certificate // CN gw-test
	subscriber tls.Certificate // CN subscriber
	rogue      tls.Certificate // CN gw-test, signed by an untrusted CA
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	// mosquitto may run as another user: let it through the temp dirs.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dev, err := devpki.New(devpki.P256)
	if err != nil {
		t.Fatal(err)
	}
	rogueCA, err := devpki.NewCA(devpki.P256, "untrusted CA")
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	issue := func(ca *devpki.CA, cn string) tls.Certificate {
		t.Helper()
		id, err := ca.Issue(devpki.Leaf{CommonName: cn})
		if err != nil {
			t.Fatal(err)
		}
		return id.TLSCertificate()
	}
	return &testPKI{
		dir: dir, pool: dev.CertPool(),
		caFile:         filepath.Join(dir, "ca.pem"),
		serverCertFile: filepath.Join(dir, "server.pem"),
		serverKeyFile:  filepath.Join(dir, "server.key"),
		server:         dev.Server.TLSCertificate(),
		client:         issue(dev.CA, "gw-test"),
		subscriber:     issue(dev.CA, "subscriber"),
		rogue:          issue(rogueCA, "gw-test"),
	}
}

func (p *testPKI) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// clientTLS is what the gateway's TLS would be: the CA pinned, a client
// certificate presented. It is presented whatever CAs the server names, as
// a modem presents its configured one, so that an untrusted certificate
// reaches the server's verification instead of being held back by Go.
func (p *testPKI) clientTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		RootCAs:    p.pool,
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		},
	}
}

// serverTLS requires and verifies a client certificate.
func (p *testPKI) serverTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.pool,
		MinVersion:   tls.VersionTLS12,
	}
}

// tlsDial returns a Dialer that opens a TLS connection to addr and
// completes the handshake, as the agent's host-mode dialer does over a
// modem socket; dials counts its successful calls.
func tlsDial(addr string, cfg *tls.Config, dials *atomic.Int32) transport.Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		d := tls.Dialer{Config: cfg}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		if dials != nil {
			dials.Add(1)
		}
		return c, nil
	}
}

// closeEndsSends closes u while a Send waits (its result comes on waiting)
// and checks that the waiting Send and any later one fail with ErrClosed.
func closeEndsSends(t *testing.T, u Uplink, waiting <-chan error) {
	t.Helper()
	if err := u.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Send during Close = %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close left a Send waiting")
	}
	if err := u.Send(context.Background(), readingLines("after-close")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close = %v, want ErrClosed", err)
	}
}

func TestRetryAfterFindsTheWaitThroughWrapping(t *testing.T) {
	base := &StatusError{URL: "https://x/", StatusCode: 429, Status: "429 Too Many Requests"}
	err := fmt.Errorf("send batch: %w", &RetryAfterError{After: 7 * time.Second, Err: base})
	d, ok := RetryAfter(err)
	if !ok || d != 7*time.Second {
		t.Fatalf("RetryAfter = %s, %v; want 7s, true", d, ok)
	}
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 429 {
		t.Fatalf("the status error is not reachable through the RetryAfterError: %v", err)
	}
	if _, ok := RetryAfter(base); ok {
		t.Fatal("RetryAfter found a wait in an error that carries none")
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
