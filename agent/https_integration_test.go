package agent_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/internal/pipewitness"
	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// TestHTTPSUplinkWithCompactBatches sends readings through the modem to a
// real TLS HTTP server that verifies the gateway's client certificate, in
// the compact cbor+deflate encoding, and decodes every batch as an upstream
// consumer would; in both TLS modes (the modem terminates TLS, or net/http
// runs TLS 1.3 on the gateway over a plain modem socket).
func TestHTTPSUplinkWithCompactBatches(t *testing.T) {
	for _, mode := range []string{"modem", "host"} {
		t.Run(mode+" TLS", func(t *testing.T) { httpsUplink(t, mode) })
	}
}

func httpsUplink(t *testing.T, mode string) {
	bin, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := plugintest.NewPKI(t, plugintest.P256)
	p.WriteFiles(t, dir)
	modem, err := modemsim.Start(modemsim.Config{Model: "sim7600", Baud: -1, Link: filepath.Join(dir, "ttyUSB2")})
	if err != nil {
		t.Fatal(err)
	}
	defer modem.Close()
	srv := startIngestServer(t, p, "https-gw", 0)

	port := testutil.FreePort(t)
	writeHTTPSConfig(t, dir, bin, mode, port, srv.url)
	w := &world{t: t, dir: dir, ingest: fmt.Sprintf("http://127.0.0.1:%d", port)}
	w.agent = startAgent(t, bin, dir)
	w.waitHealthy()
	ids := w.post(120, "https")

	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("all %d readings at the HTTPS server", len(ids)), func() bool {
		return srv.hasAll(t, ids)
	})
	want := uint16(tls.VersionTLS12) // the modem's TLS stack stops at 1.2
	if mode == "host" {
		want = tls.VersionTLS13
	}
	if _, ok := srv.versions.Load(want); !ok {
		t.Errorf("the server never saw TLS version %#x in %s mode", want, mode)
	}
	c := modem.Counters()
	t.Logf("120 readings over HTTPS in cbor+deflate: %d bytes up, %d down on the modem's socket (%.1f B/reading both ways)",
		c.NetTxBytes, c.NetRxBytes, float64(c.NetTxBytes+c.NetRxBytes)/120)
}

// ingestServer is an upstream HTTPS server requiring p's client
// certificate: it decodes each batch POSTed to /ingest by its device, as a
// consumer would, and counts its readings; it notes the TLS versions it
// negotiated. It is Go's net/http server on a pipewitness.Listener: with a
// hold, it answers request k of a connection (k > 1) only once request
// k+1 has begun to arrive, or after the hold: an answer released by the
// next request proves the client had two requests in flight.
type ingestServer struct {
	url      string
	device   string
	hold     time.Duration
	versions sync.Map // TLS version (uint16) -> true

	mu          sync.Mutex
	seen        map[string]int // reading id -> times received
	problems    []string       // batches refused, and why
	pipelined   int            // answers released by the next request
	unpipelined int            // answers released by the hold running out
	requests    int
	conns       int
}

func startIngestServer(t testing.TB, p *plugintest.PKI, device string, hold time.Duration) *ingestServer {
	t.Helper()
	s := &ingestServer{seen: map[string]int{}, device: device, hold: hold}
	tc := plugintest.MutualTLS(p, 0)
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		s.versions.Store(cs.Version, true)
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(s.ingest), ConnContext: pipewitness.ConnContext,
		ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(&pipewitness.Listener{Listener: ln, TLS: tc, RequestLine: "POST /ingest HTTP/1.1\r\n",
		Accepted: func() { s.mu.Lock(); s.conns++; s.mu.Unlock() }})
	t.Cleanup(func() { srv.Close() })
	s.url = "https://" + ln.Addr().String()
	return s
}

func (s *ingestServer) ingest(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if wc := pipewitness.FromRequest(r); wc != nil && s.hold > 0 {
		if k := int(wc.Served.Add(1)); k > 1 {
			next := wc.WaitLines(k+1, s.hold)
			s.mu.Lock()
			if next {
				s.pipelined++
			} else {
				s.unpipelined++
			}
			s.mu.Unlock()
		}
	}
	b, err := reading.DecodeBatch(r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"), body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if err != nil || r.URL.Path != "/ingest" || b.DeviceID != s.device {
		s.problems = append(s.problems, fmt.Sprintf("%s %s %q: %v", r.Method, r.URL.Path, b.DeviceID, err))
		http.Error(w, "bad batch", http.StatusBadRequest)
		return
	}
	for _, rd := range b.Readings {
		s.seen[rd.ID]++
	}
	w.WriteHeader(http.StatusNoContent)
}

// hasAll reports whether every one of ids arrived; it fails t if the
// server refused a batch. Call it from the test's goroutine.
func (s *ingestServer) hasAll(t testing.TB, ids []string) bool {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.problems) > 0 {
		t.Fatalf("the server refused batches: %v", s.problems)
	}
	for _, id := range ids {
		if s.seen[id] == 0 {
			return false
		}
	}
	return true
}

// expectExactlyOnce waits until every id arrived, then fails on any
// missing, repeated or unknown, or a refused batch.
func (s *ingestServer) expectExactlyOnce(b testing.TB, ids []string, within time.Duration) {
	b.Helper()
	testutil.WaitFor(within, func() bool { return s.hasAll(b, ids) })
	s.mu.Lock()
	defer s.mu.Unlock()
	missing, dups := deliveryCounts(s.seen, ids)
	if missing > 0 || dups > 0 || len(s.seen) != len(ids) {
		b.Fatalf("the HTTPS server got %d distinct readings of %d: %d missing, %d duplicates, %d unknown",
			len(s.seen), len(ids), missing, dups, len(s.seen)-(len(ids)-missing))
	}
}

// A gateway back online drains its spooled backlog through the real agent,
// plugin and modemsim (115200 baud, modem TLS) to an HTTPS server with
// requests pipelined on one connection: the server receives every reading
// exactly once, and answers requests only once the next one has arrived,
// which a client with one request in flight can never bring about.
func TestHTTPSAgentDrainsABacklogPipelined(t *testing.T) {
	bin, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	pkiDir := t.TempDir()
	p := plugintest.NewPKI(t, plugintest.P256)
	p.WriteFiles(t, pkiDir)
	const device = "https-backlog"
	srv := startIngestServer(t, p, device, 3*time.Second)
	r := drainThrough(t, bin, pkiDir, httpsDrainUpstream(device, srv), 0, 0, 3000)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	t.Logf("3,000 readings in %.1f s over %d requests on %d connections: %d answers released by the next request, %d by the %s hold",
		r.seconds, srv.requests, srv.conns, srv.pipelined, srv.unpipelined, srv.hold)
	if srv.pipelined == 0 {
		t.Errorf("no request arrived while the one before it waited for its answer: the agent did not pipeline")
	}
	if srv.conns != 1 {
		t.Errorf("the drain took %d connections on a clean link, want 1", srv.conns)
	}
}

// httpsDrainUpstream drains to srv over HTTPS: the window opens when the
// module reports the session open (the TLS handshake done), from when the
// agent may send.
func httpsDrainUpstream(device string, srv *ingestServer) drainUpstream {
	return drainUpstream{
		device:   device,
		uplink:   fmt.Sprintf(`https: {url: "%s/ingest"}`, srv.url),
		opened:   func(c modemsim.Counters) bool { return c.SessionsOpened > 0 },
		received: srv,
	}
}

// writeHTTPSConfig writes dir/cellgate.yaml: the agent as https-gw, TLS in
// mode, its HTTP input on port, its HTTPS uplink to url/ingest.
func writeHTTPSConfig(t *testing.T, dir, bin, mode string, port int, url string) {
	t.Helper()
	cfg := fmt.Sprintf(`device_id: https-gw
modem: {model: sim7600, port: %q}
plugins: {dir: %q}
tls: {mode: %s, ca: ca.pem, cert: client.pem, key: client.key}
inputs: {http: {listen: "127.0.0.1:%d"}}
status: {listen: ""}
spool: {dir: spool}
uplink:
  https: {url: "%s/ingest"}
  batch: {max_readings: 40, max_delay: 200ms, encoding: cbor+deflate}
`, filepath.Join(dir, "ttyUSB2"), bin, mode, port, url)
	if err := os.WriteFile(filepath.Join(dir, "cellgate.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}
