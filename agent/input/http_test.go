package input

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/internal/testutil"
)

// server is an HTTP input serving on a real loopback listener.
type server struct {
	h      *HTTP
	url    string
	client *http.Client
	stop   func() error
}

// startHTTP serves h on 127.0.0.1:0 until the test ends, then checks that
// Serve shut down cleanly.
func startHTTP(t testing.TB, h *HTTP) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, ln) }()
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	srv := &server{h: h, url: "http://" + ln.Addr().String(), client: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
	var once sync.Once
	var stopErr error
	srv.stop = func() error {
		once.Do(func() {
			cancel()
			stopErr = <-done
			tr.CloseIdleConnections()
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := srv.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (s *server) do(t *testing.T, method, path, contentType string, body io.Reader, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if method != http.MethodHead {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s → %d with Content-Type %q, want application/json", method, path, resp.StatusCode, ct)
		}
		if err := json.Unmarshal(raw, &r.body); err != nil {
			t.Errorf("%s %s → %d with a body that is not a JSON object: %q", method, path, resp.StatusCode, raw)
		}
	}
	return r
}

func (s *server) post(t *testing.T, body string) response {
	t.Helper()
	return s.do(t, http.MethodPost, "/v1/readings", "application/json", strings.NewReader(body))
}

func idsOf(t *testing.T, r response) []string {
	t.Helper()
	list, ok := r.body["ids"].([]any)
	if !ok {
		t.Fatalf("202 body has no ids: %s", r.raw)
	}
	ids := make([]string, len(list))
	for i, v := range list {
		ids[i], _ = v.(string)
	}
	return ids
}

func testHTTP(sink Sink) *HTTP {
	return NewHTTP(config.HTTPInput{MaxBody: 64 << 10}, sink, quiet, nil)
}

func TestHTTPAnswers202OnlyOnceTheReadingsAreDurable(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, spool.Options{Dir: dir})
	srv := startHTTP(t, testHTTP(sp))

	resp := srv.post(t, `[
	  {"sensor":"t1","value":21.5,"unit":"C"},
	  {"id":"client-42","sensor":"t2","ts":"2024-11-27T04:00:00.5Z","value":{"a":1}},
	  {"sensor":"door","ts":1732680000123,"value":true,"tags":{"site":"b"}}
	]`)
	if resp.status != http.StatusAccepted {
		t.Fatalf("POST → %d %s, want 202", resp.status, resp.raw)
	}
	ids := idsOf(t, resp)
	if len(ids) != 3 || ids[1] != "client-42" {
		t.Fatalf("ids = %v, want 3 with the given one second", ids)
	}
	single := srv.post(t, `{"sensor":"t3","value":"ok"}`)
	if single.status != http.StatusAccepted || len(idsOf(t, single)) != 1 {
		t.Fatalf("single object → %d %s", single.status, single.raw)
	}
	ids = append(ids, idsOf(t, single)...)

	// Reopen the spool as a restarted agent would: every accepted reading
	// is there, in order, with the answered ids and the fields sent.
	stored := storedReadings(t, sp, dir)
	if len(stored) != 4 {
		t.Fatalf("the spool holds %d readings after 4 were accepted", len(stored))
	}
	for i, r := range stored {
		if r.ID != ids[i] {
			t.Errorf("stored reading %d has id %s, the answer said %s", i, r.ID, ids[i])
		}
	}
	if got := []string{stored[0].Sensor, stored[1].Sensor, stored[2].Sensor, stored[3].Sensor}; strings.Join(got, ",") != "t1,t2,door,t3" {
		t.Errorf("stored sensors in order %v", got)
	}
	if !stored[1].TS.Equal(time.Date(2024, 11, 27, 4, 0, 0, 500e6, time.UTC)) || stored[2].TS.UnixMilli() != 1732680000123 || stored[2].Tags["site"] != "b" {
		t.Errorf("given fields not kept: %+v %+v", stored[1], stored[2])
	}
	if st := srv.h.Stats(); st.Accepted != 4 || totalRejected(st) != 0 {
		t.Errorf("Stats = %+v, want 4 accepted", st)
	}
}

func TestHTTPHoldsTheAnswerUntilTheSinkReturns(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, spool.Options{Dir: dir})
	gate := newGatedSink(sp)
	srv := startHTTP(t, testHTTP(gate))
	answered := make(chan response, 1)
	go func() { answered <- srv.post(t, `{"sensor":"t1","value":1}`) }()
	<-gate.arrived
	select {
	case r := <-answered:
		t.Fatalf("answered %d before the sink returned", r.status)
	default:
	}
	if n := sp.Stats().Appended; n != 0 {
		t.Fatalf("spool holds %d readings before the append was let through", n)
	}
	close(gate.gate)
	if r := <-answered; r.status != http.StatusAccepted {
		t.Fatalf("→ %d %s", r.status, r.raw)
	}
	if n := sp.Stats().Appended; n != 1 {
		t.Fatalf("202 answered with %d readings durable, want 1", n)
	}
}

func TestHTTPBadReadingIsNamedAndNothingIsStored(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, spool.Options{Dir: dir})
	srv := startHTTP(t, testHTTP(sp))
	body := `[{"sensor":"t1","value":1},{"sensor":"t2","value":2},{"sensor":"t3"}]`
	resp := srv.post(t, body)
	if resp.status != http.StatusBadRequest {
		t.Fatalf("→ %d %s, want 400", resp.status, resp.raw)
	}
	want := map[string]any{"error": `reading 2: field "value": missing`, "index": 2.0, "field": "value", "offset": float64(strings.Index(body, `{"sensor":"t3"`))}
	if fmt.Sprint(resp.body) != fmt.Sprint(want) {
		t.Errorf("400 body = %v, want %v", resp.body, want)
	}
	syntax := srv.post(t, `{"sensor":"t1","value":x}`)
	want = map[string]any{"error": "body: invalid JSON at byte 23: invalid character 'x' looking for a value", "offset": 23.0}
	if syntax.status != http.StatusBadRequest || fmt.Sprint(syntax.body) != fmt.Sprint(want) {
		t.Errorf("syntax error → %d %v, want 400 %v", syntax.status, syntax.body, want)
	}
	empty := srv.post(t, ``)
	if empty.status != http.StatusBadRequest || empty.body["index"] != nil || empty.body["field"] != nil {
		t.Errorf("empty body → %d %v", empty.status, empty.body)
	}
	if stored := storedReadings(t, sp, dir); len(stored) != 0 {
		t.Errorf("the spool holds %d readings of refused requests", len(stored))
	}
	// 3 readings of the first body, as far as it was read, and one each
	// for the bodies refused before a reading was complete.
	if st := srv.h.Stats(); st.ByReason[ReasonBadReading] != 5 || totalRejected(st) != 5 || st.Accepted != 0 {
		t.Errorf("Stats = %+v, want 5 readings rejected as bad_reading", st)
	}
}

func TestHTTPRefusesBodiesOverMaxBody(t *testing.T) {
	sp := openSpool(t, spool.Options{})
	srv := startHTTP(t, NewHTTP(config.HTTPInput{MaxBody: config.KiB}, sp, quiet, nil))
	reading := `{"sensor":"t1","value":1},`
	big := "[" + strings.Repeat(reading, 2*1024/len(reading)) + `{"sensor":"t1","value":1}]`
	const want = "body larger than the 1KiB limit (inputs.http.max_body)"
	// Announced length: refused before reading.
	if r := srv.post(t, big); r.status != http.StatusRequestEntityTooLarge || r.body["error"] != want {
		t.Errorf("announced %d bytes → %d %v", len(big), r.status, r.body)
	}
	// Chunked, length unknown: refused while reading.
	chunked := srv.do(t, http.MethodPost, "/v1/readings", "application/json", io.MultiReader(strings.NewReader(big)))
	if chunked.status != http.StatusRequestEntityTooLarge || chunked.body["error"] != want {
		t.Errorf("chunked %d bytes → %d %v", len(big), chunked.status, chunked.body)
	}
	// Exactly at the limit is fine.
	fits := "[" + strings.Repeat(" ", 1024-len(`[{"sensor":"t1","value":1}]`)) + `{"sensor":"t1","value":1}]`
	if r := srv.post(t, fits); r.status != http.StatusAccepted {
		t.Errorf("a body of exactly max_body → %d %v", r.status, r.body)
	}
	if n := sp.Stats().Appended; n != 1 {
		t.Errorf("spool holds %d readings, want only the one that fit", n)
	}
}

// countingReader serves n bytes of a body, prefix then filler, counting
// what was read.
type countingReader struct {
	prefix string
	filler byte
	left   int
	read   atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(len(p), c.left)]
	n := copy(p, c.prefix)
	c.prefix = c.prefix[n:]
	for i := n; i < len(p); i++ {
		p[i] = c.filler
	}
	c.left -= len(p)
	c.read.Add(int64(len(p)))
	return len(p), nil
}

// The body is decoded as it arrives: a reading over its 8 KiB limit is
// refused as soon as it passes the limit, while the client is still
// sending the 32 MiB it announced, and none of the request is stored.
func TestHTTPOversizedReadingIsRefusedBeforeTheBodyEnds(t *testing.T) {
	sp := openSpool(t, spool.Options{})
	srv := startHTTP(t, NewHTTP(config.HTTPInput{MaxBody: 64 * config.MiB}, sp, quiet, nil))
	const size = 32 << 20
	body := &countingReader{prefix: `[{"sensor":"t1","value":1},{"sensor":"t2","value":"`, filler: 'x', left: size}
	req, err := http.NewRequest(http.MethodPost, srv.url+"/v1/readings", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sent := body.read.Load()
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(raw), `"index":1`) || !strings.Contains(string(raw), "limit per reading") {
		t.Fatalf("→ %d %s, want 400 naming reading 1 and the size limit", resp.StatusCode, raw)
	}
	if sent > size/2 {
		t.Errorf("the client had sent %d of %d bytes when the answer came", sent, size)
	}
	t.Logf("answered 400 after the client had sent %d of %d bytes", sent, size)
	if n := sp.Stats().Appended; n != 0 {
		t.Errorf("spool holds %d readings of a refused request", n)
	}
}

func TestHTTPContentTypeAndEncoding(t *testing.T) {
	sp := openSpool(t, spool.Options{})
	srv := startHTTP(t, testHTTP(sp))
	body := `{"sensor":"t1","value":1}`
	for _, tc := range []struct {
		ct, ce string
		want   int
	}{
		{"application/json", "", 202},
		{"application/json; charset=utf-8", "", 202},
		{"application/json; charset=UTF-8", "identity", 202},
		{"application/vnd.sensor+json", "", 202},
		{"", "", 415},
		{"text/plain", "", 415},
		{"application/x-www-form-urlencoded", "", 415},
		{"application/json; charset=latin1", "", 415},
		{"application/jsonx", "", 415},
		{"application/json", "gzip", 415},
	} {
		var hdr []string
		if tc.ce != "" {
			hdr = []string{"Content-Encoding", tc.ce}
		}
		r := srv.do(t, http.MethodPost, "/v1/readings", tc.ct, strings.NewReader(body), hdr...)
		if r.status != tc.want {
			t.Errorf("Content-Type %q, Content-Encoding %q → %d %v, want %d", tc.ct, tc.ce, r.status, r.body, tc.want)
		}
	}
}

func TestHTTPMethodsAndPaths(t *testing.T) {
	srv := startHTTP(t, testHTTP(openSpool(t, spool.Options{})))
	for _, tc := range []struct {
		method, path string
		want         int
		allow        string
	}{
		{http.MethodGet, "/v1/readings", 405, "POST"},
		{http.MethodPut, "/v1/readings", 405, "POST"},
		{http.MethodDelete, "/v1/readings", 405, "POST"},
		{http.MethodGet, "/healthz", 200, ""},
		{http.MethodHead, "/healthz", 200, ""},
		{http.MethodPost, "/healthz", 405, "GET, HEAD"},
		{http.MethodGet, "/v1/other", 404, ""},
		{http.MethodPost, "/", 404, ""},
	} {
		r := srv.do(t, tc.method, tc.path, "application/json", nil)
		if r.status != tc.want || r.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s → %d (Allow %q) %s; want %d (Allow %q)", tc.method, tc.path, r.status, r.header.Get("Allow"), r.raw, tc.want, tc.allow)
		}
	}
	if r := srv.do(t, http.MethodGet, "/healthz", "", nil); r.body["status"] != "ok" {
		t.Errorf("GET /healthz body = %s", r.raw)
	}
}

func TestHTTPFullSpoolAnswers507AndStoresNothing(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, spool.Options{Dir: dir, MaxBytes: 4096})
	srv := startHTTP(t, testHTTP(sp))
	batch := "[" + strings.TrimSuffix(strings.Repeat(`{"sensor":"t1","value":21.5,"unit":"C"},`, 10), ",") + "]"
	accepted := 0
	var full response
	for range 100 {
		r := srv.post(t, batch)
		if r.status == http.StatusAccepted {
			accepted += 10
			continue
		}
		full = r
		break
	}
	if full.status != http.StatusInsufficientStorage {
		t.Fatalf("filling a 4 KiB spool ended with %d %s, want 507", full.status, full.raw)
	}
	if full.header.Get("Retry-After") != "5" || !strings.Contains(full.raw, "spool: full") {
		t.Errorf("507 with Retry-After %q and body %s", full.header.Get("Retry-After"), full.raw)
	}
	if stored := storedReadings(t, sp, dir); len(stored) != accepted {
		t.Errorf("spool holds %d readings, %d were accepted: the refused request left some behind", len(stored), accepted)
	}
	if st := srv.h.Stats(); st.ByReason[ReasonSpoolFull] != 10 || totalRejected(st) != 10 || st.Accepted != uint64(accepted) {
		t.Errorf("Stats = %+v", st)
	}
}

func TestHTTPReadingOverTheSpoolRecordLimitAnswers413(t *testing.T) {
	sp := openSpool(t, spool.Options{MaxRecordBytes: 100})
	srv := startHTTP(t, testHTTP(sp))
	r := srv.post(t, `[{"sensor":"t1","value":1},{"sensor":"t1","value":"`+strings.Repeat("x", 100)+`"}]`)
	if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(r.raw, "spool: too large") || !strings.Contains(r.raw, "record 1 of the batch") {
		t.Errorf("→ %d %s, want 413 naming record 1", r.status, r.raw)
	}
	if n := sp.Stats().Appended; n != 0 {
		t.Errorf("spool took %d readings of a refused request", n)
	}
}

func TestHTTPSinkFailuresAnswer503Or507(t *testing.T) {
	closed := openSpool(t, spool.Options{})
	closed.Close()
	for _, tc := range []struct {
		name string
		sink Sink
		want int
		why  Reason
	}{
		{"closed spool", closed, 503, ReasonUnavailable},
		{"I/O error", failingSink{errors.New("spool: write segment: input/output error")}, 503, ReasonUnavailable},
		{"wrapped full", failingSink{fmt.Errorf("layer: %w", spool.ErrFull)}, 507, ReasonSpoolFull},
		{"wrapped too large", failingSink{fmt.Errorf("layer: %w", spool.ErrTooLarge)}, 413, ReasonSpoolTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startHTTP(t, testHTTP(tc.sink))
			r := srv.post(t, `[{"sensor":"t1","value":1},{"sensor":"t1","value":2}]`)
			if r.status != tc.want {
				t.Fatalf("→ %d %s, want %d", r.status, r.raw, tc.want)
			}
			if wantRA := tc.want != 413; (r.header.Get("Retry-After") == "5") != wantRA {
				t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
			}
			if st := srv.h.Stats(); st.ByReason[tc.why] != 2 || totalRejected(st) != 2 {
				t.Errorf("Stats = %+v, want 2 readings rejected as %s", st, tc.why)
			}
		})
	}
}

// readingsBody is a JSON array of readings at least n bytes long.
func readingsBody(n int) string {
	const one = `{"sensor":"t1","value":21.5,"unit":"C"}`
	count := n/(len(one)+1) + 1
	return "[" + strings.TrimSuffix(strings.Repeat(one+",", count), ",") + "]"
}

// Bodies over 64 KiB share a memory budget of 16 bodies of max_body: with
// 16 chunked ones (each reserving max_body) held at the sink, the next
// large one waits and gets 503 busy, while a small one is not held up by
// the budget at all.
func TestHTTPBusyAnswers503WhenTheMemoryBudgetIsFull(t *testing.T) {
	sp := openSpool(t, spool.Options{MaxBytes: 64 << 20})
	gate := newGatedSink(sp)
	h := NewHTTP(config.HTTPInput{MaxBody: config.MiB}, gate, quiet, nil)
	h.budgetWait = 50 * time.Millisecond
	srv := startHTTP(t, h)
	large := readingsBody(100 << 10)
	chunked := func() io.Reader { return io.MultiReader(strings.NewReader(large)) }
	var wg sync.WaitGroup
	results := make(chan int, maxConcurrentIngest+1)
	post := func(body io.Reader) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- srv.do(t, http.MethodPost, "/v1/readings", "application/json", body).status
		}()
	}
	for range maxConcurrentIngest {
		post(chunked())
	}
	for range maxConcurrentIngest {
		<-gate.arrived
	}
	r := srv.do(t, http.MethodPost, "/v1/readings", "application/json", chunked())
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(r.raw, "busy") {
		t.Errorf("large request %d → %d %s, want 503 busy", maxConcurrentIngest+1, r.status, r.raw)
	}
	post(strings.NewReader(`{"sensor":"t1","value":1}`))
	<-gate.arrived // the small one reached the sink: it took no budget
	close(gate.gate)
	wg.Wait()
	close(results)
	for s := range results {
		if s != http.StatusAccepted {
			t.Errorf("a held request → %d once the sink let it through", s)
		}
	}
	if st := h.Stats(); st.ByReason[ReasonBusy] == 0 {
		t.Errorf("Stats = %+v, want the busy refusal counted", st)
	}
}

func TestHTTPConcurrentClientsGetDistinctDurableIDs(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, spool.Options{Dir: dir})
	srv := startHTTP(t, testHTTP(sp))
	const clients, requests, per = 8, 15, 50
	body := "[" + strings.TrimSuffix(strings.Repeat(`{"sensor":"t1","value":21.5,"unit":"C"},`, per), ",") + "]"
	answered := make(chan []string, clients*requests)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range requests {
				r := srv.post(t, body)
				if r.status != http.StatusAccepted {
					t.Errorf("→ %d %s", r.status, r.raw)
					return
				}
				answered <- idsOf(t, r)
			}
		}()
	}
	wg.Wait()
	close(answered)
	want := map[string]bool{}
	for ids := range answered {
		for _, id := range ids {
			if want[id] {
				t.Fatalf("id %s answered twice", id)
			}
			want[id] = true
		}
	}
	stored := storedReadings(t, sp, dir)
	if len(stored) != clients*requests*per || len(want) != len(stored) {
		t.Fatalf("stored %d readings, answered %d ids, want %d", len(stored), len(want), clients*requests*per)
	}
	for _, r := range stored {
		if !want[r.ID] {
			t.Fatalf("stored id %s was never answered", r.ID)
		}
	}
}

func TestHTTPShutdownLetsRequestsInProgressFinish(t *testing.T) {
	sp := openSpool(t, spool.Options{})
	gate := newGatedSink(sp)
	srv := startHTTP(t, testHTTP(gate))
	answered := make(chan response, 1)
	go func() { answered <- srv.post(t, `{"sensor":"t1","value":1}`) }()
	<-gate.arrived
	stopped := make(chan error, 1)
	go func() { stopped <- srv.stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) with a request in progress", err)
	case r := <-answered:
		t.Fatalf("request answered %d during shutdown before its append finished", r.status)
	default:
	}
	close(gate.gate)
	if r := <-answered; r.status != http.StatusAccepted {
		t.Errorf("in-flight request → %d %s, want 202", r.status, r.raw)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve after a graceful shutdown: %v", err)
	}
	if n := sp.Stats().Appended; n != 1 {
		t.Errorf("spool holds %d readings, want 1", n)
	}
}

func TestHTTPShutdownCutsRequestsThatOutstayTheTimeout(t *testing.T) {
	sp := openSpool(t, spool.Options{})
	gate := newGatedSink(sp) // never opened
	h := testHTTP(gate)
	h.shutdownTimeout = 100 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, ln) }()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	posted := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Post("http://"+ln.Addr().String()+"/v1/readings", "application/json", bytes.NewReader([]byte(`{"sensor":"t1","value":1}`)))
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("answered %d", resp.StatusCode)
		}
		posted <- err
	}()
	<-gate.arrived
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "were cut") {
		t.Errorf("Serve = %v, want an error saying requests were cut", err)
	}
	if err := <-posted; err == nil {
		t.Error("the cut request got an answer")
	}
}

// The answer carries the ids as reading.Parse assigned them: canonical
// ULIDs, one per reading.
func TestHTTPAssignedIDsAreULIDs(t *testing.T) {
	srv := startHTTP(t, testHTTP(openSpool(t, spool.Options{})))
	ids := idsOf(t, srv.post(t, `[{"sensor":"t1","value":1},{"sensor":"t1","value":2}]`))
	for _, id := range ids {
		if len(id) != 26 {
			t.Errorf("assigned id %q is not a 26-character ULID", id)
		}
	}
	if ids[0] >= ids[1] {
		t.Errorf("ids %v do not sort in request order", ids)
	}
}

// A sink that does not make the readings durable within the append
// timeout gets the request a 503 saying so, and the wait that ended is not
// handed to the next request: once the sink answers again, so does the
// input.
func TestHTTPSinkOverTheAppendTimeoutAnswers503(t *testing.T) {
	sp := openSpool(t, spool.Options{})
	gate := newGatedSink(sp)
	h := testHTTP(gate)
	h.appendTimeout = 100 * time.Millisecond
	srv := startHTTP(t, h)
	r := srv.post(t, `{"sensor":"t1","value":1}`)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.raw, context.DeadlineExceeded.Error()) {
		t.Fatalf("held sink → %d %s, want 503 naming the deadline", r.status, r.raw)
	}
	if r.header.Get("Retry-After") != "5" {
		t.Errorf("Retry-After %q, want 5", r.header.Get("Retry-After"))
	}
	if st := srv.h.Stats(); st.ByReason[ReasonUnavailable] != 1 || st.Accepted != 0 {
		t.Errorf("Stats = %+v, want 1 reading unavailable", st)
	}
	close(gate.gate)
	for i := range 3 {
		if r := srv.post(t, fmt.Sprintf(`{"sensor":"t1","value":%d}`, i+2)); r.status != http.StatusAccepted {
			t.Fatalf("request %d after the timeout → %d %s, want 202", i+2, r.status, r.raw)
		}
	}
	if n := sp.Stats().Appended; n != 3 {
		t.Errorf("spool holds %d readings, want the 3 accepted", n)
	}
}

// A client that hangs up while its readings wait for the sink ends the
// wait (the sink sees its context end) rather than holding it for the
// append timeout; the readings count as unavailable.
func TestHTTPClientHangingUpEndsTheAppend(t *testing.T) {
	sp := openSpool(t, spool.Options{})
	gate := newGatedSink(sp) // never opened
	srv := startHTTP(t, testHTTP(gate))
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(srv.url, "http://"), waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"sensor":"t1","value":1}`
	if _, err := fmt.Fprintf(c, "POST /v1/readings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gate.arrived:
	case <-time.After(waitLimit):
		t.Fatal("the request did not reach the sink")
	}
	c.Close()
	testutil.Eventually(t, waitLimit, "the abandoned append to be counted", func() bool {
		return srv.h.Stats().ByReason[ReasonUnavailable] == 1
	})
}

// Append waits are reused only when they never ended, and the watcher
// that ends them exits once none is in progress.
func TestAppendWaitsEndCancelledAndLateAppends(t *testing.T) {
	var a appendWaits
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kept := a.start(ctx, time.Hour)
	late := a.start(ctx, time.Millisecond)
	select {
	case <-late.Done():
	case <-time.After(waitLimit):
		t.Fatal("a wait past its deadline did not end")
	}
	if !errors.Is(late.Err(), context.DeadlineExceeded) {
		t.Errorf("late wait: Err = %v, want the deadline", late.Err())
	}
	if d, ok := late.Deadline(); !ok || d.IsZero() {
		t.Errorf("late wait: Deadline = %v, %v", d, ok)
	}
	if kept.Err() != nil {
		t.Fatalf("a wait within its deadline ended: %v", kept.Err())
	}
	a.finish(late) // ended: not reused
	a.finish(kept)
	if again := a.start(ctx, time.Hour); again != kept || again.Err() != nil {
		t.Errorf("start after finish gave %p (err %v), want the unended wait %p back", again, again.Err(), kept)
	} else {
		cancel()
		select {
		case <-again.Done():
		case <-time.After(waitLimit):
			t.Fatal("a wait whose request was cancelled did not end")
		}
		if !errors.Is(again.Err(), context.Canceled) {
			t.Errorf("cancelled wait: Err = %v, want context.Canceled", again.Err())
		}
		a.finish(again)
	}
	testutil.Eventually(t, waitLimit, "the watcher to stop", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return !a.watching && len(a.inFlight) == 0
	})
}
