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
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

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
	// is never logged.
	Header http.Header
	// Timeout bounds one request, from dial to the end of the response
	// headers (default 60s).
	Timeout time.Duration
	// IdleTimeout is how long a kept-alive connection may wait for the next
	// message before it is closed (default 2m). Reusing it saves a modem
	// session and a TLS handshake per message.
	IdleTimeout time.Duration
	// HostTLS selects host-side TLS: the Dialer returns a plain connection
	// (a plain TCP session through the modem) and net/http runs TLS on it
	// with this config, through Transport.DialContext. Nil means the
	// Dialer's connections are TLS already (the modem terminates it), used
	// through Transport.DialTLSContext.
	HostTLS *tls.Config
}

// Defaults of HTTPSConfig.
const (
	DefaultHTTPSTimeout     = 60 * time.Second
	DefaultHTTPSIdleTimeout = 2 * time.Minute
)

// maxRetryAfter caps a Retry-After: a misconfigured server must not silence
// a gateway for days.
const maxRetryAfter = time.Hour

// HTTPS is the HTTPS POST uplink: one request per message, sent by net/http
// over connections from the Dialer, kept alive between messages (one at a
// time: a modem has few sessions).
//
// In modem-TLS mode the Dialer's conn is TLS already (the modem terminates
// it) and net/http takes it through DialTLSContext, adding no TLS of its
// own. In host-TLS mode (HTTPSConfig.HostTLS) the Dialer's conn is a plain
// modem socket, taken through DialContext, and net/http runs crypto/tls on
// it with the gateway's keys. In modem mode DialContext is refused, so no
// request can leave unencrypted. HTTP/2 is not used: the modem's TLS offers
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
// retryable error. Each request carries an Idempotency-Key derived from the
// payload, so a server can drop the duplicates at-least-once delivery
// allows, and net/http may replay the POST when a kept-alive connection
// turns out dead.
type HTTPS struct {
	cfg    HTTPSConfig
	url    *url.URL
	urlErr error  // why cfg.URL is unusable; every Send returns it
	target string // the URL redacted (redact.URLValue), for logs and errors
	log    *slog.Logger
	tr     *http.Transport
	client *http.Client
	now    func() time.Time // time.Now; tests move it

	life    context.Context // ends on Close: cancels requests in flight
	stop    context.CancelFunc
	running sync.WaitGroup // Sends in flight, for Close

	mu        sync.Mutex // guards the fields below
	closed    bool
	notBefore time.Time // no request before this (a Retry-After)
	refusal   error     // the response that set notBefore
}

// NewHTTPS returns an HTTPS uplink posting to cfg.URL over conns from dial.
// It does not dial. An invalid cfg.URL (not https://host/…) makes every Send
// fail with an error naming it. A nil log discards.
func NewHTTPS(cfg HTTPSConfig, dial transport.Dialer, log *slog.Logger) *HTTPS {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultHTTPSTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultHTTPSIdleTimeout
	}
	h := &HTTPS{cfg: cfg, now: time.Now}
	h.life, h.stop = context.WithCancel(context.Background())
	u, err := url.Parse(cfg.URL)
	switch {
	case err != nil:
		h.urlErr = fmt.Errorf("https uplink: URL: %w", err)
		h.target = "(invalid URL)"
	case u.Scheme != "https" || u.Host == "":
		h.target = redact.URLValue(u)
		h.urlErr = fmt.Errorf("https uplink: URL %s: want https://host[:port]/path", h.target)
	default:
		h.url = u
		h.target = redact.URLValue(u)
	}
	h.log = orDiscard(log).With("uplink", "https", "url", h.target)

	bounded := func(ctx context.Context) (net.Conn, error) {
		// net/http detaches a dial from the request's cancellation, and
		// with one connection per host a dial that never ends (a modem
		// that never comes up) would hold every later request: bound it
		// as a request is.
		ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		return dial(ctx)
	}
	h.tr = &http.Transport{
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, err := bounded(ctx)
			if err != nil {
				return nil, err
			}
			if cs, ok := conn.(interface{ ConnectionState() tls.ConnectionState }); ok && cs.ConnectionState().NegotiatedProtocol == "h2" {
				conn.Close()
				return nil, errors.New("the dialer negotiated HTTP/2 (ALPN h2); the HTTPS uplink speaks HTTP/1.1, so leave h2 out of NextProtos")
			}
			return conn, nil
		},
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("refusing a plain-text connection: the HTTPS uplink only uses the dialer's TLS connections")
		},
		MaxConnsPerHost:     1,
		TLSHandshakeTimeout: cfg.Timeout,
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     cfg.IdleTimeout,
		// The response body is read only for an error message: asking
		// for gzip would add a header to every request for nothing.
		DisableCompression: true,
	}
	if cfg.HostTLS != nil {
		// Host-side TLS: net/http dials a plain modem session and runs
		// crypto/tls on it itself, with the gateway's keys.
		tc := cfg.HostTLS.Clone()
		tc.NextProtos = []string{"http/1.1"}
		h.tr.TLSClientConfig = tc
		h.tr.DialTLSContext = nil
		h.tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return bounded(ctx) }
	}
	h.tr.Protocols = new(http.Protocols)
	h.tr.Protocols.SetHTTP1(true)
	h.client = &http.Client{
		Transport:     h.tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return h
}

// Send POSTs msg.Payload with its Content-Type and Content-Encoding and
// returns nil on a 2xx response. Errors: a *PermanentError wrapping a
// *StatusError (4xx other than 408 and 429), a *RetryAfterError (the server
// asked to wait; also returned, without a request, while that wait lasts), a
// *StatusError (other non-2xx), a connection failure or ctx's end (wrapping
// ctx.Err()), an invalid URL, or ErrClosed.
func (h *HTTPS) Send(ctx context.Context, msg Message) error {
	if h.urlErr != nil {
		return h.urlErr
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

	rctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	stopOnClose := context.AfterFunc(h.life, cancel)
	defer stopOnClose()
	req, err := h.request(rctx, msg)
	if err != nil {
		return err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if h.life.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("https uplink to %s: closed during the request: %w", h.target, ErrClosed)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = h.target // net/http redacts only a password, not a token in the query
		}
		return fmt.Errorf("https uplink: %w", err)
	}
	snippet := readSnippet(resp.Body)
	// Draining what is left (a little) lets the connection be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 16<<10))
	resp.Body.Close()

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		h.log.Debug("posted", "status", resp.StatusCode, "bytes", len(msg.Payload), "ids", idsForLog(msg.IDs))
		return nil
	}
	h.log.Warn("server refused a message", "status", resp.StatusCode, "bytes", len(msg.Payload), "ids", idsForLog(msg.IDs))
	return h.classify(resp, snippet)
}

// request builds the POST of msg: the configured headers, the message's
// content type and encoding, and an Idempotency-Key the upstream can
// deduplicate a resent message on.
func (h *HTTPS) request(ctx context.Context, msg Message) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url.String(), bytes.NewReader(msg.Payload))
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
	return req, nil
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

// Close cancels requests in flight, waits for their Sends to return, and
// closes the kept-alive connection. Later Sends fail with ErrClosed. It
// always returns nil.
func (h *HTTPS) Close() error {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.stop()
	h.running.Wait()
	h.tr.CloseIdleConnections()
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

// InFlightLimit is 1: one message uses the connection at a time
// (InFlightLimiter).
func (h *HTTPS) InFlightLimit() int { return 1 }
