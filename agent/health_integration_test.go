package agent_test

// Integration tests of what the operator sees, with the same real parts as
// integration_test.go: /healthz following a network loss, the signal
// following the modem's +CSQ, the metrics by name, the status listener's
// token, and an ingest listener that serves no status.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/modemsim"
)

// wantMetrics are the metric families the agent exports whatever happened
// (issue 11's list); packaging/monitoring's rules and dashboard use them.
var wantMetrics = []string{
	"cellgate_build_info", "cellgate_healthy",
	"cellgate_input_accepted_readings_total",
	"cellgate_spool_pending_readings", "cellgate_spool_pending_bytes", "cellgate_spool_disk_bytes", "cellgate_spool_dropped_readings_total",
	"cellgate_uplink_publishes_total", "cellgate_uplink_acked_readings_total", "cellgate_uplink_acked_batches_total",
	"cellgate_uplink_retries_total", "cellgate_uplink_reconnects_total", "cellgate_uplink_dial_failures_total",
	"cellgate_uplink_publish_ack_seconds", "cellgate_uplink_connected", "cellgate_uplink_last_ack_timestamp_seconds",
	"cellgate_uplink_air_bytes_total", "cellgate_modem_serial_bytes_total",
	"cellgate_modem_signal_dbm", "cellgate_modem_signal_rssi", "cellgate_modem_registration_state",
	"cellgate_modem_ready", "cellgate_plugin_up", "cellgate_plugin_restarts_total",
}

// agentStatus is the part of GET /v1/status these tests read.
type agentStatus struct {
	Uptime float64 `json:"uptime"`
	Health struct {
		Status  string   `json:"status"`
		Reasons []string `json:"reasons"`
	} `json:"health"`
	ModemStatus *struct {
		Registration string `json:"registration"`
		SignalRSSI   int    `json:"signal_rssi"`
		SignalDBM    *int   `json:"signal_dbm"`
		SerialTx     uint64 `json:"serial_tx_bytes"`
		SerialRx     uint64 `json:"serial_rx_bytes"`
	} `json:"modem_status"`
	Uplink struct {
		Connected bool   `json:"connected"`
		AirTx     uint64 `json:"air_tx_bytes"`
		AirRx     uint64 `json:"air_rx_bytes"`
		LastError string `json:"last_error"`
	} `json:"uplink"`
	Spool struct {
		Pending    uint64     `json:"pending_readings"`
		OldestTime *time.Time `json:"oldest_time"`
		OldestAge  *float64   `json:"oldest_age_seconds"`
	} `json:"spool"`
}

// get GETs url with the bearer token (none when ""), returning the status
// code and body.
func get(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, body
}

// scrape reads the status listener's /metrics.
func (w *world) scrape() []byte {
	w.t.Helper()
	code, body := get(w.t, w.status+"/metrics", "")
	if code != http.StatusOK {
		w.t.Fatalf("GET /metrics: %d %s", code, body)
	}
	return body
}

// expectMetricNames fails unless every family of wantMetrics is in metrics.
func (w *world) expectMetricNames(metrics []byte) {
	w.t.Helper()
	for _, name := range wantMetrics {
		if !regexp.MustCompile(`(?m)^# TYPE ` + name + ` `).Match(metrics) {
			w.t.Errorf("/metrics has no %s:\n%s", name, metrics)
		}
	}
	if !regexp.MustCompile(`(?m)^cellgate_build_info\{[^}]*contract="` + regexp.QuoteMeta(sdk.ContractVersion) + `"[^}]*\} 1$`).Match(metrics) {
		w.t.Errorf("cellgate_build_info lacks its labels:\n%s", metrics)
	}
}

// agentStatus reads GET /v1/status from the status listener.
func (w *world) agentStatus() agentStatus {
	w.t.Helper()
	code, body := get(w.t, w.status+"/v1/status", "")
	if code != http.StatusOK {
		w.t.Fatalf("GET /v1/status: %d %s", code, body)
	}
	var st agentStatus
	if err := json.Unmarshal(body, &st); err != nil {
		w.t.Fatalf("GET /v1/status: %v: %s", err, body)
	}
	return st
}

// health reads /healthz from base.
func health(t *testing.T, base string) (int, string) {
	t.Helper()
	code, body := get(t, base+"/healthz", "")
	return code, string(body)
}

func TestHealthFollowsNetworkLossOnBothListeners(t *testing.T) {
	w := newWorldWith(t, "modem", worldOptions{poll: 300 * time.Millisecond})
	w.expectDelivered(w.post(10, "before"), 30*time.Second)
	for _, base := range []string{w.ingest, w.status} {
		if code, body := health(t, base); code != http.StatusOK || !strings.Contains(body, `"status":"ok"`) {
			t.Fatalf("%s/healthz before the loss: %d %s", base, code, body)
		}
	}

	if err := w.modem.Fault(modemsim.Fault{Kind: modemsim.FaultNetworkLoss}); err != nil {
		t.Fatal(err)
	}
	ids := w.post(5, "during") // they wait in the spool
	for _, base := range []string{w.ingest, w.status} {
		var body string
		testutil.Eventually(t, 30*time.Second, base+"/healthz to answer 503 during the network loss", func() bool {
			var code int
			code, body = health(t, base)
			return code == http.StatusServiceUnavailable
		})
		if !strings.Contains(body, `"status":"unhealthy"`) || !strings.Contains(body, "modem is not registered: searching") {
			t.Fatalf("%s/healthz during the loss says %s, want the registration as the reason", base, body)
		}
	}
	testutil.Eventually(t, 30*time.Second, "the status to show the link down", func() bool {
		return !w.agentStatus().Uplink.Connected
	})
	// The readings posted during the loss wait: the status says since when.
	if sp := w.agentStatus().Spool; sp.Pending < uint64(len(ids)) || sp.OldestTime == nil || sp.OldestAge == nil ||
		*sp.OldestAge < 0 || time.Since(*sp.OldestTime) > 5*time.Minute {
		t.Errorf("the status during the loss shows spool %+v, want %d or more waiting and the oldest one's time and age", sp, len(ids))
	}
	during := string(w.scrape())
	for _, want := range []string{
		`cellgate_modem_ready{device="it-gw"} 0`,
		`cellgate_modem_registration_state{device="it-gw",state="searching"} 1`,
		`cellgate_modem_registration_state{device="it-gw",state="home"} 0`,
		`cellgate_healthy{device="it-gw"} 0`,
		`cellgate_uplink_connected{device="it-gw"} 0`,
	} {
		if !strings.Contains(during, want) {
			t.Errorf("/metrics during the loss lacks %q", want)
		}
	}

	if err := w.modem.Fault(modemsim.Fault{Kind: modemsim.FaultNetworkRestore}); err != nil {
		t.Fatal(err)
	}
	w.expectDelivered(ids, 60*time.Second)
	for _, base := range []string{w.ingest, w.status} {
		testutil.Eventually(t, 30*time.Second, base+"/healthz to answer 200 after the network came back", func() bool {
			code, _ := health(t, base)
			return code == http.StatusOK
		})
	}
	var st agentStatus
	testutil.Eventually(t, 30*time.Second, "the spool to be empty once everything was delivered", func() bool {
		st = w.agentStatus()
		return st.Spool.Pending == 0
	})
	if st.Spool.OldestTime != nil || st.Spool.OldestAge != nil {
		t.Errorf("with everything delivered the status shows spool %+v, want nothing waiting and no oldest reading", st.Spool)
	}
	if !st.Uplink.Connected || st.Uplink.AirTx == 0 || st.Uplink.AirRx == 0 {
		t.Errorf("after the loss the status shows uplink %+v, want connected with bytes both ways", st.Uplink)
	}
	if st.Uplink.LastError == "" {
		t.Errorf("the status shows no last uplink error after a network loss")
	}
	metrics := string(w.scrape())
	for _, re := range []string{
		`cellgate_uplink_reconnects_total\{device="it-gw"\} [1-9]`,
		`cellgate_uplink_connected\{device="it-gw"\} 1`,
		`cellgate_healthy\{device="it-gw"\} 1`,
		`cellgate_uplink_air_bytes_total\{device="it-gw",direction="tx"\} [1-9]`,
		`cellgate_modem_serial_bytes_total\{device="it-gw",direction="rx"\} [1-9]`,
		`cellgate_modem_registration_state\{device="it-gw",state="home"\} 1`,
		`cellgate_uplink_publish_ack_seconds_count\{device="it-gw"\} [1-9]`,
	} {
		if !regexp.MustCompile(re).MatchString(metrics) {
			t.Errorf("/metrics after the loss does not match %s", re)
		}
	}
}

func TestSignalFollowsTheModemsCSQ(t *testing.T) {
	w := newWorldWith(t, "modem", worldOptions{poll: 300 * time.Millisecond})
	for _, c := range []struct {
		rssi int
		dbm  *int // nil: no signal
	}{{10, ptr(-93)}, {31, ptr(-51)}, {0, ptr(-113)}, {99, nil}, {22, ptr(-69)}} {
		if err := w.modem.SetSignal(c.rssi, 99); err != nil {
			t.Fatal(err)
		}
		want := "absent"
		if c.dbm != nil {
			want = fmt.Sprint(*c.dbm)
		}
		var st agentStatus
		testutil.Eventually(t, 20*time.Second, fmt.Sprintf("the status to show rssi %d as %s dBm", c.rssi, want), func() bool {
			st = w.agentStatus()
			ms := st.ModemStatus
			if ms == nil || ms.SignalRSSI != c.rssi {
				return false
			}
			return (c.dbm == nil && ms.SignalDBM == nil) || (c.dbm != nil && ms.SignalDBM != nil && *ms.SignalDBM == *c.dbm)
		})
		metrics := string(w.scrape())
		rssiLine := fmt.Sprintf(`cellgate_modem_signal_rssi{device="it-gw"} %d`, c.rssi)
		if !strings.Contains(metrics, rssiLine) {
			t.Errorf("/metrics lacks %q", rssiLine)
		}
		dbmRE := regexp.MustCompile(`(?m)^cellgate_modem_signal_dbm\{device="it-gw"\} (\S+)$`)
		m := dbmRE.FindStringSubmatch(metrics)
		switch {
		case c.dbm == nil && m != nil:
			t.Errorf("rssi 99: /metrics has cellgate_modem_signal_dbm %s, want none", m[1])
		case c.dbm != nil && (m == nil || m[1] != fmt.Sprint(*c.dbm)):
			t.Errorf("rssi %d: /metrics has cellgate_modem_signal_dbm %v, want %d", c.rssi, m, *c.dbm)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestStatusListenerTokenAndIngestWithoutStatus(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "status.token")
	const token = "s3cret-token-for-the-test"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWorldWith(t, "modem", worldOptions{tokenFile: tokenFile})

	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"/v1/status", "", http.StatusUnauthorized},
		{"/v1/status", "wrong", http.StatusUnauthorized},
		{"/v1/status", token, http.StatusOK},
		{"/metrics", "", http.StatusUnauthorized},
		{"/metrics", token, http.StatusOK},
		{"/v1/history", "", http.StatusUnauthorized},
		{"/v1/history", token, http.StatusOK},
		{"/", "", http.StatusUnauthorized},
		{"/", token, http.StatusOK},
		{"/nothing-here", token, http.StatusNotFound},
		{"/healthz", "", http.StatusOK},
		{"/readyz", "", http.StatusOK},
	} {
		if code, body := get(t, w.status+c.path, c.token); code != c.want {
			t.Errorf("status listener GET %s with token %q: %d %s, want %d", c.path, c.token, code, body, c.want)
		}
	}

	for _, c := range []struct {
		path string
		want int
	}{
		{"/v1/status", http.StatusNotFound},
		{"/metrics", http.StatusNotFound},
		{"/v1/config", http.StatusNotFound},
		{"/v1/history", http.StatusNotFound},
		{"/healthz", http.StatusOK},
		{"/readyz", http.StatusOK},
	} {
		if code, body := get(t, w.ingest+c.path, ""); code != c.want {
			t.Errorf("ingest listener GET %s: %d %s, want %d", c.path, code, body, c.want)
		}
	}
}

// TestMonitoringFilesNameExportedMetrics reads packaging/monitoring's alert
// rules and Grafana dashboard and checks that every cellgate_ metric they
// name is in a live scrape of the agent (after readings went through, so
// the latency histogram has samples), and that every rule is complete.
func TestMonitoringFilesNameExportedMetrics(t *testing.T) {
	w := newWorldWith(t, "modem", worldOptions{poll: 300 * time.Millisecond})
	w.expectDelivered(w.post(20, "monitoring"), 30*time.Second)
	testutil.Eventually(t, 20*time.Second, "a modem poll in the status", func() bool {
		ms := w.agentStatus().ModemStatus
		return ms != nil && ms.SignalDBM != nil
	})
	metrics := w.scrape()

	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	rulesFile := filepath.Join("..", "packaging", "monitoring", "cellgate-alerts.yml")
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var exprs []string
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("%s: rule %+v lacks alert, expr, labels.severity or annotations.summary", rulesFile, r)
			}
			alerts[r.Alert] = true
			exprs = append(exprs, r.Expr)
		}
	}
	for _, want := range []string{"CellgateUplinkDown", "CellgateSpoolFilling", "CellgateNoSignal"} {
		if !alerts[want] {
			t.Errorf("%s has no %s alert", rulesFile, want)
		}
	}

	dashFile := filepath.Join("..", "packaging", "monitoring", "cellgate-dashboard.json")
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if data, err = os.ReadFile(dashFile); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", dashFile, err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", dashFile, p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(string); ok {
			exprs = append(exprs, q)
		}
	}

	names := map[string]bool{}
	for _, e := range exprs {
		for _, name := range regexp.MustCompile(`\bcellgate_[a-z0-9_]+`).FindAllString(e, -1) {
			names[name] = true
		}
	}
	if len(names) < 15 {
		t.Fatalf("the monitoring files name only %d cellgate metrics: %v", len(names), names)
	}
	// Exported only with remote_config.enabled (remote_integration_test.go
	// checks them there).
	onlyWithRemote := map[string]bool{"cellgate_remote_config_committed_version": true, "cellgate_remote_config_pushes_total": true}
	for name := range names {
		if onlyWithRemote[name] {
			continue
		}
		family := name
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && bytes.Contains(metrics, []byte("# TYPE "+base+" histogram")) {
				family = base
			}
		}
		if !bytes.Contains(metrics, []byte("# TYPE "+family+" ")) {
			t.Errorf("the monitoring files use %s, which the agent does not export", name)
		}
	}
}
