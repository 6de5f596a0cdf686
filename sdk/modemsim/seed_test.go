package modemsim

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/internal/devpki"
)

// seedFiles is the certificate set of the seed document: ca.pem, cert.pem
// (the client certificate) and key.pem.
type seedFiles struct {
	ca, cert, key []byte
}

// runSeedSetup runs the seed document's steps 2-13 literally: three
// downloads, the list, the context (cacert, clientcert, clientkey,
// sslversion 4, authmode 2), CCHSET=1,0, CCHMODE=0, CCHSTART, CCHSSLCFG,
// and sends the CCHOPEN, returning its deferred result line.
func runSeedSetup(t *testing.T, h *host, f seedFiles, port int) string {
	t.Helper()
	h.download("ca.pem", f.ca)
	h.download("cert.pem", f.cert)
	h.download("key.pem", f.key)
	if got, want := h.ok("AT+CCERTLIST"), []string{`+CCERTLIST: "ca.pem"`, `+CCERTLIST: "cert.pem"`, `+CCERTLIST: "key.pem"`}; !reflect.DeepEqual(got, want) {
		t.Fatalf("AT+CCERTLIST = %q, want %q", got, want)
	}
	h.ok(`AT+CSSLCFG="cacert",0,"ca.pem"`)
	h.ok(`AT+CSSLCFG="clientcert",0,"cert.pem"`)
	h.ok(`AT+CSSLCFG="clientkey",0,"key.pem"`)
	h.ok(`AT+CSSLCFG="sslversion",0,4`)
	h.ok(`AT+CSSLCFG="authmode",0,2`)
	h.ok("AT+CCHSET=1,0")
	h.ok("AT+CCHMODE=0")
	h.ok("AT+CCHSTART")
	h.waitLine("+CCHSTART: 0")
	h.ok("AT+CCHSSLCFG=0,0")
	h.ok(fmt.Sprintf(`AT+CCHOPEN=0,"127.0.0.1",%d,2`, port))
	return h.waitPrefix("+CCHOPEN: 0,")
}

// TestSeedSequenceMutualTLSAgainstOpenSSL runs the seed sequence through
// go.bug.st/serial on the pty against a real openssl s_server that
// requires a client certificate, and checks that data crosses both ways.
func TestSeedSequenceMutualTLSAgainstOpenSSL(t *testing.T) {
	ca := newTestCA(t, "seed CA")
	cli := issue(t, ca, devpki.Leaf{CommonName: "gateway-0001"})
	srv := startSServer(t, ca.CertPEM, issue(t, ca, devpki.Leaf{CommonName: "127.0.0.1"}), "-rev")

	m := startModem(t, Config{})
	h := openHost(t, m.Path(), 115200) // echo stays on, as in the seed log

	if got := runSeedSetup(t, h, seedFiles{ca.CertPEM, cli.CertPEM, cli.KeyPEM}, srv.port); got != "+CCHOPEN: 0,0" {
		t.Fatalf("open: got %q, want +CCHOPEN: 0,0; s_server said: %s", got, srv.log())
	}

	payload := []byte("hello from the modem side\n")
	h.send(0, payload)
	h.waitLine("+CCHSEND: 0,0")
	got := h.readData(0, len(payload))
	if want := "edis medom eht morf olleh\n"; string(got) != want {
		t.Fatalf("received %q, want the reversed line %q", got, want)
	}

	// A second exchange larger than one receive frame (1024 bytes).
	long := []byte(strings.Repeat("0123456789abcdef", 100) + "\n")
	h.send(0, long[:1000])
	h.waitLine("+CCHSEND: 0,0")
	h.send(0, long[1000:])
	h.waitLine("+CCHSEND: 0,0")
	back := h.readData(0, len(long))
	if want := reverseLine(long); string(back) != string(want) {
		t.Fatalf("long round trip: got %d bytes %q…, want %q…", len(back), back[:32], want[:32])
	}

	h.ok("AT+CCHCLOSE=0")
	h.waitLine("+CCHCLOSE: 0,0")
	h.ok("AT+CCHSTOP")
	h.waitLine("+CCHSTOP: 0")

	c := m.Counters()
	sent := int64(len(payload) + len(long))
	if c.CCHPayloadTxBytes != sent || c.CCHPayloadRxBytes != sent {
		t.Errorf("payload counters tx=%d rx=%d, want %d each", c.CCHPayloadTxBytes, c.CCHPayloadRxBytes, sent)
	}
	// TLS adds handshakes, record headers and MACs: the network carries
	// more than the payload, each way.
	if c.NetTxBytes <= sent || c.NetRxBytes <= sent {
		t.Errorf("net counters tx=%d rx=%d, want both > payload %d", c.NetTxBytes, c.NetRxBytes, sent)
	}
	if c.Commands["AT+CCHSEND"] != 3 || c.Commands["AT+CCERTDOWN"] != 3 || c.Commands["AT+CSSLCFG"] != 5 {
		t.Errorf("command counters %v", c.Commands)
	}
	if c.SerialHostToModemBytes < sent+int64(len(ca.CertPEM)+len(cli.CertPEM)+len(cli.KeyPEM)) || c.SerialModemToHostBytes < sent {
		t.Errorf("serial counters in=%d out=%d too small", c.SerialHostToModemBytes, c.SerialModemToHostBytes)
	}
}

func reverseLine(b []byte) []byte {
	line := b[:len(b)-1]
	out := make([]byte, 0, len(b))
	for i := len(line) - 1; i >= 0; i-- {
		out = append(out, line[i])
	}
	return append(out, '\n')
}

// TestSeedSequenceUntrustedCertificateFailsHandshake has one side present a
// certificate from a CA the other side does not trust. s_server with
// -verify_return_error refuses an untrusted client; authmode 2 makes the
// modem refuse an untrusted server. Either way the open ends with 15 and
// leaves the session closed with its CCHSSLCFG cleared.
func TestSeedSequenceUntrustedCertificateFailsHandshake(t *testing.T) {
	for _, tc := range []struct {
		name      string
		untrusted string // "client" or "server": whose certificate the other CA signs
	}{
		{"ClientCertificateFromAnotherCA", "client"},
		{"ServerCertificateFromAnotherCA", "server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newTestCA(t, "seed CA")
			other := newTestCA(t, "other CA")
			cliCA, srvCA := ca, ca
			if tc.untrusted == "client" {
				cliCA = other
			} else {
				srvCA = other
			}
			cli := issue(t, cliCA, devpki.Leaf{CommonName: "gateway-0001"})
			srv := startSServer(t, ca.CertPEM, issue(t, srvCA, devpki.Leaf{CommonName: "127.0.0.1"}), "-rev")

			_, h := newHostModem(t, Config{})
			if got := runSeedSetup(t, h, seedFiles{ca.CertPEM, cli.CertPEM, cli.KeyPEM}, srv.port); got != "+CCHOPEN: 0,15" {
				t.Fatalf("open with an untrusted %s certificate: got %q, want +CCHOPEN: 0,15", tc.untrusted, got)
			}
			h.fails("AT+CCHSEND=0,4", "ERROR")
			h.fails("AT+CCHCLOSE=0", "ERROR")
			checkAnswers(t, h, "after the failed open (session 0 cleared)", answer{"AT+CCHSSLCFG?", "+CCHSSLCFG: 0,"})
		})
	}
}
