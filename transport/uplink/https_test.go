package uplink

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/redact"
	"github.com/cellgate/cellgate/internal/testutil"
)

// postServer is a real TLS HTTP server (httptest) that requires and
// verifies a client certificate and records every request.
type postServer struct {
	srv  *httptest.Server
	url  string
	hits atomic.Int32

	mu       sync.Mutex
	requests []recordedRequest
	respond  func(w http.ResponseWriter, r *http.Request)
}

type recordedRequest struct {
	method, path string
	header       http.Header
	body         []byte
	clientCN     string
}

func startPostServer(t *testing.T, pki *testPKI) *postServer {
	t.Helper()
	s := &postServer{}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		rec := recordedRequest{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			rec.clientCN = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		s.mu.Lock()
		s.requests = append(s.requests, rec)
		respond := s.respond
		s.mu.Unlock()
		if respond == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		respond(w, r)
	}))
	s.srv.TLS = pki.serverTLS()
	errLog := &testutil.SyncBuffer{}
	s.srv.Config.ErrorLog = log.New(errLog, "", 0)
	s.srv.StartTLS()
	t.Cleanup(func() {
		s.srv.Close()
		if t.Failed() {
			t.Logf("server errors:\n%s", errLog.String())
		}
	})
	s.url = "https://" + s.srv.Listener.Addr().String() + "/v1/ingest"
	return s
}

func (s *postServer) setRespond(f func(w http.ResponseWriter, r *http.Request)) {
	s.mu.Lock()
	s.respond = f
	s.mu.Unlock()
}

func (s *postServer) last() recordedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[len(s.requests)-1]
}

func newTestHTTPS(t *testing.T, pki *testPKI, s *postServer, cfg HTTPSConfig, dials *atomic.Int32) (*HTTPS, *testutil.SyncBuffer) {
	t.Helper()
	log, buf := testutil.Logger(t)
	if cfg.URL == "" {
		cfg.URL = s.url
	}
	h := NewHTTPS(cfg, tlsDial(s.srv.Listener.Addr().String(), pki.clientTLS(pki.client), dials), log)
	t.Cleanup(func() { h.Close() })
	return h, buf
}

func TestHTTPSPostsWithHeadersAndBodyIntact(t *testing.T) {
	pki := newTestPKI(t)
	s := startPostServer(t, pki)
	var dials atomic.Int32
	h, logs := newTestHTTPS(t, pki, s, HTTPSConfig{Header: http.Header{"Authorization": {"Bearer tok-9f8e7d"}}}, &dials)

	payload := make([]byte, 64<<10)
	rand.Read(payload)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 2 {
		if err := h.Send(ctx, Message{Payload: payload, ContentType: "application/cbor", ContentEncoding: "deflate", IDs: []string{"a", "b"}}); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	r := s.last()
	if r.method != http.MethodPost || r.path != "/v1/ingest" {
		t.Errorf("request was %s %s, want POST /v1/ingest", r.method, r.path)
	}
	if !bytes.Equal(r.body, payload) {
		t.Errorf("body arrived as %d bytes, differing from the %d sent", len(r.body), len(payload))
	}
	for k, want := range map[string]string{"Content-Type": "application/cbor", "Content-Encoding": "deflate", "Authorization": "Bearer tok-9f8e7d", "User-Agent": "cellgate"} {
		if got := r.header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if k := r.header.Get("Idempotency-Key"); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(k) {
		t.Errorf("Idempotency-Key = %q, want 32 hex digits", k)
	}
	if r.clientCN != "gw-test" {
		t.Errorf("server saw client certificate %q, want gw-test", r.clientCN)
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("dialled %d times for 2 messages, want 1 (keep-alive)", d)
	}
	if strings.Contains(logs.String(), "tok-9f8e7d") {
		t.Error("the Authorization token reached the log")
	}
}

func TestHTTPSClassifiesRefusals(t *testing.T) {
	pki := newTestPKI(t)
	s := startPostServer(t, pki)
	h, _ := newTestHTTPS(t, pki, s, HTTPSConfig{}, nil)
	for _, c := range []struct {
		status    int
		permanent bool
	}{
		{http.StatusOK, false},
		{http.StatusAccepted, false},
		{http.StatusBadRequest, true},
		{http.StatusUnauthorized, false},
		{http.StatusForbidden, false},
		{http.StatusNotFound, false},
		{http.StatusRequestEntityTooLarge, true},
		{http.StatusUnsupportedMediaType, true},
		{http.StatusUnprocessableEntity, true},
		{http.StatusRequestTimeout, false},
		{http.StatusTooManyRequests, false},
		{http.StatusInternalServerError, false},
		{http.StatusBadGateway, false},
		{http.StatusServiceUnavailable, false},
	} {
		t.Run(http.StatusText(c.status), func(t *testing.T) {
			s.setRespond(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(c.status)
				io.WriteString(w, "the server says\nwhy\x00")
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := h.Send(ctx, Message{Payload: []byte(`{"readings":[]}`), ContentType: "application/json"})
			if c.status < 300 {
				if err != nil {
					t.Fatalf("Send answered %d = %v, want nil", c.status, err)
				}
				return
			}
			var se *StatusError
			if !errors.As(err, &se) || se.StatusCode != c.status {
				t.Fatalf("Send answered %d = %v, want a *StatusError with that code", c.status, err)
			}
			var perm *PermanentError
			if got := errors.As(err, &perm); got != c.permanent {
				t.Fatalf("permanent = %v for %d, want %v (err: %v)", got, c.status, c.permanent, err)
			}
			if !strings.Contains(err.Error(), "the server says why") {
				t.Errorf("error does not carry the server's words, cleaned: %v", err)
			}
		})
	}
}

func TestHTTPSHonoursRetryAfter(t *testing.T) {
	pki := newTestPKI(t)
	s := startPostServer(t, pki)
	h, _ := newTestHTTPS(t, pki, s, HTTPSConfig{}, nil)
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var clock sync.Mutex
	h.now = func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	advance := func(d time.Duration) { clock.Lock(); now = now.Add(d); clock.Unlock() }
	msg := Message{Payload: []byte("{}"), ContentType: "application/json"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	s.setRespond(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	err := h.Send(ctx, msg)
	if d, ok := RetryAfter(err); !ok || d != 120*time.Second {
		t.Fatalf("Send answered 429 Retry-After: 120 = %v, want a wait of 120s", err)
	}
	advance(30 * time.Second)
	hits := s.hits.Load()
	err = h.Send(ctx, msg)
	if d, ok := RetryAfter(err); !ok || d != 90*time.Second {
		t.Fatalf("Send 30s into the wait = %v, want 90s left", err)
	}
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the held-off Send does not carry the refusal: %v", err)
	}
	if s.hits.Load() != hits {
		t.Fatal("a Send inside the Retry-After wait reached the server")
	}

	// An HTTP date works too, and once the wait is over requests flow.
	advance(91 * time.Second)
	s.setRespond(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", now.Add(45*time.Second).Format(http.TimeFormat))
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	err = h.Send(ctx, msg)
	if d, ok := RetryAfter(err); !ok || d != 45*time.Second {
		t.Fatalf("Send answered 503 with a Retry-After date = %v, want a wait of 45s", err)
	}
	advance(46 * time.Second)
	s.setRespond(nil)
	if err := h.Send(ctx, msg); err != nil {
		t.Fatalf("Send after the wait: %v", err)
	}
}

func TestHTTPSDoesNotFollowRedirects(t *testing.T) {
	pki := newTestPKI(t)
	s := startPostServer(t, pki)
	h, _ := newTestHTTPS(t, pki, s, HTTPSConfig{}, nil)
	s.setRespond(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			http.Redirect(w, r, "/login", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusOK) // a GET here would look like an ack
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.Send(ctx, Message{Payload: []byte("{}")})
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusFound || !strings.Contains(err.Error(), "/login") {
		t.Fatalf("Send answered 302 = %v, want a *StatusError naming the redirect", err)
	}
	if n := s.hits.Load(); n != 1 {
		t.Fatalf("server saw %d requests, want only the POST", n)
	}
}

func TestHTTPSFailsWithAnUntrustedClientCertificate(t *testing.T) {
	pki := newTestPKI(t)
	s := startPostServer(t, pki)
	log, _ := testutil.Logger(t)
	h := NewHTTPS(HTTPSConfig{URL: s.url}, tlsDial(s.srv.Listener.Addr().String(), pki.clientTLS(pki.rogue), nil), log)
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.Send(ctx, Message{Payload: []byte("{}")})
	var perm *PermanentError
	var se *StatusError
	if err == nil || errors.As(err, &perm) || errors.As(err, &se) {
		t.Fatalf("Send with an untrusted client certificate = %v, want a retryable connection error", err)
	}
	if s.hits.Load() != 0 {
		t.Fatal("the server handled a request from an untrusted client")
	}
	t.Logf("error seen by the agent: %v", err)
}

func TestHTTPSRefusesABadURLWithoutDialling(t *testing.T) {
	for _, u := range []string{"http://plain.example.com/ingest", "https:///nohost", "://bad"} {
		var dials atomic.Int32
		dial := func(context.Context) (net.Conn, error) { dials.Add(1); return nil, errors.New("must not dial") }
		h := NewHTTPS(HTTPSConfig{URL: u}, dial, nil)
		err := h.Send(context.Background(), Message{Payload: []byte("{}")})
		h.Close()
		if err == nil || !strings.Contains(err.Error(), "https uplink: URL") {
			t.Errorf("Send to %q = %v, want an error naming the URL", u, err)
		}
		if dials.Load() != 0 {
			t.Errorf("Send to %q dialled", u)
		}
	}
}

func TestHTTPSCloseCancelsARequestInFlight(t *testing.T) {
	pki := newTestPKI(t)
	s := startPostServer(t, pki)
	h, _ := newTestHTTPS(t, pki, s, HTTPSConfig{}, nil)
	arrived := make(chan struct{})
	s.setRespond(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done() // never answers; the client hanging up ends it
	})
	done := make(chan error, 1)
	go func() { done <- h.Send(context.Background(), Message{Payload: []byte("{}")}) }()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never arrived")
	}
	closeEndsSends(t, h, done)
}

// A dial that never ends (a modem that never comes up, a handshake never
// answered) is cut by Timeout: dials are shared by the Sends waiting for a
// connection, not bound to one Send's ctx, and with one connection at a
// time it would otherwise hold every later request.
func TestHTTPSBoundsAStuckDialSoLaterSendsGetThrough(t *testing.T) {
	pki := newTestPKI(t)
	s := startPostServer(t, pki)
	var calls atomic.Int32
	good := tlsDial(s.srv.Listener.Addr().String(), pki.clientTLS(pki.client), nil)
	dial := func(ctx context.Context) (net.Conn, error) {
		if calls.Add(1) == 1 {
			<-ctx.Done() // the first dial hangs until its context ends
			return nil, ctx.Err()
		}
		return good(ctx)
	}
	log, _ := testutil.Logger(t)
	h := NewHTTPS(HTTPSConfig{URL: s.url, Timeout: 300 * time.Millisecond}, dial, log)
	t.Cleanup(func() { h.Close() })

	if err := h.Send(context.Background(), Message{Payload: []byte("{}")}); err == nil {
		t.Fatal("Send through a hanging dial succeeded")
	}
	var err error
	for range 3 { // the stuck dial may need a moment to give its slot back
		if err = h.Send(context.Background(), Message{Payload: []byte("{}")}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("Send after a stuck dial = %v, want nil: the stuck dial still holds the only connection slot", err)
	}
}

// A credential in the URL's query must not reach logs or errors, which the
// agent logs; `cellgate config check` redacts the same parameters.
func TestHTTPSKeepsQueryTokensOutOfLogsAndErrors(t *testing.T) {
	const secret = "s3cret-t0ken"
	pki := newTestPKI(t)
	s := startPostServer(t, pki)
	h, logBuf := newTestHTTPS(t, pki, s, HTTPSConfig{URL: s.url + "?device=gw1&token=" + secret}, nil)
	s.setRespond(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err1 := h.Send(ctx, Message{Payload: []byte("{}")})
	if err1 == nil {
		t.Fatal("Send answered 503 = nil")
	}
	if got := s.last(); got.path != "/v1/ingest" {
		t.Fatalf("request went to %q", got.path)
	}

	failing := func(context.Context) (net.Conn, error) { return nil, errors.New("no network") }
	log, logBuf2 := testutil.Logger(t)
	h2 := NewHTTPS(HTTPSConfig{URL: s.url + "?token=" + secret}, failing, log)
	defer h2.Close()
	err2 := h2.Send(ctx, Message{Payload: []byte("{}")})
	if err2 == nil {
		t.Fatal("Send through a failing dial = nil")
	}
	for what, text := range map[string]string{"status error": err1.Error(), "dial error": err2.Error(), "log": logBuf.String() + logBuf2.String()} {
		if strings.Contains(text, secret) {
			t.Errorf("the %s carries the token: %s", what, text)
		}
	}
	if !strings.Contains(err2.Error(), "token="+redact.Mark) {
		t.Errorf("dial error %q does not name the (redacted) URL", err2)
	}
}

// TestHTTPSHostTLSRunsTLSOverAPlainDial: in host mode the Dialer gives a
// plain connection (a plain TCP session through the modem) and net/http
// runs TLS on it through DialContext, presenting the client certificate.
func TestHTTPSHostTLSRunsTLSOverAPlainDial(t *testing.T) {
	pki := newTestPKI(t)
	s := startPostServer(t, pki)
	var plainDials atomic.Int32
	plain := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", s.srv.Listener.Addr().String())
		if err == nil {
			plainDials.Add(1)
		}
		return c, err
	}
	log, _ := testutil.Logger(t)
	tc := pki.clientTLS(pki.client)
	tc.MinVersion = tls.VersionTLS13
	h := NewHTTPS(HTTPSConfig{URL: s.url, HostTLS: tc}, plain, log)
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	payload := []byte(`{"device_id":"gw","readings":[]}`)
	for i := range 2 {
		if err := h.Send(ctx, Message{Payload: payload, ContentType: "application/json"}); err != nil {
			t.Fatalf("Send %d over host TLS: %v", i, err)
		}
	}
	if r := s.last(); !bytes.Equal(r.body, payload) {
		t.Fatalf("server got %q", r.body)
	}
	if n := plainDials.Load(); n != 1 {
		t.Fatalf("%d plain dials for two messages, want 1 (kept alive)", n)
	}
}

// A configured header that would break the request's framing is refused
// before anything is dialled, naming the header and not its value (which
// may be a credential).
func TestHTTPSRefusesAnInvalidHeaderWithoutDialling(t *testing.T) {
	for _, hdr := range []http.Header{
		{"Bad Name": {"x"}},
		{"Authorization": {"Bearer s3cret\r\nX-Injected: 1"}},
	} {
		var dials atomic.Int32
		dial := func(context.Context) (net.Conn, error) { dials.Add(1); return nil, errors.New("must not dial") }
		h := NewHTTPS(HTTPSConfig{URL: "https://ingest.example.com/v1", Header: hdr}, dial, nil)
		err := h.Send(context.Background(), Message{Payload: []byte("{}")})
		h.Close()
		if err == nil || !strings.Contains(err.Error(), "https uplink: header") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Send with header %q = %v, want an error naming the header, not its value", hdr, err)
		}
		if dials.Load() != 0 {
			t.Errorf("Send with header %q dialled", hdr)
		}
	}
}
