package uplink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/net/http/httpguts"

	"github.com/cellgate/cellgate/internal/redact"
	"github.com/cellgate/cellgate/transport"
)

// HTTPSConfig configures an HTTPS POST uplink.
type HTTPSConfig struct {
	// URL is the https:// endpoint messages are POSTed to. Its host goes
	// in the Host header; the connection itself always comes from the
	// Dialer, which must reach that host.
	URL string
	// Header is added to every request (an Authorization token, say). It
	// is never logged. A name or value that is not valid HTTP makes every
	// Send fail with an error naming the header (not its value).
	Header http.Header
	// Timeout bounds one request: the dial and TLS handshake of its
	// connection, and from the write of the request to the end of its
	// response (default 60s). A request that passes it ends its
	// connection, and with it every request pipelined on it.
	Timeout time.Duration
	// IdleTimeout is how long a kept-alive connection may wait for the next
	// message before it is closed (default 2m). Reusing it saves a modem
	// session and a TLS handshake per message.
	IdleTimeout time.Duration
	// Pipeline is the most requests written on the connection and not yet
	// answered (HTTP/1.1 pipelining; default 16, at most 64; 1 sends one
	// request at a time). A new connection carries one request until its
	// first response shows that the server keeps HTTP/1.1 connections
	// open. The agent keeps no more than uplink.max_in_flight in flight
	// whatever this says.
	Pipeline int
	// HostTLS selects host-side TLS: the Dialer returns a plain connection
	// (a plain TCP session through the modem) and the uplink runs
	// crypto/tls on it with this config, verifying the server (ServerName
	// defaults to the URL's host). Nil means the Dialer's connections are
	// TLS already (the modem terminates it).
	HostTLS *tls.Config
}

// Defaults of HTTPSConfig.
const (
	DefaultHTTPSTimeout     = 60 * time.Second
	DefaultHTTPSIdleTimeout = 2 * time.Minute
	DefaultHTTPSPipeline    = 16
	maxHTTPSPipeline        = 64
)

// maxRetryAfter caps a Retry-After: a misconfigured server must not silence
// a gateway for days.
const maxRetryAfter = time.Hour

// HTTPS is the HTTPS POST uplink: one request per message, over one
// kept-alive connection from the Dialer at a time (a modem has few
// sessions, and each costs a TLS handshake over the air), with up to
// HTTPSConfig.Pipeline requests pipelined on it (HTTP/1.1: written back to
// back, answered in order) where the server allows. net/http's client
// cannot pipeline, so the uplink writes requests with http.Request.Write
// and reads responses with http.ReadResponse on the connection itself
// (https_pipeline.go says how).
//
// In modem-TLS mode the Dialer's conn is TLS already (the modem terminates
// it) and is used as it is. In host-TLS mode (HTTPSConfig.HostTLS) the
// Dialer's conn is a plain modem socket and the uplink runs crypto/tls on
// it with the gateway's keys. HTTP/2 is not used: the modem's TLS offers
// no ALPN, and a conn that negotiated "h2" is refused with an error saying
// so.
//
// Acknowledgement is a 2xx status. 408, 429 and 5xx are retryable; with a
// Retry-After header they come as a *RetryAfterError and Send refuses to
// post again, without touching the network, until that time has passed.
// 400, 413, 415 and 422 come as a *PermanentError: the server will not
// take this message, whatever happens, so the agent sets it aside. Every
// other 4xx (401 and 403 for a revoked credential, 404 for a wrong URL)
// says something about the endpoint, not the message: it is retryable, so
// the readings wait in the spool until the operator fixes the cause
// instead of being set aside one batch after another. Redirects are not followed (a
// POST turned into a GET could look like an acknowledgement); a 3xx is a
// retryable error. When a connection fails (an error, a timeout, a
// "Connection: close", a response nobody asked for), every request still
// unanswered on it fails with a retryable error: the server may have taken
// some of them, so delivery is at-least-once. Each request carries an
// Idempotency-Key derived from the payload, so that a server can drop such
// duplicates.
type HTTPS struct {
	cfg    HTTPSConfig
	url    *url.URL
	cfgErr error  // why cfg is unusable (the URL, a header); every Send returns it
	target string // the URL redacted (redact.URLValue), for logs and errors
	log    *slog.Logger
	dial   transport.Dialer
	now    func() time.Time // time.Now; tests move it

	life    context.Context // ends on Close: cancels dials and waits
	stop    context.CancelFunc
	running sync.WaitGroup // Sends in flight, for Close
	bg      sync.WaitGroup // dials and connection readers, for Close

	mu        sync.Mutex // guards the fields below and every pipeConn's state
	closed    bool
	cur       *pipeConn     // the connection requests go on; nil: none
	dialing   *dialAttempt  // the dial in progress; nil: none
	wake      chan struct{} // closed (and replaced) when a slot frees or cur goes
	conns     int           // connections opened, to name them in logs
	notBefore time.Time     // no request before this (a Retry-After)
	refusal   error         // the response that set notBefore
}

// NewHTTPS returns an HTTPS uplink posting to cfg.URL over conns from dial.
// It does not dial. An invalid cfg.URL (not https://host/…) or header makes
// every Send fail with an error naming it. A nil log discards.
func NewHTTPS(cfg HTTPSConfig, dial transport.Dialer, log *slog.Logger) *HTTPS {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultHTTPSTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultHTTPSIdleTimeout
	}
	if cfg.Pipeline <= 0 {
		cfg.Pipeline = DefaultHTTPSPipeline
	}
	cfg.Pipeline = min(cfg.Pipeline, maxHTTPSPipeline)
	h := &HTTPS{cfg: cfg, dial: dial, now: time.Now, wake: make(chan struct{})}
	h.life, h.stop = context.WithCancel(context.Background())
	u, err := url.Parse(cfg.URL)
	switch {
	case err != nil:
		h.cfgErr = fmt.Errorf("https uplink: URL: %w", err)
		h.target = "(invalid URL)"
	case u.Scheme != "https" || u.Host == "":
		h.target = redact.URLValue(u)
		h.cfgErr = fmt.Errorf("https uplink: URL %s: want https://host[:port]/path", h.target)
	default:
		h.url = u
		h.target = redact.URLValue(u)
		h.cfgErr = checkHeader(cfg.Header)
	}
	h.log = orDiscard(log).With("uplink", "https", "url", h.target)
	return h
}

// checkHeader refuses a header that would break the request's framing.
// Values are not quoted: they may be credentials.
func checkHeader(hdr http.Header) error {
	for k, vs := range hdr {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("https uplink: header name %q is not a valid HTTP field name", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("https uplink: header %s: the value holds a control character", k)
			}
		}
	}
	return nil
}

// Send POSTs msg.Payload with its Content-Type and Content-Encoding and
// returns nil on a 2xx response. Errors: a *PermanentError wrapping a
// *StatusError (400, 413, 415, 422), a *RetryAfterError (the server
// asked to wait; also returned, without a request, while that wait lasts), a
// *StatusError (other non-2xx), a connection failure (also when the
// connection failed for a request pipelined before this one) or ctx's end
// (wrapping ctx.Err(); a request already written stays in the pipeline and
// its answer is read and dropped), an invalid configuration, or ErrClosed.
func (h *HTTPS) Send(ctx context.Context, msg Message) error {
	if h.cfgErr != nil {
		return h.cfgErr
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return fmt.Errorf("https uplink to %s: %w", h.target, ErrClosed)
	}
	h.running.Add(1) // under mu, so that Close's Wait cannot miss it
	h.mu.Unlock()
	defer h.running.Done()
	if wait, refusal := h.holdOff(); wait > 0 {
		return &RetryAfterError{After: wait, Err: refusal}
	}
	raw, err := h.request(msg)
	if err != nil {
		return err
	}
	resp, err := h.exchange(ctx, raw)
	if err != nil {
		var ra *RetryAfterError
		switch {
		case errors.As(err, &ra):
			return err
		case errors.Is(err, ErrClosed):
			return fmt.Errorf("https uplink to %s: %w", h.target, err)
		case h.life.Err() != nil && ctx.Err() == nil:
			return fmt.Errorf("https uplink to %s: closed during the request (%v): %w", h.target, err, ErrClosed)
		}
		return fmt.Errorf("https uplink to %s: %w", h.target, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		h.log.Debug("posted", "status", resp.StatusCode, "bytes", len(msg.Payload), "ids", idsForLog(msg.IDs))
		return nil
	}
	h.log.Warn("server refused a message", "status", resp.StatusCode, "bytes", len(msg.Payload), "ids", idsForLog(msg.IDs))
	return h.classify(resp.Response, resp.snippet)
}

// request returns the POST of msg as written on the wire: the configured
// headers, the message's content type and encoding, and an Idempotency-Key
// the upstream can deduplicate a resent message on.
func (h *HTTPS) request(msg Message) ([]byte, error) {
	req, err := http.NewRequest(http.MethodPost, h.url.String(), bytes.NewReader(msg.Payload))
	if err != nil {
		return nil, fmt.Errorf("https uplink to %s: build request: %w", h.target, err)
	}
	for k, vs := range h.cfg.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if msg.ContentType != "" {
		req.Header.Set("Content-Type", msg.ContentType)
	}
	if msg.ContentEncoding != "" {
		req.Header.Set("Content-Encoding", msg.ContentEncoding)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "cellgate")
	}
	sum := sha256.Sum256(msg.Payload)
	req.Header.Set("Idempotency-Key", hex.EncodeToString(sum[:16]))
	var raw bytes.Buffer
	raw.Grow(len(msg.Payload) + 512)
	if err := req.Write(&raw); err != nil {
		return nil, fmt.Errorf("https uplink to %s: build request: %w", h.target, err)
	}
	return raw.Bytes(), nil
}

// classify classifies a response other than 2xx: a *PermanentError for a
// refusal of this message, a *RetryAfterError (and a hold-off) when the
// server named a wait, else a *StatusError worth retrying.
func (h *HTTPS) classify(resp *http.Response, snippet string) error {
	se := &StatusError{URL: h.target, StatusCode: resp.StatusCode, Status: resp.Status, Body: snippet}
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
		se.Body = "redirect to " + loc + " not followed"
	}
	switch c := resp.StatusCode; {
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		if wait, ok := parseRetryAfter(resp.Header.Get("Retry-After"), h.now()); ok && wait > 0 {
			h.mu.Lock()
			h.notBefore = h.now().Add(wait)
			h.refusal = se
			h.mu.Unlock()
			return &RetryAfterError{After: wait, Err: se}
		}
		return se
	case c == http.StatusBadRequest || c == http.StatusRequestEntityTooLarge ||
		c == http.StatusUnsupportedMediaType || c == http.StatusUnprocessableEntity:
		return &PermanentError{Err: se}
	default:
		return se
	}
}

// holdOff returns what is left of a Retry-After wait, and the refusal that
// asked for it.
func (h *HTTPS) holdOff() (time.Duration, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.notBefore.IsZero() {
		return 0, nil
	}
	wait := h.notBefore.Sub(h.now())
	if wait <= 0 {
		h.notBefore, h.refusal = time.Time{}, nil
		return 0, nil
	}
	return wait, h.refusal
}

// Close ends the connection (failing the requests on it), cancels a dial,
// waits for every Send and goroutine of the uplink to return. Later Sends
// fail with ErrClosed. It always returns nil.
func (h *HTTPS) Close() error {
	h.mu.Lock()
	h.closed = true
	pc := h.cur
	h.mu.Unlock()
	h.stop()
	if pc != nil {
		pc.fail(ErrClosed)
	}
	h.running.Wait()
	h.bg.Wait()
	return nil
}

// StatusError is a non-2xx response.
type StatusError struct {
	URL        string // redacted by redact.URLValue
	StatusCode int
	Status     string // e.g. "503 Service Unavailable"
	// Body is the start of the response body, cleaned for a log line.
	Body string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("POST %s: %s", e.URL, e.Status)
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		d = time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, 0), maxRetryAfter), true
}

// readSnippet returns the start of a response body as one printable line.
func readSnippet(r io.Reader) string {
	buf := make([]byte, 256)
	n, _ := io.ReadFull(r, buf)
	s := strings.ToValidUTF8(string(buf[:n]), "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if n == len(buf) {
		s += " …"
	}
	return s
}

// InFlightLimit is HTTPSConfig.Pipeline, the most requests pipelined on the
// connection (InFlightLimiter). Sends beyond what the connection takes now
// (one until the server showed it keeps the connection open) wait for a
// slot.
func (h *HTTPS) InFlightLimit() int { return h.cfg.Pipeline }
