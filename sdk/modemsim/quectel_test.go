package modemsim

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/devpki"
	"github.com/cellgate/cellgate/internal/testutil"
)

// goldenPKI is a golden case's PKI: a CA whose server the module can
// trust and whose client it presents, and a rogue CA it does not trust.
// Its servers run for the case: ${TLS} echoes, ${TLSONCE} echoes one read
// and closes, ${ROGUE} presents a certificate of the rogue CA. All of
// them require a client certificate of the CA.
type goldenPKI struct {
	vars  map[string]string
	files map[string][]byte // @file kinds: ca, cert, key, rogue-ca
}

func newGoldenPKI(t *testing.T) *goldenPKI {
	t.Helper()
	pki, err := devpki.New(devpki.P256)
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := devpki.NewCA(devpki.P256, "rogue CA")
	if err != nil {
		t.Fatal(err)
	}
	rogueServer := issue(t, rogue, devpki.Leaf{CommonName: "rogue server"})
	rogueCfg := pki.ServerTLS()
	rogueCfg.Certificates = []tls.Certificate{rogueServer.TLSCertificate()}
	return &goldenPKI{
		vars: map[string]string{
			"TLS":     strconv.Itoa(tlsEchoServer(t, pki.ServerTLS(), false)),
			"TLSONCE": strconv.Itoa(tlsEchoServer(t, pki.ServerTLS(), true)),
			"ROGUE":   strconv.Itoa(tlsEchoServer(t, rogueCfg, false)),
		},
		files: map[string][]byte{
			"ca": pki.CA.CertPEM, "cert": pki.Client.CertPEM, "key": pki.Client.KeyPEM, "rogue-ca": rogue.CertPEM,
		},
	}
}

// seed runs "@file <name> <kind>": the PEM of kind stored as name in the
// UFS of the module whose state directory is dir.
func (g *goldenPKI) seed(dir, arg string) error {
	f := strings.Fields(arg)
	if len(f) != 2 {
		return fmt.Errorf("want <name> <kind>, got %q", arg)
	}
	data, ok := g.files[f[1]]
	if !ok {
		return fmt.Errorf("unknown kind %q (want ca, cert, key or rogue-ca)", f[1])
	}
	return seedUFSFile(dir, f[0], data)
}

// tlsEchoServer runs a crypto/tls server on loopback that echoes (once:
// one read, then a close with close_notify) until the test ends.
func tlsEchoServer(t testing.TB, cfg *tls.Config, once bool) int {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	serveConns(t, l, func(c net.Conn) {
		tc := c.(*tls.Conn)
		tc.SetDeadline(time.Now().Add(waitTimeout))
		if err := tc.Handshake(); err != nil {
			return
		}
		tc.SetDeadline(time.Time{})
		if !once {
			io.Copy(tc, tc)
			return
		}
		buf := make([]byte, 4096)
		n, _ := tc.Read(buf)
		tc.Write(buf[:n])
	})
	return l.Addr().(*net.TCPAddr).Port
}

// newBG96 starts a bg96 and a host on it with echo off.
func newBG96(t *testing.T, cfg Config) (*Modem, *host) {
	t.Helper()
	cfg.Model = "bg96"
	return newHostModem(t, cfg)
}

// activate configures and activates context 1.
func activate(t *testing.T, h *host) {
	t.Helper()
	h.ok(`AT+QICSGP=1,1,"internet","","",1`)
	h.ok("AT+QIACT=1")
}

// xorChecksum is the FILE manual's checksum, written again here so the
// test does not trust the emulator's own.
func xorChecksum(b []byte) string {
	if len(b)%2 == 1 {
		b = append(bytes.Clone(b), 0)
	}
	var x uint16
	for i := 0; i < len(b); i += 2 {
		x ^= uint16(b[i])<<8 | uint16(b[i+1])
	}
	return strconv.FormatUint(uint64(x), 16)
}

// upload runs AT+QFUPL with content and checks the size and checksum.
func (h *host) upload(name string, content []byte) {
	h.t.Helper()
	lines, final := h.cmd(fmt.Sprintf("AT+QFUPL=%q,%d", name, len(content)))
	if final != "CONNECT" {
		h.t.Fatalf("AT+QFUPL %s: got %q %s, want CONNECT", name, lines, final)
	}
	h.write(content)
	lines, final = h.response("AT+QFUPL data")
	want := fmt.Sprintf("+QFUPL: %d,%s", len(content), xorChecksum(content))
	if final != "OK" || len(lines) != 1 || lines[0] != want {
		h.t.Fatalf("AT+QFUPL %s data: got %q %s, want %s OK", name, lines, final, want)
	}
}

// qsend runs AT+QSSLSEND or AT+QISEND (cmd) with payload and returns the
// final result (SEND OK, SEND FAIL, ERROR).
func (h *host) qsend(cmd string, id int, payload []byte) string {
	h.t.Helper()
	lines, final := h.cmd(fmt.Sprintf("%s=%d,%d", cmd, id, len(payload)))
	if final != ">" {
		h.t.Fatalf("%s: got %q %s, want prompt", cmd, lines, final)
	}
	h.write(payload)
	_, final = h.response(cmd + " payload")
	return final
}

// qread runs one AT+QSSLRECV or AT+QIRD (cmd, with its parameters) and
// returns the bytes it delivered.
func (h *host) qread(cmd string) []byte {
	h.t.Helper()
	h.write([]byte(cmd + "\r"))
	ev := h.next("answer to "+cmd, func(e hostEvent) bool {
		return e.kind == evData || (e.kind == evLine && (strings.HasSuffix(e.text, ": 0") || isFinal(e.text)))
	})
	if ev.kind == evLine && isFinal(ev.text) {
		h.t.Fatalf("%s: %s", cmd, ev.text)
	}
	h.waitLine("OK")
	return ev.data
}

// qreadAll reads n bytes with cmd, waiting for urc whenever the buffer is
// empty.
func (h *host) qreadAll(cmd, urc string, n int) []byte {
	h.t.Helper()
	var got []byte
	for len(got) < n {
		b := h.qread(cmd)
		if len(b) == 0 {
			h.waitLine(urc)
			continue
		}
		got = append(got, b...)
	}
	return got
}

// binaryPattern is n bytes that hold every byte value, Ctrl-Z, ESC and
// a fake final result.
func binaryPattern(n int) []byte {
	b := make([]byte, 0, n+8)
	for i := 0; len(b) < n; i++ {
		b = append(b, byte(i))
		if i%300 == 7 {
			b = append(b, "\r\nOK\r\n\x1a\x1b"...)
		}
	}
	return b[:n]
}

func TestBG96UploadsCertificatesAndExchanges64KiBOverMutualTLS(t *testing.T) {
	pki, err := devpki.New(devpki.P256)
	if err != nil {
		t.Fatal(err)
	}
	port := tlsEchoServer(t, pki.ServerTLS(), false)
	m, h := newBG96(t, Config{Baud: -1})
	activate(t, h)
	h.upload("cacert.pem", pki.CA.CertPEM)
	h.upload("client.pem", pki.Client.CertPEM)
	h.upload("client.key", pki.Client.KeyPEM)
	for _, set := range []string{`"sslversion",1,3`, `"seclevel",1,2`, `"cacert",1,"cacert.pem"`,
		`"clientcert",1,"UFS:client.pem"`, `"clientkey",1,"client.key"`, `"sni",1,1`} {
		h.ok("AT+QSSLCFG=" + set)
	}
	h.ok(fmt.Sprintf(`AT+QSSLOPEN=1,1,3,"localhost",%d,0`, port))
	h.waitLine("+QSSLOPEN: 3,0")
	if got := h.ok("AT+QSSLSTATE=3"); len(got) != 1 || !strings.HasPrefix(got[0], `+QSSLSTATE: 3,"SSLClient","localhost",`+strconv.Itoa(port)+",65347,2,1,3,0,") {
		t.Errorf("AT+QSSLSTATE=3 = %q", got)
	}
	h.fails(`AT+QSSLCFG="seclevel",1,0`, "ERROR") // the context is in use

	const total = 64 * 1024
	payload := binaryPattern(total)
	var got []byte
	for off := 0; off < total; off += qMaxSend {
		if res := h.qsend("AT+QSSLSEND", 3, payload[off:min(off+qMaxSend, total)]); res != "SEND OK" {
			t.Fatalf("send at %d: %s", off, res)
		}
		got = append(got, h.qread("AT+QSSLRECV=3,1500")...)
	}
	got = append(got, h.qreadAll("AT+QSSLRECV=3,1500", `+QSSLURC: "recv",3`, total-len(got))...)
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo differs: %d bytes back, first difference at %d", len(got), firstDiff(got, payload))
	}
	h.ok("AT+QSSLCLOSE=3")
	if got := h.ok("AT+QSSLSTATE"); len(got) != 0 {
		t.Errorf("AT+QSSLSTATE after close = %q", got)
	}

	c := m.Counters()
	if c.CertUploads != 3 || c.SessionsOpened != 1 || c.CCHPayloadTxBytes != total || c.CCHPayloadRxBytes != total {
		t.Errorf("counters = %+v", c)
	}
	if c.NetTxBytes <= total || c.NetRxBytes <= total || c.Commands["AT+QSSLSEND"] != int64((total+qMaxSend-1)/qMaxSend) {
		t.Errorf("net counters = %+v", c)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestBG96OpenFailuresUseTheManualsCodes(t *testing.T) {
	pki, err := devpki.New(devpki.P256)
	if err != nil {
		t.Fatal(err)
	}
	other, err := devpki.New(devpki.P256)
	if err != nil {
		t.Fatal(err)
	}
	good := tlsEchoServer(t, pki.ServerTLS(), false)
	// A server whose CA the module does not trust, and one that does not
	// trust the module's client certificate.
	untrusted := tlsEchoServer(t, other.ServerTLS(), false)
	strictCfg := pki.ServerTLS()
	strictCfg.ClientCAs = other.CertPool()
	strict := tlsEchoServer(t, strictCfg, false)

	_, h := newBG96(t, Config{})
	h.ok(fmt.Sprintf(`AT+QSSLOPEN=1,0,0,"127.0.0.1",%d`, good))
	h.waitLine("+QSSLOPEN: 0,561") // context 1 is not active
	activate(t, h)
	h.upload("ca.pem", pki.CA.CertPEM)
	h.ok(`AT+QSSLCFG="seclevel",0,2`)
	h.ok(fmt.Sprintf(`AT+QSSLOPEN=1,0,0,"127.0.0.1",%d`, good))
	h.waitLine("+QSSLOPEN: 0,566") // seclevel 2 without cacert and client files
	h.ok(`AT+QSSLCFG="cacert",0,"ca.pem"`)
	h.upload("c.pem", pki.Client.CertPEM)
	h.upload("c.key", pki.Client.KeyPEM)
	h.ok(`AT+QSSLCFG="clientcert",0,"c.pem"`)
	h.ok(`AT+QSSLCFG="clientkey",0,"c.key"`)

	for _, tc := range []struct {
		name string
		port int
		want string
	}{
		{"server certificate of an untrusted CA", untrusted, "+QSSLOPEN: 0,566"},
		{"client certificate the server does not trust", strict, "+QSSLOPEN: 0,566"},
		{"nobody listening", testutil.FreePort(t), "+QSSLOPEN: 0,566"},
		{"trusted both ways", good, "+QSSLOPEN: 0,0"},
	} {
		h.ok(fmt.Sprintf(`AT+QSSLOPEN=1,0,0,"127.0.0.1",%d`, tc.port))
		if got := h.waitPrefix("+QSSLOPEN: 0,"); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	h.ok(fmt.Sprintf(`AT+QSSLOPEN=1,0,0,"127.0.0.1",%d`, good))
	h.waitLine("+QSSLOPEN: 0,563") // the id is in use
	h.ok("AT+QSSLCLOSE=0")
	h.fails(fmt.Sprintf(`AT+QSSLOPEN=1,0,0,"127.0.0.1",%d,2`, good), "ERROR")
	if got := h.ok("AT+QIGETERROR"); len(got) != 1 || got[0] != "+QIGETERROR: 555, operation not supported" {
		t.Errorf("AT+QIGETERROR = %q", got)
	}
}

func TestBG96DialCodes(t *testing.T) {
	for _, tc := range []struct {
		code int
		err  error
		want int
	}{
		{cchDNS, errors.New("no such host"), qDNSFailed},
		{cchConnect, fmt.Errorf("connect: %w", context.DeadlineExceeded), qTimeout},
		{cchHandshake, fmt.Errorf("handshake: %w", context.DeadlineExceeded), qTimeout},
		{cchConnect, errors.New("connection refused"), qConnectFailed},
		{cchHandshake, errors.New("bad certificate"), qConnectFailed},
	} {
		if got := qDialCode(tc.code, tc.err); got != tc.want {
			t.Errorf("qDialCode(%d, %v) = %d, want %d", tc.code, tc.err, got, tc.want)
		}
	}
}

// openTCPSocket opens connectID id to a loopback port with access mode.
func openTCPSocket(t *testing.T, h *host, id, port, access int) {
	t.Helper()
	h.ok(fmt.Sprintf(`AT+QIOPEN=1,%d,"TCP","127.0.0.1",%d,0,%d`, id, port, access))
	h.waitLine(fmt.Sprintf("+QIOPEN: %d,0", id))
}

func TestBG96PeerCloseFaultLeavesTheSocketClosing(t *testing.T) {
	m, h := newBG96(t, Config{})
	activate(t, h)
	if err := m.Fault(Fault{Kind: FaultPeerClose, Session: PeerCloseAll}); err == nil || !strings.Contains(err.Error(), "no session is open") {
		t.Fatalf("peer-close all with nothing open: %v", err)
	}
	openTCPSocket(t, h, 1, tcpServer(t, true), 0)
	if res := h.qsend("AT+QISEND", 1, []byte("abc")); res != "SEND OK" {
		t.Fatalf("AT+QISEND: %s", res)
	}
	h.waitLine(`+QIURC: "recv",1`)
	if err := m.Fault(Fault{Kind: FaultPeerClose, Session: 0}); err == nil || !strings.Contains(err.Error(), "session 0 is not open") {
		t.Fatalf("peer-close 0: %v", err)
	}
	if err := m.Fault(Fault{Kind: FaultPeerClose, Session: 1}); err != nil {
		t.Fatal(err)
	}
	h.waitLine(`+QIURC: "closed",1`)
	if got := h.ok("AT+QISTATE=1,1"); len(got) != 1 || !strings.Contains(got[0], ",65345,4,1,1,0,") {
		t.Errorf("AT+QISTATE=1,1 = %q", got)
	}
	if got := h.qread("AT+QIRD=1"); string(got) != "abc" {
		t.Errorf("data after the close: %q", got)
	}
	h.fails("AT+QISEND=1,1", "ERROR")
	if got := h.ok("AT+QIGETERROR"); len(got) != 1 || got[0] != "+QIGETERROR: 567, socket has been closed" {
		t.Errorf("AT+QIGETERROR = %q", got)
	}
	h.ok("AT+QICLOSE=1")
	if got := h.ok("AT+QISTATE"); len(got) != 0 {
		t.Errorf("AT+QISTATE = %q", got)
	}
}

func TestBG96NetworkLossDeactivatesTheContext(t *testing.T) {
	m, h := newBG96(t, Config{})
	activate(t, h)
	h.ok("AT+CEREG=1")
	openTCPSocket(t, h, 0, tcpServer(t, true), 0)
	if err := m.Fault(Fault{Kind: FaultNetworkLoss}); err != nil {
		t.Fatal(err)
	}
	h.waitLine("+CEREG: 2")
	h.waitLine(`+QIURC: "pdpdeact",1`)
	h.waitLine(`+QIURC: "closed",0`)
	if got := h.ok("AT+QIACT?"); len(got) != 0 {
		t.Errorf("AT+QIACT? = %q", got)
	}
	h.fails("AT+QIACT=1", "ERROR")
	if got := h.ok("AT+CSQ"); got[0] != "+CSQ: 99,99" {
		t.Errorf("AT+CSQ = %q", got)
	}
	if err := m.Fault(Fault{Kind: FaultNetworkRestore}); err != nil {
		t.Fatal(err)
	}
	h.waitLine("+CEREG: 1")
	h.ok("AT+QIDEACT=1")
	h.ok("AT+QIACT=1")
	if got := h.ok("AT+QIACT?"); len(got) != 1 || got[0] != `+QIACT: 1,1,1,"10.71.155.118"` {
		t.Errorf("AT+QIACT? = %q", got)
	}
	if got := h.ok("AT+QISTATE"); len(got) != 0 {
		t.Errorf("AT+QISTATE = %q (AT+QIDEACT frees the sockets)", got)
	}
}

func TestBG96RebootAndCFUNReset(t *testing.T) {
	dir := t.TempDir()
	m, h := newBG96(t, Config{StateDir: dir, SIMBusy: 300 * time.Millisecond})
	h.waitLine("+CPIN: READY")
	activate(t, h)
	h.upload("keep.pem", []byte("kept"))
	openTCPSocket(t, h, 0, tcpServer(t, true), 0)
	h.ok("AT+CMEE=2")
	if err := m.Fault(Fault{Kind: FaultReboot}); err != nil {
		t.Fatal(err)
	}
	for _, urc := range []string{"RDY", "APP RDY", "+CFUN: 1", "+CPIN: READY", "+QIND: SMS DONE", "+QIND: PB DONE"} {
		h.waitLine(urc)
	}
	h.ok("ATE0")
	if got := h.ok("AT+CMEE?"); got[0] != "+CMEE: 1" {
		t.Errorf("AT+CMEE? after reboot = %q", got)
	}
	if got := h.ok("AT+QISTATE"); len(got) != 0 {
		t.Errorf("sockets after reboot: %q", got)
	}
	if got := h.ok("AT+QIACT?"); len(got) != 0 {
		t.Errorf("contexts after reboot: %q", got)
	}
	if got := h.ok("AT+QICSGP=1"); got[0] != `+QICSGP: 1,"internet","","",1` {
		t.Errorf("AT+QICSGP=1 after reboot = %q (module NV)", got)
	}
	if got := h.ok(`AT+QFLST="*"`); len(got) != 1 || got[0] != `+QFLST: "keep.pem",4` {
		t.Errorf("files after reboot = %q", got)
	}
	h.ok("AT+CFUN=1,1")
	h.waitLine("POWERED DOWN")
	h.waitLine("RDY")
	h.waitLine("+QIND: PB DONE")
	if c := m.Counters(); c.Reboots != 2 {
		t.Errorf("reboots = %d", c.Reboots)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ufs", "keep.pem")); err != nil || string(b) != "kept" {
		t.Errorf("UFS file in the state directory: %q, %v", b, err)
	}
}

func TestBG96SIMBusy(t *testing.T) {
	m, h := newBG96(t, Config{AnnounceBoot: true})
	// The boot URCs waited in the pty; newBG96's ATE0 read past them.
	const boot = "\r\nRDY\r\n\r\nAPP RDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\n+QIND: SMS DONE\r\n\r\n+QIND: PB DONE\r\n"
	if got := h.rawFrom(0); !bytes.HasPrefix(got, []byte(boot)) {
		t.Errorf("boot output %q, want it to start with %q", got, boot)
	}
	if err := m.Fault(Fault{Kind: FaultSIMBusy, Duration: time.Hour}); err != nil {
		t.Fatal(err)
	}
	h.fails("AT+CPIN?", "+CME ERROR: 14")
	h.fails("AT+CIMI", "+CME ERROR: 14")
	h.fails("AT+QCCID", "ERROR")
	h.fails("AT+QIACT=1", "ERROR")
	if got := h.ok("AT+CEREG?"); got[0] != "+CEREG: 0,0" {
		t.Errorf("AT+CEREG? = %q", got)
	}
}

func TestBG96DropAndDelayResponseOnASend(t *testing.T) {
	m, h := newBG96(t, Config{})
	activate(t, h)
	openTCPSocket(t, h, 0, tcpServer(t, false), 0)
	if err := m.Fault(Fault{Kind: FaultDropResponse}); err != nil {
		t.Fatal(err)
	}
	lines, final := h.cmd("AT+QISEND=0,3")
	if final != ">" {
		t.Fatalf("prompt: %q %s", lines, final)
	}
	h.write([]byte("abc"))
	if ev, ok := h.tryNext(500*time.Millisecond, func(e hostEvent) bool { return e.kind == evLine }); ok {
		t.Fatalf("dropped answer arrived: %v", ev)
	}
	if got := h.ok("AT+QISEND=0,0"); got[0] != "+QISEND: 3,3,0" {
		t.Errorf("AT+QISEND=0,0 = %q (the dropped send was still executed)", got)
	}
	if err := m.Fault(Fault{Kind: FaultDelayResponse, Duration: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	h.ok("AT")
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("delayed answer after %v", el)
	}
	off := h.rawLen()
	if err := m.Fault(Fault{Kind: FaultGarbage, Bytes: 32}); err != nil {
		t.Fatal(err)
	}
	h.waitRaw("32 garbage bytes", off, func(b []byte) bool { return len(b) >= 32 })
}

func TestBG96SendFailsWhenTheBufferIsFull(t *testing.T) {
	_, h := newBG96(t, Config{Baud: -1, NetworkLatency: time.Second})
	activate(t, h)
	openTCPSocket(t, h, 0, tcpServer(t, false), 0)
	chunk := bytes.Repeat([]byte{'x'}, qMaxSend)
	for i := range qSendBuffer / qMaxSend {
		if res := h.qsend("AT+QISEND", 0, chunk); res != "SEND OK" {
			t.Fatalf("send %d: %s", i, res)
		}
	}
	if res := h.qsend("AT+QISEND", 0, chunk); res != "SEND FAIL" {
		t.Fatalf("send into a full buffer: %s", res)
	}
}

func TestBG96CtrlZAndEscSendForms(t *testing.T) {
	_, h := newBG96(t, Config{})
	activate(t, h)
	openTCPSocket(t, h, 0, tcpServer(t, true), 0)
	lines, final := h.cmd("AT+QISEND=0")
	if final != ">" {
		t.Fatalf("prompt: %q %s", lines, final)
	}
	h.write([]byte("hello\x1a"))
	if _, final := h.response("Ctrl-Z send"); final != "SEND OK" {
		t.Fatalf("Ctrl-Z send: %s", final)
	}
	h.waitLine(`+QIURC: "recv",0`)
	if got := h.qread("AT+QIRD=0,1500"); string(got) != "hello" {
		t.Errorf("echo %q", got)
	}
	h.cmd("AT+QISEND=0")
	h.write([]byte("gone\x1b"))
	if _, final := h.response("ESC send"); final != "OK" {
		t.Fatalf("cancelled send: %s", final)
	}
	if got := h.ok("AT+QIRD=0,0"); got[0] != "+QIRD: 5,5,0" {
		t.Errorf("AT+QIRD=0,0 = %q", got)
	}
	if got := h.ok("AT+QISEND=0,0"); got[0] != "+QISEND: 5,5,0" {
		t.Errorf("AT+QISEND=0,0 = %q", got)
	}
}

func TestBG96DirectPushModeDeliversFramesThenClosed(t *testing.T) {
	m, h := newBG96(t, Config{})
	activate(t, h)
	openTCPSocket(t, h, 2, tcpServer(t, true), 1)
	payload := binaryPattern(2900)
	if res := h.qsend("AT+QISEND", 2, payload[:qMaxSend]); res != "SEND OK" {
		t.Fatal(res)
	}
	if res := h.qsend("AT+QISEND", 2, payload[qMaxSend:]); res != "SEND OK" {
		t.Fatal(res)
	}
	if got := h.readData(2, len(payload)); !bytes.Equal(got, payload) {
		t.Fatalf("pushed data differs at %d", firstDiff(got, payload))
	}
	if err := m.Fault(Fault{Kind: FaultPeerClose, Session: PeerCloseAll}); err != nil {
		t.Fatal(err)
	}
	h.waitLine(`+QIURC: "closed",2`)
}

func TestBG96UploadAckModeTimeoutAndEscape(t *testing.T) {
	_, h := newBG96(t, Config{})
	data := binaryPattern(2500)
	off := h.rawLen()
	if _, final := h.cmd(`AT+QFUPL="ack.bin",2500,5,1`); final != "CONNECT" {
		t.Fatal(final)
	}
	h.write(data)
	want := fmt.Sprintf("A\r\n+QFUPL: 2500,%s\r\n\r\nOK\r\n", xorChecksum(data))
	h.waitRaw("ack-mode answer", off, func(b []byte) bool { return bytes.HasSuffix(b, []byte(want)) })
	if got := string(h.rawFrom(off)); strings.Count(got, "A") < 2 || !strings.Contains(got, "CONNECT\r\nAA") {
		t.Errorf("ack mode bytes %q, want CONNECT then A per 1024 bytes", got)
	}
	h.drain()

	if _, final := h.cmd(`AT+QFUPL="short.bin",100,1`); final != "CONNECT" {
		t.Fatal(final)
	}
	start := time.Now()
	h.write([]byte("0123456789"))
	h.waitLine("+QFUPL: 10," + xorChecksum([]byte("0123456789")))
	h.waitLine("OK")
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Errorf("upload ended after %v, want the 1 s timeout", el)
	}

	if _, final := h.cmd(`AT+QFUPL="esc.bin",100`); final != "CONNECT" {
		t.Fatal(final)
	}
	h.write([]byte("ab+c"))
	silence()
	h.write([]byte("+++"))
	h.waitLine("+QFUPL: 4," + xorChecksum([]byte("ab+c")))
	h.waitLine("OK")

	if _, final := h.cmd(`AT+QFUPL="none.bin",10,1`); final != "CONNECT" {
		t.Fatal(final)
	}
	h.waitLine("+CME ERROR: 421")
	if got := h.ok("AT+QFLST"); strings.Join(got, "|") != `+QFLST: "ack.bin",2500|+QFLST: "esc.bin",4|+QFLST: "short.bin",10` {
		t.Errorf("AT+QFLST = %q", got)
	}
}

func TestBG96ControlSocketAndCounters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl")
	_, h := newBG96(t, Config{ControlSocket: path})
	activate(t, h)
	openTCPSocket(t, h, 0, tcpServer(t, true), 0)
	h.upload("a.pem", []byte("x"))
	cc := dialControl(t, path)
	if got := cc.do("fault peer-close all"); got != "ok" {
		t.Fatalf("peer-close all: %q", got)
	}
	h.waitLine(`+QIURC: "closed",0`)
	if got := cc.do("counters"); !strings.Contains(got, `"cert_uploads":1`) || !strings.Contains(got, `"AT+QIOPEN":1`) {
		t.Errorf("counters = %s", got)
	}
}
