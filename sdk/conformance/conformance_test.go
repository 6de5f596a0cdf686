package conformance

import (
	"bytes"
	"crypto/tls"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cellgate/cellgate/sdk"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestEchoServer proves the echo server copies bytes back, and hangs up
// only on a connection whose first bytes are CloseRequest.
func TestEchoServer(t *testing.T) {
	p, err := NewPKI(P256)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := StartServer(MutualTLS(p, 0), Echo)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cert, err := p.Client.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", srv.Addr, &tls.Config{RootCAs: p.CertPool(), Certificates: []tls.Certificate{cert}})
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(time.Minute))
		return c
	}
	cases := map[string]struct{ send, want string }{
		"echo":                     {"cellgate-verify: clos\nmore", "cellgate-verify: clos\nmore"},
		"close request":            {CloseRequest, CloseRequest + CloseReply},
		"close request, then data": {CloseRequest + "ignored", CloseRequest + CloseReply},
		"short":                    {"c", "c"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			conn := dial()
			defer conn.Close()
			if _, err := conn.Write([]byte(c.send)); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(c.want))
			if _, err := io.ReadFull(conn, got); err != nil || string(got) != c.want {
				t.Fatalf("read %q, %v; want %q", got, err, c.want)
			}
			if strings.HasSuffix(c.want, CloseReply) {
				if n, err := conn.Read(make([]byte, 1)); err == nil {
					t.Fatalf("read %d more bytes after the close reply, want the end", n)
				}
			}
		})
	}
}

// TestConfigRefusals proves a Config that cannot run is an error that
// names what is wrong, before any plugin starts.
func TestConfigRefusals(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Model: "sim7600"}, "Config.Plugin is required"},
		{Config{Plugin: "p", Model: "SIM7600"}, "SIM7600"},
		{Config{Plugin: "p", Model: "sim7600", Emulator: "sim9"}, `no emulator "sim9"`},
		{Config{Plugin: "p", Model: "sim7600", Emulator: "sim7600", Port: "/dev/ttyUSB2"}, "exclude each other"},
		{Config{Plugin: "p", Model: "sim7600", Port: "/dev/ttyUSB2"}, "a real port needs Config.Server"},
		{Config{Plugin: "p", Model: "netstack", Server: &RemoteServer{Addr: "host"}}, `"host": want HOST:PORT`},
		{Config{Plugin: "p", Model: "netstack", Server: &RemoteServer{Addr: "h:1"}}, "needs its CA"},
	}
	for _, c := range cases {
		_, err := Run(t.Context(), c.cfg, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Run(%+v) = %v, want an error containing %q", c.cfg, err, c.want)
		}
	}
}

// TestWriteTable pins the table's layout.
func TestWriteTable(t *testing.T) {
	rep := Report{
		Plugin: "bin/p", Model: "sim7600", Modem: "emulator sim7600", Servers: "local", ContractVersion: "1.1",
		Results: []Result{
			{Name: "open", Status: Pass, Duration: 123 * time.Millisecond, Detail: "SIMCOM"},
			{Name: "rogue-cert-refused", Status: Fail, Duration: 2 * time.Second, Detail: "a: b\nc"},
			{Name: "reboot-mid-session", Status: NotApplicable, Detail: "no modem"},
		},
	}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	want := `plugin   bin/p
model    sim7600
modem    emulator sim7600
servers  local
contract 1.1

CHECK               RESULT  TIME   DETAIL
open                PASS    120ms  SIMCOM
rogue-cert-refused  FAIL    2s     a: b c
reboot-mid-session  n/a     -      no modem

FAILED: 1 passed, 1 failed, 1 not applicable
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestStatusProblems proves the status check refuses a Status that does not
// show the emulated modem's radio: a remembered signal, a registration that
// cannot carry data, figures out of range, serial counters that never moved.
func TestStatusProblems(t *testing.T) {
	good := sdk.ModemStatus{Time: time.Now(), PortOpen: true, Registration: "home", SignalRSSI: checkSignal.rssi, SignalBER: checkSignal.ber, SerialTxBytes: 10, SerialRxBytes: 20}
	if p := statusProblems(good, true, true); p != "" {
		t.Fatalf("a faithful status was refused: %s", p)
	}
	noRadio := good
	noRadio.SignalRSSI, noRadio.SignalBER, noRadio.SerialTxBytes, noRadio.SerialRxBytes = 99, 99, 0, 0
	if p := statusProblems(noRadio, false, false); p != "" {
		t.Fatalf("a status without a radio to set was refused: %s", p)
	}
	cases := map[string]struct {
		edit func(*sdk.ModemStatus)
		want string
	}{
		"remembered signal":  {func(s *sdk.ModemStatus) { s.SignalRSSI = 22 }, "signal 22,3, but the emulated modem answers +CSQ: 9,3"},
		"ber dropped":        {func(s *sdk.ModemStatus) { s.SignalBER = 99 }, "signal 9,99"},
		"not registered":     {func(s *sdk.ModemStatus) { s.Registration = "searching" }, `Registration "searching" with a session carrying data`},
		"rssi out of range":  {func(s *sdk.ModemStatus) { s.SignalRSSI = 40 }, "SignalRSSI 40, want 0-31 or 99"},
		"no time":            {func(s *sdk.ModemStatus) { s.Time = time.Time{} }, "Time is not set"},
		"serial never moved": {func(s *sdk.ModemStatus) { s.SerialRxBytes = 0 }, "serial counters tx 10 rx 0"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			st := good
			c.edit(&st)
			if p := statusProblems(st, true, true); !strings.Contains(p, c.want) {
				t.Errorf("problems %q, want them to say %q", p, c.want)
			}
		})
	}
}
