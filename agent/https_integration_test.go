package agent_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/reading"
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
	srv := startIngestServer(t, p)

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
// certificate: it decodes each batch POSTed to /ingest by https-gw, as a
// consumer would, and counts its readings; it notes the TLS versions it
// negotiated.
type ingestServer struct {
	url      string
	versions sync.Map // TLS version (uint16) -> true

	mu       sync.Mutex
	seen     map[string]int // reading id -> times received
	problems []string       // batches refused, and why
}

func startIngestServer(t *testing.T, p *plugintest.PKI) *ingestServer {
	t.Helper()
	s := &ingestServer{seen: map[string]int{}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(s.ingest))
	srv.TLS = plugintest.MutualTLS(p, 0)
	srv.TLS.VerifyConnection = func(cs tls.ConnectionState) error {
		s.versions.Store(cs.Version, true)
		return nil
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *ingestServer) ingest(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b, err := reading.DecodeBatch(r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"), body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || r.URL.Path != "/ingest" || b.DeviceID != "https-gw" {
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
func (s *ingestServer) hasAll(t *testing.T, ids []string) bool {
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
