package agent_test

// End-to-end tests of remote configuration (issue 7): the cellgate binary
// and the sim7600 plugin over the emulated modem, a real mosquitto with
// client certificates and an ACL, pushes made and sent with the operator's
// own commands (cellgate config keygen, sign, push, apply), outcomes read
// from the status topic and cellgate status.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// remoteConfirm is the confirm window of these tests: long enough for a
// healthy push to prove itself over the emulated modem, short enough to
// wait out a rollback.
const remoteConfirm = 4 * time.Second

// remoteACL lets the gateway (and the test's clients, which share its
// certificate) use cellgate/# and nothing else: a publish elsewhere gets
// PUBACK 0x87.
const remoteACL = "pattern readwrite cellgate/#\n"

// remoteWorld is a world whose agent takes remote configuration, signed
// with a key made by `cellgate config keygen`.
type remoteWorld struct {
	*world
	bin      string // the directory of the cellgate binary under test
	procs    []*agentProc
	key      string // the private key file
	statuses *statusWatcher
	ports    [2]int // the HTTP input's first port, and a free one to move to
}

func newRemoteWorld(t *testing.T) *remoteWorld {
	t.Helper()
	plugins, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	// The agent is built with the race detector when the test is, and a
	// race ends it: reconfigure swaps parts under readers' feet.
	bin := filepath.Dir(testutil.Build(t, testutil.Cellgate))
	for _, kv := range testutil.RaceEnv {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	w := &remoteWorld{world: newWorldDir(t, "modem"), bin: bin}
	t.Cleanup(func() {
		for _, p := range w.procs {
			if strings.Contains(p.log(), "DATA RACE") {
				t.Errorf("the agent raced:\n%s", p.log())
			}
		}
	})
	w.startModemsim("sim7600", nil)
	acl := filepath.Join(w.dir, "acl")
	if err := os.WriteFile(acl, []byte(remoteACL), 0o644); err != nil {
		t.Fatal(err)
	}
	ingestPort, statusPort := w.startBroker("acl_file " + acl)
	w.statuses = newStatusWatcher(t, w.pki, w.broker.addr, "cellgate/it-gw/config/status")

	w.key = filepath.Join(w.dir, "ops-test")
	out := w.cellgate(0, "config", "keygen", "--out", w.key)
	pub, err := os.ReadFile(w.key + ".pub")
	if err != nil || !strings.Contains(out, strings.TrimSpace(string(pub))) {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	w.key += ".key"
	w.ports = [2]int{ingestPort, testutil.FreePort(t)}
	cfg := fmt.Sprintf(`device_id: it-gw
modem: {model: sim7600, port: %q}
plugins: {dir: %q}
tls: {mode: modem, ca: ca.pem, cert: client.pem, key: client.key}
inputs: {http: {listen: "127.0.0.1:%d"}}
status: {listen: "127.0.0.1:%d"}
spool: {dir: spool}
uplink:
  mqtt: {broker: "mqtts://%s", topic: "cellgate/{device_id}/telemetry", qos: 1}
  batch: {max_readings: 50, max_delay: 200ms}
log: {level: debug}
remote_config:
  enabled: true
  trusted_keys: {ops-test: %q}
  confirm: %s
  dir: state
`, filepath.Join(w.dir, "ttyUSB2"), plugins, w.ports[0], statusPort, w.broker.addr, strings.TrimSpace(string(pub)), remoteConfirm)
	if err := os.WriteFile(filepath.Join(w.dir, "cellgate.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	w.start()
	return w
}

// start starts the agent (again) and waits until it serves and listens on
// its config topic.
func (w *remoteWorld) start() {
	w.t.Helper()
	w.agent = startAgent(w.t, w.bin, w.dir)
	w.procs = append(w.procs, w.agent)
	w.waitHealthy()
	w.waitSubscribed()
}

// waitSubscribed waits until the agent subscribed to its config topic: a
// push published before that, on the very first connection, would find no
// subscription to deliver it to (later ones are kept by the session).
func (w *remoteWorld) waitSubscribed() {
	w.t.Helper()
	testutil.Eventually(w.t, 30*time.Second, "the agent to subscribe to its config topic", func() bool {
		return strings.Contains(w.agent.log(), "msg=subscribed device=it-gw part=uplink uplink=mqtt")
	})
}

// cellgate runs the cellgate command and returns its output (stdout then
// stderr); it fails the test unless the exit status is want.
func (w *remoteWorld) cellgate(want int, args ...string) string {
	w.t.Helper()
	out, code, err := w.run(args...)
	if err != nil {
		w.t.Fatalf("cellgate %v: %v", args, err)
	}
	if code != want {
		w.t.Fatalf("cellgate %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, out)
	}
	return out
}

// run is cellgate for any goroutine: it returns what the test checks.
func (w *remoteWorld) run(args ...string) (string, int, error) {
	cmd := exec.Command(filepath.Join(w.bin, "cellgate"), args...)
	cmd.Dir = w.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stdout.String() + stderr.String(), ee.ExitCode(), nil
	}
	return stdout.String() + stderr.String(), 0, err
}

// sign writes overlay to a file and signs it with `cellgate config sign`,
// with key (the world's when empty); it returns the envelope's file.
func (w *remoteWorld) sign(version int, overlay, key string) string {
	w.t.Helper()
	if key == "" {
		key = w.key
	}
	name := filepath.Join(w.dir, fmt.Sprintf("overlay-%d-%d.yaml", version, time.Now().UnixNano()))
	if err := os.WriteFile(name, []byte(overlay), 0o644); err != nil {
		w.t.Fatal(err)
	}
	env := w.cellgate(0, "config", "sign", "--key", key, "--key-id", "ops-test", "--version", fmt.Sprint(version), "--device", "it-gw", "--expires", "1h", name)
	push := strings.TrimSuffix(name, ".yaml") + ".json"
	if err := os.WriteFile(push, []byte(env), 0o644); err != nil {
		w.t.Fatal(err)
	}
	return push
}

// push sends an envelope with `cellgate config push` and returns its
// output and how long it took to the final status.
func (w *remoteWorld) push(file string, want int) (string, time.Duration) {
	w.t.Helper()
	start := time.Now()
	out := w.cellgate(want, "config", "push", "--broker", "mqtts://"+w.broker.addr,
		"--ca", filepath.Join(w.dir, "ca.pem"), "--cert", filepath.Join(w.dir, "client.pem"), "--key", filepath.Join(w.dir, "client.key"),
		"--timeout", "60s", file)
	return out, time.Since(start)
}

// remoteStatus reads remote_config of `cellgate status --json`.
func (w *remoteWorld) remoteStatus() remoteStatusJSON {
	w.t.Helper()
	out := w.cellgate(0, "status", "--json", "--addr", strings.TrimPrefix(w.status, "http://"))
	var st struct {
		RemoteConfig remoteStatusJSON `json:"remote_config"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		w.t.Fatalf("cellgate status --json: %v\n%s", err, out)
	}
	return st.RemoteConfig
}

type remoteStatusJSON struct {
	CommittedVersion int    `json:"committed_version"`
	KeyID            string `json:"key_id"`
	Pending          *struct {
		Version int `json:"version"`
	} `json:"pending"`
	Last   *pushStatus      `json:"last"`
	Pushes map[string]int64 `json:"pushes"`
}

// pushStatus is a status as the gateway publishes it.
type pushStatus struct {
	Version  int       `json:"version"`
	State    string    `json:"state"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
	retained bool
}

// feeder posts readings all along, at the input's first address or,
// once that is refused, at the second: a sensor that retries.
type feeder struct {
	w     *remoteWorld
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	ids   []string
	moved atomic.Bool
}

func (w *remoteWorld) feed() *feeder {
	f := &feeder{w: w, stop: make(chan struct{}), done: make(chan struct{})}
	base := *w.world // copied here: the test moves its own ingest
	go func() {
		defer close(f.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-f.stop:
				return
			case <-tick.C:
			}
			for _, port := range f.order() {
				at := base
				at.ingest = fmt.Sprintf("http://127.0.0.1:%d", port)
				ids, err := at.tryPost(5, fmt.Sprintf("feed-%d", n))
				if err == nil {
					f.mu.Lock()
					f.ids = append(f.ids, ids...)
					f.mu.Unlock()
					break
				}
			}
		}
	}()
	return f
}

func (f *feeder) order() []int {
	if f.moved.Load() {
		return []int{f.w.ports[1], f.w.ports[0]}
	}
	return []int{f.w.ports[0], f.w.ports[1]}
}

// finish stops the feeder and returns every id an input accepted (202).
func (f *feeder) finish() []string {
	close(f.stop)
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ids...)
}

func (f *feeder) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ids)
}

// A push commits and takes effect at once: the next batches hold at most
// the new max_readings, the HTTP input moves, and every reading accepted
// before, during and after the change arrives.
func TestRemotePushCommitsLive(t *testing.T) {
	w := newRemoteWorld(t)
	f := w.feed()
	testutil.Eventually(t, 30*time.Second, "readings flowing before the push", func() bool {
		n, _ := w.sub.counts()
		return n > 50
	})
	// keepalive too: the uplink is rebuilt over a new modem session, with
	// its subscription, while the plugin and the spool stay.
	push := w.sign(1, fmt.Sprintf("uplink:\n  batch: {max_readings: 7}\n  mqtt: {keepalive: 30s}\ninputs:\n  http: {listen: \"127.0.0.1:%d\"}\n", w.ports[1]), "")
	w.sub.mu.Lock()
	before := len(w.sub.sizes)
	w.sub.mu.Unlock()
	out, took := w.push(push, 0)
	t.Logf("cellgate config push took %v to commit:\n%s", took, out)
	if !strings.Contains(out, `"state":"applying"`) || !strings.Contains(out, `"state":"committed"`) {
		t.Fatalf("push output lacks applying and committed:\n%s", out)
	}
	f.moved.Store(true)
	w.ingest = fmt.Sprintf("http://127.0.0.1:%d", w.ports[1])
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", w.ports[0]), time.Second); err == nil {
		c.Close()
		t.Fatal("the HTTP input still listens at its old address")
	}
	// Keep feeding the moved input for a while, then check every reading.
	target := f.count() + 200
	testutil.Eventually(t, 30*time.Second, "readings accepted at the new address", func() bool { return f.count() > target })
	ids := f.finish()
	w.expectDelivered(ids, 60*time.Second)

	w.sub.mu.Lock()
	after := append([]int(nil), w.sub.sizes[before:]...)
	w.sub.mu.Unlock()
	// Batches in flight across the change were sent under the old size;
	// the forwarder held before the change, so the last few batches are
	// all the new size.
	tail := after[len(after)-10:]
	for _, n := range tail {
		if n > 7 {
			t.Fatalf("a batch of %d readings after uplink.batch.max_readings became 7: last sizes %v", n, tail)
		}
	}
	st := w.remoteStatus()
	if st.CommittedVersion != 1 || st.KeyID != "ops-test" || st.Pending != nil || st.Pushes["committed"] != 1 {
		t.Fatalf("status after the push: %+v", st)
	}
	human := w.cellgate(0, "status", "--addr", strings.TrimPrefix(w.status, "http://"))
	if !strings.Contains(human, "remote:   version 1 (key ops-test)") {
		t.Fatalf("cellgate status:\n%s", human)
	}
	metrics := w.metrics()
	for _, want := range []string{
		`cellgate_remote_config_pushes_total{device="it-gw",outcome="committed"} 1`,
		`cellgate_remote_config_committed_version{device="it-gw"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
	w.statuses.expect(t, 1, "committed")
	// The rebuilt uplink still takes pushes on the config topic.
	if out, _ := w.push(w.sign(2, "uplink: {batch: {max_readings: 9}}\n", ""), 0); !strings.Contains(out, `"state":"committed"`) {
		t.Fatalf("a push after the uplink was rebuilt:\n%s", out)
	}
}

func (w *remoteWorld) metrics() string {
	w.t.Helper()
	resp, err := http.Get(w.status + "/metrics")
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatal(err)
	}
	return string(b)
}

// pythonSigned signs an envelope with the Python snippet of
// docs/remote-config.md.
func pythonSigned(t *testing.T, keyFile, keyID string, version int, device, overlay string) []byte {
	t.Helper()
	overlayFile := filepath.Join(t.TempDir(), "overlay.yaml")
	if err := os.WriteFile(overlayFile, []byte(overlay), 0o600); err != nil {
		t.Fatal(err)
	}
	script := testutil.DocBlock(t, "../docs/remote-config.md", "sign.py")
	return testutil.RunPython(t, script, keyFile, keyID, fmt.Sprint(version), device, overlayFile)
}

// stopGracefully stops the agent as systemctl stop does, and waits.
func (a *agentProc) stopGracefully(t *testing.T) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("the agent did not stop within 20s of SIGTERM:\n%s", a.log())
	}
}

// Refusals end to end: a bad signature, and a replay after a restart,
// each with its reason on the status topic and nothing changed; a push
// applied on the gateway itself (cellgate config apply) goes through the
// same checks; an envelope signed by the documented Python snippet is
// accepted.
func TestRemotePushRefusalsAndReplayAfterRestart(t *testing.T) {
	w := newRemoteWorld(t)
	other := filepath.Join(w.dir, "intruder")
	w.cellgate(0, "config", "keygen", "--out", other)

	out, _ := w.push(w.sign(1, "uplink: {batch: {max_readings: 3}}\n", other+".key"), 1)
	if !strings.Contains(out, `"state":"refused","reason":"bad_signature: `) {
		t.Fatalf("badly signed push:\n%s", out)
	}
	w.statuses.expect(t, 1, "refused")
	if st := w.remoteStatus(); st.CommittedVersion != 0 || st.Pushes["refused"] != 1 {
		t.Fatalf("status after a refusal: %+v", st)
	}

	// The same checks on the gateway itself.
	good := w.sign(1, "uplink: {batch: {max_readings: 3}}\n", "")
	out = w.cellgate(0, "config", "apply", "--addr", strings.TrimPrefix(w.status, "http://"), good)
	if !strings.Contains(out, `"state":"committed"`) {
		t.Fatalf("config apply:\n%s", out)
	}
	ids := w.post(9, "after-apply")
	w.expectDelivered(ids, 30*time.Second)

	// A restart keeps the committed version as the floor.
	w.agent.stopGracefully(t)
	w.start()
	out, _ = w.push(good, 1)
	if !strings.Contains(out, `"reason":"replayed: version 1 is not above the committed version 1"`) {
		t.Fatalf("replay after a restart:\n%s", out)
	}
	if st := w.remoteStatus(); st.CommittedVersion != 1 || st.Last == nil || st.Last.State != "refused" {
		t.Fatalf("status after the replay: %+v", st)
	}

	// Signed outside Go.
	py := pythonSigned(t, w.key, "ops-test", 2, "it-gw", "log: {level: info}\n")
	file := filepath.Join(w.dir, "python.json")
	if err := os.WriteFile(file, py, 0o644); err != nil {
		t.Fatal(err)
	}
	w.cellgate(0, "config", "verify", "--trusted", strings.TrimSuffix(w.key, ".key")+".pub", file)
	if out, _ := w.push(file, 0); !strings.Contains(out, `"state":"committed"`) {
		t.Fatalf("python-signed push:\n%s", out)
	}
	if st := w.remoteStatus(); st.CommittedVersion != 2 {
		t.Fatalf("status after the python-signed push: %+v", st)
	}
}

// A push that breaks connectivity (a topic the broker's ACL refuses:
// PUBACK 0x87) is rolled back within the confirm window while readings
// keep flowing; an agent killed inside the window comes back on the
// committed configuration and reports the push rolled back.
func TestRemotePushBreakingConnectivityRollsBack(t *testing.T) {
	w := newRemoteWorld(t)
	f := w.feed()
	testutil.Eventually(t, 30*time.Second, "readings flowing before the push", func() bool {
		n, _ := w.sub.counts()
		return n > 50
	})
	broken := "uplink:\n  mqtt: {topic: \"denied/{device_id}/telemetry\"}\n"
	out, took := w.push(w.sign(1, broken, ""), 1)
	t.Logf("cellgate config push took %v to roll back:\n%s", took, out)
	if !strings.Contains(out, `"state":"rolled_back","reason":"unhealthy: no publish acknowledged upstream within 4s`) {
		t.Fatalf("broken push:\n%s", out)
	}
	if took > remoteConfirm+5*time.Second {
		t.Fatalf("the rollback took %v with a %v confirm window", took, remoteConfirm)
	}
	if st := w.remoteStatus(); st.CommittedVersion != 0 || st.Pending != nil || st.Pushes["rolled_back"] != 1 {
		t.Fatalf("status after the rollback: %+v", st)
	}
	target := f.count() + 100
	testutil.Eventually(t, 30*time.Second, "readings accepted after the rollback", func() bool { return f.count() > target })
	ids := f.finish()
	w.expectDelivered(ids, 60*time.Second)

	// SIGKILL inside the window of the same broken push, version 2.
	w.statuses.reset()
	file := w.sign(2, broken, "")
	applied := make(chan string, 1)
	go func() {
		out, _, _ := w.run("config", "apply", "--addr", strings.TrimPrefix(w.status, "http://"), "--timeout", "30s", file)
		applied <- out
	}()
	w.statuses.expect(t, 2, "applying")
	w.agent.kill(t)
	killedAt := time.Now()
	w.start()
	st := w.statuses.expect(t, 2, "rolled_back")
	if !strings.HasPrefix(st.Reason, "restarted: ") {
		t.Fatalf("after SIGKILL: %+v", st)
	}
	t.Logf("rolled_back reported %v after the SIGKILL", time.Since(killedAt))
	if rs := w.remoteStatus(); rs.CommittedVersion != 0 || rs.Pending != nil || rs.Last == nil || rs.Last.Version != 2 || rs.Last.State != "rolled_back" {
		t.Fatalf("status after the restart: %+v", rs)
	}
	ids = w.post(20, "after-kill")
	w.expectDelivered(ids, 60*time.Second)
	// The operator's `cellgate config apply` followed the agent across its
	// restart and says how the push ended.
	if out := <-applied; !strings.Contains(out, `"state":"rolled_back","reason":"restarted: `) {
		t.Fatalf("cellgate config apply across the SIGKILL:\n%s", out)
	}
}

// --- the status topic ---

// statusWatcher records what the gateway publishes on its status topic.
type statusWatcher struct {
	mu   sync.Mutex
	seen []pushStatus
	wake chan struct{}
}

func newStatusWatcher(t *testing.T, p *plugintest.PKI, addr, topic string) *statusWatcher {
	t.Helper()
	s := &statusWatcher{wake: make(chan struct{}, 1)}
	watchTopic(t, p, addr, "it-status-watcher", topic, func(pr paho.PublishReceived) {
		var st pushStatus
		if err := json.Unmarshal(pr.Packet.Payload, &st); err != nil {
			t.Errorf("status topic: %v: %s", err, pr.Packet.Payload)
			return
		}
		st.retained = pr.Packet.Retain
		s.mu.Lock()
		s.seen = append(s.seen, st)
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	})
	return s
}

// expect waits for a status of version in state and returns it.
func (s *statusWatcher) expect(t *testing.T, version int, state string) pushStatus {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		s.mu.Lock()
		for _, st := range s.seen {
			if st.Version == version && st.State == state {
				s.mu.Unlock()
				return st
			}
		}
		seen := append([]pushStatus(nil), s.seen...)
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-deadline:
			t.Fatalf("no %s status for version %d on the status topic; seen %+v", state, version, seen)
		}
	}
}

func (s *statusWatcher) reset() {
	s.mu.Lock()
	s.seen = nil
	s.mu.Unlock()
}
