package agent_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// drainBaud is the emulated UART: the SIMCom module's default rate.
const drainBaud = 115200

// drainReadings is how many spooled readings each drain moves: 10,000, or
// BENCH_DRAIN_N, or 2,000 under -short. The one-at-a-time baselines move a
// fifth of it (at least 500): utilisation is a ratio, and at a 2 s round
// trip they would otherwise take minutes.
func drainReadings(b *testing.B) int {
	if v := os.Getenv("BENCH_DRAIN_N"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 {
			b.Fatalf("BENCH_DRAIN_N=%q: want a whole number of readings, at least 100", v)
		}
		return n
	}
	if testing.Short() {
		return 2000
	}
	return 10000
}

// BenchmarkDrain drains readings spooled while the gateway was offline
// through the real agent -> sim7600 plugin -> modemsim (a 115200 baud UART,
// sdk/modemsim's delay model between its sockets and the broker: 0, 300 ms
// and 1 s each way, i.e. 0, 600 ms and 2 s round trips) -> a real
// mosquitto requiring client certificates, cbor+deflate batches of 100
// (up to 500 while the backlog drains: uplink.batch.backlog_max_readings).
// It reports drain_utilisation_<rtt>: the bytes the host wrote on the
// serial line during the drain (from the MQTT CONNACK reaching the module to
// the last acknowledgement) over what the line could carry in that time
// (baud/10 bytes a second), and drain_s_<rtt>, the drain's length, with uplink.max_in_flight at its default, and
// the same with max_in_flight 1 (the in-run baseline) and their ratio. A
// subscriber checks that the broker got every reading exactly once.
func BenchmarkDrain(b *testing.B) {
	bin, pkiDir, pki, broker := startPKIBroker(b)
	n := drainReadings(b)
	for i := 0; i < b.N; i++ {
		for _, oneWay := range []time.Duration{0, 300 * time.Millisecond, time.Second} {
			name := fmt.Sprintf("drain_utilisation_%dms", (2 * oneWay).Milliseconds())
			piped := drain(b, bin, pki, pkiDir, broker.Addr, oneWay, 0, n)
			base := drain(b, bin, pki, pkiDir, broker.Addr, oneWay, 1, max(n/5, 500))
			b.ReportMetric(piped.utilisation, name)
			b.ReportMetric(base.utilisation, name+"_baseline")
			b.ReportMetric(piped.utilisation/base.utilisation, name+"_ratio")
			b.ReportMetric(piped.seconds, fmt.Sprintf("drain_s_%dms", (2*oneWay).Milliseconds()))
			b.Logf("%s: %d readings in %.1f s, utilisation %.2f; max_in_flight 1: %d readings in %.1f s, utilisation %.2f",
				name, piped.readings, piped.seconds, piped.utilisation, base.readings, base.seconds, base.utilisation)
		}
	}
}

// BenchmarkDrainHTTPS is BenchmarkDrain with the HTTPS uplink: the same
// spooled readings, agent, plugin and modemsim (115200 baud, modem TLS,
// 0, 300 ms and 1 s each way), to Go's net/http server requiring client
// certificates, with requests pipelined on one kept-alive connection
// (uplink.max_in_flight at its default, 32, bounded by the uplink's
// pipeline depth, 8) and, as the in-run baseline, max_in_flight 1: one
// request at a time. The window opens when the module reports the session
// open (its TLS handshake done) and closes at the last acknowledgement. It
// reports https_drain_utilisation_<rtt> (bytes the host wrote on the
// serial line over what the line carries in that time), its _baseline and
// _ratio, and https_drain_s_<rtt>, and checks that the server got every
// reading exactly once.
func BenchmarkDrainHTTPS(b *testing.B) {
	bin, pkiDir, pki := newPKIDir(b)
	n := drainReadings(b)
	for i := 0; i < b.N; i++ {
		for _, oneWay := range []time.Duration{0, 300 * time.Millisecond, time.Second} {
			rtt := (2 * oneWay).Milliseconds()
			run := func(maxInFlight, n int) drainResult {
				device := fmt.Sprintf("https-drain-%d-%d", rtt, maxInFlight)
				srv := startIngestServer(b, pki, device, 0)
				return drainThrough(b, bin, pkiDir, httpsDrainUpstream(device, srv), oneWay, maxInFlight, n)
			}
			name := fmt.Sprintf("https_drain_utilisation_%dms", rtt)
			piped := run(0, n)
			base := run(1, max(n/5, 500))
			b.ReportMetric(piped.utilisation, name)
			b.ReportMetric(base.utilisation, name+"_baseline")
			b.ReportMetric(piped.utilisation/base.utilisation, name+"_ratio")
			b.ReportMetric(piped.seconds, fmt.Sprintf("https_drain_s_%dms", rtt))
			b.Logf("%s: %d readings in %.1f s, utilisation %.2f; max_in_flight 1: %d readings in %.1f s, utilisation %.2f",
				name, piped.readings, piped.seconds, piped.utilisation, base.readings, base.seconds, base.utilisation)
		}
	}
}

// drainResult is one drain's figures.
type drainResult struct {
	readings    int
	seconds     float64
	utilisation float64
}

// drain spools n readings, starts modemsim (oneWay delay each direction)
// and the agent (maxInFlight 0: the default) uplinking over MQTT, and
// measures until the upstream acknowledged all of them; then checks the
// broker delivered each exactly once.
func drain(b testing.TB, bin string, pki *plugintest.PKI, pkiDir, brokerAddr string, oneWay time.Duration, maxInFlight, n int) drainResult {
	b.Helper()
	device := fmt.Sprintf("drain-%d-%d", oneWay.Milliseconds(), maxInFlight)
	return drainThrough(b, bin, pkiDir, drainUpstream{
		device: device,
		uplink: fmt.Sprintf(`mqtt: {broker: "mqtts://%s", topic: "cellgate/{device_id}/telemetry", qos: 1}`, brokerAddr),
		// The broker's first bytes inside TLS (the MQTT CONNACK) reach
		// the module: from then the agent may publish.
		opened:   func(c modemsim.Counters) bool { return c.CCHPayloadRxBytes > 0 },
		received: newDrainSubscriber(b, pki, brokerAddr, device),
	}, oneWay, maxInFlight, n)
}

// drainUpstream is where a drain sends: the device it drains as, the
// uplink section of the agent's config, when the window opens (the agent
// may send), and what checks that every reading arrived exactly once.
type drainUpstream struct {
	device   string
	uplink   string // one YAML line under uplink:
	opened   func(modemsim.Counters) bool
	received interface {
		expectExactlyOnce(b testing.TB, ids []string, within time.Duration)
	}
}

// drainThrough spools n readings, starts modemsim (oneWay delay each
// direction) and the agent sending to up, and measures from when up opened
// the window until the upstream acknowledged all of them; then checks that
// up received each exactly once.
func drainThrough(b testing.TB, bin, pkiDir string, up drainUpstream, oneWay time.Duration, maxInFlight, n int) drainResult {
	b.Helper()
	dir := b.TempDir()
	device := up.device
	ids := spoolReadings(b, filepath.Join(dir, "spool"), device, n)
	link := filepath.Join(dir, "ttyUSB2")
	modem, err := modemsim.Start(modemsim.Config{Model: "sim7600", Baud: drainBaud, NetworkDelay: oneWay,
		Link: link, StateDir: filepath.Join(dir, "flash")})
	if err != nil {
		b.Fatal(err)
	}
	defer modem.Close()
	statusPort := testutil.FreePort(b)
	inFlight := ""
	if maxInFlight > 0 {
		inFlight = fmt.Sprintf("\n  max_in_flight: %d", maxInFlight)
	}
	cfg := fmt.Sprintf(`device_id: %s
modem: {model: sim7600, port: %q, baud: %d}
plugins: {dir: %q}
tls: {mode: modem, ca: %q, cert: %q, key: %q}
inputs: {http: {listen: "127.0.0.1:%d"}}
status: {listen: "127.0.0.1:%d"}
spool: {dir: spool}
uplink:
  %s
  batch: {max_readings: 100, max_delay: 1s, encoding: cbor+deflate, backlog_max_readings: 500}%s
log: {level: warn}
`, device, link, drainBaud, bin, filepath.Join(pkiDir, "ca.pem"), filepath.Join(pkiDir, "client.pem"), filepath.Join(pkiDir, "client.key"),
		testutil.FreePort(b), statusPort, up.uplink, inFlight)
	if err := os.WriteFile(filepath.Join(dir, "cellgate.yaml"), []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "cellgate"), "run", "--config", filepath.Join(dir, "cellgate.yaml"))
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if b.Failed() {
			b.Logf("agent %s log:\n%s", device, out.String())
		}
	}()
	status := fmt.Sprintf("http://127.0.0.1:%d/v1/status", statusPort)
	// The window opens when the agent may send, without the TLS handshake
	// and any protocol connect, and closes at the last acknowledgement,
	// with its trip back.
	if !testutil.WaitFor(2*time.Minute, func() bool { return up.opened(modem.Counters()) }) {
		b.Fatalf("%s: the agent never connected\n%s", device, out.String())
	}
	t0, c0 := time.Now(), modem.Counters()
	deadline := 10*time.Minute + time.Duration(n/100)*(2*oneWay+time.Second)
	if !testutil.WaitFor(deadline, func() bool { st, ok := drainStatus(status); return ok && st.AckedReadings >= int64(n) }) {
		st, _ := drainStatus(status)
		b.Fatalf("%s: the upstream acked %d of %d readings within %v\n%s", device, st.AckedReadings, n, deadline, out.String())
	}
	secs, c1 := time.Since(t0).Seconds(), modem.Counters()
	wrote := c1.SerialHostToModemBytes - c0.SerialHostToModemBytes
	up.received.expectExactlyOnce(b, ids, time.Minute)
	return drainResult{readings: n, seconds: secs, utilisation: float64(wrote) / (drainBaud / 10 * secs)}
}

// drainStatusView is the part of /v1/status the drain watches.
type drainStatusView struct {
	Connected     bool
	AckedReadings int64
}

// drainStatus reads u, the agent's /v1/status.

func drainStatus(u string) (drainStatusView, bool) {
	resp, err := http.Get(u)
	if err != nil {
		return drainStatusView{}, false
	}
	defer resp.Body.Close()
	var st struct {
		Uplink struct {
			Connected     bool  `json:"connected"`
			AckedReadings int64 `json:"acked_readings"`
		} `json:"uplink"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return drainStatusView{}, false
	}
	return drainStatusView{st.Uplink.Connected, st.Uplink.AckedReadings}, true
}

// spoolReadings writes n readings into a new spool in dir, as the agent's
// inputs would have while the gateway was offline, and returns their ids.
func spoolReadings(b testing.TB, dir, device string, n int) []string {
	b.Helper()
	sp, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	ids := make([]string, 0, n)
	ts := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var batch [][]byte
	for i := range n {
		id := fmt.Sprintf("%s-%06d", device, i)
		ids = append(ids, id)
		p := fmt.Appendf(nil, `{"id":%q,"sensor":"s%d","ts":%q,"value":%d.%d,"unit":"C"}`,
			id, i%8, ts.Add(time.Duration(i)*time.Second).Format("2006-01-02T15:04:05.000Z"), 20+i%7, i%10)
		batch = append(batch, p)
		if len(batch) == 500 || i == n-1 {
			if _, err := sp.Append(context.Background(), batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return ids
}

// drainSubscriber counts, by id, the readings the broker delivers on one
// device's topic, decoding each batch as its content type says.
type drainSubscriber struct {
	mu   sync.Mutex
	seen map[string]int
	bad  []string
}

func newDrainSubscriber(b testing.TB, pki *plugintest.PKI, addr, device string) *drainSubscriber {
	b.Helper()
	s := &drainSubscriber{seen: map[string]int{}}
	u, _ := url.Parse("tls://" + addr)
	ctx, cancel := context.WithCancel(context.Background())
	topic := "cellgate/" + device + "/telemetry"
	subscribed := make(chan error, 1)
	cfg := autopaho.ClientConfig{
		ServerUrls: []*url.URL{u},
		TlsCfg: &tls.Config{RootCAs: pki.CertPool(), Certificates: []tls.Certificate{pki.Client.TLSCertificate(b)},
			ServerName: "127.0.0.1"},
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			sctx, c := context.WithTimeout(ctx, 10*time.Second)
			defer c()
			_, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}})
			select {
			case subscribed <- err:
			default:
			}
		},
		ClientConfig: paho.ClientConfig{
			ClientID:          "sub-" + device,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){s.received},
		},
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		dctx, dc := context.WithTimeout(context.Background(), 5*time.Second)
		defer dc()
		cm.Disconnect(dctx)
		cancel()
		<-cm.Done()
	})
	select {
	case err := <-subscribed:
		if err != nil {
			b.Fatalf("subscribe %s: %v", topic, err)
		}
	case <-time.After(30 * time.Second):
		b.Fatalf("the subscriber did not subscribe to %s within 30s", topic)
	}
	return s
}

func (s *drainSubscriber) received(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	ct, ce := "", ""
	if p.Properties != nil {
		ct, ce = p.Properties.ContentType, p.Properties.User.Get("content-encoding")
	}
	batch, err := reading.DecodeBatch(ct, ce, p.Payload)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.bad = append(s.bad, err.Error())
		return true, nil
	}
	for _, r := range batch.Readings {
		s.seen[r.ID]++
	}
	return true, nil
}

// expectExactlyOnce waits until every id arrived, then fails on any
// missing, repeated or undecodable.
func (s *drainSubscriber) expectExactlyOnce(b testing.TB, ids []string, within time.Duration) {
	b.Helper()
	all := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, id := range ids {
			if s.seen[id] == 0 {
				return false
			}
		}
		return true
	}
	testutil.WaitFor(within, all)
	s.mu.Lock()
	defer s.mu.Unlock()
	missing, dups := deliveryCounts(s.seen, ids)
	if missing > 0 || dups > 0 || len(s.bad) > 0 || len(s.seen) != len(ids) {
		b.Fatalf("broker delivered %d distinct readings of %d: %d missing, %d duplicates, %d unknown, %d undecodable payloads %v",
			len(s.seen), len(ids), missing, dups, len(s.seen)-(len(ids)-missing), len(s.bad), s.bad)
	}
}

// With batches in flight together, a drain over a 600 ms round trip keeps
// the serial line several times busier than one batch at a time (the same
// parts as BenchmarkDrain, fewer readings), and the broker still gets
// every reading exactly once.
func TestDrainPipelinesOverALongRoundTrip(t *testing.T) {
	bin, pkiDir, pki, broker := startPKIBroker(t)
	const oneWay = 300 * time.Millisecond
	piped := drain(t, bin, pki, pkiDir, broker.Addr, oneWay, 8, 5000)
	base := drain(t, bin, pki, pkiDir, broker.Addr, oneWay, 1, 500)
	t.Logf("600 ms round trip: max_in_flight 8 utilisation %.2f (%d readings in %.1f s), max_in_flight 1 utilisation %.2f (%d in %.1f s)",
		piped.utilisation, piped.readings, piped.seconds, base.utilisation, base.readings, base.seconds)
	// One batch per round trip leaves the line idle most of the time;
	// eight in flight keep it busy several times longer.
	if piped.utilisation < 2*base.utilisation {
		t.Errorf("utilisation %.2f with 8 batches in flight, %.2f with 1: want at least twice", piped.utilisation, base.utilisation)
	}
}
