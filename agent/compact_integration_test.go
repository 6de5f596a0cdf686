package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// TestCompactBatchesDecodeOutsideTheAgent runs the real agent with
// encoding: compact against mosquitto and reads what reaches the broker
// with tools that share nothing with the agent: mosquitto_sub records
// every message on the telemetry topic and its context topics (payload in
// hex, content type, retained flag), and the Python decoder written from
// docs/payloads.md decodes each batch with the contexts as published.
// Every reading posted comes back exactly once with the fields it was
// given; batches carry no content type (the payload says what it is); the
// contexts are retained, so a consumer that starts later finds them; and
// `cellgate decode --context` agrees with Python line for line.
func TestCompactBatchesDecodeOutsideTheAgent(t *testing.T) {
	for _, mode := range []string{"modem", "host"} {
		t.Run(mode+" TLS", func(t *testing.T) {
			w := newWorldWith(t, mode, worldOptions{batch: "{max_readings: 40, max_delay: 300ms, encoding: compact}"})
			sub := startMosquittoSub(t, w, "cellgate/it-gw/telemetry/#")
			// Readings before mosquitto_sub has subscribed would be missed:
			// post single probes until one arrives.
			var probes []string
			testutil.Eventually(t, 30*time.Second, "mosquitto_sub to receive a first batch", func() bool {
				probes = append(probes, w.postBody(`{"sensor":"probe","value":0}`)...)
				time.Sleep(300 * time.Millisecond)
				return sub.batches() > 0
			})
			want := map[string]string{} // id -> sensor/value as posted
			for round := range 6 {
				var body bytes.Buffer
				var posted []string
				body.WriteByte('[')
				for i := range 50 {
					if i > 0 {
						body.WriteByte(',')
					}
					sensor := []string{"t1", "t2", "h1", "p1"}[i%4]
					if round >= 4 && i%10 == 0 {
						sensor = fmt.Sprintf("late-%d", round) // a sensor the first context does not know
					}
					value := fmt.Sprintf("%d.%d", 20+round, i%10)
					fmt.Fprintf(&body, `{"sensor":%q,"value":%s,"unit":"C","tags":{"site":"depot-7"}}`, sensor, value)
					posted = append(posted, sensor+"="+value)
				}
				body.WriteByte(']')
				for i, id := range w.postBody(body.String()) {
					want[id] = posted[i]
				}
			}
			allIDs := append(slices.Collect(maps.Keys(want)), probes...)
			w.expectDelivered(allIDs, 60*time.Second)
			testutil.Eventually(t, 20*time.Second, "mosquitto_sub to have every reading", func() bool {
				return sub.readingsAtLeast(t, w, len(allIDs))
			})
			got := sub.decodeWithPython(t, w)
			seen := map[string]int{}
			for _, line := range got {
				var r struct {
					DeviceID string `json:"device_id"`
					Reading  struct {
						ID     string          `json:"id"`
						Sensor string          `json:"sensor"`
						Value  json.RawMessage `json:"value"`
						Unit   string          `json:"unit"`
						Tags   map[string]string
					} `json:"reading"`
				}
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatalf("python printed %q: %v", line, err)
				}
				seen[r.Reading.ID]++
				if w, ok := want[r.Reading.ID]; ok {
					if got := r.Reading.Sensor + "=" + string(r.Reading.Value); got != w || r.DeviceID != "it-gw" || r.Reading.Unit != "C" || r.Reading.Tags["site"] != "depot-7" {
						t.Errorf("reading %s decoded as %s (device %s, unit %q, tags %v), posted %s", r.Reading.ID, got, r.DeviceID, r.Reading.Unit, r.Reading.Tags, w)
					}
				}
			}
			for id := range want {
				if seen[id] != 1 {
					t.Errorf("reading %s decoded %d times by python, want once", id, seen[id])
				}
			}
			if sub.contentTyped > 0 {
				t.Errorf("%d batches carried a content type; compact batches over MQTT go without", sub.contentTyped)
			}
			if sub.contextCount() < 1 {
				t.Error("no context was published")
			}
			later := startMosquittoSub(t, w, "cellgate/it-gw/telemetry/ctx/+")
			testutil.Eventually(t, 20*time.Second, "a consumer that starts later to get the contexts, retained", func() bool {
				ms := later.messages()
				return len(ms) == sub.contextCount() && !slices.ContainsFunc(ms, func(m subMessage) bool { return !m.retained })
			})
			t.Logf("%d readings in %d batches, %d contexts (%v bytes)", len(got), sub.batches(), sub.contextCount(), sub.contextSizes())
		})
	}
}

// postBody posts a JSON body to the agent's ingest and returns the ids.
func (w *world) postBody(body string) []string {
	w.t.Helper()
	ids, err := w.postJSON(body)
	if err != nil {
		w.t.Fatal(err)
	}
	return ids
}

// mosquittoSub is a running mosquitto_sub printing "topic retained
// content-type hex-payload" per message.
type mosquittoSub struct {
	mu           sync.Mutex
	lines        []string
	contentTyped int
}

func startMosquittoSub(t *testing.T, w *world, filter string) *mosquittoSub {
	t.Helper()
	bin, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		t.Fatal("mosquitto_sub is not installed (Debian mosquitto-clients): run make deps")
	}
	host, port, _ := strings.Cut(w.broker.addr, ":")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-i", "ext-sub-"+strings.ReplaceAll(t.Name(), "/", "-"),
		"--cafile", filepath.Join(w.dir, "ca.pem"), "--cert", filepath.Join(w.dir, "client.pem"), "--key", filepath.Join(w.dir, "client.key"),
		"-t", filter, "-F", "%t %r [%C] %x")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr testutil.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &mosquittoSub{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.lines = append(s.lines, line)
			if strings.Contains(line, " [") && !strings.Contains(line, " [] ") && !strings.Contains(line, "/ctx/") {
				s.contentTyped++
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		<-done
		if t.Failed() {
			t.Logf("mosquitto_sub stderr: %s", stderr.String())
		}
	})
	return s
}

type subMessage struct {
	topic    string
	retained bool
	payload  []byte
}

func (s *mosquittoSub) messages() []subMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []subMessage
	for _, l := range s.lines {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		p, err := hex.DecodeString(f[len(f)-1])
		if err != nil {
			continue
		}
		out = append(out, subMessage{topic: f[0], retained: f[1] == "1", payload: p})
	}
	return out
}

func (s *mosquittoSub) batches() int {
	n := 0
	for _, m := range s.messages() {
		if !strings.Contains(m.topic, "/ctx/") {
			n++
		}
	}
	return n
}

func (s *mosquittoSub) contextCount() int {
	return len(s.contextSizes())
}

func (s *mosquittoSub) contextSizes() []int {
	seen := map[string]int{}
	for _, m := range s.messages() {
		if strings.Contains(m.topic, "/ctx/") {
			seen[m.topic] = len(m.payload)
		}
	}
	var out []int
	for _, n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// writeFiles writes each context and each batch to its own file in dir
// and returns the context files and the batch files, in arrival order.
func (s *mosquittoSub) writeFiles(t *testing.T, dir string) (contexts, batches []string) {
	t.Helper()
	for i, m := range s.messages() {
		name := filepath.Join(dir, fmt.Sprintf("batch-%04d.bin", i))
		if strings.Contains(m.topic, "/ctx/") {
			name = filepath.Join(dir, "ctx-"+m.topic[strings.LastIndexByte(m.topic, '/')+1:]+".bin")
			if slices.Contains(contexts, name) {
				continue
			}
			contexts = append(contexts, name)
		} else {
			batches = append(batches, name)
		}
		if err := os.WriteFile(name, m.payload, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return contexts, batches
}

// decodeWithPython decodes every batch with testdata/payload_decode.py
// and checks `cellgate decode --context` prints the same lines.
func (s *mosquittoSub) decodeWithPython(t *testing.T, w *world) []string {
	t.Helper()
	dir := t.TempDir()
	contexts, batches := s.writeFiles(t, dir)
	args := []string{filepath.Join("reading", "testdata", "payload_decode.py"), filepath.Join("..", "docs", "payloads.md")}
	var goArgs []string
	for _, c := range contexts {
		args = append(args, "--context", c)
		goArgs = append(goArgs, "--context", c)
	}
	args = append(args, batches...)
	py := exec.Command(testutil.Python, args...)
	var stderr bytes.Buffer
	py.Stderr = &stderr
	out, err := py.Output()
	if err != nil {
		t.Fatalf("payload_decode.py: %v\n%s", err, stderr.String())
	}
	bin, _ := binaries()
	var goOut bytes.Buffer
	for _, b := range batches {
		cmd := exec.Command(filepath.Join(bin, "cellgate"), append(append([]string{"decode"}, goArgs...), b)...)
		o, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cellgate decode %s: %v\n%s", b, err, o)
		}
		goOut.Write(o)
	}
	if !bytes.Equal(out, goOut.Bytes()) {
		t.Fatalf("python and cellgate decode disagree:\npython:\n%.2000s\ncellgate:\n%.2000s", out, goOut.String())
	}
	return strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
}

// readingsAtLeast reports whether the batches mosquitto_sub has hold at
// least n readings (decoded by cellgate decode, which is cheap enough
// here and checked against python afterwards).
func (s *mosquittoSub) readingsAtLeast(t *testing.T, w *world, n int) bool {
	t.Helper()
	dir := t.TempDir()
	contexts, batches := s.writeFiles(t, dir)
	bin, _ := binaries()
	total := 0
	for _, b := range batches {
		args := []string{"decode"}
		for _, c := range contexts {
			args = append(args, "--context", c)
		}
		o, err := exec.Command(filepath.Join(bin, "cellgate"), append(args, b)...).Output()
		if err != nil {
			return false
		}
		total += bytes.Count(o, []byte("\n"))
	}
	return total >= n
}
