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
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/devpki"
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
	serveConns(t, l, func(c net.Conn) {
		tc := c.(*tls.Conn)
		tc.SetDeadline(time.Now().Add(waitTimeout))
		if err := tc.Handshake(); err != nil {
			return
		}
		tc.SetDeadline(time.Time{})
		s.states <- tc.ConnectionState()
		io.Copy(tc, tc)
	})
	return s
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
	m := newTLSMatrix(t)
	m.versions(t)
	m.serverVerification(t)
	m.clientCertificates(t)
	m.openFailures(t)
}

// tlsMatrix is the world of TestTLSVersionsAuthModesAndSNI: Go TLS servers
// that differ in one way each, and a modem holding a CA and a client
// certificate (files, the CSSLCFG settings naming them) for context 0.
type tlsMatrix struct {
	e     *tlsEnv
	files []string

	plain           *goTLSServer // a certificate from the trusted CA
	tls11           *goTLSServer // TLS 1.1 only
	untrusted       *goTLSServer // a certificate from another CA
	mutual          *goTLSServer // requires a client certificate
	mutualUntrusted *goTLSServer // both of the above
}

func newTLSMatrix(t *testing.T) *tlsMatrix {
	t.Helper()
	ca := newTestCA(t, "trusted CA")
	other := newTestCA(t, "other CA")
	gateway := devpki.Leaf{CommonName: "gateway.test", Hosts: []string{"gateway.test"}}
	srvCert := issue(t, ca, gateway).TLSCertificate()
	untrustedCert := issue(t, other, gateway).TLSCertificate()
	cli := issue(t, ca, devpki.Leaf{CommonName: "gw-1"})

	m := &tlsMatrix{
		plain:           startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{srvCert}}),
		tls11:           startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{srvCert}, MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}),
		untrusted:       startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{untrustedCert}}),
		mutual:          startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.CertPool()}),
		mutualUntrusted: startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{untrustedCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.CertPool()}),
	}
	m.e = newTLSEnv(t, Config{Hosts: map[string]string{"gateway.test": "127.0.0.1", "wrong.test": "127.0.0.1"}})
	m.e.h.download("ca.pem", ca.CertPEM)
	m.e.h.download("cli.pem", cli.CertPEM)
	m.e.h.download("cli.key.pem", cli.KeyPEM)
	m.files = []string{`"cacert",0,"ca.pem"`, `"clientcert",0,"cli.pem"`, `"clientkey",0,"cli.key.pem"`}
	return m
}

// versions: sslversion picks the protocol versions offered.
func (m *tlsMatrix) versions(t *testing.T) {
	t.Helper()
	e := m.e
	t.Run("sslversion 4 negotiates TLS 1.2, never 1.3", func(t *testing.T) {
		e.ctx0()
		if got := e.open("gateway.test", m.plain.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("open = %q", got)
		}
		if st := <-m.plain.states; st.Version != tls.VersionTLS12 {
			t.Fatalf("negotiated version %x, want TLS 1.2", st.Version)
		}
	})
	t.Run("sslversion 2 pins TLS 1.1", func(t *testing.T) {
		e.ctx0(`"sslversion",0,2`)
		if got := e.open("gateway.test", m.tls11.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("open = %q", got)
		}
		if st := <-m.tls11.states; st.Version != tls.VersionTLS11 {
			t.Fatalf("negotiated version %x, want TLS 1.1", st.Version)
		}
		if got := e.open("gateway.test", m.plain.port); got != "+CCHOPEN: 0,15" {
			t.Fatalf("TLS 1.1 only against a TLS 1.2+ server = %q, want 15", got)
		}
	})
	t.Run("sslversion 0 (SSL 3.0) cannot handshake", func(t *testing.T) {
		e.ctx0(`"sslversion",0,0`)
		if got := e.open("gateway.test", m.plain.port); got != "+CCHOPEN: 0,15" {
			t.Fatalf("open = %q, want 15", got)
		}
	})
}

// serverVerification: authmode, enableSNI and ignorelocaltime decide what
// of the server's certificate is checked.
func (m *tlsMatrix) serverVerification(t *testing.T) {
	t.Helper()
	e, plain := m.e, m.plain
	t.Run("authmode 0 verifies nothing", func(t *testing.T) {
		e.ctx0()
		if got := e.open("gateway.test", m.untrusted.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("open = %q", got)
		}
		<-m.untrusted.states
	})
	t.Run("authmode 1 verifies the server chain", func(t *testing.T) {
		e.ctx0(append(m.files, `"authmode",0,1`)...)
		if got := e.open("gateway.test", plain.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("trusted server: open = %q", got)
		}
		<-plain.states
		if got := e.open("gateway.test", m.untrusted.port); got != "+CCHOPEN: 0,15" {
			t.Fatalf("untrusted server: open = %q, want 15", got)
		}
	})
	t.Run("SNI only with enableSNI=1, and then the name is verified", func(t *testing.T) {
		e.ctx0(append(m.files, `"authmode",0,1`)...)
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
		e.ctx0(append(m.files, `"authmode",0,1`, `"ignorelocaltime",0,0`)...)
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
}

// clientCertificates: authmodes 2 and 3 present the client certificate.
func (m *tlsMatrix) clientCertificates(t *testing.T) {
	t.Helper()
	e := m.e
	t.Run("authmode 2 presents the client certificate", func(t *testing.T) {
		e.ctx0(append(m.files, `"authmode",0,2`)...)
		if got := e.open("gateway.test", m.mutual.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("open = %q", got)
		}
		if st := <-m.mutual.states; len(st.PeerCertificates) != 1 || st.PeerCertificates[0].Subject.CommonName != "gw-1" {
			t.Fatalf("server saw client certificates %v", st.PeerCertificates)
		}
		e.ctx0(`"authmode",0,0`)
		if got := e.open("gateway.test", m.mutual.port); got != "+CCHOPEN: 0,15" {
			t.Fatalf("no client certificate against a mutual server = %q, want 15", got)
		}
	})
	t.Run("authmode 3 presents the client certificate without checking the server", func(t *testing.T) {
		e.ctx0(append(m.files, `"authmode",0,3`)...)
		if got := e.open("gateway.test", m.mutualUntrusted.port); got != "+CCHOPEN: 0,0" {
			t.Fatalf("open = %q", got)
		}
		<-m.mutualUntrusted.states
	})
}

// openFailures: a cipher suite the server cannot use, a name DNS cannot
// resolve.
func (m *tlsMatrix) openFailures(t *testing.T) {
	t.Helper()
	e := m.e
	t.Run("ciphersuites 0x002F offers only TLS_RSA_WITH_AES_128_CBC_SHA", func(t *testing.T) {
		e.ctx0(`"ciphersuites",0,0x002F`)
		if got := e.open("gateway.test", m.plain.port); got != "+CCHOPEN: 0,15" {
			t.Fatalf("RSA-only suite against an ECDSA server = %q, want 15", got)
		}
	})
	t.Run("unknown host is a DNS error", func(t *testing.T) {
		e.ctx0(`"negotiatetime",0,10`)
		if got := e.open("no-such-host.invalid", m.plain.port); got != "+CCHOPEN: 0,13" {
			t.Fatalf("open = %q, want 13", got)
		}
	})
}

func TestTLSValidityIgnoredWithIgnoreLocalTime(t *testing.T) {
	ca := newTestCA(t, "trusted CA")
	expired := issue(t, ca, devpki.Leaf{CommonName: "gateway.test", Hosts: []string{"gateway.test"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	srv := startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{expired.TLSCertificate()}})
	e := newTLSEnv(t, Config{})
	e.h.download("ca.pem", ca.CertPEM)
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
	srv := startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{issue(t, ca, devpki.Leaf{CommonName: "127.0.0.1"}).TLSCertificate()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.CertPool()})
	cli := issue(t, ca, devpki.Leaf{CommonName: "gw-1"})
	other := issue(t, ca, devpki.Leaf{CommonName: "gw-2"})

	p8, _ := pem.Decode(cli.KeyPEM)
	sec1, err := x509.MarshalECPrivateKey(cli.Key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	// Legacy encrypted PEM is what keypwd unlocks.
	encBlock, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", sec1, []byte("s3cret"), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	enc := pem.EncodeToMemory(encBlock)

	e := newTLSEnv(t, Config{})
	e.h.download("ca.der", ca.Cert.Raw)
	e.h.download("cli.der", cli.Cert.Raw)
	e.h.download("cli_key.der", p8.Bytes)
	e.h.download("cli_key_enc.pem", enc)
	e.h.download("other_key.pem", other.KeyPEM)
	base := []string{`"cacert",0,"ca.der"`, `"clientcert",0,"cli.der"`, `"authmode",0,2`}

	e.openWithKeys(srv, base, []keyCase{
		{"DER PKCS#8 key and DER certificates", "cli_key.der", "", "+CCHOPEN: 0,0"},
		{"encrypted PEM key with the right keypwd", "cli_key_enc.pem", "s3cret", "+CCHOPEN: 0,0"},
		{"encrypted PEM key with a wrong keypwd", "cli_key_enc.pem", "wrong", "+CCHOPEN: 0,15"},
		{"encrypted PEM key without keypwd", "cli_key_enc.pem", "", "+CCHOPEN: 0,15"},
		{"key that does not match the certificate", "other_key.pem", "", "+CCHOPEN: 0,15"},
	})
}

// keyCase is a client key file on the module and the keypwd to set: want
// is the +CCHOPEN result.
type keyCase struct {
	name, key, pwd, want string
}

// openWithKeys opens session 0 to srv once per case, with context 0 set to
// base plus the case's clientkey and keypwd, each in its own subtest.
func (e *tlsEnv) openWithKeys(srv *goTLSServer, base []string, cases []keyCase) {
	for _, tc := range cases {
		e.t.Run(tc.name, func(t *testing.T) {
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
