package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/relay"
	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/transport/uplink"
)

// The month model (bench/README.md): a gateway-month is 30 days of one
// reading every 10 s; the readings travel in batches of what the latency
// budget gathers (1 at the default max_delay of 2s, 6 at 60s; a 5 min
// budget gathers longBatch, since a batch waits at most nine tenths of the
// 4m keep-alive, 216 s), the connection is made again once a day, and a
// keep-alive ping goes only when nothing went either way for a keep-alive
// interval.
const (
	airReadings     = 2000
	monthSeconds    = 30 * 86400
	readingInterval = 10 * time.Second
	reconnectsMonth = 30
	longBatch       = int(uplink.DefaultMQTTKeepAlive * 9 / 10 / readingInterval) // 21
)

// BenchmarkAirBytes measures bytes over the air from outside the project:
// a byte-counting TCP relay (internal/relay) sits between the emulated
// modem's sockets (or mosquitto_pub's) and a real mosquitto requiring
// client certificates, and counts the TLS bytes both ways, handshakes
// included. The in-run baseline is the real mosquitto_pub -l publishing
// one QoS 1 message per reading over TLS. From the same relay it measures
// the parts of the month model (bytes per message at 1, 6 and 30
// readings, per keep-alive ping, per connect) and reports month-MB for a
// reading every 10 s with a 2 s (the default), a 60 s and a 5 min budget.
func BenchmarkAirBytes(b *testing.B) {
	bin, dir, _, broker := startPKIBroker(b)
	gen := newAirGen(1)
	lines := gen.next(airReadings)

	hsBase := mosquittoPub(b, dir, broker.Addr, nil)
	base := mosquittoPub(b, dir, broker.Addr, lines)
	b.ReportMetric(float64(base.Total())/airReadings, "baseline-B/reading")
	b.ReportMetric(float64(hsBase.Total()), "baseline-handshake-B")

	parts := map[string]airParts{}
	for _, enc := range []string{"json", "cbor+deflate", "compact"} {
		parts[enc] = measureAgent(b, bin, dir, broker.Addr, enc, "modem", lines, gen)
		b.ReportMetric(parts[enc].perReading, enc+"-B/reading")
	}
	// The same with TLS 1.3 on the host over a plain modem socket
	// (tls.mode: host): 22-byte records instead of the module's 29.
	parts["compact-host"] = measureAgent(b, bin, dir, broker.Addr, "compact", "host", lines, gen)
	c := parts["compact"]
	b.ReportMetric(float64(c.handshake), "handshake-B")
	b.ReportMetric(float64(c.reconnect), "reconnect-B")
	b.ReportMetric(c.msg1, "msg1-B")
	b.ReportMetric(c.msg6, "msg6-B")
	b.ReportMetric(c.reads6, "msg6-records")
	b.ReportMetric(c.msgLong, "msg21-B")
	b.ReportMetric(parts["compact-host"].msg6, "host-msg6-B")
	ping := measurePing(b, bin, dir, broker.Addr)
	b.ReportMetric(ping, "ping-B")
	keep := uplink.DefaultMQTTKeepAlive // what a gateway pings at: longer than the budget, shorter than carriers' NAT timeouts
	for _, enc := range []string{"cbor+deflate", "compact", "compact-host"} {
		p := parts[enc]
		connect := p.reconnect // the context goes again on every connection
		b.ReportMetric(monthMB(p.msg1, 1, connect, ping, keep), enc+"-month-MB-2s")
		b.ReportMetric(monthMB(p.msg6, 6, connect, ping, keep), enc+"-month-MB-60s")
		b.ReportMetric(monthMB(p.msgLong, longBatch, connect, ping, keep), enc+"-month-MB-5min")
	}
	// The per-publish baseline: every reading its own message, its bytes
	// as measured above, one connect a day.
	perPub := float64(base.Total()-hsBase.Total()) / airReadings
	b.ReportMetric(monthMB(perPub, 1, hsBase.Total(), ping, keep), "baseline-month-MB")
}

// monthMB is the month model: messages of perMsg bytes holding n readings,
// one every readingInterval; a ping after each keep-alive interval without
// traffic; one connect of handshake bytes a day.
func monthMB(perMsg float64, n int, handshake int64, ping float64, keep time.Duration) float64 {
	gap := readingInterval * time.Duration(n) // time between messages
	msgs := float64(monthSeconds) / gap.Seconds()
	pingsPerGap := math.Ceil(gap.Seconds()/keep.Seconds()) - 1
	total := msgs*(perMsg+pingsPerGap*ping) + reconnectsMonth*float64(handshake)
	return total / 1e6
}

// airGen makes realistic readings as a sensor sends them: four sensors
// (two temperatures, humidity, pressure) each a random walk, every reading
// 10 s after the previous one of its sensor, with a site tag; about 94
// bytes of JSON each.
type airGen struct {
	rng   *rand.Rand
	ts    time.Time
	value [4]float64
	k     int
}

var airSensors = [4]struct{ name, unit string }{{"t1", "C"}, {"t2", "C"}, {"h1", "%RH"}, {"p1", "hPa"}}

func newAirGen(seed uint64) *airGen {
	return &airGen{rng: rand.New(rand.NewPCG(seed, seed)), ts: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), value: [4]float64{21.5, 19.8, 45.0, 1013.2}}
}

func (g *airGen) next(n int) []string {
	out := make([]string, n)
	for i := range out {
		s := g.k % 4
		if s == 0 {
			g.ts = g.ts.Add(readingInterval)
		}
		g.value[s] = math.Round((g.value[s]+float64(g.rng.IntN(5)-2)/10)*10) / 10
		out[i] = fmt.Sprintf(`{"sensor":%q,"ts":%q,"value":%.1f,"unit":%q,"tags":{"site":"depot-7"}}`,
			airSensors[s].name, g.ts.Add(time.Duration(s)*37*time.Millisecond).Format("2006-01-02T15:04:05.000Z07:00"), g.value[s], airSensors[s].unit)
		g.k++
	}
	return out
}

// mosquittoPub publishes lines with the real mosquitto_pub -l, one QoS 1
// message per line over TLS with the client certificate, through a fresh
// relay, and returns what the relay counted. No lines: connect and
// disconnect only.
func mosquittoPub(b *testing.B, dir, broker string, lines []string) relay.Counts {
	b.Helper()
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		b.Fatal("mosquitto_pub is not installed (Debian mosquitto-clients): run make deps")
	}
	r, err := relay.Start(broker)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	port := r.Addr()[strings.LastIndexByte(r.Addr(), ':')+1:]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pub, "-h", "127.0.0.1", "-p", port, "-V", "mqttv5", "-q", "1", "-i", "baseline-gw",
		"-t", "cellgate/baseline-gw/telemetry", "--cafile", filepath.Join(dir, "ca.pem"),
		"--cert", filepath.Join(dir, "client.pem"), "--key", filepath.Join(dir, "client.key"), "-l")
	if len(lines) > 0 {
		cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	} else {
		cmd.Stdin = strings.NewReader("")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	if !testutil.WaitFor(30*time.Second, func() bool { return r.Quiet(500 * time.Millisecond) }) {
		b.Fatal("the relay never went quiet after mosquitto_pub")
	}
	return r.Counts()
}

// airParts are one encoding's measured parts.
type airParts struct {
	handshake     int64   // TLS + MQTT connect (and the control subscription), both ways
	reconnect     int64   // a connect again, with what the first message after it carries more (the compact context, the topic in full)
	msg1          float64 // bytes per message of 1 reading (max_delay below the reading interval)
	msg6, msgLong float64 // bytes per message of 6 and of longBatch readings, both ways
	reads6        float64 // relay reads per message of 6 (about one per TLS record)
	perReading    float64 // airReadings in batches of 100, handshake included
	readingsSent  int
}

// airAgent is the real agent and plugin, with an emulated modem whose
// sockets reach the broker through a counting relay.
type airAgent struct {
	relay          *relay.Relay
	modem          *modemsim.Modem
	cmd            *exec.Cmd
	ingest, status string
	acked          int64
	stop           func()
}

func startAirAgent(b testing.TB, bin, pkiDir, broker, encoding, tlsMode string, keepalive time.Duration) *airAgent {
	b.Helper()
	r, err := relay.Start(broker)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	dir := b.TempDir()
	link := filepath.Join(dir, "ttyUSB2")
	modem, err := modemsim.Start(modemsim.Config{Model: "sim7600", Baud: -1, Link: link, StateDir: filepath.Join(dir, "flash")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { modem.Close() })
	a := &airAgent{relay: r, modem: modem, ingest: fmt.Sprintf("http://127.0.0.1:%d", testutil.FreePort(b))}
	statusPort := testutil.FreePort(b)
	a.status = fmt.Sprintf("http://127.0.0.1:%d", statusPort)
	id := "air-" + strings.NewReplacer("+", "-").Replace(encoding) + "-" + tlsMode + "-" + strconv.Itoa(int(keepalive/time.Second))
	cfg := fmt.Sprintf(`device_id: %s
modem: {model: sim7600, port: %q}
plugins: {dir: %q}
tls: {mode: %s, ca: %q, cert: %q, key: %q}
inputs: {http: {listen: %q}}
status: {listen: "127.0.0.1:%d"}
spool: {dir: spool}
uplink:
  mqtt: {broker: "mqtts://%s", topic: "cellgate/{device_id}/telemetry", qos: 1, keepalive: %s}
  batch: {max_readings: 100, max_delay: 500ms, encoding: %s}
log: {level: warn}
`, id, link, bin, tlsMode, filepath.Join(pkiDir, "ca.pem"), filepath.Join(pkiDir, "client.pem"), filepath.Join(pkiDir, "client.key"),
		strings.TrimPrefix(a.ingest, "http://"), statusPort, r.Addr(), keepalive, encoding)
	if err := os.WriteFile(filepath.Join(dir, "cellgate.yaml"), []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "cellgate"), "run", "--config", filepath.Join(dir, "cellgate.yaml"))
	cmd.Env = append(os.Environ(), "CGTEST_CONTEXT_MIN_REBUILD=250ms")
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	a.cmd = cmd
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	a.stop = sync.OnceFunc(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if b.Failed() {
			b.Logf("agent %s log:\n%s", id, out.String())
		}
	})
	b.Cleanup(a.stop)
	if !testutil.WaitFor(60*time.Second, func() bool { return r.Counts().Conns > 0 && r.Counts().Down > 0 }) {
		b.Fatalf("the agent (%s) never reached the broker through the relay\n%s", encoding, out.String())
	}
	return a
}

// post sends lines in one request, then waits until the upstream acked
// them and returns what the relay counted meanwhile.
func (a *airAgent) post(b testing.TB, lines []string) relay.Counts {
	b.Helper()
	before := a.relay.Counts()
	body := "[" + strings.Join(lines, ",") + "]"
	resp, err := http.Post(a.ingest+"/v1/readings", "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b.Fatalf("POST %d readings: %s", len(lines), resp.Status)
	}
	a.acked += int64(len(lines))
	if !testutil.WaitFor(2*time.Minute, func() bool { return a.ackedReadings() >= a.acked }) {
		b.Fatalf("the upstream acked %d readings, want %d", a.ackedReadings(), a.acked)
	}
	return a.relay.Counts().Sub(before)
}

func (a *airAgent) ackedReadings() int64 {
	resp, err := http.Get(a.status + "/v1/status")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var st struct {
		Uplink struct {
			AckedReadings int64 `json:"acked_readings"`
		} `json:"uplink"`
	}
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if json.Unmarshal(buf.Bytes(), &st) != nil {
		return -1
	}
	return st.Uplink.AckedReadings
}

// measureAgent measures one encoding: the connect, messages of 1, 6 and
// longBatch readings (what a 2 s, a 60 s and a 5 min budget gather at one
// reading every 10 s), then airReadings readings in batches of 100.
func measureAgent(b *testing.B, bin, pkiDir, broker, encoding, tlsMode string, lines []string, gen *airGen) airParts {
	b.Helper()
	a := startAirAgent(b, bin, pkiDir, broker, encoding, tlsMode, 10*time.Minute)
	defer a.stop()
	if !testutil.WaitFor(30*time.Second, func() bool { return a.relay.Quiet(2 * time.Second) }) {
		b.Fatal("the connect never went quiet")
	}
	p := airParts{handshake: a.relay.Counts().Total()}
	// A gateway's compact encoder learns its context (the sensors, their
	// intervals and phases, the order they report in) from its first
	// batches over its first minutes (docs/payloads.md); the agent here
	// runs with CGTEST_CONTEXT_MIN_REBUILD so that it learns in seconds.
	for range 12 {
		a.post(b, gen.next(6))
		time.Sleep(300 * time.Millisecond)
	}
	var sum, reads int64
	const rounds = 10
	for range rounds {
		sum += a.post(b, gen.next(1)).Total()
	}
	p.msg1 = float64(sum) / rounds
	sum = 0
	for range rounds {
		d := a.post(b, gen.next(6))
		sum += d.Total()
		reads += d.UpReads + d.DownReads
	}
	p.msg6 = float64(sum) / rounds
	p.reads6 = float64(reads) / rounds
	sum = 0
	for range rounds / 2 {
		sum += a.post(b, gen.next(longBatch)).Total()
	}
	p.msgLong = float64(sum) / (rounds / 2)
	p.reconnect = measureReconnect(b, a, gen, p.msg6)
	sum = 0
	for i := 0; i < len(lines); i += 100 {
		sum += a.post(b, lines[i:min(i+100, len(lines))]).Total()
	}
	p.perReading = float64(sum+p.handshake) / float64(len(lines))
	p.readingsSent = len(lines)
	return p
}

// measureReconnect drops the connection as a lost radio link would and
// returns what coming back costs: the TLS and MQTT connect, and, on the
// first message after it, what it carries beyond a steady message of 6
// readings (the compact context published again, the topic in full before
// its alias).
func measureReconnect(b *testing.B, a *airAgent, gen *airGen, msg6 float64) int64 {
	b.Helper()
	before := a.relay.Counts()
	a.relay.DropAll()
	if !testutil.WaitFor(60*time.Second, func() bool {
		return a.relay.Counts().Conns > before.Conns && a.relay.Quiet(2*time.Second)
	}) {
		b.Fatal("the agent did not connect again through the relay")
	}
	handshake := a.relay.Counts().Sub(before).Total()
	first := a.post(b, gen.next(6)).Total()
	return handshake + max(first-int64(msg6), 0)
}

// measurePing runs an idle agent with a 2 s keep-alive and returns the
// bytes of one PINGREQ/PINGRESP exchange as the relay sees them: each
// ping is one TLS record up and one down.
func measurePing(b *testing.B, bin, pkiDir, broker string) float64 {
	b.Helper()
	a := startAirAgent(b, bin, pkiDir, broker, "compact", "modem", 2*time.Second)
	defer a.stop()
	a.post(b, newAirGen(9).next(1)) // past the connect, the subscriptions and a first message
	before := a.relay.Counts()
	var d relay.Counts
	if !testutil.WaitFor(60*time.Second, func() bool { d = a.relay.Counts().Sub(before); return d.UpReads >= 5 && d.DownReads >= 5 }) {
		b.Fatalf("no keep-alive pings through the relay: %+v", d)
	}
	return float64(d.Total()) / float64(min(d.UpReads, d.DownReads))
}
