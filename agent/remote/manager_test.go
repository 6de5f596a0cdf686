package remote

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/internal/testutil"
)

const baseYAML = `device_id: gw-0001
tls: {ca: /etc/cellgate/ca.pem}
uplink:
  mqtt: {broker: "mqtts://broker.example.com:8883"}
`

// fakeTarget is a test double of the agent: it validates candidates with
// the real config.Load over a real file, and records what it is asked to
// apply and publish. It runs no data path; health is what the test says.
type fakeTarget struct {
	t    *testing.T
	file string

	mu        sync.Mutex
	cur       *config.Config
	applied   []*config.Config
	applyErr  error
	healthy   bool
	changed   chan struct{}
	published []Status
	pubSignal chan struct{}
}

func newFakeTarget(t *testing.T) *fakeTarget {
	t.Helper()
	file := filepath.Join(t.TempDir(), "cellgate.yaml")
	if err := os.WriteFile(file, []byte(baseYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(config.LoadOptions{File: file, FileExplicit: true})
	if err != nil {
		t.Fatal(err)
	}
	return &fakeTarget{t: t, file: file, cur: cfg, changed: make(chan struct{}), pubSignal: make(chan struct{}, 64)}
}

func (f *fakeTarget) Current() *config.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur
}

func (f *fakeTarget) Candidate(overlay []byte, name string) (*config.Config, error) {
	cfg, _, err := config.Load(config.LoadOptions{File: f.file, FileExplicit: true, OverlayYAML: overlay, OverlayName: name})
	return cfg, err
}

func (f *fakeTarget) Apply(_ context.Context, cfg *config.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, cfg)
	if err := f.applyErr; err != nil {
		f.applyErr = nil
		return err
	}
	f.cur = cfg
	return nil
}

func (f *fakeTarget) Healthy(time.Time) (bool, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.healthy, f.changed
}

func (f *fakeTarget) setHealthy() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.healthy = true
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeTarget) PublishStatus(st Status) {
	f.mu.Lock()
	f.published = append(f.published, st)
	f.mu.Unlock()
	f.pubSignal <- struct{}{}
}

// waitPublished waits for a status in state for version.
func (f *fakeTarget) waitPublished(t *testing.T, version uint64, state string) Status {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		for _, st := range f.published {
			if st.Version == version && st.State == state {
				f.mu.Unlock()
				return st
			}
		}
		f.mu.Unlock()
		select {
		case <-f.pubSignal:
		case <-deadline:
			t.Fatalf("no %s status published for version %d; published %+v", state, version, f.published)
		}
	}
}

func (f *fakeTarget) applies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.applied)
}

// harness is a Manager over a real Store, a fakeTarget and a fakeClock,
// running until the test ends.
type harness struct {
	m      *Manager
	target *fakeTarget
	clock  *fakeClock
	dir    string
	cancel context.CancelFunc
	done   chan error
}

func startManager(t *testing.T, dir string, target *fakeTarget, clock *fakeClock) *harness {
	t.Helper()
	store, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(ManagerConfig{
		Store: store, DeviceID: "gw-0001", Allow: config.DefaultRemoteAllow, Confirm: time.Minute,
		Trusted: map[string]ed25519.PublicKey{"ops-2026": testKey(t).Public().(ed25519.PublicKey)},
		Target:  target, Clock: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{m: m, target: target, clock: clock, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- m.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

// stop ends Run as the agent's stop does, and waits for it.
func (h *harness) stop() {
	h.cancel()
	<-h.done
	h.done <- nil // a second stop returns at once
}

func (h *harness) submit(t *testing.T, data []byte) Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := h.m.Submit(ctx, data, "test")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// commit pushes version with overlay and lets it prove healthy.
func (h *harness) commit(t *testing.T, version uint64, overlay string) {
	t.Helper()
	if st := h.submit(t, push(t, version, overlay, nil, nil)); st.State != StateApplying {
		t.Fatalf("push %d: %+v, want applying", version, st)
	}
	h.clock.waitArmed(t)
	h.target.setHealthy()
	h.target.waitPublished(t, version, StateCommitted)
	h.target.mu.Lock()
	h.target.healthy = false
	h.target.mu.Unlock()
}

// files returns every file of dir and its bytes.
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func TestManagerCommitsAHealthyPush(t *testing.T) {
	h := startManager(t, t.TempDir(), newFakeTarget(t), newFakeClock(testNow))
	h.commit(t, 42, overlay)

	if got := h.target.Current().Uplink.Batch.MaxReadings; got != 7 {
		t.Fatalf("uplink.batch.max_readings in effect = %d, want 7", got)
	}
	data, path, err := ReadCommitted(h.dir)
	if err != nil || string(data) != overlay || filepath.Base(path) != OverlayFile {
		t.Fatalf("ReadCommitted = %q, %s, %v", data, path, err)
	}
	snap := h.m.Snapshot()
	if snap.Committed == nil || snap.Committed.Version != 42 || snap.Committed.KeyID != "ops-2026" || snap.Pending != nil {
		t.Fatalf("snapshot %+v", snap)
	}
	if snap.Outcomes[StateCommitted] != 1 || snap.Outcomes[StateRefused] != 0 {
		t.Fatalf("outcomes %v", snap.Outcomes)
	}
	// The applying status is published after the change: its own
	// acknowledgement is evidence of health for an idle gateway.
	h.target.waitPublished(t, 42, StateApplying)
}

// Every refusal names its reason and changes nothing: not the files, not
// the configuration in effect.
func TestManagerRefusalsChangeNothing(t *testing.T) {
	h := startManager(t, t.TempDir(), newFakeTarget(t), newFakeClock(testNow))
	h.commit(t, 41, "uplink: {batch: {max_readings: 5}}\n")
	applied := h.target.applies()

	for _, tc := range []struct {
		name   string
		data   []byte
		reason Reason
		detail string
	}{
		{"bad signature", push(t, 42, overlay, nil, otherKey(t)), ReasonSignature, ""},
		{"unknown key_id", push(t, 42, overlay, func(e *Envelope) { e.KeyID = "ops-2025" }, nil), ReasonUnknownKey, ""},
		{"another device's id", push(t, 42, overlay, func(e *Envelope) { e.DeviceID = "gw-0002" }, nil), ReasonDevice, ""},
		{"replayed version", push(t, 41, overlay, nil, nil), ReasonReplayed, ""},
		{"expired", push(t, 42, overlay, func(e *Envelope) {
			*e = *NewEnvelope(e.DeviceID, 42, testNow.Add(-48*time.Hour), testNow.Add(-time.Hour), e.KeyID, e.Config)
		}, nil), ReasonExpired, ""},
		{"issued in the future", push(t, 42, overlay, func(e *Envelope) { *e = *reissue(e, testNow.Add(time.Hour)) }, nil), ReasonFuture, ""},
		{"disallowed tls.ca", push(t, 42, "tls: {ca: /tmp/evil.pem}\n", nil, nil), ReasonNotAllowed, "tls.ca"},
		{"disallowed plugins.sha256", push(t, 42, "plugins: {sha256: {sim7600: "+strings.Repeat("a", 64)+"}}\n", nil, nil), ReasonNotAllowed, "plugins.sha256.sim7600"},
		{"invalid value", push(t, 42, "uplink:\n  batch:\n    max_readings: 0\n", nil, nil), ReasonInvalid,
			"remote config v42:3: uplink.batch.max_readings: 0 is out of range"},
		{"invalid YAML", push(t, 42, "uplink: [\n", nil, nil), ReasonInvalid, "remote config v42:"},
		{"65 KiB envelope", push(t, 42, "#"+strings.Repeat("x", 65<<10), nil, nil), ReasonTooLarge, ""},
		{"malformed JSON", []byte(`{"format":"cellgate-config/1",`), ReasonMalformed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := files(t, h.dir)
			st := h.submit(t, tc.data)
			if st.State != StateRefused || !strings.HasPrefix(st.Reason, string(tc.reason)+": ") || !strings.Contains(st.Reason, tc.detail) {
				t.Fatalf("status %+v, want refused for %s mentioning %q", st, tc.reason, tc.detail)
			}
			h.target.waitPublished(t, st.Version, StateRefused)
			if after := files(t, h.dir); !equalMaps(before, after) {
				t.Fatalf("a refused push changed the files:\nbefore %v\nafter  %v", before, after)
			}
			if n := h.target.applies(); n != applied {
				t.Fatalf("a refused push was applied (%d applies, want %d)", n, applied)
			}
			if got := h.target.Current().Uplink.Batch.MaxReadings; got != 5 {
				t.Fatalf("max_readings in effect %d after a refusal, want 5", got)
			}
		})
	}
	if got := h.m.Snapshot().Outcomes[StateRefused]; got != 12 {
		t.Fatalf("refused count %d, want 12", got)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// No acknowledged publish within the window: the previous configuration
// comes back, the committed one stays on disk, rolled_back is published.
func TestManagerRollsBackAnUnhealthyPush(t *testing.T) {
	h := startManager(t, t.TempDir(), newFakeTarget(t), newFakeClock(testNow))
	h.commit(t, 41, "uplink: {batch: {max_readings: 5}}\n")
	before := files(t, h.dir)
	good := h.target.Current()

	if st := h.submit(t, push(t, 42, "uplink: {mqtt: {topic: denied/topic}}\n", nil, nil)); st.State != StateApplying {
		t.Fatalf("push: %+v", st)
	}
	h.clock.waitArmed(t)
	if snap := h.m.Snapshot(); snap.Pending == nil || snap.Pending.Version != 42 || snap.ConfirmBy == nil {
		t.Fatalf("snapshot inside the window: %+v", snap)
	}
	if got := h.target.Current().Uplink.MQTT.Topic; got != "denied/topic" {
		t.Fatalf("topic in effect inside the window %q", got)
	}
	h.clock.Advance(59 * time.Second)
	h.clock.Advance(time.Second)
	st := h.target.waitPublished(t, 42, StateRolledBack)
	if !strings.HasPrefix(st.Reason, "unhealthy: ") || !strings.Contains(st.Reason, "1m0s") {
		t.Fatalf("rollback reason %q", st.Reason)
	}
	if h.target.Current() != good {
		t.Fatal("the previous configuration is not back in effect")
	}
	after := files(t, h.dir)
	if after[OverlayFile] != before[OverlayFile] {
		t.Fatalf("remote.yaml changed by a rolled back push: %q", after[OverlayFile])
	}
	if _, ok := after[pendingFile]; ok {
		t.Fatal("the pending overlay is still there")
	}
	snap := h.m.Snapshot()
	if snap.Committed.Version != 41 || snap.Pending != nil || snap.Outcomes[StateRolledBack] != 1 {
		t.Fatalf("snapshot after rollback %+v", snap)
	}
	// A version rolled back was never committed: the committed one is the
	// floor.
	h.commit(t, 42, overlay)
}

func TestManagerRollsBackWhenApplyFails(t *testing.T) {
	target := newFakeTarget(t)
	h := startManager(t, t.TempDir(), target, newFakeClock(testNow))
	target.applyErr = errors.New("inputs.http.listen 127.0.0.1:1: address already in use")
	h.submit(t, push(t, 42, "inputs: {http: {listen: '127.0.0.1:1'}}\n", nil, nil))
	st := target.waitPublished(t, 42, StateRolledBack)
	if !strings.HasPrefix(st.Reason, "apply_failed: ") || !strings.Contains(st.Reason, "address already in use") {
		t.Fatalf("reason %q", st.Reason)
	}
	if n := target.applies(); n != 2 {
		t.Fatalf("%d applies, want 2 (the push, then the previous configuration)", n)
	}
}

// An agent stopped (or killed) inside the window starts on the committed
// overlay and reports the pending push rolled back; a replay of the
// committed version is refused across the restart.
func TestManagerRestartInsideTheWindow(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock(testNow)
	h := startManager(t, dir, newFakeTarget(t), clock)
	h.commit(t, 41, "uplink: {batch: {max_readings: 5}}\n")
	h.submit(t, push(t, 42, overlay, nil, nil))
	clock.waitArmed(t)
	h.stop() // as SIGKILL would: the state on disk says pending

	data, _, err := ReadCommitted(dir)
	if err != nil || string(data) != "uplink: {batch: {max_readings: 5}}\n" {
		t.Fatalf("the overlay a restart loads: %q, %v; want version 41's", data, err)
	}
	target := newFakeTarget(t)
	h2 := startManager(t, dir, target, clock)
	st := target.waitPublished(t, 42, StateRolledBack)
	if !strings.HasPrefix(st.Reason, "restarted: ") || !strings.Contains(st.Reason, "committed version 41") {
		t.Fatalf("reason %q", st.Reason)
	}
	if snap := h2.m.Snapshot(); snap.Pending != nil || snap.Committed.Version != 41 || snap.Outcomes[StateRolledBack] != 1 {
		t.Fatalf("snapshot after restart %+v", snap)
	}
	if _, err := os.Stat(filepath.Join(dir, pendingFile)); err == nil {
		t.Fatal("the pending overlay survived the restart")
	}
	if st := h2.submit(t, push(t, 41, overlay, nil, nil)); st.State != StateRefused || !strings.HasPrefix(st.Reason, "replayed: ") {
		t.Fatalf("replay of the committed version after a restart: %+v", st)
	}
}

// A push inside another's window is refused as busy, unless its own
// checks refuse it first.
func TestManagerOnePushAtATime(t *testing.T) {
	h := startManager(t, t.TempDir(), newFakeTarget(t), newFakeClock(testNow))
	h.submit(t, push(t, 42, overlay, nil, nil))
	h.clock.waitArmed(t)
	if st := h.submit(t, push(t, 43, overlay, nil, nil)); st.State != StateRefused || !strings.HasPrefix(st.Reason, "busy: version 42") {
		t.Fatalf("second push: %+v", st)
	}
	if st := h.submit(t, push(t, 43, overlay, nil, otherKey(t))); !strings.HasPrefix(st.Reason, "bad_signature: ") {
		t.Fatalf("badly signed second push: %+v", st)
	}
	h.target.setHealthy()
	h.target.waitPublished(t, 42, StateCommitted)
}

// A start publishes the last outcome again only if the broker never
// acknowledged it: a retained committed status published again would read,
// to an operator pushing the same version, as the answer to the new push.
func TestManagerRepublishesOnlyWhatWasNotAcknowledged(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock(testNow)
	h := startManager(t, dir, newFakeTarget(t), clock)
	h.commit(t, 41, overlay)
	h.stop()
	// Not acknowledged: the next start publishes it.
	target := newFakeTarget(t)
	h = startManager(t, dir, target, clock)
	st := target.waitPublished(t, 41, StateCommitted)
	h.m.Published(st)
	testutil.Eventually(t, 10*time.Second, "the acknowledgement recorded on disk", func() bool {
		st, err := readState(dir)
		return err == nil && st.LastPublished
	})
	h.stop()
	// Acknowledged: the next start leaves it alone; the first status it
	// publishes is the answer to the next push.
	target = newFakeTarget(t)
	h = startManager(t, dir, target, clock)
	h.submit(t, push(t, 41, overlay, nil, nil))
	target.waitPublished(t, 41, StateRefused)
	target.mu.Lock()
	defer target.mu.Unlock()
	if len(target.published) != 1 {
		t.Fatalf("published %+v, want only the refusal", target.published)
	}
}
