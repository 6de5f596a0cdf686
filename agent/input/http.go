package input

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/reading"
)

// HTTP server limits and timeouts. A gateway is small: the memory the
// readings of requests in progress take is bounded, and slow or stuck
// clients are cut.
const (
	// DefaultMaxBody applies when config.HTTPInput.MaxBody is 0.
	DefaultMaxBody = 1 << 20
	// maxConcurrentIngest is how many bodies of max_body the memory
	// budget holds at once (see reservation).
	maxConcurrentIngest = 16
	// unreservedBytes is how much memory a request may hold before it
	// needs the budget: small bodies, nearly all of them, never wait for
	// it, and a body that trickles in holds at most this much.
	unreservedBytes = 64 << 10
	// defaultBudgetWait bounds the wait for the budget before a 503.
	defaultBudgetWait = 10 * time.Second
	// minBodyRate, after bodyGrace, is the slowest a body may arrive on
	// average, in bytes per second; a slower one is cut with 408.
	minBodyRate = 1 << 10
	bodyGrace   = time.Second
	// appendTimeout bounds the wait for the spool to make a batch durable.
	appendTimeout     = 30 * time.Second
	readHeaderTimeout = 10 * time.Second
	// readTimeout bounds the request (headers and body) whatever its
	// rate.
	readTimeout            = 60 * time.Second
	writeTimeout           = appendTimeout + 30*time.Second
	idleTimeout            = 2 * time.Minute
	maxHeaderBytes         = 64 << 10
	defaultShutdownTimeout = 10 * time.Second
	// retryAfter is the Retry-After header of 503 and 507 answers, in
	// seconds: long enough for the uplink to free space or the spool to
	// recover, short enough that a sensor's buffer does not overflow.
	retryAfter = "5"
)

// HTTP is the POST /v1/readings ingest. Its answers are all JSON:
//
//   - 202 {"ids":[…]} once the sink has made every reading of the request
//     durable, ids in request order;
//   - 400 {"error","index","field","offset"} for a bad body or reading
//     (index, field and offset as in reading.ParseError, each left out
//     when it does not apply); nothing of the request is stored;
//   - 405 for a method other than POST (GET and HEAD on /healthz);
//   - 408 for a body arriving slower than 1 KiB/s after its first second,
//     or not within 60 s;
//   - 413 for a body over the max_body limit, or a reading over the spool's
//     record limit (spool.ErrTooLarge);
//   - 415 for a Content-Type other than JSON (application/json or any
//     +json type, charset UTF-8 if given) or a Content-Encoding;
//   - 507 with Retry-After when the spool is full (spool.ErrFull);
//   - 503 with Retry-After for any other sink failure, including the spool
//     taking longer than 30 s, or a body over 64 KiB finding no room in
//     the memory budget within 10 s.
//
// The body is decoded as it arrives (reading.Decoder): a request holds its
// readings' canonical JSON, not its body, and a bad reading ends it at once.
// The readings of all requests in progress take at most 16 bodies of
// max_body (see MemoryBudget); the first 64 KiB of each request do not
// count, so small requests never wait, and a slow client holds little.
//
// GET /healthz answers 200 {"status":"ok"}; other paths 404.
// An HTTP is safe for concurrent use.
type HTTP struct {
	sink     Sink
	log      *slog.Logger
	now      func() time.Time
	maxBody  int64
	mux      *http.ServeMux
	stats    counters
	failLog  *logLimiter // sink failures and busy answers, at WARN
	budget   *semaphore.Weighted
	returns  *memoryReturn
	decoders sync.Pool // *reading.Decoder: a 16 KiB read buffer and one reading
	requests sync.Pool // *ingestRequest
	waits    appendWaits
	// healthz, when set (HandleHealth), answers GET /healthz instead of
	// the constant {"status":"ok"}.
	healthz http.Handler
	// Tests shorten these.
	budgetWait      time.Duration
	shutdownTimeout time.Duration
	appendTimeout   time.Duration
}

// NewHTTP returns the ingest for cfg (only MaxBody is used here: Serve
// takes a listener, so the caller binds cfg.Listen). Its log lines carry
// input=http, added here. log nil means slog.Default(); now nil means
// time.Now.
func NewHTTP(cfg config.HTTPInput, sink Sink, log *slog.Logger, now func() time.Time) *HTTP {
	if log == nil {
		log = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	h := &HTTP{
		sink:            sink,
		log:             log.With("input", "http"),
		now:             now,
		maxBody:         int64(cfg.MaxBody),
		failLog:         newLogLimiter(),
		returns:         newMemoryReturn(),
		budgetWait:      defaultBudgetWait,
		shutdownTimeout: defaultShutdownTimeout,
		appendTimeout:   appendTimeout,
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBody
	}
	h.budget = semaphore.NewWeighted(MemoryBudget(h.maxBody))
	h.mux = http.NewServeMux()
	h.mux.HandleFunc("/v1/readings", h.ingest)
	h.mux.HandleFunc("/healthz", h.health)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorResponse{Error: fmt.Sprintf("no endpoint %s (POST /v1/readings, GET /healthz)", r.URL.Path)})
	})
	return h
}

// Handler returns the ingest's handler, for callers that run their own
// server (Serve uses it). Such a server must set its own timeouts, and
// gets neither the Go memory limit nor the return of memory to the system
// that Serve arranges.
func (h *HTTP) Handler() http.Handler { return h.mux }

// Handle serves pattern with handler on the ingest's listener (the agent
// mounts its status and metrics surfaces here). Call it before Serve.
func (h *HTTP) Handle(pattern string, handler http.Handler) { h.mux.Handle(pattern, handler) }

// HandleHealth makes handler answer GET and HEAD /healthz (the agent's own
// health, which knows more than the input). Call it before Serve.
func (h *HTTP) HandleHealth(handler http.Handler) { h.healthz = handler }

// Stats returns the ingest's counters: readings accepted, and readings
// refused by reason.
func (h *HTTP) Stats() Stats { return h.stats.snapshot() }

// Serve answers requests on ln until ctx ends, then shuts down gracefully:
// it stops accepting, lets requests in progress finish (their readings are
// durable when they get 202) for up to 10 s, then closes what is left. It
// closes ln. It returns nil after a clean shutdown, and an error if the
// server failed or requests had to be cut.
//
// While it serves, the process's resident memory is kept within
// ResidentBound of what it was at the start: Serve sets the Go runtime's
// soft memory limit (unless one is set, as by GOMEMLIMIT; undone on
// return), and returns the memory of large requests to the system once
// they have ended.
func (h *HTTP) Serve(ctx context.Context, ln net.Listener) error {
	defer h.limitMemory()()
	returning, stopReturning := context.WithCancel(context.WithoutCancel(ctx))
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		h.returns.run(returning)
	}()
	defer func() {
		stopReturning()
		<-returned
	}()
	srv := &http.Server{
		Handler:           h.mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	h.log.Info("http input listening", "addr", ln.Addr().String(), "max_body", h.maxBody, "memory_budget", MemoryBudget(h.maxBody))
	select {
	case err := <-served:
		return fmt.Errorf("http input on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		err = fmt.Errorf("http input on %s: requests still running after %v were cut: %w", ln.Addr(), h.shutdownTimeout, err)
		srv.Close()
	}
	<-served
	h.log.Info("http input stopped", "addr", ln.Addr().String())
	return err
}

// errorResponse is the body of every answer other than 202 and /healthz.
type errorResponse struct {
	Error  string `json:"error"`
	Index  *int   `json:"index,omitempty"`
	Field  string `json:"field,omitempty"`
	Offset *int64 `json:"offset,omitempty"`
}

type acceptedResponse struct {
	IDs []string `json:"ids"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only our own response types are encoded here; they cannot fail.
		panic(fmt.Sprintf("input: encoding a %T response: %v", v, err))
	}
	w.Header()["Content-Type"] = jsonContentType
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (h *HTTP) health(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, errorResponse{Error: fmt.Sprintf("method %s not allowed on /healthz (want GET)", r.Method)})
		return
	}
	if h.healthz != nil {
		h.healthz.ServeHTTP(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// refuse answers a request refused for its content, counting its readings
// (as far as they were read) under why.
func (h *HTTP) refuse(w http.ResponseWriter, r *http.Request, status int, why Reason, readings int, resp errorResponse) {
	h.stats.reject(why, readings)
	h.log.Debug("request refused", "remote", r.RemoteAddr, "status", status, "reason", why, "err", resp.Error)
	writeJSON(w, status, resp)
}

// fail answers a request whose readings were not stored for a reason of
// the gateway's (the sink failed, or no memory was free). Its warning is
// rate-limited: a full spool refuses every request.
func (h *HTTP) fail(w http.ResponseWriter, r *http.Request, status int, why Reason, readings int, err error) {
	h.stats.reject(why, readings)
	h.failLog.log(r.Context(), h.log, slog.LevelWarn, "readings not stored", "remote", r.RemoteAddr, "status", status, "reason", why, "readings", readings, "err", err)
	if status != http.StatusRequestEntityTooLarge {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeJSON(w, status, errorResponse{Error: err.Error()})
}

// jsonMediaType reports whether a Content-Type header names JSON in UTF-8.
func jsonMediaType(header string) bool {
	if header == "application/json" {
		return true // nearly every request: no need to parse it
	}
	mt, params, err := mime.ParseMediaType(header)
	if err != nil {
		return false
	}
	if mt != "application/json" && !(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

func (h *HTTP) ingest(w http.ResponseWriter, r *http.Request) {
	if !h.admit(w, r) {
		return
	}
	req := h.getRequest(w, r)
	defer h.putRequest(req)
	body, b := &req.body, &req.batch
	dec := h.decoder(body)
	defer h.putDecoder(dec)
	for {
		rd, err := dec.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			h.refuseBody(w, r, err, len(b.ids))
			return
		}
		waited, err := b.add(r.Context(), rd)
		body.pause(waited)
		if errors.Is(err, errBusy) {
			h.fail(w, r, http.StatusServiceUnavailable, ReasonBusy, len(b.ids)+1, err)
			return
		}
		if err != nil {
			h.fail(w, r, http.StatusInternalServerError, ReasonUnavailable, len(b.ids)+1, err)
			return
		}
	}
	body.done()
	wait := h.waits.start(r.Context(), h.appendTimeout)
	_, err := h.sink.Append(wait, b.payloads...)
	h.waits.finish(wait)
	if err != nil {
		h.fail(w, r, appendFailureStatus(err), sinkReason(err), len(b.payloads), err)
		return
	}
	h.stats.accepted.Add(uint64(len(b.ids)))
	writeAccepted(w, b.ids)
}

// waitCheckInterval is how often appendWaits looks at the appends in
// progress: how late one ends after its request was cancelled or its time
// ran out.
const waitCheckInterval = 50 * time.Millisecond

// appendWaits gives the sink appends of requests in progress their
// context: one ends when its request's context does (the client hung up,
// the server cut the request) or once it has taken its time, whichever
// comes first. Rather than a timer and a registration with the request's
// context for every request (context.WithTimeout, 16% of the bytes a
// single-reading request allocated), one watcher goroutine looks at them
// every waitCheckInterval while any is in progress, and exits when none
// is; an append therefore ends up to waitCheckInterval late. A wait whose
// append returned without it ending is reused.
type appendWaits struct {
	mu       sync.Mutex
	inFlight []*appendWait // each at its index
	free     []*appendWait // finished, never ended: reusable
	watching bool          // a watcher goroutine runs
}

// appendWait is the context of one sink append: its request's values, its
// deadline, and a Done channel that appendWaits closes.
type appendWait struct {
	parent   context.Context
	deadline time.Time
	done     chan struct{}
	err      atomic.Pointer[error] // set before done is closed
	index    int                   // in appendWaits.inFlight
}

func (w *appendWait) Deadline() (time.Time, bool) { return w.deadline, true }
func (w *appendWait) Done() <-chan struct{}       { return w.done }
func (w *appendWait) Value(key any) any           { return w.parent.Value(key) }

func (w *appendWait) Err() error {
	if err := w.err.Load(); err != nil {
		return *err
	}
	return nil
}

// errAppendTimeout is the Err of a wait whose time ran out.
var errAppendTimeout error = context.DeadlineExceeded

// start returns the context of an append for the request whose context is
// parent, ending after timeout at most; finish must follow once the append
// has returned.
func (a *appendWaits) start(parent context.Context, timeout time.Duration) *appendWait {
	deadline := time.Now().Add(timeout)
	a.mu.Lock()
	defer a.mu.Unlock()
	var w *appendWait
	if n := len(a.free); n > 0 {
		w, a.free = a.free[n-1], a.free[:n-1]
	} else {
		w = &appendWait{done: make(chan struct{})}
	}
	w.parent, w.deadline, w.index = parent, deadline, len(a.inFlight)
	a.inFlight = append(a.inFlight, w)
	if !a.watching {
		a.watching = true
		go a.watch()
	}
	return w
}

// finish takes w out of the waits in progress. A wait that never ended is
// kept for another append: the sink has returned, and a Sink does not keep
// the context of an Append that returned (one that ended may still be
// looked at by an append the spool has not written yet).
func (a *appendWaits) finish(w *appendWait) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if w.index < 0 {
		return // ended by the watcher, which took it out
	}
	a.removeLocked(w)
	w.parent = nil
	if len(a.free) < 1024 {
		a.free = append(a.free, w)
	}
}

func (a *appendWaits) removeLocked(w *appendWait) {
	last := len(a.inFlight) - 1
	moved := a.inFlight[last]
	a.inFlight[w.index], moved.index = moved, w.index
	a.inFlight[last] = nil
	a.inFlight = a.inFlight[:last]
	w.index = -1
}

// watch ends the waits whose request was cancelled or whose time ran out,
// every waitCheckInterval, until none is in progress.
func (a *appendWaits) watch() {
	t := time.NewTicker(waitCheckInterval)
	defer t.Stop()
	for now := range t.C {
		if !a.check(now) {
			return
		}
	}
}

// check ends the waits that are over at now, and reports whether any is
// still in progress; when none is, the watcher returns and the next start
// begins another.
func (a *appendWaits) check(now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := 0; i < len(a.inFlight); {
		w := a.inFlight[i]
		err := w.parent.Err()
		if err == nil && !now.Before(w.deadline) {
			err = errAppendTimeout
		}
		if err == nil {
			i++
			continue
		}
		w.err.Store(&err)
		close(w.done)
		a.removeLocked(w) // the last one moves to i
	}
	if len(a.inFlight) == 0 {
		a.watching = false
		return false
	}
	return true
}

// ingestRequest is the state of one POST /v1/readings besides its
// decoder, pooled (HTTP.requests): its body reader, and its batch with the
// buffers the sink never sees (one reading's canonical JSON, the ids),
// kept for the next request while small. The readings' chunks and payloads
// go to the sink and are never reused.
type ingestRequest struct {
	body  bodyReader
	batch batch
}

// Pooled buffers larger than these are let go with their request.
const (
	maxPooledScratch = 16 << 10
	maxPooledIDs     = 1024
)

// getRequest returns the pooled state for r, answered on w; putRequest
// releases its batch and gives it back.
func (h *HTTP) getRequest(w http.ResponseWriter, r *http.Request) *ingestRequest {
	req, ok := h.requests.Get().(*ingestRequest)
	if !ok {
		req = new(ingestRequest)
	}
	req.body.reset(w, r, h.maxBody)
	req.batch = batch{h: h, announced: r.ContentLength, scratch: req.batch.scratch[:0], ids: req.batch.ids[:0]}
	return req
}

func (h *HTTP) putRequest(req *ingestRequest) {
	scratch, ids := req.batch.scratch, req.batch.ids
	req.batch.release()
	if cap(scratch) <= maxPooledScratch {
		req.batch.scratch = scratch[:0]
	}
	if cap(ids) <= maxPooledIDs {
		clear(ids) // the strings are the client's answer, not ours to keep
		req.batch.ids = ids[:0]
	}
	req.body = bodyReader{}
	h.requests.Put(req)
}

// jsonContentType is the Content-Type header's value of every answer,
// shared: net/http copies the header when the status is written.
var jsonContentType = []string{"application/json"}

// acceptedBufs holds the buffers writeAccepted builds its answers in.
var acceptedBufs = sync.Pool{New: func() any { return new([]byte) }}

// writeAccepted answers 202 {"ids":[…]}: the bytes writeJSON would write
// for an acceptedResponse, built without reflection. Ids that need JSON
// escaping (not printable ASCII, or a quote or backslash; agent-made ids
// never do) go through writeJSON.
func writeAccepted(w http.ResponseWriter, ids []string) {
	if len(ids) == 0 {
		writeJSON(w, http.StatusAccepted, acceptedResponse{IDs: ids})
		return
	}
	bp := acceptedBufs.Get().(*[]byte)
	defer acceptedBufs.Put(bp)
	buf := append((*bp)[:0], `{"ids":[`...)
	for i, id := range ids {
		if !plainJSONString(id) {
			writeJSON(w, http.StatusAccepted, acceptedResponse{IDs: ids})
			return
		}
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, '"')
		buf = append(buf, id...)
		buf = append(buf, '"')
	}
	buf = append(buf, "]}\n"...)
	if cap(buf) <= 64<<10 {
		*bp = buf // keep it for the next answer; a huge one is let go
	}
	hdr := w.Header()
	hdr["Content-Type"] = jsonContentType
	hdr["Content-Length"] = []string{strconv.Itoa(len(buf))}
	w.WriteHeader(http.StatusAccepted)
	w.Write(buf)
}

// plainJSONString reports whether s stands for itself between quotes in
// JSON: printable ASCII without '"' or '\\'.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// admit refuses a request that its method or headers rule out before the
// body is read, and reports whether the request may go on.
func (h *HTTP) admit(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		// Not an attempt to send readings: refused, not counted.
		w.Header().Set("Allow", http.MethodPost)
		h.log.Debug("request refused", "remote", r.RemoteAddr, "status", http.StatusMethodNotAllowed, "method", r.Method)
		writeJSON(w, http.StatusMethodNotAllowed, errorResponse{Error: fmt.Sprintf("method %s not allowed on /v1/readings (want POST)", r.Method)})
		return false
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		h.refuse(w, r, http.StatusUnsupportedMediaType, ReasonUnsupported, 1, errorResponse{Error: fmt.Sprintf("content encoding %q is not supported (send the body uncompressed)", ce)})
		return false
	}
	if ct := r.Header.Get("Content-Type"); !jsonMediaType(ct) {
		h.refuse(w, r, http.StatusUnsupportedMediaType, ReasonUnsupported, 1, errorResponse{Error: fmt.Sprintf("content type %q is not JSON (want application/json)", ct)})
		return false
	}
	if r.ContentLength > h.maxBody {
		h.refuse(w, r, http.StatusRequestEntityTooLarge, ReasonTooLarge, 1, errorResponse{Error: h.tooLarge()})
		return false
	}
	return true
}

// refuseBody answers a request whose body ended in err after read good
// readings: a bad reading or body, a body over max_body, a slow body, or a
// failed read.
func (h *HTTP) refuseBody(w http.ResponseWriter, r *http.Request, err error, read int) {
	var mbe *http.MaxBytesError
	var pe *reading.ParseError
	switch {
	case errors.As(err, &mbe):
		h.refuse(w, r, http.StatusRequestEntityTooLarge, ReasonTooLarge, read+1, errorResponse{Error: h.tooLarge()})
	case errors.Is(err, errSlowBody):
		w.Header().Set("Connection", "close")
		h.refuse(w, r, http.StatusRequestTimeout, ReasonSlowBody, read+1, errorResponse{Error: err.Error()})
	case errors.As(err, &pe):
		h.refuse(w, r, http.StatusBadRequest, ReasonBadReading, readingsRefused(err, read), parseErrorResponse(err))
	default:
		h.refuse(w, r, http.StatusBadRequest, ReasonBadReading, read+1, errorResponse{Error: "reading the body: " + err.Error()})
	}
}

// decoder returns a pooled Decoder reading body; putDecoder gives it back.
// Pooled decoders hold only their small buffers, never a body.
func (h *HTTP) decoder(body io.Reader) *reading.Decoder {
	if d, ok := h.decoders.Get().(*reading.Decoder); ok {
		d.Reset(body, h.now())
		return d
	}
	return reading.NewDecoder(body, h.now(), reading.Limits{})
}

func (h *HTTP) putDecoder(d *reading.Decoder) {
	d.Reset(nil, time.Time{})
	h.decoders.Put(d)
}

// parseErrorResponse is the 400 answer to a body reading.Parse refused,
// pointing at the reading, field and offset when the error names them.
func parseErrorResponse(err error) errorResponse {
	resp := errorResponse{Error: err.Error()}
	var pe *reading.ParseError
	if errors.As(err, &pe) {
		if pe.Index >= 0 {
			resp.Index = &pe.Index
		}
		resp.Field = pe.Field
		if pe.Offset >= 0 {
			resp.Offset = &pe.Offset
		}
	}
	return resp
}

// appendFailureStatus is the status that answers a failed sink Append.
func appendFailureStatus(err error) int {
	switch sinkReason(err) {
	case ReasonSpoolFull:
		return http.StatusInsufficientStorage
	case ReasonSpoolTooLarge:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusServiceUnavailable
}

func (h *HTTP) tooLarge() string {
	return fmt.Sprintf("body larger than the %s limit (inputs.http.max_body)", config.ByteSize(h.maxBody))
}

// errSlowBody ends a body that arrives slower than the minimum rate.
var errSlowBody = fmt.Errorf("body slower than %d bytes/s after its first %v, or not complete within %v", minBodyRate, bodyGrace, readTimeout)

// bodyReader reads a request body, at most max_body bytes, and cuts it when
// it falls behind the minimum rate: before each read it sets the
// connection's read deadline to when the bytes so far stop being enough
// (bodyGrace plus one second per minBodyRate bytes, and readTimeout at
// most, counted from the first read). A body that trickles in therefore
// ends within about a second, whatever length it announced. Time the input
// itself spent waiting for memory does not count against the client.
type bodyReader struct {
	r        io.Reader
	rc       http.ResponseController
	start    time.Time
	got      int64
	length   int64     // the announced Content-Length, -1 if none
	deadline time.Time // the read deadline last set
}

// reset makes b read r's body, answered on w. A body that announced its
// length, within maxBody (admit refused longer ones), is read as it is:
// net/http stops it at that length, so only a chunked body needs
// http.MaxBytesReader to stop at maxBody (and the server to close the
// connection after the answer).
func (b *bodyReader) reset(w http.ResponseWriter, r *http.Request, maxBody int64) {
	body := r.Body
	if r.ContentLength < 0 || r.ContentLength > maxBody {
		body = http.MaxBytesReader(w, r.Body, maxBody)
	}
	*b = bodyReader{r: body, rc: *http.NewResponseController(w), start: time.Now(), length: r.ContentLength}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.length >= 0 && b.got >= b.length {
		// The whole announced body is in: net/http answers this read
		// (EOF) without touching the connection, so no deadline to move.
		return b.r.Read(p)
	}
	due := b.start.Add(bodyGrace + time.Duration(b.got)*time.Second/minBodyRate)
	if limit := b.start.Add(readTimeout); due.After(limit) {
		due = limit
	}
	if !due.Equal(b.deadline) {
		// Where deadlines cannot be set (not a net/http server), the
		// server's own timeouts are all there is.
		b.rc.SetReadDeadline(due)
		b.deadline = due
	}
	n, err := b.r.Read(p)
	b.got += int64(n)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w: %d bytes in %v", errSlowBody, b.got, time.Since(b.start).Round(time.Millisecond))
	}
	return n, err
}

// pause moves the rate's clock on by d, time the input spent not reading.
func (b *bodyReader) pause(d time.Duration) { b.start = b.start.Add(d) }

// done lifts the read deadline once the body has been read: the server's
// background read, which notices a client hanging up while the spool
// syncs, must not take a deadline for a hang-up and cancel the request.
func (b *bodyReader) done() { b.rc.SetReadDeadline(time.Time{}) }
