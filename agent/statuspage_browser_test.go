package agent_test

// The status page tested in a real browser: a headless Debian chromium
// driven over the DevTools protocol (chromedp) loads the page, runs its
// script, and the test reads what a person would see.
//
// TestStatusPageInABrowserAgainstARecordedStatus serves a recorded
// /v1/status (agent/statuspage/testdata) beside a real statuspage.Page
// behind statuspage.Guard: it checks every field the page shows and the
// token exchange. TestStatusPageInABrowserToleratesMissingFields checks
// that a status lacking fields (an older agent, a failed modem poll) shows
// dashes, not stale or made-up figures, without a script error.
// TestStatusPageInABrowser runs the real agent (modemsim on a pty, the
// sim7600 plugin binary, mosquitto with client certificates), checks that
// the page shows what /v1/status says, follows a signal change and an
// injected network loss, and saves screenshots.
//
// chromium comes from scripts/deps.sh (Debian's chromium package). Without
// it the tests skip, except under CI=true where they fail. Screenshots go
// to $ARTIFACTS_DIR when set, else to the test's temporary directory; the
// test prints where.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cellgate/cellgate/agent"
	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/statuspage"
	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// browser is one headless chromium for one test, with a phone-sized window.
type browser struct {
	t   *testing.T
	ctx context.Context // the tab; every action runs under a deadline of its own
	// problems collects the script's uncaught exceptions and the console's
	// errors (a Content-Security-Policy violation is one).
	mu       sync.Mutex
	problems []string
}

// Phone-sized viewport: the page must read in one column without
// scrolling sideways.
const phoneWidth, phoneHeight = 412, 915

// startBrowser starts chromium; cleanup closes it and checks that none of
// its processes outlive it.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (scripts/deps.sh installs it): the status page's browser test cannot run")
		}
		t.Skip("chromium is not installed: run scripts/deps.sh (under CI=true this is a failure)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.WindowSize(phoneWidth, phoneHeight),
		chromedp.DisableGPU,
		// CI containers often lack the user namespaces chromium's sandbox
		// needs; the browser loads only the test's loopback pages.
		chromedp.NoSandbox,
		chromedp.Flag("lang", "en-US"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: ctx}
	// The first action starts chromium and must run on the tab's own
	// context (ending a context derived from it would close the browser):
	// a timer bounds it instead. Starting on a loaded machine takes a while.
	slow := time.AfterFunc(2*time.Minute, cancelTab)
	err = chromedp.Do(ctx, chromedp.Navigate("about:blank"))
	slow.Stop()
	if err != nil {
		cancelTab()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	dataDir := userDataDir(chromedp.FromContext(ctx).Browser.Process().Pid)
	collected := make(chan struct{})
	go b.collect(chromedp.Console(ctx), collected)
	t.Cleanup(func() {
		cancelTab()
		<-collected
		cancelAlloc()
		if dataDir == "" {
			return
		}
		if !testutil.WaitFor(30*time.Second, func() bool { return len(processesWith(dataDir)) == 0 }) {
			t.Errorf("chromium processes outlived the test: %v", processesWith(dataDir))
		}
	})
	return b
}

// collect keeps the page's uncaught exceptions and console errors until
// the tab's context ends.
func (b *browser) collect(messages func(func(chromedp.ConsoleMessage, error) bool), done chan<- struct{}) {
	defer close(done)
	for m, err := range messages {
		if err != nil {
			return
		}
		if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleException {
			continue
		}
		b.mu.Lock()
		b.problems = append(b.problems, string(m.Type)+": "+m.Text)
		b.mu.Unlock()
	}
}

// checkNoProblems fails the test if the page's script threw or logged an
// error.
func (b *browser) checkNoProblems() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.problems) > 0 {
		b.t.Errorf("the page reported %d problems:\n%s", len(b.problems), strings.Join(b.problems, "\n"))
	}
}

// do runs actions in the tab within d.
func (b *browser) do(d time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// run runs action in the tab within a minute and returns its value.
func run[T any](b *browser, action chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	return chromedp.Run(ctx, action)
}

// open loads url and returns the address the browser ended at.
func (b *browser) open(url string) string {
	b.t.Helper()
	if err := b.do(time.Minute, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`[data-field="link-state"]`))); err != nil {
		b.t.Fatalf("open %s: %v", url, err)
	}
	at, err := run(b, chromedp.Location())
	if err != nil {
		b.t.Fatalf("open %s: %v", url, err)
	}
	return at
}

// shown is one data-field element as the page shows it.
type shown struct {
	Text   string `json:"text"`
	Value  string `json:"value"`
	State  string `json:"state"`
	Bars   string `json:"bars"`
	Points string `json:"points"`
	Count  string `json:"count"`
}

const readFieldsJS = `(() => {
  const o = {};
  document.querySelectorAll('[data-field]').forEach(e => {
    const a = n => e.getAttribute(n) || '';
    o[e.dataset.field] = {text: e.textContent.trim(), value: a('data-value'), state: a('data-state'),
      bars: a('data-bars'), points: a('data-points'), count: a('data-count')};
  });
  return o;
})()`

// fields reads every data-field of the page.
func (b *browser) fields() map[string]shown {
	b.t.Helper()
	out, err := run(b, chromedp.Evaluate[map[string]shown](readFieldsJS))
	if err != nil {
		b.t.Fatalf("read the page: %v", err)
	}
	return out
}

// screenshot saves the page as name.png in the artifacts directory.
func (b *browser) screenshot(dir, name string) {
	b.t.Helper()
	png, err := run(b, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

// checkOneColumn fails the test if the page scrolls sideways or lays its
// sections out in more than one column at phone width.
func (b *browser) checkOneColumn() {
	b.t.Helper()
	type layout struct {
		ScrollWidth, InnerWidth int
		Lefts                   []int
	}
	js := `({ScrollWidth: document.documentElement.scrollWidth, InnerWidth: window.innerWidth,
	  Lefts: [...new Set([...document.querySelectorAll('main > section')].map(s => Math.round(s.getBoundingClientRect().left)))]})`
	got, err := run(b, chromedp.Evaluate[layout](js))
	if err != nil {
		b.t.Fatal(err)
	}
	if got.ScrollWidth > got.InnerWidth || len(got.Lefts) != 1 {
		b.t.Errorf("at %d px the page is %d px wide with sections starting at %v px: want one column, no sideways scrolling", got.InnerWidth, got.ScrollWidth, got.Lefts)
	}
}

// artifactsDir is $ARTIFACTS_DIR (created if needed) or a temporary
// directory of t.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// userDataDir returns the --user-data-dir of chromium's process pid.
func userDataDir(pid int) string {
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	for _, arg := range strings.Split(string(cmdline), "\x00") {
		if dir, ok := strings.CutPrefix(arg, "--user-data-dir="); ok {
			return dir
		}
	}
	return ""
}

// processesWith lists the processes whose command line names dataDir as
// their user data directory: chromium passes it to every child.
func processesWith(dataDir string) []int {
	var pids []int
	eachProc("cmdline", func(pid int, cmdline string) bool {
		if strings.Contains(cmdline, "--user-data-dir="+dataDir+"\x00") {
			pids = append(pids, pid)
		}
		return false
	})
	return pids
}

// --- against recorded status documents ---

// recordedAgent serves a recorded /v1/status and a real status page behind
// the token guard, as the agent's status listener does.
func recordedAgent(t *testing.T, statusFile, token string) *httptest.Server {
	t.Helper()
	status, err := os.ReadFile(filepath.Join("statuspage", "testdata", statusFile))
	if err != nil {
		t.Fatal(err)
	}
	log, _ := testutil.Logger(t)
	start := time.Now()
	signal := -77
	page, err := statuspage.New(statuspage.Options{StateDir: t.TempDir(), Logger: log, Interval: 100 * time.Millisecond, Window: time.Minute,
		Sample: func() statuspage.Sample {
			n := uint64(time.Since(start) / time.Millisecond)
			return statuspage.Sample{ReadingsAccepted: n, SignalDBM: &signal, BytesAirTx: n * 3, BytesAirRx: n, LinkUp: true}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- page.Run(ctx) }()
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(status)
	})
	mux.Handle("/v1/history", page)
	mux.Handle("/{$}", page)
	srv := httptest.NewServer(statuspage.Guard(token, mux, "/healthz"))
	t.Cleanup(func() {
		srv.Close()
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return srv
}

func TestStatusPageInABrowserAgainstARecordedStatus(t *testing.T) {
	b := startBrowser(t)
	const token = "recorded-token-7f3a"
	srv := recordedAgent(t, "status-full.json", token)

	// Without the token there is no page, only the 401 explaining why.
	resp, err := statusClient.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "bearer token") {
		t.Fatalf("GET / without a token: %d %s, want 401 explaining the token", resp.StatusCode, body)
	}
	// The token exchange: the address loses the token, the cookie stays.
	if at := b.open(srv.URL + "/?token=" + token + "&refresh=1"); at != srv.URL+"/?refresh=1" {
		t.Fatalf("after the token exchange the browser is at %s, want %s/?refresh=1", at, srv.URL)
	}
	var f map[string]shown
	testutil.Eventually(t, time.Minute, "the page to show the recorded status and two history points", func() bool {
		f = b.fields()
		return f["page-state"].State == "live" && atoi(f["chart-signal"].Points) >= 2
	})
	want := map[string]string{
		"device-id": "rec-gw-01", "uptime": "1 h 2 min",
		"link-state": "up", "uplink-kind": "mqtt", "reconnects": "3",
		"modem-model": "SIM7600E-H", "modem-imei": "861234056789012", "modem-operator": "Roam Net",
		"registration": "roaming", "modem-ready": "yes", "signal-dbm": "-77 dBm",
		"spool-depth": "37", "spool-bytes": "4.12 kB", "spool-dropped": "2",
		"config-version": "7", "plugin-restarts": "1", "chart-signal-last": "-77 dBm",
	}
	for name, text := range want {
		if got := f[name].Text; got != text {
			t.Errorf("%s shows %q, want %q", name, got, text)
		}
	}
	if f["link-state"].State != "up" || f["signal-bars"].Bars != "3" || f["signal-dbm"].Value != "-77" || f["spool-depth"].Value != "37" {
		t.Errorf("link %+v, bars %+v, signal %+v, spool %+v", f["link-state"], f["signal-bars"], f["signal-dbm"], f["spool-depth"])
	}
	if !strings.HasPrefix(f["last-error"].Text, "publish: network lost (") || !strings.HasSuffix(f["last-ack"].Text, " ago") {
		t.Errorf("last error %q, last ack %q", f["last-error"].Text, f["last-ack"].Text)
	}
	if f["chart-signal-range"].Text != "all -77 dBm" {
		t.Errorf("signal chart range %q, want \"all -77 dBm\"", f["chart-signal-range"].Text)
	}
	if f["usage-today"].Value == "" || f["usage-today"].Value == "0" || atoi(f["chart-readings"].Points) < 1 {
		t.Errorf("usage today %+v, readings chart %+v: want the page's own history", f["usage-today"], f["chart-readings"])
	}
	warnings := f["warnings"].Text
	for _, w := range []string{"certificate expires in 12 days", "unhealthy: no publish acknowledged"} {
		if !strings.Contains(warnings, w) {
			t.Errorf("warnings %q lack %q", warnings, w)
		}
	}
	b.checkOneColumn()
	b.screenshot(artifactsDir(t), "recorded-status")
	b.checkNoProblems()
}

func TestStatusPageInABrowserToleratesMissingFields(t *testing.T) {
	b := startBrowser(t)
	for _, tc := range []struct {
		file  string
		want  map[string]string
		state string // link-state's data-state
	}{
		{"status-sparse.json", map[string]string{
			"device-id": "old-agent", "uptime": "1 h 2 min", "spool-depth": "0", "spool-oldest-age": "none waiting",
			"link-state": "—", "modem-model": "—", "modem-imei": "—", "signal-dbm": "—", "registration": "—",
			"last-ack": "—", "last-error": "—", "config-version": "—", "spool-bytes": "—", "modem-ready": "no",
		}, "unknown"},
		// A failed poll knows nothing of the modem now: no stale figures
		// from when it opened, and rssi 0 is not read as -113 dBm.
		{"status-poll-error.json", map[string]string{
			"device-id": "poll-err-gw", "uptime": "42 s", "modem-model": "SIM7800E", "modem-imei": "861234056789099",
			"signal-dbm": "—", "registration": "—", "modem-operator": "—", "link-state": "down", "spool-depth": "3",
			"spool-oldest-age": "—",
		}, "down"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b.t = t // the subtests share one browser, in turn
			srv := recordedAgent(t, tc.file, "")
			b.open(srv.URL + "/?refresh=1")
			var f map[string]shown
			testutil.Eventually(t, time.Minute, "the page to show "+tc.file, func() bool {
				f = b.fields()
				return f["page-state"].State == "live" && f["device-id"].Text == tc.want["device-id"]
			})
			for name, text := range tc.want {
				if got := f[name].Text; got != text {
					t.Errorf("%s shows %q, want %q", name, got, text)
				}
			}
			if f["link-state"].State != tc.state || f["signal-bars"].Bars != "0" {
				t.Errorf("link %+v, bars %+v: want %s and no bars", f["link-state"], f["signal-bars"], tc.state)
			}
			if tc.file == "status-poll-error.json" && !strings.Contains(f["warnings"].Text, "modem poll: plugin Status: the plugin is not running") {
				t.Errorf("warnings %q lack the poll error", f["warnings"].Text)
			}
			b.checkNoProblems()
		})
	}
}

// atoi is strconv.Atoi for attributes the test reads; -1 when not a number.
func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// --- against the real agent ---

// pageAgent is a real agent run in the test's process (so the test can
// set the status page's sampling interval), with the real sim7600 plugin
// binary, modemsim on a pty and mosquitto requiring client certificates.
type pageAgent struct {
	t      *testing.T
	modem  *modemsim.Modem
	token  string
	status string // http://127.0.0.1:port of the status listener
	ingest string // http://127.0.0.1:port of the HTTP input
}

func startPageAgent(t *testing.T, poll time.Duration) *pageAgent {
	t.Helper()
	bin, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // mosquitto may drop to its own user
		t.Fatal(err)
	}
	pki := plugintest.NewPKI(t, plugintest.P256)
	pki.WriteFiles(t, dir)
	modem, err := modemsim.Start(modemsim.Config{Model: "sim7600", Baud: -1, Link: filepath.Join(dir, "ttyUSB2"), StateDir: filepath.Join(dir, "flash")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { modem.Close() })
	broker := startMosquitto(t, dir, 0)
	a := &pageAgent{t: t, modem: modem, token: "page-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	if err := os.WriteFile(filepath.Join(dir, "status.token"), []byte(a.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgText := fmt.Sprintf(`device_id: page-gw
modem: {model: sim7600, port: %q, poll: %s}
plugins: {dir: %q}
tls: {mode: modem, ca: ca.pem, cert: client.pem, key: client.key}
inputs: {http: {listen: "127.0.0.1:0"}}
status: {listen: "127.0.0.1:0", token_file: %q}
spool: {dir: spool}
uplink:
  mqtt: {broker: "mqtts://%s", topic: "cellgate/{device_id}/telemetry", qos: 1}
  batch: {max_readings: 50, max_delay: 200ms}
`, filepath.Join(dir, "ttyUSB2"), poll, bin, filepath.Join(dir, "status.token"), broker.addr)
	path := filepath.Join(dir, "cellgate.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(config.LoadOptions{File: path, FileExplicit: true})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	log, _ := testutil.Logger(t)
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan agent.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, cfg, agent.Options{Logger: log, StatusPageInterval: time.Second, Ready: func(ad agent.Addrs) { addrs <- ad }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(2 * time.Minute):
			t.Error("the agent did not stop within 2 minutes")
		}
	})
	select {
	case ad := <-addrs:
		if ad.Status == nil {
			t.Fatal("the agent has no status listener")
		}
		a.status, a.ingest = "http://"+ad.Status.String(), "http://"+ad.HTTP.String()
	case err := <-done:
		t.Fatalf("agent: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the agent did not listen within 2 minutes")
	}
	return a
}

// statusClient bounds every request the test makes to the agent.
var statusClient = &http.Client{Timeout: 30 * time.Second}

// statusDoc reads /v1/status as a generic document, as the page does.
func (a *pageAgent) statusDoc() map[string]any {
	a.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, a.status+"/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := statusClient.Do(req)
	if err != nil {
		a.t.Fatalf("GET /v1/status: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var st map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &st) != nil {
		a.t.Fatalf("GET /v1/status: %d %s", resp.StatusCode, body)
	}
	return st
}

// post has the agent accept n readings (202: on disk).
func (a *pageAgent) post(n int) {
	a.t.Helper()
	var body strings.Builder
	body.WriteByte('[')
	for i := range n {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"sensor":"page%d","value":%d.5,"unit":"C"}`, i%3, i)
	}
	body.WriteByte(']')
	resp, err := statusClient.Post(a.ingest+"/v1/readings", "application/json", strings.NewReader(body.String()))
	if err != nil {
		a.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		a.t.Fatalf("POST /v1/readings: %d", resp.StatusCode)
	}
}

// lookup reads a dotted path of a decoded JSON document; nil when absent.
func lookup(doc map[string]any, path string) any {
	var v any = doc
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// text writes a JSON value as the page writes it: numbers without a
// fraction, a dash for nothing.
func text(v any) string {
	switch v := v.(type) {
	case nil:
		return "—"
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		if v {
			return "yes"
		}
		return "no"
	}
	return fmt.Sprint(v)
}

// mismatches compares what the page shows with a /v1/status document.
func mismatches(st map[string]any, f map[string]shown) []string {
	var out []string
	check := func(field, got, want string) {
		if got != want {
			out = append(out, fmt.Sprintf("%s: page %q, /v1/status %q", field, got, want))
		}
	}
	check("device-id", f["device-id"].Text, text(lookup(st, "device_id")))
	check("modem-model", f["modem-model"].Text, text(lookup(st, "modem.model")))
	check("modem-imei", f["modem-imei"].Text, text(lookup(st, "modem.imei")))
	check("modem-ready", f["modem-ready"].Text, text(lookup(st, "modem_ready")))
	// The test waits for the first poll and the simulated modem always
	// answers: modem_status is what the page shows of the modem now.
	if e := lookup(st, "modem_status.poll_error"); e != nil {
		out = append(out, fmt.Sprintf("the modem poll failed: %v", e))
	}
	check("registration", f["registration"].Text, text(lookup(st, "modem_status.registration")))
	if dbm := lookup(st, "modem_status.signal_dbm"); dbm != nil {
		check("signal-dbm", f["signal-dbm"].Value, text(dbm))
	} else {
		check("signal-dbm", f["signal-dbm"].Text, "no signal")
	}
	check("spool-depth", f["spool-depth"].Value, text(lookup(st, "spool.pending_readings")))
	check("spool-dropped", f["spool-dropped"].Value, text(lookup(st, "spool.dropped_readings")))
	link := "down"
	if lookup(st, "uplink.connected") == true {
		link = "up"
	}
	check("link-state", f["link-state"].State, link)
	check("reconnects", f["reconnects"].Value, text(lookup(st, "uplink.reconnects")))
	check("plugin-restarts", f["plugin-restarts"].Value, text(lookup(st, "plugin_restarts")))
	return out
}

// expectMatch waits until the page shows what /v1/status says and cond
// holds for both.
func expectMatch(t *testing.T, a *pageAgent, b *browser, within time.Duration, what string, cond func(st map[string]any, f map[string]shown) bool) map[string]shown {
	t.Helper()
	var last []string
	var f map[string]shown
	ok := testutil.WaitFor(within, func() bool {
		st := a.statusDoc()
		f = b.fields()
		last = mismatches(st, f)
		if len(last) == 0 && !cond(st, f) {
			last = []string{"the condition does not hold yet"}
		}
		return len(last) == 0
	})
	if !ok {
		t.Fatalf("within %s the page did not show %s:\n%s", within, what, strings.Join(last, "\n"))
	}
	return f
}

func TestStatusPageInABrowser(t *testing.T) {
	// The link must show down within two poll intervals of a network
	// loss; 5 s polls leave a loaded machine room while staying short.
	const poll = 5 * time.Second
	a := startPageAgent(t, poll)
	b := startBrowser(t)
	shots := artifactsDir(t)
	testutil.Eventually(t, 3*time.Minute, "the agent to connect and poll the modem", func() bool {
		st := a.statusDoc()
		return lookup(st, "uplink.connected") == true && lookup(st, "modem_status.polled_at") != nil
	})
	a.post(20)
	testutil.Eventually(t, 2*time.Minute, "the 20 readings to be acknowledged", func() bool {
		st := a.statusDoc()
		return lookup(st, "spool.pending_readings") == 0.0 && lookup(st, "uplink.last_ack") != nil
	})

	if at := b.open(a.status + "/?token=" + a.token + "&refresh=1"); at != a.status+"/?refresh=1" {
		t.Fatalf("after the token exchange the browser is at %s, want %s/?refresh=1", at, a.status)
	}
	f := expectMatch(t, a, b, 2*time.Minute, "the link up and the history charted", func(st map[string]any, f map[string]shown) bool {
		return f["link-state"].Text == "up" && atoi(f["chart-signal"].Points) >= 2 && atoi(f["usage-today"].Value) > 0
	})
	if f["device-id"].Text != "page-gw" || f["last-ack"].Text == "—" || f["signal-bars"].Bars == "0" {
		t.Errorf("device %q, last ack %q, bars %q: want page-gw, an age, some bars", f["device-id"].Text, f["last-ack"].Text, f["signal-bars"].Bars)
	}
	b.checkOneColumn()
	b.screenshot(shots, "1-link-up")

	// The signal shown follows the modem's +CSQ at the next polls.
	if err := a.modem.SetSignal(10, 0); err != nil {
		t.Fatal(err)
	}
	f = expectMatch(t, a, b, 2*time.Minute, "the signal at -93 dBm", func(st map[string]any, f map[string]shown) bool {
		return f["signal-dbm"].Text == "-93 dBm"
	})
	if f["signal-bars"].Bars != "2" {
		t.Errorf("at -93 dBm the page shows %s bars, want 2", f["signal-bars"].Bars)
	}

	if err := a.modem.Fault(modemsim.Fault{Kind: modemsim.FaultNetworkLoss}); err != nil {
		t.Fatal(err)
	}
	lost := time.Now()
	testutil.Eventually(t, 2*time.Minute, "the page to show the link down", func() bool {
		return b.fields()["link-state"].State == "down"
	})
	took := time.Since(lost)
	t.Logf("the page showed the link down %s after the network loss (modem.poll %s, page refresh 1s)", took.Round(10*time.Millisecond), poll)
	if took > 2*poll {
		t.Errorf("the page showed the link down %s after the network loss: more than two poll intervals (%s)", took, 2*poll)
	}
	a.post(5)
	f = expectMatch(t, a, b, 2*time.Minute, "the link down, 5 readings waiting, the modem searching", func(st map[string]any, f map[string]shown) bool {
		return f["link-state"].Text == "down" && f["spool-depth"].Text == "5" && f["last-error"].Text != "—" &&
			f["registration"].Text == "searching" && f["spool-oldest-age"].Text != "—" && f["spool-oldest-age"].Text != "none waiting"
	})
	t.Logf("during the loss: registration %q, last error %q, oldest reading %q", f["registration"].Text, f["last-error"].Text, f["spool-oldest-age"].Text)
	b.screenshot(shots, "2-network-lost")

	if err := a.modem.Fault(modemsim.Fault{Kind: modemsim.FaultNetworkRestore}); err != nil {
		t.Fatal(err)
	}
	// Up again, drained, and registered with a signal at the next poll.
	f = expectMatch(t, a, b, 3*time.Minute, "the link up again, the spool drained, the modem registered", func(st map[string]any, f map[string]shown) bool {
		return f["link-state"].Text == "up" && f["spool-depth"].Text == "0" && f["registration"].Text != "searching" && f["signal-dbm"].Value != ""
	})
	if !strings.HasPrefix(f["chart-span"].Text, "since ") || atoi(f["chart-readings"].Points) < 2 {
		t.Errorf("chart span %q, readings chart %+v: want the agent's short history charted since its start", f["chart-span"].Text, f["chart-readings"])
	}
	b.screenshot(shots, "3-restored")
	b.checkNoProblems()
}
