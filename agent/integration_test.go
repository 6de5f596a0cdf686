package agent_test

// Integration tests of the whole data path with real parts: the cellgate
// binary and the sim7600 plugin (built here), the emulated modem on a real
// pty (sdk/modemsim, making real TLS connections), and a real mosquitto
// requiring client certificates. Readings go in by HTTP; a subscriber on the
// broker counts the distinct reading ids that come out.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

var binaries = testutil.BuildOnce(testutil.Cellgate, testutil.PluginSim7600)

func TestMain(m *testing.M) { testutil.Main(m) }

// world is one test's set of real parts.
type world struct {
	t      *testing.T
	dir    string
	pki    *plugintest.PKI
	modem  *modemsim.Modem
	broker *mosquitto
	sub    *subscriber
	agent  *agentProc
	mode   string
	ingest string // http://127.0.0.1:port
	status string // the status listener, http://127.0.0.1:port
}

func newWorld(t *testing.T, mode string) *world {
	t.Helper()
	return newWorldWith(t, mode, worldOptions{})
}

// worldOptions change what newWorldWith configures.
type worldOptions struct {
	// poll is modem.poll; 0 leaves the default.
	poll time.Duration
	// tokenFile is status.token_file; "" sets none.
	tokenFile string
	// model is the emulated modem's personality and modem.model; "" is
	// sim7600.
	model string
	// pluginDir is plugins.dir, "" the plugins built beside cellgate;
	// pluginSHA256, when set, pins model's plugin (plugins.sha256).
	pluginDir, pluginSHA256 string
	// batch is uplink.batch as flow YAML; "" is batches of 50 within 200ms.
	batch string
}

func newWorldWith(t *testing.T, mode string, o worldOptions) *world {
	t.Helper()
	bin, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	w := newWorldDir(t, mode)
	model, pluginDir, pins := "sim7600", bin, ""
	if o.model != "" {
		model = o.model
	}
	if o.pluginDir != "" {
		pluginDir = o.pluginDir
	}
	if o.pluginSHA256 != "" {
		pins = fmt.Sprintf(", sha256: {%s: %q}", model, o.pluginSHA256)
	}
	w.startModemsim(model, nil)
	port, statusPort := w.startBroker()
	poll := "30s"
	if o.poll > 0 {
		poll = o.poll.String()
	}
	batch := "{max_readings: 50, max_delay: 200ms}"
	if o.batch != "" {
		batch = o.batch
	}
	cfg := fmt.Sprintf(`device_id: it-gw
modem: {model: %s, port: %q, poll: %s}
plugins: {dir: %q%s}
tls: {mode: %s, ca: ca.pem, cert: client.pem, key: client.key}
inputs: {http: {listen: "127.0.0.1:%d"}}
status: {listen: "127.0.0.1:%d", token_file: %q}
spool: {dir: spool}
uplink:
  mqtt: {broker: "mqtts://%s", topic: "cellgate/{device_id}/telemetry", qos: 1}
  batch: %s
log: {level: debug}
`, model, filepath.Join(w.dir, "ttyUSB2"), poll, pluginDir, pins, mode, port, statusPort, o.tokenFile, w.broker.addr, batch)
	if err := os.WriteFile(filepath.Join(w.dir, "cellgate.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	w.agent = startAgent(t, bin, w.dir)
	w.waitHealthy()
	return w
}

func (w *world) waitHealthy() {
	w.t.Helper()
	testutil.Eventually(w.t, 30*time.Second, "the agent to serve "+w.ingest+"/healthz", func() bool {
		resp, err := http.Get(w.ingest + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// post sends n readings in one request and returns the ids the agent
// accepted (202: they are on disk).
func (w *world) post(n int, tag string) []string {
	w.t.Helper()
	ids, err := w.tryPost(n, tag)
	if err != nil {
		w.t.Fatal(err)
	}
	return ids
}

// tryPost is post for goroutines other than the test's: it returns the
// failure instead of ending the test.
func (w *world) tryPost(n int, tag string) ([]string, error) {
	var body bytes.Buffer
	body.WriteByte('[')
	for i := range n {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"sensor":"t%d","value":%d.5,"unit":"C","tags":{"run":%q}}`, i%4, i, tag)
	}
	body.WriteByte(']')
	ids, err := w.postJSON(body.String())
	if err == nil && len(ids) != n {
		err = fmt.Errorf("POST readings: %d ids, want %d", len(ids), n)
	}
	return ids, err
}

// postJSON posts body to the agent's ingest and returns the ids it
// accepted (202: they are on disk).
func (w *world) postJSON(body string) ([]string, error) {
	resp, err := http.Post(w.ingest+"/v1/readings", "application/json", strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("POST readings: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("POST readings: %d %s", resp.StatusCode, b)
	}
	var out struct {
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("POST readings: %s: %w", b, err)
	}
	return out.IDs, nil
}

// expectStatus asks the running agent with `cellgate status` until it
// reports n readings acknowledged and none pending, with the modem ready.
func (w *world) expectStatus(n int) {
	w.t.Helper()
	bin, _ := binaries()
	addr := strings.TrimPrefix(w.status, "http://")
	var out []byte
	defer func() {
		if w.t.Failed() {
			w.t.Logf("last cellgate status: %s", out)
		}
	}()
	var st struct {
		ModemReady bool `json:"modem_ready"`
		Spool      struct {
			Pending int            `json:"pending_readings"`
			Dropped map[string]int `json:"dropped"`
		} `json:"spool"`
		Uplink struct {
			Acked int `json:"acked_readings"`
		} `json:"uplink"`
	}
	testutil.Eventually(w.t, 20*time.Second, fmt.Sprintf("cellgate status to show %d readings acknowledged, none pending", n), func() bool {
		var err error
		out, err = exec.Command(filepath.Join(bin, "cellgate"), "status", "--addr", addr, "--json").Output()
		if err != nil {
			w.t.Fatalf("cellgate status: %v", err)
		}
		if err := json.Unmarshal(out, &st); err != nil {
			w.t.Fatalf("cellgate status --json: %v: %s", err, out)
		}
		return st.ModemReady && st.Spool.Pending == 0 && st.Uplink.Acked >= n
	})
	if d := st.Spool.Dropped; len(d) != 3 || d["damaged"] != 0 || d["drop_oldest"] != 0 || d["refused_upstream"] != 0 {
		w.t.Fatalf("status spool.dropped = %v, want the three causes at 0", d)
	}
	human, err := exec.Command(filepath.Join(bin, "cellgate"), "status", "--addr", addr).Output()
	if err != nil || !strings.Contains(string(human), "0 readings pending") {
		w.t.Fatalf("cellgate status: %v\n%s", err, human)
	}
	metrics := w.scrape()
	for _, want := range []string{
		fmt.Sprintf(`cellgate_uplink_acked_readings_total{device="it-gw"} %d`, st.Uplink.Acked),
		`cellgate_spool_pending_readings{device="it-gw"} 0`,
		`cellgate_spool_dropped_readings_total{cause="damaged",device="it-gw"} 0`,
		`cellgate_spool_dropped_readings_total{cause="drop_oldest",device="it-gw"} 0`,
		`cellgate_spool_dropped_readings_total{cause="refused_upstream",device="it-gw"} 0`,
		`cellgate_modem_ready{device="it-gw"} 1`,
		fmt.Sprintf(`cellgate_input_accepted_readings_total{device="it-gw",input="http"} %d`, n),
	} {
		if !strings.Contains(string(metrics), want) {
			w.t.Fatalf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
	w.expectMetricNames(metrics)
}

// expectDelivered waits until the subscriber saw every id and reports the
// duplicates (at-least-once delivery), which the test logs, never hides.
func (w *world) expectDelivered(ids []string, within time.Duration) {
	w.t.Helper()
	defer func() {
		if !w.t.Failed() {
			return
		}
		if missing := w.sub.missing(ids); len(missing) > 0 {
			w.t.Logf("%d of %d readings never arrived, e.g. %v", len(missing), len(ids), missing[:min(3, len(missing))])
		}
	}()
	testutil.Eventually(w.t, within, fmt.Sprintf("the subscriber to see all %d readings", len(ids)), func() bool {
		return len(w.sub.missing(ids)) == 0
	})
	total, distinct := w.sub.counts()
	w.t.Logf("delivered %d readings: %d messages received, %d distinct, %d duplicates", len(ids), total, distinct, total-distinct)
}

func TestReadingsReachMosquittoThroughTheModem(t *testing.T) {
	for _, mode := range []string{"modem", "host"} {
		t.Run(mode+" TLS", func(t *testing.T) {
			w := newWorld(t, mode)
			ids := w.post(200, "basic")
			w.expectDelivered(ids, 60*time.Second)
			if c := w.modem.Counters(); c.NetTxBytes == 0 {
				t.Fatal("nothing crossed the modem's socket: the readings did not go through the modem")
			}
			w.expectStatus(len(ids))
		})
	}
}

func TestBrokerRestartLosesNothing(t *testing.T) {
	w := newWorld(t, "modem")
	ids := w.post(100, "before")
	w.expectDelivered(ids[:1], 60*time.Second)
	w.broker.restart(t)
	ids = append(ids, w.post(100, "during")...)
	w.expectDelivered(ids, 90*time.Second)
}

func TestAgentSIGKILLLosesNothing(t *testing.T) {
	w := newWorld(t, "modem")
	ids := w.post(100, "first")
	w.expectDelivered(ids[:1], 60*time.Second) // the uplink is up and sending
	ids = append(ids, w.post(100, "in flight")...)
	w.agent.kill(t) // mid-stream: some of these are not acknowledged yet
	bin, _ := binaries()
	w.agent = startAgent(t, bin, w.dir)
	w.waitHealthy()
	ids = append(ids, w.post(100, "second")...)
	w.expectDelivered(ids, 90*time.Second)
}

func TestPluginKilledIsRestarted(t *testing.T) {
	w := newWorld(t, "modem")
	ids := w.post(50, "first")
	w.expectDelivered(ids, 60*time.Second)
	pid := w.agent.pluginPID(t)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, w.post(50, "second")...)
	w.expectDelivered(ids, 90*time.Second)
	if p := w.agent.pluginPID(t); p == pid {
		t.Fatalf("plugin pid %d still the killed one", p)
	}
}

// --- the agent process ---

type agentProc struct {
	cmd *exec.Cmd
	buf *testutil.SyncBuffer
}

func startAgent(t *testing.T, bin, dir string) *agentProc {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "cellgate"), "run", "--config", filepath.Join(dir, "cellgate.yaml"))
	buf := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agentProc{cmd: cmd, buf: buf}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", a.log())
		}
	})
	return a
}

func (a *agentProc) log() string { return a.buf.String() }

func (a *agentProc) kill(t *testing.T) {
	t.Helper()
	a.cmd.Process.Kill()
	a.cmd.Wait()
}

// pluginPID finds the agent's plugin child process.
func (a *agentProc) pluginPID(t testing.TB) int {
	t.Helper()
	var pid int
	testutil.Eventually(t, 30*time.Second, "a plugin process under the agent", func() bool {
		pid = childNamed(a.cmd.Process.Pid, "cellgate-plugin")
		return pid != 0
	})
	return pid
}

// childNamed returns the pid of a child of parent whose command name
// contains name, or 0.
func childNamed(parent int, name string) int {
	child := 0
	eachProc("stat", func(pid int, s string) bool {
		// pid (comm) state ppid ...
		rp := strings.LastIndexByte(s, ')')
		if rp < 0 {
			return false
		}
		fields := strings.Fields(s[rp+1:])
		if len(fields) < 2 || !strings.Contains(s[:rp], name) {
			return false
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == parent {
			child = pid
			return true
		}
		return false
	})
	return child
}

// --- mosquitto ---

type mosquitto struct {
	addr string
	conf string
	cmd  *exec.Cmd
	out  *testutil.SyncBuffer
}

// startMosquitto runs mosquitto on port (0: a free one) with the PKI in
// dir, requiring client certificates; extra lines go at the end of its
// configuration (an acl_file).
func startMosquitto(t *testing.T, dir string, port int, extra ...string) *mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr != nil {
			t.Fatal("mosquitto is not installed: run make deps")
		}
		bin = "/usr/sbin/mosquitto"
	}
	if port == 0 {
		port = testutil.FreePort(t)
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	userLine := ""
	if os.Geteuid() == 0 {
		userLine = "user root\n"
	}
	text := fmt.Sprintf(`%slistener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
allow_anonymous false
persistence true
persistence_location %s/
log_dest stderr
log_type error
log_type warning
`, userLine, port, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"), dir)
	for _, l := range extra {
		text += l + "\n"
	}
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &mosquitto{addr: fmt.Sprintf("127.0.0.1:%d", port), conf: conf}
	m.start(t, bin)
	t.Cleanup(func() { m.stop() })
	return m
}

func (m *mosquitto) start(t *testing.T, bin string) {
	t.Helper()
	m.out = &testutil.SyncBuffer{}
	m.cmd = exec.Command(bin, "-c", m.conf)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := testutil.WaitListening(m.addr, 10*time.Second, nil); err != nil {
		t.Fatalf("mosquitto: %v\n%s", err, m.out.String())
	}
}

func (m *mosquitto) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM) // saves its persistence file
	done := make(chan struct{})
	go func() { m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		<-done
	}
	m.cmd = nil
}

func (m *mosquitto) restart(t *testing.T) {
	t.Helper()
	bin := "/usr/sbin/mosquitto"
	if p, err := exec.LookPath("mosquitto"); err == nil {
		bin = p
	}
	m.stop()
	m.start(t, bin)
}

// --- the subscriber ---

// subscriber counts readings by id, across reconnects (persistent session,
// QoS 1).
type subscriber struct {
	mu       sync.Mutex
	seen     map[string]int
	total    int
	sizes    []int // readings per message, in arrival order
	contexts map[uint32]*reading.CompactContext
	cm       *autopaho.ConnectionManager
}

func newSubscriber(t *testing.T, p *plugintest.PKI, addr string) *subscriber {
	t.Helper()
	s := &subscriber{seen: map[string]int{}}
	cert := p.Client.TLSCertificate(t)
	u, _ := url.Parse("tls://" + addr)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := autopaho.ClientConfig{
		ServerUrls: []*url.URL{u},
		TlsCfg:     &tls.Config{RootCAs: p.CertPool(), Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"},
		KeepAlive:  10,
		// A session that began without clean start is what mosquitto 2.0
		// persists across its restart; with clean start, messages
		// published between the broker's return and our resubscription
		// would be dropped, and look like the agent lost them.
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         3600,
		ReconnectBackoff:              autopaho.NewConstantBackoff(200 * time.Millisecond),
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			sctx, c := context.WithTimeout(ctx, 10*time.Second)
			defer c()
			cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
				{Topic: "cellgate/+/telemetry", QoS: 1}, {Topic: "cellgate/+/telemetry/ctx/+", QoS: 1}}})
		},
		ClientConfig: paho.ClientConfig{
			ClientID: "it-subscriber",
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				ids, err := s.readingIDs(pr.Packet.Topic, pr.Packet.Payload)
				if err != nil {
					t.Errorf("subscriber: %s: %v", pr.Packet.Topic, err)
					return true, nil
				}
				if ids == nil {
					return true, nil // a context
				}
				s.mu.Lock()
				for _, id := range ids {
					s.seen[id]++
					s.total++
				}
				s.sizes = append(s.sizes, len(ids))
				s.mu.Unlock()
				return true, nil
			}},
		},
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := cm.AwaitConnection(wctx); err != nil {
		cancel()
		t.Fatalf("subscriber could not connect to mosquitto: %v", err)
	}
	s.cm = cm
	t.Cleanup(func() {
		dctx, dc := context.WithTimeout(context.Background(), 5*time.Second)
		defer dc()
		cm.Disconnect(dctx)
		cancel()
		<-cm.Done()
	})
	return s
}

// readingIDs returns the ids of the readings in a batch: JSON, or compact
// with its context taken from the context topic (the agent publishes the
// context, retained, before the first batch that refers to it). A context
// is kept for the batches after it, and gives nil ids.
func (s *subscriber) readingIDs(topic string, payload []byte) ([]string, error) {
	if strings.Contains(topic, "/ctx/") {
		c, err := reading.ParseCompactContext(payload)
		if err != nil {
			return nil, fmt.Errorf("a context that does not parse: %w", err)
		}
		s.mu.Lock()
		if s.contexts == nil {
			s.contexts = map[uint32]*reading.CompactContext{}
		}
		s.contexts[c.ID()] = c
		s.mu.Unlock()
		return nil, nil
	}
	if len(payload) > 0 && payload[0] == '{' {
		var batch struct {
			Readings []struct {
				ID string `json:"id"`
			} `json:"readings"`
		}
		if err := json.Unmarshal(payload, &batch); err != nil {
			return nil, fmt.Errorf("payload is not a JSON batch: %w", err)
		}
		ids := make([]string, len(batch.Readings))
		for i, r := range batch.Readings {
			ids[i] = r.ID
		}
		return ids, nil
	}
	b, err := reading.DecodeCompact(payload, func(id uint32) (*reading.CompactContext, bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		c, ok := s.contexts[id]
		return c, ok
	})
	if err != nil {
		return nil, fmt.Errorf("payload is neither JSON nor a compact batch whose context arrived first: %w", err)
	}
	ids := make([]string, len(b.Readings))
	for i, r := range b.Readings {
		ids[i] = r.ID
	}
	return ids, nil
}

func (s *subscriber) missing(ids []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range ids {
		if s.seen[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

func (s *subscriber) counts() (total, distinct int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, len(s.seen)
}
