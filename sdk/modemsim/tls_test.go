package modemsim

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// goTLSServer is a crypto/tls server on loopback that reports each
// successful handshake's state and echoes.
type goTLSServer struct {
	port   int
	states chan tls.ConnectionState
}

func startGoTLSServer(t *testing.T, cfg *tls.Config) *goTLSServer {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &goTLSServer{port: l.Addr().(*net.TCPAddr).Port, states: make(chan tls.ConnectionState, 16)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				tc := c.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(waitTimeout))
				if err := tc.Handshake(); err != nil {
					return
				}
				tc.SetDeadline(time.Time{})
				s.states <- tc.ConnectionState()
				io.Copy(tc, tc)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

func keyPair(t *testing.T, certPEM, keyPEM []byte) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tlsEnv is a modem with the service started and helpers to configure
// context 0 and try an open on session 0.
type tlsEnv struct {
	t *testing.T
	m *Modem
	h *host
}

func newTLSEnv(t *testing.T, cfg Config) *tlsEnv {
	m, h := newHostModem(t, cfg)
	startService(t, h, "")
	return &tlsEnv{t: t, m: m, h: h}
}

// ctx0 resets context 0 to its defaults, then applies settings.
func (e *tlsEnv) ctx0(settings ...string) {
	e.t.Helper()
	for _, s := range append([]string{
		`"sslversion",0,4`, `"authmode",0,0`, `"ignorelocaltime",0,1`, `"negotiatetime",0,300`,
		`"enableSNI",0,0`, `"keypwd",0,""`, `"ciphersuites",0,0xFFFF`,
	}, settings...) {
		e.h.ok("AT+CSSLCFG=" + s)
	}
}

// open tries a TLS open of session 0 and returns the +CCHOPEN result; a
// successful session is closed again.
func (e *tlsEnv) open(host string, port int) string {
	e.t.Helper()
	e.h.ok(fmt.Sprintf(`AT+CCHOPEN=0,"%s",%d,2`, host, port))
	res := e.h.waitPrefix("+CCHOPEN: 0,")
	if res == "+CCHOPEN: 0,0" {
		e.h.ok("AT+CCHCLOSE=0")
		e.h.waitLine("+CCHCLOSE: 0,0")
	}
	return res
}

func TestTLSVersionsAuthModesAndSNI(t *testing.T) {
	ca := newTestCA(t, "trusted CA")
	other := newTestCA(t, "other CA")
	srvCert, srvKey := ca.issue(t, "gateway.test", leafOpts{server: true, dnsNames: []string{"gateway.test"}})
	untrustedCert, untrustedKey := other.issue(t, "gateway.test", leafOpts{server: true, dnsNames: []string{"gateway.test"}})
	cliCert, cliKey := ca.issue(t, "gw-1", leafOpts{})
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca.cert)

	plain := startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{keyPair(t, srvCert, srvKey)}})
	tls11 := startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{keyPair(t, srvCert, srvKey)}, MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11})
	untrusted := startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{keyPair(t, untrustedCert, untrustedKey)}})
	mutual := startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{keyPair(t, srvCert, srvKey)}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs})
	mutualUntrusted := startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{keyPair(t, untrustedCert, untrustedKey)}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs})

	e := newTLSEnv(t, Config{Hosts: map[string]string{"gateway.test": "127.0.0.1", "wrong.test": "127.0.0.1"}})
	e.h.download("ca.pem", ca.pem)
	e.h.download("cli.pem", cliCert)
	e.h.download("cli.key.pem", cliKey)
	files := []string{`"cacert",0,"ca.pem"`, `"clientcert",0,"cli.pem"`, `"clientkey",0,"cli.key.pem"`}

	t.Run("sslversion 4 negotiates TLS 1.2, never 1.3", func(t *testing.T) {
		e.ctx0()
		if got := e.open("gateway.test", plain.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("open = %q", got)
		}
		if st := <-plain.states; st.Version != tls.VersionTLS12 {
			t.Fatalf("negotiated version %x, want TLS 1.2", st.Version)
		}
	})
	t.Run("sslversion 2 pins TLS 1.1", func(t *testing.T) {
		e.ctx0(`"sslversion",0,2`)
		if got := e.open("gateway.test", tls11.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("open = %q", got)
		}
		if st := <-tls11.states; st.Version != tls.VersionTLS11 {
			t.Fatalf("negotiated version %x, want TLS 1.1", st.Version)
		}
		if got := e.open("gateway.test", plain.port); got != "+CCHOPEN: 0,15" {
			t.Fatalf("TLS 1.1 only against a TLS 1.2+ server = %q, want 15", got)
		}
	})
	t.Run("sslversion 0 (SSL 3.0) cannot handshake", func(t *testing.T) {
		e.ctx0(`"sslversion",0,0`)
		if got := e.open("gateway.test", plain.port); got != "+CCHOPEN: 0,15" {
			t.Fatalf("open = %q, want 15", got)
		}
	})
	t.Run("authmode 0 verifies nothing", func(t *testing.T) {
		e.ctx0()
		if got := e.open("gateway.test", untrusted.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("open = %q", got)
		}
		<-untrusted.states
	})
	t.Run("authmode 1 verifies the server chain", func(t *testing.T) {
		e.ctx0(append(files, `"authmode",0,1`)...)
		if got := e.open("gateway.test", plain.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("trusted server: open = %q", got)
		}
		<-plain.states
		if got := e.open("gateway.test", untrusted.port); got != "+CCHOPEN: 0,15" {
			t.Fatalf("untrusted server: open = %q, want 15", got)
		}
	})
	t.Run("SNI only with enableSNI=1, and then the name is verified", func(t *testing.T) {
		e.ctx0(append(files, `"authmode",0,1`)...)
		if got := e.open("gateway.test", plain.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("open = %q", got)
		}
		if st := <-plain.states; st.ServerName != "" {
			t.Fatalf("SNI %q sent with enableSNI=0", st.ServerName)
		}
		// Without SNI the host name is not checked (chain only).
		if got := e.open("wrong.test", plain.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("wrong name, SNI off: open = %q, want 0", got)
		}
		<-plain.states
		e.h.ok(`AT+CSSLCFG="enableSNI",0,1`)
		if got := e.open("gateway.test", plain.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("SNI on: open = %q", got)
		}
		if st := <-plain.states; st.ServerName != "gateway.test" {
			t.Fatalf("SNI = %q, want gateway.test", st.ServerName)
		}
		if got := e.open("wrong.test", plain.port); got != "+CCHOPEN: 0,15" {
			t.Fatalf("wrong name, SNI on: open = %q, want 15", got)
		}
	})
	t.Run("ignorelocaltime=0 checks validity against the module clock", func(t *testing.T) {
		e.ctx0(append(files, `"authmode",0,1`, `"ignorelocaltime",0,0`)...)
		// The RTC is still in 1980: the certificate is not yet valid.
		if got := e.open("gateway.test", plain.port); got != "+CCHOPEN: 0,15" {
			t.Fatalf("RTC in 1980: open = %q, want 15", got)
		}
		e.h.ok(`AT+CCLK="` + formatCCLK(time.Now(), 0) + `"`)
		if got := e.open("gateway.test", plain.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("RTC set: open = %q", got)
		}
		<-plain.states
	})
	t.Run("authmode 2 presents the client certificate", func(t *testing.T) {
		e.ctx0(append(files, `"authmode",0,2`)...)
		if got := e.open("gateway.test", mutual.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("open = %q", got)
		}
		if st := <-mutual.states; len(st.PeerCertificates) != 1 || st.PeerCertificates[0].Subject.CommonName != "gw-1" {
			t.Fatalf("server saw client certificates %v", st.PeerCertificates)
		}
		e.ctx0(`"authmode",0,0`)
		if got := e.open("gateway.test", mutual.port); got != "+CCHOPEN: 0,15" {
			t.Fatalf("no client certificate against a mutual server = %q, want 15", got)
		}
	})
	t.Run("authmode 3 presents the client certificate without checking the server", func(t *testing.T) {
		e.ctx0(append(files, `"authmode",0,3`)...)
		if got := e.open("gateway.test", mutualUntrusted.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("open = %q", got)
		}
		<-mutualUntrusted.states
	})
	t.Run("ciphersuites 0x002F offers only TLS_RSA_WITH_AES_128_CBC_SHA", func(t *testing.T) {
		e.ctx0(`"ciphersuites",0,0x002F`)
		if got := e.open("gateway.test", plain.port); got != "+CCHOPEN: 0,15" {
			t.Fatalf("RSA-only suite against an ECDSA server = %q, want 15", got)
		}
	})
	t.Run("unknown host is a DNS error", func(t *testing.T) {
		e.ctx0(`"negotiatetime",0,10`)
		if got := e.open("no-such-host.invalid", plain.port); got != "+CCHOPEN: 0,13" {
			t.Fatalf("open = %q, want 13", got)
		}
	})
}

func TestTLSValidityIgnoredWithIgnoreLocalTime(t *testing.T) {
	ca := newTestCA(t, "trusted CA")
	expiredCert, expiredKey := ca.issue(t, "gateway.test", leafOpts{server: true, dnsNames: []string{"gateway.test"},
		notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-24 * time.Hour)})
	srv := startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{keyPair(t, expiredCert, expiredKey)}})
	e := newTLSEnv(t, Config{})
	e.h.download("ca.pem", ca.pem)
	e.ctx0(`"cacert",0,"ca.pem"`, `"authmode",0,1`)
	if got := e.open("127.0.0.1", srv.port); got != "+CCHOPEN: 0,0" {
		t.Fatalf("expired certificate, ignorelocaltime=1: open = %q, want 0", got)
	}
	<-srv.states
	e.h.ok(`AT+CCLK="` + formatCCLK(time.Now(), 0) + `"`)
	e.h.ok(`AT+CSSLCFG="ignorelocaltime",0,0`)
	if got := e.open("127.0.0.1", srv.port); got != "+CCHOPEN: 0,15" {
		t.Fatalf("expired certificate, ignorelocaltime=0: open = %q, want 15", got)
	}
}

func TestTLSKeyFormats(t *testing.T) {
	ca := newTestCA(t, "trusted CA")
	srvCert, srvKey := ca.serverCert(t)
	cliCert, cliKey := ca.issue(t, "gw-1", leafOpts{})
	_, otherKey := ca.issue(t, "gw-2", leafOpts{})
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca.cert)
	srv := startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{keyPair(t, srvCert, srvKey)}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs})

	p8, _ := pem.Decode(cliKey)
	k, err := x509.ParsePKCS8PrivateKey(p8.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	certDER, _ := pem.Decode(cliCert)
	// Legacy encrypted PEM is what keypwd unlocks.
	encBlock, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", sec1, []byte("s3cret"), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	enc := pem.EncodeToMemory(encBlock)

	e := newTLSEnv(t, Config{})
	e.h.download("ca.der", ca.cert.Raw)
	e.h.download("cli.der", certDER.Bytes)
	e.h.download("cli_key.der", p8.Bytes)
	e.h.download("cli_key_enc.pem", enc)
	e.h.download("other_key.pem", otherKey)
	base := []string{`"cacert",0,"ca.der"`, `"clientcert",0,"cli.der"`, `"authmode",0,2`}

	for _, tc := range []struct {
		name, key, pwd, want string
	}{
		{"DER PKCS#8 key and DER certificates", "cli_key.der", "", "+CCHOPEN: 0,0"},
		{"encrypted PEM key with the right keypwd", "cli_key_enc.pem", "s3cret", "+CCHOPEN: 0,0"},
		{"encrypted PEM key with a wrong keypwd", "cli_key_enc.pem", "wrong", "+CCHOPEN: 0,15"},
		{"encrypted PEM key without keypwd", "cli_key_enc.pem", "", "+CCHOPEN: 0,15"},
		{"key that does not match the certificate", "other_key.pem", "", "+CCHOPEN: 0,15"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.ctx0(append(base, `"clientkey",0,"`+tc.key+`"`, `"keypwd",0,"`+tc.pwd+`"`)...)
			if got := e.open("127.0.0.1", srv.port); got != tc.want {
				t.Fatalf("open = %q, want %q", got, tc.want)
			}
			if tc.want == "+CCHOPEN: 0,0" {
				<-srv.states
			}
		})
	}
}

func TestAllCipherSuitesExcludeRC4(t *testing.T) {
	ids := allCipherSuites()
	if len(ids) < 10 {
		t.Fatalf("only %d suites", len(ids))
	}
	for _, id := range ids {
		if strings.Contains(tls.CipherSuiteName(id), "RC4") {
			t.Errorf("RC4 suite %s offered", tls.CipherSuiteName(id))
		}
	}
}
