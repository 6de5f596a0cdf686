package sdk_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/sdktest"
)

// TestMain lets the test binary play three roles: the test suite, the
// plugin (envPlugin), and an agent that launches a plugin and then waits to
// be killed (envHost, for the parent-death test).
func TestMain(m *testing.M) {
	switch {
	case os.Getenv(envPlugin) == "double":
		if v := os.Getenv(envContract); v != "" {
			sdk.SetContractVersion(v)
		}
		sdk.Serve(newDouble())
		os.Exit(0)
	case os.Getenv(envHost) == "1":
		runHost()
	}
	goleak.VerifyTestMain(m)
}

// As the plugin, the test binary serves an sdktest.Transport through
// sdk.Serve, so the host side of the sdk (the gRPC service, flow control,
// typed errors, process supervision) runs across a real process boundary.
// The double is an in-memory SecureTransport, not a modem; modem behaviour is
// tested against modemsim by sdk/plugintest. Tests pick its behaviour through
// the requests themselves.
//
// ModemConfig.Options["fail"] makes Open fail with one typed error (modem,
// modem-bare, net, net-future, option, serial, timeout, untyped) or hang
// until its ctx ends (hang); Options["check"] = "fields" makes Open fail
// unless the config arrived equal to fieldsConfig. envContract, when set,
// is the contract version the plugin process speaks.
//
// Dial hosts:
//
//	echo        Send's bytes come back from Recv XORed with echoMask
//	events      Recv: "hello", a peer-closed event, then io.EOF
//	gated       Send waits for a grant from the test's control socket
//	idle        Send discards, Recv waits for Close
//	slowdial    Dial reports "dial-waiting", waits for ctx, reports "dial-canceled"
//	fail-dial   Dial fails with a handshake NetError
//	fail-send   Send fails with a SerialError
//	fail-recv   Recv returns "x", then a no-network NetError
//	fail-close  Close fails with a TimeoutError
//
// Stop reports "stopped" on the control socket when there is one.
const (
	envPlugin   = "SDK_TEST_PLUGIN"
	envControl  = "SDK_TEST_CONTROL"
	envContract = "SDK_TEST_CONTRACT"
	echoMask    = 0xA5
)

// doubleInfo is what the double's Open reports: every field set, so the
// test sees each one cross.
var doubleInfo = sdk.ModemInfo{
	Model: "CELLGATE-TEST-DOUBLE", Manufacturer: "cellgate tests", Revision: "double-1",
	IMEI: "490154203237518", ICCID: "8944500102198304826",
	SignalRSSI: 23, SignalBER: 99, Registration: "roaming", Operator: "test operator", ClockSynced: true,
}

// fieldsConfig has every ModemConfig field set; see Options["check"].
var fieldsConfig = sdk.ModemConfig{
	Port: "/dev/ttyUSB2", Baud: 115200, APN: "iot.example", Model: "double",
	Options: map[string]string{"check": "fields"}, RegistrationTimeout: 90 * time.Second, NoNetwork: true,
}

// newDouble returns the plugin's SecureTransport. It logs through
// sdk.NewLogger like a real plugin, so the log bridge is exercised too.
func newDouble() *sdktest.Transport {
	log := sdk.NewLogger(slog.LevelDebug)
	ctl := &pluginControl{}
	return sdktest.New(sdktest.Config{
		Model: "double",
		Info:  doubleInfo,
		Open: func(ctx context.Context, cfg sdk.ModemConfig) error {
			log.Warn("double opened", "port", cfg.Port, "op", "open")
			return openFault(ctx, cfg)
		},
		Dial: func(ctx context.Context, s *sdktest.Session) (sdktest.SessionConfig, error) {
			return dialHost(ctx, s, ctl)
		},
		Stop: func(context.Context) error {
			if os.Getenv(envControl) != "" {
				if err := ctl.connect(); err == nil {
					_ = ctl.report("stopped")
				}
			}
			return nil
		},
	})
}

func openFault(ctx context.Context, cfg sdk.ModemConfig) error {
	if cfg.Options["check"] == "fields" && !reflect.DeepEqual(cfg, fieldsConfig) {
		return fmt.Errorf("double: Open got %+v, want %+v", cfg, fieldsConfig)
	}
	switch cfg.Options["fail"] {
	case "":
		return nil
	case "modem":
		return fmt.Errorf("double: sim ready: %w", &sdk.ModemError{Op: "AT+CPIN?", Code: 10, Text: "+CME ERROR: SIM not inserted"})
	case "modem-bare":
		return &sdk.ModemError{Op: "AT+CGACT=1,1", Code: -1}
	case "net":
		return &sdk.NetError{Op: "start", Session: -1, Kind: sdk.NetNoNetwork, Vendor: "double", Code: 17, Text: "+XSTART: 17 (no network)"}
	case "net-future":
		// A kind from a newer sdk than the agent's.
		return &sdk.NetError{Op: "start", Session: -1, Kind: sdk.NetKind(99), Vendor: "double", Code: 99}
	case "option":
		return &sdk.OptionError{Key: "speed", Reason: `"warp" is not one of fast, slow`}
	case "serial":
		return fmt.Errorf("double: %w", &sdk.SerialError{Op: "open", Port: cfg.Port, Err: "no such file or directory"})
	case "timeout":
		return &sdk.TimeoutError{Op: "registration", After: cfg.RegistrationTimeout}
	case "untyped":
		return errors.New("double: something without a type")
	case "hang":
		<-ctx.Done()
		return fmt.Errorf("double: open: %w", ctx.Err())
	}
	return fmt.Errorf("double: unknown failure %q", cfg.Options["fail"])
}

func dialHost(ctx context.Context, s *sdktest.Session, ctl *pluginControl) (sdktest.SessionConfig, error) {
	req := s.Request()
	switch req.Host {
	case "echo":
		return sdktest.SessionConfig{Echo: true, Transform: func(p []byte) []byte {
			for i := range p {
				p[i] ^= echoMask
			}
			return p
		}}, nil
	case "events":
		s.Deliver([]byte("hello"))
		s.Disconnect(sdk.SessionEvent{Kind: sdk.EventPeerClosed, Code: 4, Detail: fmt.Sprintf("+XPEERCLOSED: %d", s.ID())})
		return sdktest.SessionConfig{}, nil
	case "gated":
		if err := ctl.connect(); err != nil {
			return sdktest.SessionConfig{}, err
		}
		return sdktest.SessionConfig{Send: ctl.gate}, nil
	case "idle":
		return sdktest.SessionConfig{}, nil
	case "slowdial":
		if err := ctl.connect(); err != nil {
			return sdktest.SessionConfig{}, err
		}
		if err := ctl.report("dial-waiting"); err != nil {
			return sdktest.SessionConfig{}, err
		}
		<-ctx.Done()
		_ = ctl.report("dial-canceled")
		return sdktest.SessionConfig{}, fmt.Errorf("double: dial: %w", ctx.Err())
	case "fail-dial":
		return sdktest.SessionConfig{}, fmt.Errorf("double: dial %s:%d: %w", req.Host, req.Port,
			&sdk.NetError{Op: "open", Session: s.ID(), Kind: sdk.NetHandshake, Vendor: "double", Code: 15, Text: "+XOPEN: 0,15 (handshake error)"})
	case "fail-send":
		return sdktest.SessionConfig{Send: func(context.Context, []byte) error {
			return fmt.Errorf("double: send: %w", &sdk.SerialError{Op: "write", Port: "/dev/ttyDOUBLE", Err: "input/output error"})
		}}, nil
	case "fail-recv":
		s.Deliver([]byte("x"))
		s.FailRecv(fmt.Errorf("double: receive closed: %w", &sdk.NetError{Op: "recv", Session: s.ID(), Kind: sdk.NetNoNetwork, Vendor: "double", Code: 9}))
		return sdktest.SessionConfig{}, nil
	case "fail-close":
		return sdktest.SessionConfig{Close: func(context.Context) error {
			return &sdk.TimeoutError{Op: "close result", After: 5 * time.Second}
		}}, nil
	}
	return sdktest.SessionConfig{}, &sdk.NetError{Op: "open", Session: s.ID(), Kind: sdk.NetDNS, Vendor: "double", Code: 13}
}

// pluginControl is the plugin's end of the control socket (see control): it
// reports what the double did ("send N", "dial-canceled", "stopped") and
// receives grants ("ok") for gated sends. It connects on first use.
type pluginControl struct {
	once   sync.Once
	err    error
	conn   net.Conn
	grants chan struct{}

	wmu sync.Mutex // serialises reports
}

func (c *pluginControl) connect() error {
	c.once.Do(func() {
		path := os.Getenv(envControl)
		if path == "" {
			c.err = errors.New("double: no control socket configured")
			return
		}
		if c.conn, c.err = net.Dial("unix", path); c.err != nil {
			c.err = fmt.Errorf("double: control socket: %w", c.err)
			return
		}
		c.grants = make(chan struct{}, 1024)
		go func() {
			sc := bufio.NewScanner(c.conn)
			for sc.Scan() {
				if sc.Text() == "ok" {
					c.grants <- struct{}{}
				}
			}
		}()
	})
	return c.err
}

func (c *pluginControl) report(line string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := io.WriteString(c.conn, line+"\n")
	return err
}

// gate is a gated session's SessionConfig.Send: it reports the send and
// waits for the test's grant.
func (c *pluginControl) gate(ctx context.Context, p []byte) error {
	if err := c.report(fmt.Sprintf("send %d", len(p))); err != nil {
		return err
	}
	select {
	case <-c.grants:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// testCtx bounds a whole test, so a regression hangs for a minute, not for
// the package's timeout.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func selfPath(t testing.TB) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatalf("locating the test binary: %v", err)
	}
	return p
}

// launch starts the test binary as a plugin serving the double and kills it
// at cleanup. cfg.Path defaults to the test binary; cfg.Logger to a
// recorder whose lines are printed if the test fails.
func launch(t testing.TB, cfg sdk.LaunchConfig) (*sdk.Plugin, *recorder) {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = selfPath(t)
	}
	rec := &recorder{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(rec)
	}
	cfg.Env = append(cfg.Env, envPlugin+"=double", raceEnv())
	p, err := sdk.Launch(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := p.Kill(ctx); err != nil {
			t.Errorf("Kill: %v", err)
		}
		// The plugin is this binary: built with -race, it reports races on
		// its stderr, which the host logs.
		if _, ok := rec.findContaining("DATA RACE"); ok {
			t.Error("the race detector reported a data race in the plugin process (see the host log)")
		}
		if t.Failed() {
			for _, line := range rec.lines() {
				t.Log("host log: " + line)
			}
		}
	})
	return p, rec
}

func dial(t testing.TB, ctx context.Context, p *sdk.Plugin, host string) sdk.Session {
	t.Helper()
	s, err := p.Transport().Dial(ctx, sdk.DialRequest{Host: host, Port: 443, Mode: sdk.DialModemTLS})
	if err != nil {
		t.Fatalf("Dial %s: %v", host, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

// recorder is a slog.Handler that keeps every record, for asserting on the
// log bridge and for printing the host's log when a test fails.
type recorder struct {
	mu   sync.Mutex
	recs []record
}

type record struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	attrs := map[string]string{}
	rec.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, record{level: rec.Level, msg: rec.Message, attrs: attrs})
	return nil
}

// WithAttrs and WithGroup are not needed by the code under test, which logs
// through slog.Logger.Log with inline attributes only.
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) find(msg string) (record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if rec.msg == msg {
			return rec, true
		}
	}
	return record{}, false
}

func (r *recorder) findContaining(s string) (record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if strings.Contains(rec.msg, s) {
			return rec, true
		}
	}
	return record{}, false
}

// raceEnv keeps the caller's GORACE options for the plugin process but drops
// the race detector's one-second sleep at exit, which would otherwise make
// every plugin shutdown in these tests a second long.
func raceEnv() string {
	return strings.TrimSpace("GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0")
}

func (r *recorder) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.recs))
	for _, rec := range r.recs {
		out = append(out, fmt.Sprintf("%s %s %v", rec.level, rec.msg, rec.attrs))
	}
	return out
}

// control is the test's end of the double's control socket: the double
// reports what it does ("send N", "dial-canceled") and waits for grants.
type control struct {
	path  string
	lines chan string

	mu   sync.Mutex
	conn net.Conn
}

func newControl(t testing.TB) *control {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl")
	if len(path) > 100 {
		t.Fatalf("control socket path %s is too long for a unix socket; shorten the test name", path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("control socket: %v", err)
	}
	c := &control{path: path, lines: make(chan string, 1<<12)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		c.conn = conn
		c.mu.Unlock()
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		c.mu.Lock()
		if c.conn != nil {
			c.conn.Close()
		}
		c.mu.Unlock()
		<-done
	})
	return c
}

func (c *control) env() string { return envControl + "=" + c.path }

// next returns the double's next report.
func (c *control) next(ctx context.Context) (string, error) {
	select {
	case l := <-c.lines:
		return l, nil
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for the double's control socket: %w", ctx.Err())
	}
}

// grant lets one waiting gated Send return.
func (c *control) grant() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return errors.New("the double has not connected to the control socket")
	}
	_, err := io.WriteString(c.conn, "ok\n")
	return err
}

// parseSend parses a "send N" report.
func parseSend(line string) (int, error) {
	var n int
	if _, err := fmt.Sscanf(line, "send %d", &n); err != nil || !strings.HasPrefix(line, "send ") {
		return 0, fmt.Errorf("want a 'send N' report from the double, got %q", line)
	}
	return n, nil
}

// recvAll reads n bytes of data frames from s.
func recvAll(ctx context.Context, s sdk.Session, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	for len(out) < n {
		f, err := s.Recv(ctx)
		if err != nil {
			return out, fmt.Errorf("after %d of %d bytes: %w", len(out), n, err)
		}
		if f.Event != nil {
			return out, fmt.Errorf("after %d of %d bytes: unexpected event %+v", len(out), n, *f.Event)
		}
		out = append(out, f.Data...)
	}
	if len(out) != n {
		return out, fmt.Errorf("received %d bytes, want %d", len(out), n)
	}
	return out, nil
}
