package modemsim

import (
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/devpki"
)

// cclk reads AT+CCLK? and returns the quoted time.
func cclk(t *testing.T, h *host) string {
	t.Helper()
	lines := h.ok("AT+CCLK?")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "+CCLK: ") {
		t.Fatalf("AT+CCLK? = %q", lines)
	}
	return strings.TrimPrefix(lines[0], "+CCLK: ")
}

func TestFaultClockJumpMovesCCLKUntilReboot(t *testing.T) {
	frozen := time.Date(2031, 5, 4, 12, 0, 0, 0, time.UTC)
	m, h := newHostModem(t, Config{Clock: func() time.Time { return frozen }})
	if got := cclk(t, h); got != `"80/01/06,00:00:00+00"` {
		t.Fatalf("after Start: %s, want the unsynchronised epoch", got)
	}
	for _, step := range []struct {
		jump time.Duration
		want string
	}{
		{2 * time.Hour, `"80/01/06,02:00:00+00"`},
		{-90 * time.Minute, `"80/01/06,00:30:00+00"`},
		{2 * 365 * 24 * time.Hour, `"82/01/05,00:30:00+00"`},
	} {
		if err := m.Fault(Fault{Kind: FaultClockJump, Duration: step.jump}); err != nil {
			t.Fatalf("clock-jump %s: %v", step.jump, err)
		}
		if got := cclk(t, h); got != step.want {
			t.Fatalf("after clock-jump %s: %s, want %s", step.jump, got, step.want)
		}
	}
	// The zone set with AT+CCLK stays; the jump moves the instant.
	h.ok(`AT+CCLK="31/05/04,14:00:00+08"`)
	if err := m.Fault(Fault{Kind: FaultClockJump, Duration: -24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if got := cclk(t, h); got != `"31/05/03,14:00:00+08"` {
		t.Fatalf("after a jump back a day: %s", got)
	}

	err := m.Fault(Fault{Kind: FaultClockJump, Duration: -60 * 365 * 24 * time.Hour})
	if err == nil || !strings.Contains(err.Error(), "outside the 1980-2079") {
		t.Fatalf("a jump to 1971: err = %v, want it refused", err)
	}
	if got := cclk(t, h); got != `"31/05/03,14:00:00+08"` {
		t.Fatalf("a refused jump moved the clock: %s", got)
	}

	if err := m.Fault(Fault{Kind: FaultReboot}); err != nil {
		t.Fatal(err)
	}
	h.waitLine("PB DONE")
	h.ok("ATE0")
	if got := cclk(t, h); got != `"80/01/06,00:00:00+00"` {
		t.Fatalf("after a reboot: %s, want the epoch again", got)
	}
}

func TestNetworkTimeSetsTheClockAtEveryBoot(t *testing.T) {
	frozen := time.Date(2031, 5, 4, 12, 0, 0, 0, time.UTC)
	m, h := newHostModem(t, Config{Clock: func() time.Time { return frozen }, NetworkTime: true})
	if got := cclk(t, h); got != `"31/05/04,12:00:00+00"` {
		t.Fatalf("after Start: %s, want the network's time", got)
	}
	if err := m.Fault(Fault{Kind: FaultClockJump, Duration: 3 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if got := cclk(t, h); got != `"31/05/04,15:00:00+00"` {
		t.Fatalf("after clock-jump 3h: %s", got)
	}
	if err := m.Fault(Fault{Kind: FaultReboot}); err != nil {
		t.Fatal(err)
	}
	h.waitLine("PB DONE")
	h.ok("ATE0")
	if got := cclk(t, h); got != `"31/05/04,12:00:00+00"` {
		t.Fatalf("after a reboot: %s, want the network's time again", got)
	}
}

// A jump of two years takes the module's clock past a one-year
// certificate: the handshake fails with 15 when the context checks
// validity (ignorelocaltime 0) and succeeds when it does not; jumping back
// makes it valid again.
func TestFaultClockJumpAgainstCertificateValidity(t *testing.T) {
	ca := newTestCA(t, "trusted CA")
	leaf := issue(t, ca, devpki.Leaf{CommonName: "gateway.test", Hosts: []string{"gateway.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour)})
	srv := startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}})
	e := newTLSEnv(t, Config{NetworkTime: true})
	e.h.download("ca.pem", ca.CertPEM)
	checked := []string{`"cacert",0,"ca.pem"`, `"authmode",0,1`, `"ignorelocaltime",0,0`}
	opens := []struct {
		name, want string
		jump       time.Duration
		settings   []string
	}{
		{"network time, validity checked", "+CCHOPEN: 0,0", 0, checked},
		{"two years on, validity checked", "+CCHOPEN: 0,15", 2 * 365 * 24 * time.Hour, checked},
		{"two years on, ignorelocaltime 1", "+CCHOPEN: 0,0", 0, []string{`"cacert",0,"ca.pem"`, `"authmode",0,1`, `"ignorelocaltime",0,1`}},
		{"back again, validity checked", "+CCHOPEN: 0,0", -2 * 365 * 24 * time.Hour, checked},
		{"two hours back, before NotBefore", "+CCHOPEN: 0,15", -2 * time.Hour, checked},
	}
	for _, o := range opens {
		if o.jump != 0 {
			if err := e.m.Fault(Fault{Kind: FaultClockJump, Duration: o.jump}); err != nil {
				t.Fatalf("%s: clock-jump %s: %v", o.name, o.jump, err)
			}
		}
		e.ctx0(o.settings...)
		if got := e.open("127.0.0.1", srv.port); got != o.want {
			t.Fatalf("%s: open = %q, want %q", o.name, got, o.want)
		}
		if o.want == "+CCHOPEN: 0,0" {
			<-srv.states
		}
	}
}

func TestClockJumpOverTheControlSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	_, h := newHostModem(t, Config{ControlSocket: sock})
	cc := dialControl(t, sock)
	if got := cc.do("fault clock-jump 36h"); got != "ok" {
		t.Fatalf("clock-jump 36h: %q", got)
	}
	if got := cc.do("fault clock-jump -30m"); got != "ok" {
		t.Fatalf("clock-jump -30m: %q", got)
	}
	if got := cclk(t, h); !strings.HasPrefix(got, `"80/01/07,11:30:`) {
		t.Fatalf("after +36h and -30m: %s, want 80/01/07,11:30", got)
	}
	if got := cc.do("fault clock-jump 0s"); got != "error: fault clock-jump: a jump of 0 moves nothing" {
		t.Fatalf("clock-jump 0s: %q", got)
	}
}

func TestParseClockJump(t *testing.T) {
	for in, want := range map[string]time.Duration{"clock-jump 3h": 3 * time.Hour, "clock-jump -90m": -90 * time.Minute, "clock-jump +1s": time.Second} {
		f, err := ParseFault(in)
		if err != nil || f != (Fault{Kind: FaultClockJump, Duration: want}) {
			t.Errorf("ParseFault(%q) = %+v, %v", in, f, err)
		}
		if back, err := ParseFault(f.String()); err != nil || back != f {
			t.Errorf("ParseFault(%q) = %+v, %v; want it to read back %q", f.String(), back, err, in)
		}
	}
	for in, want := range map[string]string{
		"clock-jump":       "takes 1 argument",
		"clock-jump 0s":    "a jump of 0",
		"clock-jump later": "bad duration",
	} {
		if _, err := ParseFault(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseFault(%q) error = %v, want it to mention %q", in, err, want)
		}
	}
}
