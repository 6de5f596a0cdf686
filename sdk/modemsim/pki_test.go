package modemsim

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCA is a P-521 ECDSA certificate authority made for one test; P-521
// because the seed's server runs with -named_curve secp521r1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var (
	certSerialMu sync.Mutex
	certSerial   int64 = 1
)

func nextSerial() *big.Int {
	certSerialMu.Lock()
	defer certSerialMu.Unlock()
	certSerial++
	return big.NewInt(certSerial)
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatalf("generate CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create CA certificate: %v", err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leafOpts shapes an issued certificate.
type leafOpts struct {
	server    bool
	dnsNames  []string
	ips       []net.IP
	notBefore time.Time
	notAfter  time.Time
}

// issue returns a certificate and its PKCS#8 key, both PEM.
func (ca *testCA) issue(t testing.TB, cn string, o leafOpts) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	if o.notBefore.IsZero() {
		o.notBefore = time.Now().Add(-time.Hour)
	}
	if o.notAfter.IsZero() {
		o.notAfter = time.Now().Add(24 * time.Hour)
	}
	eku := x509.ExtKeyUsageClientAuth
	if o.server {
		eku = x509.ExtKeyUsageServerAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    o.notBefore,
		NotAfter:     o.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{eku},
		DNSNames:     o.dnsNames,
		IPAddresses:  o.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("issue certificate %s: %v", cn, err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})
}

// serverCert issues a server certificate for 127.0.0.1 and localhost.
func (ca *testCA) serverCert(t testing.TB) (certPEM, keyPEM []byte) {
	return ca.issue(t, "127.0.0.1", leafOpts{server: true, dnsNames: []string{"localhost"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}})
}

// sServer is a running `openssl s_server`.
type sServer struct {
	port   int
	stderr *bytes.Buffer
	mu     *sync.Mutex
}

func (s *sServer) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// lockedWriter serialises writes from exec's copying goroutine.
type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// startSServer runs `openssl s_server` with the seed's options on a free
// loopback port, with clientCA as -CAfile, and waits until it listens
// ("ACCEPT" on its stdout). It is killed by PID and reaped at cleanup.
func startSServer(t testing.TB, clientCA []byte, certPEM, keyPEM []byte, extra ...string) *sServer {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl is required (make deps installs it): %v", err)
	}
	dir := t.TempDir()
	for name, b := range map[string][]byte{"ca.pem": clientCA, "server.pem": certPEM, "server.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for attempt := 0; ; attempt++ {
		port := freePort(t)
		args := append([]string{"s_server", "-accept", "127.0.0.1:" + strconv.Itoa(port),
			"-tls1_2", "-Verify", "10", "-verify_return_error", "-named_curve", "secp521r1",
			"-CAfile", filepath.Join(dir, "ca.pem"), "-cert", filepath.Join(dir, "server.pem"),
			"-key", filepath.Join(dir, "server.key")}, extra...)
		cmd := exec.Command(openssl, args...)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		srv := &sServer{port: port, stderr: &bytes.Buffer{}, mu: &sync.Mutex{}}
		cmd.Stderr = lockedWriter{srv.mu, srv.stderr}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start openssl s_server: %v", err)
		}
		ready := make(chan bool, 1)
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			sc := bufio.NewScanner(stdout)
			signalled := false
			for sc.Scan() {
				if !signalled && strings.Contains(sc.Text(), "ACCEPT") {
					ready <- true
					signalled = true
				}
			}
			if !signalled {
				ready <- false
			}
		}()
		stop := func() {
			cmd.Process.Kill()
			<-drained
			cmd.Wait()
		}
		timer := time.NewTimer(waitTimeout)
		var ok bool
		select {
		case ok = <-ready:
		case <-timer.C:
		}
		timer.Stop()
		if ok {
			t.Cleanup(stop)
			return srv
		}
		stop()
		if attempt == 2 {
			t.Fatalf("openssl s_server did not start listening: %s", srv.log())
		}
	}
}

// freePort finds a loopback port nobody listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
