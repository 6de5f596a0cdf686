package pluginhost_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/cellgate/cellgate/agent/pluginhost"
	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/sdktest"
)

// The test binary plays two roles: the test suite, and (with envRole set)
// the plugin the Host under test supervises, so the host is exercised
// against a real process over real go-plugin gRPC.
//
// As the plugin it serves an sdktest.Transport, an in-memory SecureTransport
// and not a modem, whose hooks journal what it does and misbehave on
// request, so the host's supervision (restart, backoff, hang detection, Stop
// before kill, replay) can be checked against a real process. Modem
// behaviour is tested against modemsim by sdk/plugintest and by this
// package's sim7600 test.
//
// The journal (envJournal) gets one line per event, "<pid> <event>
// <detail>", which is also how the script counts calls across the processes
// of one test. Script directives (envScript, comma-separated), where N
// counts Open calls over all processes:
//
//	open-fail=N   the first N Opens fail with +CME ERROR: SIM busy
//	open-crash=N  the first N Opens SIGKILL their own process
//	open-hang=N   the first N Opens block until their ctx ends
//	wrong-modem   Open finds a SIM7800 on the port (ModelMismatchError)
//	bad-option    Open refuses an option (OptionError)
//	bad-bundle    Provision refuses the bundle (BundleError)
const (
	envRole     = "PLUGINHOST_TEST_ROLE"
	envJournal  = "PLUGINHOST_TEST_JOURNAL"
	envScript   = "PLUGINHOST_TEST_SCRIPT"
	doubleModel = "testdouble"
)

func TestMain(m *testing.M) {
	if os.Getenv(envRole) == "double" {
		d, err := newDouble()
		if err != nil {
			fmt.Fprintln(os.Stderr, "test double:", err)
			os.Exit(2)
		}
		d.record("start")
		sdk.Serve(sdktest.New(sdktest.Config{
			Model:     doubleModel,
			Open:      d.open,
			Provision: d.provision,
			Dial:      d.dial,
			Stop:      d.stop,
		}))
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// double is the plugin process's journal and script: the sdktest.Transport
// hooks above.
type double struct {
	log     *slog.Logger
	journal string
	script  map[string]int

	mu sync.Mutex // serialises journal appends within the process
}

func newDouble() (*double, error) {
	d := &double{log: sdk.NewLogger(slog.LevelDebug), journal: os.Getenv(envJournal), script: map[string]int{}}
	if d.journal == "" {
		return nil, fmt.Errorf("%s is not set", envJournal)
	}
	for _, dir := range strings.Split(os.Getenv(envScript), ",") {
		if dir == "" {
			continue
		}
		name, val, found := strings.Cut(dir, "=")
		n := 1
		if found {
			var err error
			if n, err = strconv.Atoi(val); err != nil {
				return nil, fmt.Errorf("script directive %q: %v", dir, err)
			}
		}
		d.script[name] = n
	}
	return d, nil
}

// record appends one journal line. A failure to write it would make the
// test's counts wrong, so it ends the process loudly.
func (d *double) record(event string, detail ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := os.OpenFile(d.journal, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = fmt.Fprintf(f, "%d %s %s\n", os.Getpid(), event, strings.Join(detail, " "))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		d.log.Error("test double: journal write failed", "error", err)
		os.Exit(3)
	}
}

// count returns how many journal lines of event exist, over all processes.
func (d *double) count(event string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	data, err := os.ReadFile(d.journal)
	if err != nil {
		d.log.Error("test double: journal read failed", "error", err)
		os.Exit(3)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[1] == event {
			n++
		}
	}
	return n
}

func (d *double) open(ctx context.Context, cfg sdk.ModemConfig) error {
	n := d.count("open")
	d.record("open", "port="+cfg.Port, "model="+cfg.Model, "apn="+cfg.APN)
	switch {
	case n < d.script["open-crash"]:
		d.log.Warn("test double: crashing in Open as scripted")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case n < d.script["open-hang"]:
		<-ctx.Done()
		return fmt.Errorf("test double: Open hung as scripted: %w", ctx.Err())
	case n < d.script["open-fail"]:
		return &sdk.ModemError{Op: "AT+CPIN?", Code: 14, Text: "+CME ERROR: SIM busy"}
	case d.script["wrong-modem"] > 0:
		return &sdk.ModelMismatchError{Want: cfg.Model, Got: "SIMCOM_SIM7800E"}
	case d.script["bad-option"] > 0:
		return &sdk.OptionError{Key: "speed", Reason: "the test double has no such option"}
	}
	return nil
}

func (d *double) provision(_ context.Context, b sdk.Bundle) error {
	d.record("provision", fmt.Sprintf("profile=%d", b.Profile), "bundle="+bundleSum(b))
	if d.script["bad-bundle"] > 0 {
		return &sdk.BundleError{Field: "key", Reason: "does not match the certificate"}
	}
	return nil
}

// dial journals the dial; every session echoes.
func (d *double) dial(_ context.Context, s *sdktest.Session) (sdktest.SessionConfig, error) {
	d.record("dial", fmt.Sprintf("%s:%d", s.Request().Host, s.Request().Port))
	return sdktest.SessionConfig{Echo: true}, nil
}

// stop records whether Stop came as the host's RPC or from sdk.Serve's own
// shutdown path, which runs after the host disconnects.
func (d *double) stop(ctx context.Context) error {
	via := "shutdown"
	if _, ok := grpc.Method(ctx); ok {
		via = "rpc"
	}
	d.record("stop", "via="+via)
	return nil
}

// bundleSum identifies a bundle in the journal without its contents.
func bundleSum(b sdk.Bundle) string {
	sum := sha256.Sum256([]byte(string(b.CA) + "\x00" + string(b.Cert) + "\x00" + string(b.Key)))
	return fmt.Sprintf("%x", sum[:8])
}

// testCtx bounds a test step, so a regression fails in a minute instead of
// at the package timeout.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// fixture is a plugin directory whose cellgate-plugin-testdouble is this
// test binary, a journal for the double, a log recorder and a recorder of
// backoff delays, and a Config wired to all of them.
type fixture struct {
	t       *testing.T
	dir     string
	journal string
	log     *recorder
	waits   *waitRecorder
	cfg     pluginhost.Config
}

func newFixture(t *testing.T, script string) *fixture {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("locating the test binary: %v", err)
	}
	dir := t.TempDir()
	if err := os.Symlink(self, filepath.Join(dir, pluginhost.BinaryPrefix+doubleModel)); err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		t:       t,
		dir:     dir,
		journal: filepath.Join(t.TempDir(), "journal"),
		log:     &recorder{store: &recordStore{}},
		waits:   &waitRecorder{seen: make(chan time.Duration, 64)},
	}
	f.cfg = pluginhost.Config{
		Model: doubleModel,
		Dirs:  []string{dir},
		Modem: sdk.ModemConfig{Port: "/dev/ttyDOUBLE0", APN: "iot.test"},
		// The double checks a bundle's shape, not its cryptography.
		Bundle: &sdk.Bundle{
			Profile: 1,
			CA:      testPEM("CERTIFICATE", "test CA"),
			Cert:    testPEM("CERTIFICATE", "test client"),
			Key:     testPEM("PRIVATE KEY", "test key"),
		},
		Env: []string{
			envRole + "=double", envJournal + "=" + f.journal, envScript + "=" + script,
			// The race detector's 1 s sleep at exit would slow every stop.
			strings.TrimSpace("GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0"),
		},
		Logger:         slog.New(f.log),
		HealthInterval: 100 * time.Millisecond,
		HealthTimeout:  time.Second,
		HealthFailures: 2,
		OpenTimeout:    20 * time.Second,
		StopTimeout:    5 * time.Second,
		Backoff: pluginhost.Backoff{
			Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond, Factor: 2, Jitter: 0.25,
			Wait: f.waits.wait,
		},
	}
	t.Cleanup(func() {
		// The plugin is this binary: built with -race, it reports races on
		// its stderr, which reaches the host's log.
		if r, ok := f.log.find(func(r record) bool { return strings.Contains(r.msg, "DATA RACE") }); ok {
			t.Errorf("the race detector reported a data race in a plugin process: %s", r)
		}
		if t.Failed() {
			for _, l := range f.log.lines() {
				t.Log("host log: " + l)
			}
			data, _ := os.ReadFile(f.journal)
			t.Logf("double's journal:\n%s", data)
		}
	})
	return f
}

// testPEM is one PEM block of the given type around body: enough for the
// double, which checks a bundle's shape only.
func testPEM(blockType, body string) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: []byte(body)})
}

// start starts a Host on f.cfg and closes it at cleanup.
func (f *fixture) start() *pluginhost.Host {
	f.t.Helper()
	h, err := pluginhost.Start(testCtx(f.t, 10*time.Second), f.cfg)
	if err != nil {
		f.t.Fatalf("Start: %v", err)
	}
	f.t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			f.t.Errorf("Close: %v", err)
		}
	})
	return h
}

// ready waits for h to be ready and returns the plugin's pid.
func (f *fixture) ready(h *pluginhost.Host) int {
	f.t.Helper()
	if err := h.Ready(testCtx(f.t, 30*time.Second)); err != nil {
		f.t.Fatalf("Ready: %v", err)
	}
	pid := h.PID()
	if pid == 0 {
		f.t.Fatal("Ready, but PID() is 0")
	}
	return pid
}

// entry is one line of the double's journal.
type entry struct {
	pid    int
	event  string
	detail string
}

func (e entry) String() string { return fmt.Sprintf("%d %s %s", e.pid, e.event, e.detail) }

func (f *fixture) entries() []entry {
	f.t.Helper()
	data, err := os.ReadFile(f.journal)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	var out []entry
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		fields := strings.SplitN(line, " ", 3)
		pid, err := strconv.Atoi(fields[0])
		if err != nil || len(fields) < 3 {
			f.t.Fatalf("journal line %q: want '<pid> <event> <detail>'", line)
		}
		out = append(out, entry{pid: pid, event: fields[1], detail: fields[2]})
	}
	return out
}

// byPID returns the journal's events per process, in start order.
func (f *fixture) byPID() ([]int, map[int][]entry) {
	var pids []int
	events := map[int][]entry{}
	for _, e := range f.entries() {
		if !slices.Contains(pids, e.pid) {
			pids = append(pids, e.pid)
		}
		events[e.pid] = append(events[e.pid], e)
	}
	return pids, events
}

// eventsOf returns "event detail" strings of one process.
func eventsOf(es []entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = strings.TrimSpace(e.event + " " + e.detail)
	}
	return out
}

// processGone reports whether no process has pid (it exited and was reaped).
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// freeze stops process pid with SIGSTOP, a hang that keeps its sockets open
// and answers nothing, and returns once every thread of it has stopped: the
// kernel stops a multi-threaded process thread by thread, and under load a
// busy thread can still answer an RPC for a while after kill(2) returned.
func freeze(t testing.TB, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("every thread of pid %d to stop", pid), func() bool {
		if processGone(pid) {
			return true // stopped, then killed by the host, which is the point
		}
		stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		if err != nil || len(stats) == 0 {
			return false
		}
		for _, p := range stats {
			data, err := os.ReadFile(p)
			if err != nil {
				return false
			}
			// The state follows the parenthesised command name, which
			// may itself contain spaces or parentheses.
			i := bytes.LastIndexByte(data, ')')
			if i < 0 || i+2 >= len(data) || (data[i+2] != 'T' && data[i+2] != 't') {
				return false
			}
		}
		return true
	})
}

// waitRecorder is an injected Backoff.Wait: it records each delay and
// returns at once, or, with a gate, when the gate is closed.
type waitRecorder struct {
	mu     sync.Mutex
	delays []time.Duration
	gate   chan struct{}
	seen   chan time.Duration
}

func (w *waitRecorder) wait(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.delays = append(w.delays, d)
	gate := w.gate
	w.mu.Unlock()
	select {
	case w.seen <- d:
	default:
	}
	if gate == nil {
		return ctx.Err()
	}
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *waitRecorder) all() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.delays)
}

// checkDelay fails unless d is the n-th (0-based) delay of b: base
// Initial·Factorⁿ capped at Max, shortened by at most Jitter.
func checkDelay(t testing.TB, b pluginhost.Backoff, n int, d time.Duration) {
	t.Helper()
	base := float64(b.Initial)
	for range n {
		base *= b.Factor
	}
	base = min(base, float64(b.Max))
	lo := time.Duration(base * (1 - b.Jitter))
	if d < lo || d > time.Duration(base) {
		t.Errorf("delay %d = %s, want within [%s, %s]", n, d, lo, time.Duration(base))
	}
}

// recorder is a slog.Handler that keeps every record, for assertions on the
// host's log and for printing it when a test fails.
type recorder struct {
	store  *recordStore
	attrs  []slog.Attr
	prefix string
}

type recordStore struct {
	mu   sync.Mutex
	recs []record
}

type record struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (r record) String() string { return fmt.Sprintf("%s %q %v", r.level, r.msg, r.attrs) }

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	attrs := map[string]string{}
	for _, a := range r.attrs {
		attrs[a.Key] = a.Value.String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		attrs[r.prefix+a.Key] = a.Value.String()
		return true
	})
	r.store.mu.Lock()
	defer r.store.mu.Unlock()
	r.store.recs = append(r.store.recs, record{level: rec.Level, msg: rec.Message, attrs: attrs})
	return nil
}

func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	n := &recorder{store: r.store, attrs: slices.Clone(r.attrs), prefix: r.prefix}
	for _, a := range as {
		a.Key = r.prefix + a.Key
		n.attrs = append(n.attrs, a)
	}
	return n
}

func (r *recorder) WithGroup(name string) slog.Handler {
	return &recorder{store: r.store, attrs: r.attrs, prefix: r.prefix + name + "."}
}

func (r *recorder) find(match func(record) bool) (record, bool) {
	r.store.mu.Lock()
	defer r.store.mu.Unlock()
	for _, rec := range r.store.recs {
		if match(rec) {
			return rec, true
		}
	}
	return record{}, false
}

func (r *recorder) lines() []string {
	r.store.mu.Lock()
	defer r.store.mu.Unlock()
	var b bytes.Buffer
	out := make([]string, 0, len(r.store.recs))
	for _, rec := range r.store.recs {
		b.Reset()
		fmt.Fprint(&b, rec)
		out = append(out, b.String())
	}
	return out
}
