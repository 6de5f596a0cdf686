package uplink

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/transport"
)

// This file holds what the uplink tests share: a throw-away PKI, TLS
// dialers standing in for the modem (a net.Conn carrying TLS, as a modem
// session is), a log sink, and process helpers for the real peers
// (mosquitto, openssl s_server).

// testPKI is a CA with a server certificate for 127.0.0.1/localhost, two
// client certificates it signed, and one client certificate from a CA
// nobody trusts. Its PEM files are world-readable: mosquitto started as
// root drops to user mosquitto before it loads them.
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
	ca, caKey := newCA(t, "cellgate test CA")
	rogueCA, rogueKey := newCA(t, "untrusted CA")
	p := &testPKI{dir: dir, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)

	var serverKeyPEM, serverCertPEM []byte
	p.server, serverCertPEM, serverKeyPEM = issue(t, ca, caKey, "localhost", true)
	p.client, _, _ = issue(t, ca, caKey, "gw-test", false)
	p.subscriber, _, _ = issue(t, ca, caKey, "subscriber", false)
	p.rogue, _, _ = issue(t, rogueCA, rogueKey, "gw-test", false)

	p.caFile = p.write(t, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))
	p.serverCertFile = p.write(t, "server.pem", serverCertPEM)
	p.serverKeyFile = p.write(t, "server.key", serverKeyPEM)
	return p
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

var serial atomic.Int64

func newCA(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// issue signs a leaf; a server leaf is valid for localhost and 127.0.0.1.
func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, server bool) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certPEM, keyPEM
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

// syncBuffer collects output written from several goroutines (a process's
// stdout, log records arriving after a test ended).
type syncBuffer = testutil.SyncBuffer

// testLog returns a debug-level logger into a buffer, printed only if the
// test fails. It is not t.Log: paho reports from its own goroutines, which
// may outlive the test by a moment.
func testLog(t *testing.T) (*slog.Logger, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("uplink log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// freePort returns a loopback port nobody listens on right now, for peers
// that cannot be told to pick one and report it.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitListening polls the kernel's socket table until something listens
// on port, without connecting (a probe connection would use up
// `openssl s_server -naccept 1`). It fails if exited closes first.
func waitListening(t *testing.T, port int, exited <-chan struct{}, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if listening(t, port) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not listening on 127.0.0.1:%d after 15s", what, port)
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before listening on 127.0.0.1:%d", what, port)
		case <-tick.C:
		}
	}
}

func listening(t *testing.T, port int) bool {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatalf("read the socket table: %v", err)
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st …; st 0A is LISTEN.
		f := strings.Fields(sc.Text())
		if len(f) > 3 && strings.HasSuffix(f[1], want) && f[3] == "0A" {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
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
