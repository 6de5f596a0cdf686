package input

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/agent/spool"
)

// HTTP server limits and timeouts. A gateway is small: the number of
// request bodies held at once is bounded, and slow or stuck clients are cut.
const (
	// DefaultMaxBody applies when config.HTTPInput.MaxBody is 0.
	DefaultMaxBody = 1 << 20
	// maxConcurrentIngest bounds the requests being read, parsed and
	// appended at once (so memory for bodies is at most this × MaxBody);
	// more wait for a slot.
	maxConcurrentIngest = 16
	defaultSlotWait     = 10 * time.Second
	// appendTimeout bounds the wait for the spool to make a batch durable.
	appendTimeout          = 30 * time.Second
	readHeaderTimeout      = 10 * time.Second
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
//   - 413 for a body over the max_body limit, or a reading over the spool's
//     record limit (spool.ErrTooLarge);
//   - 415 for a Content-Type other than JSON (application/json or any
//     +json type, charset UTF-8 if given) or a Content-Encoding;
//   - 507 with Retry-After when the spool is full (spool.ErrFull);
//   - 503 with Retry-After for any other sink failure, including the spool
//     taking longer than 30 s, or no slot freeing up within 10 s when 16
//     requests are already in progress.
//
// GET /healthz answers 200 {"status":"ok"}; other paths 404.
// An HTTP is safe for concurrent use.
type HTTP struct {
	sink    Sink
	log     *slog.Logger
	now     func() time.Time
	maxBody int64
	mux     *http.ServeMux
	stats   counters
	slots   chan struct{}
	bufs    sync.Pool
	// Tests shorten these.
	slotWait        time.Duration
	shutdownTimeout time.Duration
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
		slots:           make(chan struct{}, maxConcurrentIngest),
		slotWait:        defaultSlotWait,
		shutdownTimeout: defaultShutdownTimeout,
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBody
	}
	h.mux = http.NewServeMux()
	h.mux.HandleFunc("/v1/readings", h.ingest)
	h.mux.HandleFunc("/healthz", h.health)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorResponse{Error: fmt.Sprintf("no endpoint %s (POST /v1/readings, GET /healthz)", r.URL.Path)})
	})
	return h
}

// Handler returns the ingest's handler, for callers that run their own
// server (Serve uses it).
func (h *HTTP) Handler() http.Handler { return h.mux }

// Handle serves pattern with handler on the ingest's listener (the agent
// mounts its status and metrics surfaces here). Call it before Serve.
func (h *HTTP) Handle(pattern string, handler http.Handler) { h.mux.Handle(pattern, handler) }

// Stats returns the ingest's counters: Accepted counts readings; Rejected
// and Failed count requests.
func (h *HTTP) Stats() Stats { return h.stats.snapshot() }

// Serve answers requests on ln until ctx ends, then shuts down gracefully:
// it stops accepting, lets requests in progress finish (their readings are
// durable when they get 202) for up to 10 s, then closes what is left. It
// closes ln. It returns nil after a clean shutdown, and an error if the
// server failed or requests had to be cut.
func (h *HTTP) Serve(ctx context.Context, ln net.Listener) error {
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
	h.log.Info("http input listening", "addr", ln.Addr().String(), "max_body", h.maxBody)
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
	w.Header().Set("Content-Type", "application/json")
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
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// refuse answers a request refused for its content.
func (h *HTTP) refuse(w http.ResponseWriter, r *http.Request, status int, resp errorResponse) {
	h.stats.rejected.Add(1)
	h.log.Debug("request refused", "remote", r.RemoteAddr, "status", status, "err", resp.Error)
	writeJSON(w, status, resp)
}

// fail answers a request whose readings the sink did not store.
func (h *HTTP) fail(w http.ResponseWriter, r *http.Request, status int, n int, err error) {
	h.stats.failed.Add(1)
	h.log.Warn("readings not stored", "remote", r.RemoteAddr, "status", status, "readings", n, "err", err)
	if status != http.StatusRequestEntityTooLarge {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeJSON(w, status, errorResponse{Error: err.Error()})
}

// jsonMediaType reports whether a Content-Type header names JSON in UTF-8.
func jsonMediaType(header string) bool {
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
	if !h.acquire(r.Context()) {
		h.fail(w, r, http.StatusServiceUnavailable, 0, fmt.Errorf("busy: %d requests in progress and none finished within %v; retry later", maxConcurrentIngest, h.slotWait))
		return
	}
	defer func() { <-h.slots }()

	buf := h.getBuffer()
	defer h.putBuffer(buf)
	if !h.readBody(w, r, buf) {
		return
	}

	readings, err := reading.Parse(buf.Bytes(), h.now(), reading.Limits{})
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, parseErrorResponse(err))
		return
	}
	payloads, err := marshalReadings(readings)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, len(readings), fmt.Errorf("bug: a parsed reading does not marshal: %w", err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), appendTimeout)
	defer cancel()
	if _, err := h.sink.Append(ctx, payloads...); err != nil {
		h.fail(w, r, appendFailureStatus(err), len(readings), err)
		return
	}
	h.stats.accepted.Add(uint64(len(readings)))
	ids := make([]string, len(readings))
	for i, rd := range readings {
		ids[i] = rd.ID
	}
	writeJSON(w, http.StatusAccepted, acceptedResponse{IDs: ids})
}

// admit refuses a request that its method or headers rule out before the
// body is read, and reports whether the request may go on.
func (h *HTTP) admit(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.refuse(w, r, http.StatusMethodNotAllowed, errorResponse{Error: fmt.Sprintf("method %s not allowed on /v1/readings (want POST)", r.Method)})
		return false
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		h.refuse(w, r, http.StatusUnsupportedMediaType, errorResponse{Error: fmt.Sprintf("content encoding %q is not supported (send the body uncompressed)", ce)})
		return false
	}
	if ct := r.Header.Get("Content-Type"); !jsonMediaType(ct) {
		h.refuse(w, r, http.StatusUnsupportedMediaType, errorResponse{Error: fmt.Sprintf("content type %q is not JSON (want application/json)", ct)})
		return false
	}
	if r.ContentLength > h.maxBody {
		h.refuse(w, r, http.StatusRequestEntityTooLarge, errorResponse{Error: h.tooLarge()})
		return false
	}
	return true
}

// getBuffer returns an empty body buffer from the pool; putBuffer gives it
// back.
func (h *HTTP) getBuffer() *bytes.Buffer {
	buf, _ := h.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	return buf
}

func (h *HTTP) putBuffer(buf *bytes.Buffer) {
	// Keep only modest buffers: one 1 MiB body should not pin 1 MiB per
	// pooled buffer for the life of the process.
	if buf.Cap() <= 64<<10 {
		h.bufs.Put(buf)
	}
}

// readBody reads r's body, at most maxBody bytes, into buf. When the body
// is too large or cannot be read it refuses the request and returns false.
func (h *HTTP) readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) bool {
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.maxBody)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.refuse(w, r, http.StatusRequestEntityTooLarge, errorResponse{Error: h.tooLarge()})
			return false
		}
		h.refuse(w, r, http.StatusBadRequest, errorResponse{Error: "reading the body: " + err.Error()})
		return false
	}
	return true
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
	switch {
	case errors.Is(err, spool.ErrFull):
		return http.StatusInsufficientStorage
	case errors.Is(err, spool.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusServiceUnavailable
}

// acquire waits for a request slot, for up to slotWait.
func (h *HTTP) acquire(ctx context.Context) bool {
	select {
	case h.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(h.slotWait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func (h *HTTP) tooLarge() string {
	return fmt.Sprintf("body larger than the %s limit (inputs.http.max_body)", config.ByteSize(h.maxBody))
}
