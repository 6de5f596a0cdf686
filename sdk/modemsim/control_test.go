package modemsim

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// controlClient is one connection to the control socket.
type controlClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialControl(t *testing.T, path string) *controlClient {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial control socket: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &controlClient{t: t, c: c, r: bufio.NewReader(c)}
}

func (cc *controlClient) do(req string) string {
	cc.t.Helper()
	cc.c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := cc.c.Write([]byte(req + "\n")); err != nil {
		cc.t.Fatalf("control write: %v", err)
	}
	line, err := cc.r.ReadString('\n')
	if err != nil {
		cc.t.Fatalf("control read after %q: %v", req, err)
	}
	return strings.TrimSuffix(line, "\n")
}

func TestControlSocketFaultsAndCounters(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	m, h := newHostModem(t, Config{ControlSocket: sock})
	cc := dialControl(t, sock)

	if got := cc.do("fault peer-close 0"); got != "error: fault peer-close: session 0 is not open" {
		t.Errorf("peer-close of an idle session: %q", got)
	}
	if got := cc.do("fault explode"); !strings.HasPrefix(got, `error: unknown fault "explode"`) {
		t.Errorf("unknown fault: %q", got)
	}
	if got := cc.do("fault garbage 0"); !strings.HasPrefix(got, "error: fault garbage: 0 bytes") {
		t.Errorf("garbage 0: %q", got)
	}
	if got := cc.do("launch"); got != `error: unknown command "launch" (try help)` {
		t.Errorf("unknown command: %q", got)
	}
	if got := cc.do("path"); got != m.Path() {
		t.Errorf("path = %q, want %q", got, m.Path())
	}

	startService(t, h, "")
	openTCP(t, h, 1, tcpServer(t, true))
	if got := cc.do("fault peer-close 1"); got != "ok" {
		t.Fatalf("peer-close 1: %q", got)
	}
	h.waitLine("+CCH_PEER_CLOSED: 1")

	if got := cc.do("fault network-loss 100ms"); got != "ok" {
		t.Fatalf("network-loss: %q", got)
	}
	if got := cc.do("fault delay-response 10ms"); got != "ok" {
		t.Fatalf("delay-response: %q", got)
	}
	h.ok("AT")
	if got := cc.do("fault drop-response"); got != "ok" {
		t.Fatalf("drop-response: %q", got)
	}
	h.write([]byte("AT+CMEE=1\r"))
	if got := h.ok("AT+CMEE?"); got[0] != "+CMEE: 1" {
		t.Fatalf("after a dropped response AT+CMEE? = %q", got)
	}
	if got := cc.do("fault sim-busy 1h"); got != "ok" {
		t.Fatalf("sim-busy: %q", got)
	}
	h.fails("AT+CPIN?", "+CME ERROR: 14")
	if got := cc.do("fault reboot"); got != "ok" {
		t.Fatalf("reboot: %q", got)
	}
	h.waitLine("RDY")
	h.waitLine("PB DONE")
	h.ok("AT+CPIN?")

	var c Counters
	if err := json.Unmarshal([]byte(cc.do("counters")), &c); err != nil {
		t.Fatalf("counters is not JSON: %v", err)
	}
	if c.Reboots != 1 || c.Commands["AT+CPIN"] != 2 || c.SerialHostToModemBytes == 0 || c.SerialModemToHostBytes == 0 {
		t.Errorf("counters = %+v", c)
	}
	var raw map[string]any
	json.Unmarshal([]byte(cc.do("counters")), &raw)
	for _, k := range []string{"serial_host_to_modem_bytes", "serial_modem_to_host_bytes", "net_tx_bytes", "net_rx_bytes", "commands"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("counters JSON lacks %q: %v", k, raw)
		}
	}

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("control socket still exists after Close: %v", err)
	}
}
