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
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cellgate/cellgate/sdk"
)

// TestMain lets the test binary play three roles: the test suite, the
// plugin (envPlugin), and an agent that launches a plugin and then waits to
// be killed (envHost, for the parent-death test).
func TestMain(m *testing.M) {
	switch {
	case os.Getenv(envPlugin) == "double":
		sdk.Serve(newDouble())
		os.Exit(0)
	case os.Getenv(envHost) == "1":
		runHost()
	}
	goleak.VerifyTestMain(m)
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
