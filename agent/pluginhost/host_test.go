package pluginhost_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/pluginhost"
	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk"
)

var upstream = sdk.DialRequest{Host: "upstream.test", Port: 8883, Profile: 1}

// wantBringUp is the journal of a process that started, opened the modem
// with the configured ModemConfig and provisioned the configured bundle.
func wantBringUp(f *fixture) []string {
	b := f.cfg.Bundle
	return []string{
		"start",
		"open port=" + f.cfg.Modem.Port + " model=" + doubleModel + " apn=" + f.cfg.Modem.APN,
		"provision profile=" + strconv.Itoa(b.Profile) + " bundle=" + bundleSum(*b),
	}
}

func hexPrefix(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// roundTrip sends msg through s while reading it back, as a peer that
// does not read would stall a bounded stream, and expects it whole.
func roundTrip(t *testing.T, s sdk.Session, msg string) {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	sent := make(chan error, 1)
	go func() { sent <- s.Send(ctx, []byte(msg)) }()
	var got []byte
	for len(got) < len(msg) {
		fr, err := s.Recv(ctx)
		if err != nil {
			t.Fatalf("Recv after %d of %d bytes: %v", len(got), len(msg), err)
		}
		if fr.Event != nil {
			t.Fatalf("event %v after %d of %d bytes", fr.Event.Kind, len(got), len(msg))
		}
		got = append(got, fr.Data...)
	}
	if err := <-sent; err != nil {
		t.Fatalf("Send: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo differs: got %d bytes %.40q, want %d bytes %.40q", len(got), got, len(msg), msg)
	}
}

// doneCtx is an ended context, which makes Ready a probe.
func doneCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func dial(t *testing.T, h *pluginhost.Host) sdk.Session {
	t.Helper()
	s, err := h.Dial(testCtx(t, 30*time.Second), upstream)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// recvFailsWithPluginExited checks that a session of a dead plugin says so.
func recvFailsWithPluginExited(t *testing.T, s sdk.Session) {
	t.Helper()
	_, err := s.Recv(testCtx(t, 10*time.Second))
	if !errors.Is(err, sdk.ErrPluginExited) {
		t.Fatalf("Recv on a session of the dead plugin = %v, want sdk.ErrPluginExited", err)
	}
}

func countRecords(f *fixture, match func(record) bool) int {
	n := 0
	f.log.store.mu.Lock()
	defer f.log.store.mu.Unlock()
	for _, r := range f.log.store.recs {
		if match(r) {
			n++
		}
	}
	return n
}

func TestRestartAfterSIGKILLReplaysOpenAndProvision(t *testing.T) {
	f := newFixture(t, "")
	h := f.start()
	pid1 := f.ready(h)
	if info, ok := h.Info(); !ok || info.IMEI != "990000000000001" || info.Model != "CELLGATE-TEST-DOUBLE" {
		t.Fatalf("Info() = %+v, %v; want the double's ModemInfo", info, ok)
	}
	sess := dial(t, h)
	roundTrip(t, sess, "before the crash")

	if err := syscall.Kill(pid1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	recvFailsWithPluginExited(t, sess)
	testutil.Eventually(t, 30*time.Second, "a second plugin process", func() bool { return h.Restarts() == 1 })
	pid2 := f.ready(h)
	if pid2 == pid1 {
		t.Fatalf("ready again with the killed pid %d", pid1)
	}
	roundTrip(t, dial(t, h), "after the restart")

	pids, events := f.byPID()
	if !slices.Equal(pids, []int{pid1, pid2}) {
		t.Fatalf("journal names processes %v, want [%d %d]", pids, pid1, pid2)
	}
	want := wantBringUp(f)
	if got := eventsOf(events[pid1]); !slices.Equal(got, append(want, "dial upstream.test:8883")) {
		t.Errorf("first plugin did %q, want %q then the dial", got, want)
	}
	// The replay: the same Open and the same bundle, in that order, before
	// the new plugin served anything.
	if got := eventsOf(events[pid2]); !slices.Equal(got, append(want, "dial upstream.test:8883")) {
		t.Errorf("restarted plugin did %q, want the replayed %q then the dial", got, want)
	}
	if !processGone(pid1) {
		t.Errorf("killed plugin pid %d still exists", pid1)
	}
	delays := f.waits.all()
	if len(delays) != 1 {
		t.Fatalf("backoff waits %v, want exactly one before the restart", delays)
	}
	checkDelay(t, f.cfg.Backoff, 0, delays[0])
	if _, ok := f.log.find(func(r record) bool {
		return r.msg == "plugin exited; restarting it" && r.attrs["pid"] == strconv.Itoa(pid1) && r.attrs["modem"] == doubleModel
	}); !ok {
		t.Error(`no "plugin exited; restarting it" record naming the pid and modem`)
	}
	if _, ok := f.log.find(func(r record) bool {
		return r.msg == "plugin not ready; retrying" && r.attrs["kind"] == "plugin_exited"
	}); !ok {
		t.Error(`the retry after the crash is not logged with kind=plugin_exited`)
	}
}

func TestHungPluginIsKilledAndRestarted(t *testing.T) {
	f := newFixture(t, "")
	f.cfg.HealthInterval = 100 * time.Millisecond
	f.cfg.HealthTimeout = 500 * time.Millisecond
	f.cfg.HealthFailures = 2
	h := f.start()
	pid1 := f.ready(h)
	sess := dial(t, h)

	// A stopped process keeps its sockets open and answers nothing: a hang
	// that only a bounded ping can see.
	freeze(t, pid1)
	testutil.Eventually(t, 30*time.Second, "the hung plugin to be replaced", func() bool { return h.Restarts() == 1 })
	pid2 := f.ready(h)
	if pid2 == pid1 {
		t.Fatalf("ready again with the hung pid %d", pid1)
	}
	if !processGone(pid1) {
		t.Errorf("hung plugin pid %d still exists", pid1)
	}
	recvFailsWithPluginExited(t, sess)
	roundTrip(t, dial(t, h), "after the hang")

	rec, ok := f.log.find(func(r record) bool { return r.msg == "plugin hung; killing it" })
	if !ok {
		t.Fatal(`no "plugin hung; killing it" record`)
	}
	if rec.attrs["pid"] != strconv.Itoa(pid1) || !strings.Contains(rec.attrs["error"], "2 health checks in a row failed") {
		t.Errorf("hang record %s: want pid %d and the failed checks counted", rec, pid1)
	}
	if n := countRecords(f, func(r record) bool {
		return r.msg == "plugin health check failed" && r.attrs["pid"] == strconv.Itoa(pid1)
	}); n != 2 {
		t.Errorf("%d failed health checks logged for the hung plugin, want 2", n)
	}
	_, events := f.byPID()
	if got := eventsOf(events[pid2]); !slices.Equal(got[:3], wantBringUp(f)) {
		t.Errorf("replacement plugin did %q, want the replayed %q first", got, wantBringUp(f))
	}
}

func TestBackoffGrowsAndCapsAcrossCrashes(t *testing.T) {
	const crashes = 5
	f := newFixture(t, "open-crash="+strconv.Itoa(crashes))
	h := f.start()
	f.ready(h)

	// Initial 100 ms, factor 2, max 400 ms: 100, 200, 400, 400, 400, each
	// shortened by at most the 25 % jitter.
	delays := f.waits.all()
	if len(delays) != crashes {
		t.Fatalf("backoff waits %v, want %d (one per crash)", delays, crashes)
	}
	for i, d := range delays {
		checkDelay(t, f.cfg.Backoff, i, d)
		if d > f.cfg.Backoff.Max {
			t.Errorf("delay %d = %s exceeds Max %s", i, d, f.cfg.Backoff.Max)
		}
	}
	if h.Restarts() != crashes {
		t.Errorf("Restarts() = %d, want %d", h.Restarts(), crashes)
	}
	pids, events := f.byPID()
	if len(pids) != crashes+1 {
		t.Fatalf("journal names %d processes, want %d", len(pids), crashes+1)
	}
	for _, pid := range pids[:crashes] {
		if got := eventsOf(events[pid]); !slices.Equal(got, wantBringUp(f)[:2]) {
			t.Errorf("crashing plugin %d did %q, want start and open only", pid, got)
		}
		if !processGone(pid) {
			t.Errorf("crashed plugin pid %d still exists", pid)
		}
	}
	if got := eventsOf(events[pids[crashes]]); !slices.Equal(got, wantBringUp(f)) {
		t.Errorf("last plugin did %q, want %q", got, wantBringUp(f))
	}
	if n := countRecords(f, func(r record) bool {
		return r.msg == "plugin not ready; retrying" && r.attrs["kind"] == "plugin_exited"
	}); n != crashes {
		t.Errorf("%d retries logged with kind=plugin_exited, want %d", n, crashes)
	}
}

func TestOpenFailuresAreRetriedInTheSameProcess(t *testing.T) {
	f := newFixture(t, "open-fail=3")
	h := f.start()
	pid := f.ready(h)

	if h.Restarts() != 0 {
		t.Errorf("Restarts() = %d: a busy SIM is no reason to replace the plugin", h.Restarts())
	}
	pids, events := f.byPID()
	if !slices.Equal(pids, []int{pid}) {
		t.Fatalf("journal names processes %v, want only %d", pids, pid)
	}
	want := wantBringUp(f)
	want = slices.Insert(want, 1, want[1], want[1], want[1])
	if got := eventsOf(events[pid]); !slices.Equal(got, want) {
		t.Errorf("plugin did %q, want %q", got, want)
	}
	delays := f.waits.all()
	if len(delays) != 3 {
		t.Fatalf("backoff waits %v, want 3", delays)
	}
	for i, d := range delays {
		checkDelay(t, f.cfg.Backoff, i, d)
	}
	// The typed error is in the log with its class and the modem's words.
	if n := countRecords(f, func(r record) bool {
		return r.msg == "plugin not ready; retrying" && r.attrs["kind"] == "modem" &&
			strings.Contains(r.attrs["error"], "AT+CPIN?: +CME ERROR: SIM busy (code 14)")
	}); n != 3 {
		t.Errorf("%d retries logged with kind=modem and the modem's words, want 3", n)
	}
}

func TestOpenThatHangsIsCutOffAndThePluginReplaced(t *testing.T) {
	f := newFixture(t, "open-hang=1")
	f.cfg.OpenTimeout = time.Second
	h := f.start()
	pid2 := f.ready(h)

	if h.Restarts() != 1 {
		t.Errorf("Restarts() = %d, want 1", h.Restarts())
	}
	pids, events := f.byPID()
	if len(pids) != 2 || pids[1] != pid2 {
		t.Fatalf("journal names processes %v, want two, the second %d", pids, pid2)
	}
	// The stuck plugin was asked to Stop before it was killed.
	first := eventsOf(events[pids[0]])
	if len(first) < 3 || !slices.Equal(first[:3], []string{"start", wantBringUp(f)[1], "stop via=rpc"}) {
		t.Errorf("stuck plugin did %q, want start, open, then a Stop RPC", first)
	}
	if got := eventsOf(events[pid2]); !slices.Equal(got, wantBringUp(f)) {
		t.Errorf("replacement did %q, want %q", got, wantBringUp(f))
	}
	if !processGone(pids[0]) {
		t.Errorf("stuck plugin pid %d still exists", pids[0])
	}
	if _, ok := f.log.find(func(r record) bool { return r.msg == "plugin not ready; retrying" && r.attrs["kind"] == "deadline" }); !ok {
		t.Error("the cut-off Open is not logged with kind=deadline")
	}
}

func TestChecksumMismatchIsRefusedWithoutRetrying(t *testing.T) {
	t.Run("AtStart", func(t *testing.T) {
		f := newFixture(t, "")
		other := sha256.Sum256([]byte("another build"))
		f.cfg.SHA256 = other[:]
		h, err := pluginhost.Start(testCtx(t, 10*time.Second), f.cfg)
		if err == nil {
			h.Close(context.Background())
			t.Fatal("Start accepted a binary whose checksum is not the pinned one")
		}
		var ce *sdk.ChecksumError
		if !errors.As(err, &ce) {
			t.Fatalf("Start = %v, want *sdk.ChecksumError", err)
		}
		bin := filepath.Join(f.dir, pluginhost.BinaryPrefix+doubleModel)
		for _, want := range []string{bin, "checksum mismatch", hexPrefix(other[:]), "refusing to start it"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		if es := f.entries(); len(es) != 0 {
			t.Errorf("a plugin process ran: %v", es)
		}
	})

	t.Run("BinaryReplacedBeforeARestart", func(t *testing.T) {
		f := newFixture(t, "")
		bin := filepath.Join(f.dir, pluginhost.BinaryPrefix+doubleModel)
		self, err := os.ReadFile(bin) // through the symlink
		if err != nil {
			t.Fatal(err)
		}
		replaceFile(t, bin, self)
		sum := sha256.Sum256(self)
		f.cfg.SHA256 = sum[:]
		h := f.start()
		pid := f.ready(h)
		waitsBefore := len(f.waits.all())

		// An upgrade (or an attacker) swaps the binary; the next start must
		// refuse it.
		replaceFile(t, bin, append(bytes.Clone(self), "tampered"...))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, "the host to notice the exit", func() bool { return h.Ready(doneCtx()) != nil })
		err = h.Ready(testCtx(t, 30*time.Second))
		var ce *sdk.ChecksumError
		if !errors.As(err, &ce) {
			t.Fatalf("Ready after the swap = %v, want *sdk.ChecksumError", err)
		}
		if !strings.Contains(err.Error(), "checksum mismatch") || !strings.Contains(err.Error(), bin) {
			t.Errorf("error %q does not say which binary failed the checksum", err)
		}
		if n := len(f.waits.all()) - waitsBefore; n != 1 {
			t.Errorf("%d backoff waits after the swap, want 1 (before the refused start) and no retry loop", n)
		}
		if pids, _ := f.byPID(); !slices.Equal(pids, []int{pid}) {
			t.Errorf("processes %v ran, want only the first, %d", pids, pid)
		}
		if _, err := h.Dial(testCtx(t, 5*time.Second), upstream); !errors.As(err, &ce) {
			t.Errorf("Dial after the host stopped = %v, want the *sdk.ChecksumError", err)
		}
		if _, ok := f.log.find(func(r record) bool {
			return r.msg == "plugin host stopped: retrying cannot fix this" && r.attrs["kind"] == "checksum"
		}); !ok {
			t.Error("the refusal is not logged with kind=checksum")
		}
	})
}

// replaceFile atomically puts an executable with data at path, as a
// package manager does.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFailuresRetryingCannotFixStopTheHost(t *testing.T) {
	cases := []struct {
		name, script string
		check        func(error) bool
		kind         string
	}{
		{"ModelMismatch", "wrong-modem", func(err error) bool { var e *sdk.ModelMismatchError; return errors.As(err, &e) }, "model_mismatch"},
		{"BundleRefused", "bad-bundle", func(err error) bool { var e *sdk.BundleError; return errors.As(err, &e) }, "bundle"},
		{"OptionRefused", "bad-option", func(err error) bool { var e *sdk.OptionError; return errors.As(err, &e) }, "option"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, c.script)
			h := f.start()
			err := h.Ready(testCtx(t, 30*time.Second))
			if !c.check(err) {
				t.Fatalf("Ready = %v, want the typed %s error", err, c.kind)
			}
			if _, err := h.Dial(testCtx(t, 5*time.Second), upstream); !c.check(err) {
				t.Errorf("Dial = %v, want the same typed error", err)
			}
			if d := f.waits.all(); len(d) != 0 {
				t.Errorf("backoff waits %v: retried a failure that retrying cannot fix", d)
			}
			pids, events := f.byPID()
			if len(pids) != 1 {
				t.Fatalf("processes %v ran, want one", pids)
			}
			if !slices.Contains(eventsOf(events[pids[0]]), "stop via=rpc") {
				t.Errorf("the plugin was not sent Stop before it was killed: %q", eventsOf(events[pids[0]]))
			}
			if h.PID() != 0 || !processGone(pids[0]) {
				t.Errorf("plugin pid %d still running after the host stopped (PID() = %d)", pids[0], h.PID())
			}
			if _, ok := f.log.find(func(r record) bool {
				return r.msg == "plugin host stopped: retrying cannot fix this" && r.attrs["kind"] == c.kind
			}); !ok {
				t.Errorf("the stop is not logged with kind=%s", c.kind)
			}
		})
	}
}

func TestCloseSendsStopBeforeKill(t *testing.T) {
	f := newFixture(t, "")
	h := f.start()
	pid := f.ready(h)
	sess := dial(t, h)

	if err := h.Close(testCtx(t, 30*time.Second)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The double writes its journal line while it runs: a "stop via=rpc"
	// line means the Stop RPC reached a live plugin, i.e. before the kill.
	_, events := f.byPID()
	got := eventsOf(events[pid])
	if i := slices.IndexFunc(got, func(s string) bool { return strings.HasPrefix(s, "stop") }); i < 0 || got[i] != "stop via=rpc" {
		t.Fatalf("plugin did %q, want a Stop RPC as the first stop", got)
	}
	if !processGone(pid) {
		t.Errorf("plugin pid %d still exists after Close", pid)
	}
	if h.PID() != 0 {
		t.Errorf("PID() = %d after Close, want 0", h.PID())
	}
	if _, err := sess.Recv(testCtx(t, 10*time.Second)); err == nil {
		t.Error("a session outlived Close")
	}
	if err := h.Close(testCtx(t, 5*time.Second)); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if err := h.Ready(testCtx(t, 5*time.Second)); !errors.Is(err, pluginhost.ErrClosed) {
		t.Errorf("Ready after Close = %v, want ErrClosed", err)
	}
	if _, err := h.Dial(testCtx(t, 5*time.Second), upstream); !errors.Is(err, pluginhost.ErrClosed) {
		t.Errorf("Dial after Close = %v, want ErrClosed", err)
	}
}

func TestCloseKillsAWedgedPlugin(t *testing.T) {
	f := newFixture(t, "")
	f.cfg.HealthInterval = time.Hour // the hang must not be noticed before Close
	f.cfg.StopTimeout = 500 * time.Millisecond
	h, err := pluginhost.Start(testCtx(t, 10*time.Second), f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	pid := f.ready(h)
	freeze(t, pid)
	err = h.Close(testCtx(t, 30*time.Second))
	if err == nil || !strings.Contains(err.Error(), "Stop") {
		t.Errorf("Close of a wedged plugin = %v, want the failed Stop reported", err)
	}
	if !processGone(pid) {
		t.Fatalf("wedged plugin pid %d survived Close", pid)
	}
	if _, ok := f.log.find(func(r record) bool { return r.msg == "plugin still running after Stop and kill; sending SIGKILL" }); !ok {
		t.Error("the forced kill is not logged")
	}
}

func TestDialWaitsForReadiness(t *testing.T) {
	f := newFixture(t, "open-fail=1")
	f.waits.gate = make(chan struct{})
	h := f.start()

	// The host is now holding off after the first, failed Open.
	select {
	case <-f.waits.seen:
	case <-testCtx(t, 30*time.Second).Done():
		t.Fatal("the host never backed off after the failed Open")
	}
	if err := h.Ready(doneCtx()); err == nil {
		t.Fatal("Ready while the modem is not open")
	}
	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelShort()
	_, err := h.Dial(short, upstream)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "SIM busy") {
		t.Fatalf("Dial with a deadline while not ready = %v, want the deadline, quoting the last failure", err)
	}

	type result struct {
		s   sdk.Session
		err error
	}
	dialled := make(chan result, 1)
	go func() {
		s, err := h.Dial(testCtx(t, 30*time.Second), upstream)
		dialled <- result{s, err}
	}()
	close(f.waits.gate)
	var r result
	select {
	case r = <-dialled:
	case <-testCtx(t, 30*time.Second).Done():
		t.Fatal("Dial did not return after the plugin became ready")
	}
	if r.err != nil {
		t.Fatalf("Dial = %v", r.err)
	}
	t.Cleanup(func() { r.s.Close(context.Background()) })
	roundTrip(t, r.s, "ready now")

	pids, events := f.byPID()
	want := append(wantBringUp(f), "dial upstream.test:8883")
	want = slices.Insert(want, 1, want[1])
	if len(pids) != 1 || !slices.Equal(eventsOf(events[pids[0]]), want) {
		t.Fatalf("journal %v, want one process doing %q: the dial only after Open and Provision", f.entries(), want)
	}
}

func TestStartRefusesABadConfig(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(c *pluginhost.Config)
		want   string
	}{
		{"NoPluginBinary", func(c *pluginhost.Config) { c.Dirs = []string{t.TempDir()} }, `no plugin for modem model "testdouble": looked for`},
		{"ModelNotAName", func(c *pluginhost.Config) { c.Model = "SIM 7600" }, `Model: modem model "SIM 7600": want 1 to 64 lower-case letters`},
		{"NoPort", func(c *pluginhost.Config) { c.Modem.Port = "" }, "Modem.Port is empty"},
		{"OtherModemModel", func(c *pluginhost.Config) { c.Modem.Model = "sim7800" }, `Modem.Model "sim7800" differs from Model "testdouble"`},
		{"ShortChecksum", func(c *pluginhost.Config) { c.SHA256 = []byte{1, 2} }, "SHA256 has 2 bytes, want 32"},
		{"NegativeHealthInterval", func(c *pluginhost.Config) { c.HealthInterval = -time.Second }, "HealthInterval -1s is negative"},
		{"BackoffMaxBelowInitial", func(c *pluginhost.Config) { c.Backoff.Max = 10 * time.Millisecond }, "Backoff.Max 10ms is below Backoff.Initial 100ms"},
		{"BackoffFactorBelowOne", func(c *pluginhost.Config) { c.Backoff.Factor = 0.5 }, "Backoff.Factor 0.5"},
		{"OpenTimeoutWithinRegistration", func(c *pluginhost.Config) {
			c.OpenTimeout, c.Modem.RegistrationTimeout = 10*time.Second, 30*time.Second
		}, "OpenTimeout 10s does not exceed Modem.RegistrationTimeout 30s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, "")
			c.mutate(&f.cfg)
			h, err := pluginhost.Start(testCtx(t, 10*time.Second), f.cfg)
			if err == nil {
				h.Close(context.Background())
				t.Fatal("Start accepted the config")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Start = %q, want it to say %q", err, c.want)
			}
			if es := f.entries(); len(es) != 0 {
				t.Errorf("a plugin process ran: %v", es)
			}
		})
	}
}
