package modemsim

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// openTCP starts the service and opens session id as plain TCP to port.
func openTCP(t *testing.T, h *host, id, port int) {
	t.Helper()
	h.ok(fmt.Sprintf(`AT+CCHOPEN=%d,"127.0.0.1",%d,1`, id, port))
	h.waitLine(fmt.Sprintf("+CCHOPEN: %d,0", id))
}

func startService(t *testing.T, h *host, set string) {
	t.Helper()
	if set != "" {
		h.ok(set)
	}
	h.ok("AT+CCHSTART")
	h.waitLine("+CCHSTART: 0")
}

func TestFaultPeerCloseEndsTheSessionWithPeerClosed(t *testing.T) {
	m, h := newHostModem(t, Config{})
	startService(t, h, "")
	openTCP(t, h, 0, tcpServer(t, true))
	if err := m.Fault(Fault{Kind: FaultPeerClose, Session: 1}); err == nil || !strings.Contains(err.Error(), "session 1 is not open") {
		t.Fatalf("peer-close of an idle session: err = %v, want 'session 1 is not open'", err)
	}
	if err := m.Fault(Fault{Kind: FaultPeerClose, Session: 0}); err != nil {
		t.Fatalf("peer-close: %v", err)
	}
	h.waitLine("+CCH_PEER_CLOSED: 0")
	h.fails("AT+CCHSEND=0,1", "ERROR")
	h.fails("AT+CCHCLOSE=0", "ERROR")
	openTCP(t, h, 0, tcpServer(t, true)) // the slot is usable again
}

// A server that answers and closes: the data comes first, then the URC.
func TestServerCloseDeliversDataBeforePeerClosed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write(bytes.Repeat([]byte("x"), 3000))
		c.Close()
	}()
	_, h := newHostModem(t, Config{})
	startService(t, h, "")
	openTCP(t, h, 0, l.Addr().(*net.TCPAddr).Port)
	var got int
	for {
		ev := h.next("data or close", func(hostEvent) bool { return true })
		if ev.kind == evData {
			if len(ev.data) > frameMax {
				t.Fatalf("frame of %d bytes, want <= %d", len(ev.data), frameMax)
			}
			got += len(ev.data)
			continue
		}
		if ev.text != "+CCH_PEER_CLOSED: 0" {
			t.Fatalf("unexpected %v", ev)
		}
		break
	}
	if got != 3000 {
		t.Fatalf("got %d bytes before +CCH_PEER_CLOSED, want 3000", got)
	}
	<-served
}

func TestFaultNetworkLossAndRestore(t *testing.T) {
	m, h := newHostModem(t, Config{})
	h.ok("AT+CREG=1")
	startService(t, h, "")
	openTCP(t, h, 0, tcpServer(t, true))
	if err := m.Fault(Fault{Kind: FaultNetworkLoss}); err != nil {
		t.Fatal(err)
	}
	h.waitLine("+CREG: 2")
	h.waitLine("+CCH_RECV_CLOSED: 0,9")
	checkAnswers(t, h, "during loss",
		answer{"AT+CREG?", "+CREG: 1,2"}, answer{"AT+CSQ", "+CSQ: 99,99"}, answer{"AT+CPSI?", "+CPSI: NO SERVICE,Online"})
	h.ok(fmt.Sprintf(`AT+CCHOPEN=0,"127.0.0.1",%d,1`, tcpServer(t, true)))
	h.waitLine("+CCHOPEN: 0,17")
	if err := m.Fault(Fault{Kind: FaultNetworkRestore}); err != nil {
		t.Fatal(err)
	}
	h.waitLine("+CREG: 1")
	openTCP(t, h, 0, tcpServer(t, true))
	if err := m.Fault(Fault{Kind: FaultNetworkRestore}); err == nil {
		t.Error("network-restore without a loss succeeded, want an error")
	}

	// A loss with a duration ends by itself.
	if err := m.Fault(Fault{Kind: FaultNetworkLoss, Duration: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	h.waitLine("+CREG: 2")
	h.waitLine("+CCH_RECV_CLOSED: 0,9")
	h.waitLine("+CREG: 1")
	openTCP(t, h, 1, tcpServer(t, true))
}

func TestFaultRebootDropsSessionsAndPrintsBootURCs(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	closedByModem := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			closedByModem <- err
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(waitTimeout))
		_, err = c.Read(make([]byte, 1))
		closedByModem <- err
	}()

	m, h := newHostModem(t, Config{RebootDelay: 50 * time.Millisecond})
	h.download("keep.pem", []byte("certificate survives"))
	startService(t, h, "")
	openTCP(t, h, 0, l.Addr().(*net.TCPAddr).Port)
	if err := m.Fault(Fault{Kind: FaultReboot}); err != nil {
		t.Fatal(err)
	}
	for _, urc := range []string{"RDY", "+CPIN: READY", "SMS DONE", "PB DONE"} {
		h.waitLine(urc)
	}
	if err := <-closedByModem; err == nil {
		t.Error("the server's connection is still open after the reboot")
	}
	// Echo is back on, CCH is stopped, certificates survive.
	if lines, final := h.cmd("AT"); final != "OK" || len(lines) != 1 || lines[0] != "AT" {
		t.Errorf("AT after reboot: %q %s, want echo then OK", lines, final)
	}
	h.fails("AT+CCHADDR", "ERROR")
	if got := h.ok("AT+CCERTLIST"); len(got) != 1 || got[0] != `+CCERTLIST: "keep.pem"` {
		t.Errorf("AT+CCERTLIST after reboot = %q", got)
	}
	if c := m.Counters(); c.Reboots != 1 {
		t.Errorf("reboots counter = %d, want 1", c.Reboots)
	}
}

func TestBootWithSIMBusyWindow(t *testing.T) {
	// The window is generous so the checks below fall inside it even on a
	// slow machine.
	m := startModem(t, Config{SIMBusy: 2 * time.Second, AnnounceBoot: true})
	h := openHost(t, m.Path(), 115200)
	h.waitLine("RDY")
	h.ok("ATE0")
	h.fails("AT+CPIN?", "+CME ERROR: SIM busy")
	checkAnswers(t, h, "while SIM busy", answer{"AT+CSQ", "+CSQ: 99,99"})
	h.waitLine("+CPIN: READY")
	h.waitLine("SMS DONE")
	h.waitLine("PB DONE")
	checkAnswers(t, h, "after the window", answer{"AT+CPIN?", "+CPIN: READY"}, answer{"AT+CSQ", "+CSQ: 22,99"})
}

// answer is a command and the first line it must answer before OK.
type answer struct{ cmd, first string }

// checkAnswers runs each command, which must succeed, and reports every one
// whose first line is not the one wanted; when says at which point of the
// test they ran.
func checkAnswers(t *testing.T, h *host, when string, want ...answer) {
	t.Helper()
	for _, w := range want {
		if got := h.ok(w.cmd); len(got) == 0 || got[0] != w.first {
			t.Errorf("%s %s = %q, want %s first", w.cmd, when, got, w.first)
		}
	}
}

func TestFaultSIMBusy(t *testing.T) {
	m, h := newHostModem(t, Config{})
	if err := m.Fault(Fault{Kind: FaultSIMBusy, Duration: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	h.fails("AT+CPIN?", "+CME ERROR: SIM busy")
	h.waitLine("+CPIN: READY")
	h.ok("AT+CPIN?")
}

func TestFaultGarbage(t *testing.T) {
	m, h := newHostModem(t, Config{})
	before := h.rawLen()
	if err := m.Fault(Fault{Kind: FaultGarbage, Bytes: 64}); err != nil {
		t.Fatal(err)
	}
	h.waitRaw("64 garbage bytes", before, func(b []byte) bool { return len(b) >= 64 })
	// The line stays usable: a fresh command gets its answer.
	h.write([]byte("\rAT+CGMM\r"))
	h.waitLine("SIMCOM_SIM7600G-H")
	if err := m.Fault(Fault{Kind: FaultGarbage}); err == nil {
		t.Error("garbage of 0 bytes accepted")
	}
}

func TestFaultDropResponseExecutesButStaysSilent(t *testing.T) {
	m, h := newHostModem(t, Config{})
	if err := m.Fault(Fault{Kind: FaultDropResponse}); err != nil {
		t.Fatal(err)
	}
	before := h.rawLen()
	h.write([]byte("AT+CMEE=0\r"))
	lines, final := h.cmd("AT+CMEE?")
	if final != "OK" || len(lines) != 1 || lines[0] != "+CMEE: 0" {
		t.Fatalf("after a dropped response: %q %s, want +CMEE: 0 (the dropped command ran)", lines, final)
	}
	if got := string(h.rawFrom(before)); got != "\r\n+CMEE: 0\r\n\r\nOK\r\n" {
		t.Fatalf("line carried %q, want only the second response", got)
	}
}

func TestFaultDelayResponse(t *testing.T) {
	m, h := newHostModem(t, Config{})
	const d = 300 * time.Millisecond
	if err := m.Fault(Fault{Kind: FaultDelayResponse, Duration: d}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	h.ok("AT")
	if el := time.Since(start); el < d {
		t.Fatalf("response came after %v, want at least %v", el, d)
	}
}

func TestCommandLatencyDelaysEveryResponse(t *testing.T) {
	const d = 150 * time.Millisecond
	_, h := newHostModem(t, Config{CommandLatency: d})
	for _, cmd := range []string{"AT", "AT+CGMM"} {
		start := time.Now()
		h.ok(cmd)
		if el := time.Since(start); el < d {
			t.Errorf("%s answered after %v, want at least %v", cmd, el, d)
		}
	}
}

func TestParseFault(t *testing.T) {
	good := map[string]Fault{
		"peer-close 1":         {Kind: FaultPeerClose, Session: 1},
		"network-loss":         {Kind: FaultNetworkLoss},
		"network-loss 5s":      {Kind: FaultNetworkLoss, Duration: 5 * time.Second},
		"network-restore":      {Kind: FaultNetworkRestore},
		"reboot":               {Kind: FaultReboot},
		"garbage 64":           {Kind: FaultGarbage, Bytes: 64},
		"drop-response":        {Kind: FaultDropResponse},
		"delay-response 2s":    {Kind: FaultDelayResponse, Duration: 2 * time.Second},
		"sim-busy 10s":         {Kind: FaultSIMBusy, Duration: 10 * time.Second},
		"  garbage    8  ":     {Kind: FaultGarbage, Bytes: 8},
		"delay-response 250ms": {Kind: FaultDelayResponse, Duration: 250 * time.Millisecond},
	}
	for in, want := range good {
		got, err := ParseFault(in)
		if err != nil || got != want {
			t.Errorf("ParseFault(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if back, err := ParseFault(got.String()); err != nil || back != got {
			t.Errorf("ParseFault(%q.String()=%q) = %+v, %v", in, got.String(), back, err)
		}
	}
	bad := map[string]string{
		"":                  "empty fault",
		"explode":           `unknown fault "explode"`,
		"peer-close":        "takes 1 argument",
		"peer-close 2":      "is not 0 or 1",
		"peer-close x":      "bad session",
		"network-loss soon": "bad duration",
		"garbage 0":         "outside 1..",
		"garbage 2000000":   "outside 1..",
		"reboot now":        "takes 0 argument",
		"sim-busy 0s":       "must be positive",
		"delay-response":    "takes 1 argument",
	}
	for in, want := range bad {
		if _, err := ParseFault(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseFault(%q) error = %v, want it to mention %q", in, err, want)
		}
	}
}
