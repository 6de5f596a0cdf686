package uplink

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/pipewitness"
	"github.com/cellgate/cellgate/internal/testutil"
)

// This file tests HTTP/1.1 pipelining against real servers on 127.0.0.1
// over real TLS with client certificates: Go's net/http server
// (pipeServer, which can prove that requests were pipelined), a scripted
// server for the answers net/http would not give (rawServer), and Python's
// http.server (https_python_test.go).

// holdWithin bounds how long a pipeServer holds an answer for the next
// request to arrive; a client that does not pipeline makes it run out.
const holdWithin = 20 * time.Second

// pipeServer is Go's net/http server over TLS (client certificates
// required and verified) on a pipewitness.Listener, which counts, per
// connection, the request lines that arrived. That lets a handler answer
// request k of a connection only once request hold(k) has begun to
// arrive: a client that waits for each answer before writing the next
// request can never get such an answer (the hold runs out and the request
// is answered 500 "not pipelined").
type pipeServer struct {
	url  string
	srv  *http.Server
	hold func(k int) int // request lines to wait for before answering request k (1-based); nil: none

	mu       sync.Mutex
	respond  func(k int, w http.ResponseWriter, r *http.Request) // nil: 204
	answered map[string]int                                      // body -> 2xx answers written
	conns    int
	missed   []string // holds that ran out
}

// pipelineHold holds requests 2..total of a connection until the next one
// (or, for the last, itself) arrived: after a first request alone, total-1
// requests pipelined together.
func pipelineHold(total int) func(int) int {
	return func(k int) int {
		if k < 2 {
			return k
		}
		return min(k+1, total)
	}
}

// holdAllAt is pipelineHold(total), but request at is held until all
// total requests arrived: none is still waiting to be written when it is
// answered.
func holdAllAt(at, total int) func(int) int {
	return func(k int) int {
		if k == at {
			return total
		}
		return pipelineHold(total)(k)
	}
}

func startPipeServer(t *testing.T, pki *testPKI, hold func(int) int) *pipeServer {
	t.Helper()
	s := &pipeServer{hold: hold, answered: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errLog := &testutil.SyncBuffer{}
	s.srv = &http.Server{
		Handler:     http.HandlerFunc(s.serve),
		ErrorLog:    log.New(errLog, "", 0),
		ConnContext: pipewitness.ConnContext,
	}
	go s.srv.Serve(&pipewitness.Listener{Listener: ln, TLS: pki.serverTLS(), RequestLine: "POST /v1/ingest HTTP/1.1\r\n",
		Accepted: func() {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}})
	t.Cleanup(func() {
		s.srv.Close()
		if t.Failed() {
			t.Logf("server errors:\n%s", errLog.String())
		}
	})
	s.url = "https://" + ln.Addr().String() + "/v1/ingest"
	return s
}

func (s *pipeServer) serve(w http.ResponseWriter, r *http.Request) {
	wc := pipewitness.FromRequest(r)
	body, _ := io.ReadAll(r.Body)
	k := wc.Served.Add(1)
	if s.hold != nil && !wc.WaitLines(s.hold(int(k)), holdWithin) {
		s.mu.Lock()
		s.missed = append(s.missed, fmt.Sprintf("request %d (%s): request %d never came while it waited", k, body, s.hold(int(k))))
		s.mu.Unlock()
		http.Error(w, "not pipelined", http.StatusInternalServerError)
		return
	}
	s.mu.Lock()
	respond := s.respond
	s.mu.Unlock()
	rec := &statusRecorder{ResponseWriter: w}
	if respond == nil {
		rec.WriteHeader(http.StatusNoContent)
	} else {
		respond(int(k), rec, r)
	}
	if rec.status >= 200 && rec.status < 300 {
		s.mu.Lock()
		s.answered[string(body)]++
		s.mu.Unlock()
	}
}

func (s *pipeServer) setRespond(f func(k int, w http.ResponseWriter, r *http.Request)) {
	s.mu.Lock()
	s.respond = f
	s.mu.Unlock()
}

// check fails t if a hold ran out; it returns the 2xx answers by body and
// the connections accepted.
func (s *pipeServer) check(t *testing.T) (map[string]int, int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.missed) > 0 {
		t.Errorf("requests were not pipelined: %v", s.missed)
	}
	return maps.Clone(s.answered), s.conns
}

// statusRecorder notes the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 || r.status < 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

// newPipeHTTPS is an HTTPS uplink to s; dials counts its connections.
func newPipeHTTPS(t *testing.T, pki *testPKI, url string, cfg HTTPSConfig, dials *atomic.Int32) *HTTPS {
	t.Helper()
	log, _ := testutil.Logger(t)
	cfg.URL = url
	addr := strings.TrimPrefix(strings.TrimSuffix(url, "/v1/ingest"), "https://")
	h := NewHTTPS(cfg, tlsDial(addr, pki.clientTLS(pki.client), dials), log)
	t.Cleanup(func() { h.Close() })
	return h
}

// body is message i's payload; the servers record answers by it.
func body(i int) string { return fmt.Sprintf(`{"n":%d}`, i) }

// sendAll sends messages from..to-1 concurrently and returns each error.
func sendAll(ctx context.Context, h *HTTPS, from, to int) map[string]error {
	var mu sync.Mutex
	errs := map[string]error{}
	var wg sync.WaitGroup
	for i := from; i < to; i++ {
		wg.Go(func() {
			err := h.Send(ctx, Message{Payload: []byte(body(i)), ContentType: "application/json"})
			mu.Lock()
			errs[body(i)] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	return errs
}

// primeAndPipeline sends message 0 alone (a new connection takes one
// request), then messages 1..8 at once, and returns every error by body.
func primeAndPipeline(t *testing.T, h *HTTPS) map[string]error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*holdWithin)
	defer cancel()
	errs := sendAll(ctx, h, 0, 1)
	if err := errs[body(0)]; err != nil {
		t.Fatalf("first Send: %v", err)
	}
	for k, v := range sendAll(ctx, h, 1, 9) {
		errs[k] = v
	}
	return errs
}

// retryable says err is an error the agent retries: not a refusal.
func retryable(err error) bool {
	var perm *PermanentError
	var se *StatusError
	return err != nil && !errors.As(err, &perm) && !errors.As(err, &se) && !errors.Is(err, ErrClosed)
}

// expectAckedIffAnswered checks that exactly the messages the server
// answered 2xx were reported acknowledged, and that the others failed
// retryably; it returns the bodies that failed.
func expectAckedIffAnswered(t *testing.T, errs map[string]error, answered map[string]int) []string {
	t.Helper()
	var failed []string
	for b, err := range errs {
		switch {
		case err == nil && answered[b] == 0:
			t.Errorf("Send of %s reported acknowledged, but the server never answered it 2xx", b)
		case err != nil && answered[b] > 0:
			t.Errorf("Send of %s failed (%v), but the server answered it 2xx", b, err)
		case err != nil && !retryable(err):
			t.Errorf("Send of %s failed with %v, want a retryable error", b, err)
		case err != nil:
			failed = append(failed, b)
		}
	}
	slices.Sort(failed)
	return failed
}

// With pipelining, Go's net/http server receives eight requests on one
// connection before it answers the first of them, answers them in order,
// and every Send returns its own answer.
func TestHTTPSPipelinesRequestsOnOneConnection(t *testing.T) {
	pki := newTestPKI(t)
	s := startPipeServer(t, pki, pipelineHold(9))
	var dials atomic.Int32
	h := newPipeHTTPS(t, pki, s.url, HTTPSConfig{}, &dials)
	if got := h.InFlightLimit(); got != DefaultHTTPSPipeline {
		t.Errorf("InFlightLimit = %d, want %d", got, DefaultHTTPSPipeline)
	}
	s.setRespond(func(k int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusAccepted)
	})
	errs := primeAndPipeline(t, h)
	answered, conns := s.check(t)
	if failed := expectAckedIffAnswered(t, errs, answered); len(failed) > 0 {
		t.Errorf("on a clean connection these failed: %v", failed)
	}
	for b, n := range answered {
		if n != 1 {
			t.Errorf("the server answered %s %d times", b, n)
		}
	}
	if d := dials.Load(); d != 1 || conns != 1 {
		t.Errorf("%d dials, %d connections at the server for 9 messages; want 1", d, conns)
	}
}

// A server that keeps nothing pipelined: with Pipeline 1 every request
// waits for the answer before it, which the pipelining witness sees as a
// request line count that never runs ahead.
func TestHTTPSPipelineOneSendsOneAtATime(t *testing.T) {
	pki := newTestPKI(t)
	s := startPipeServer(t, pki, nil)
	var ahead atomic.Int32
	s.setRespond(func(k int, w http.ResponseWriter, r *http.Request) {
		if pipewitness.FromRequest(r).Lines() > k {
			ahead.Add(1)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	h := newPipeHTTPS(t, pki, s.url, HTTPSConfig{Pipeline: 1}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for b, err := range sendAll(ctx, h, 0, 12) {
		if err != nil {
			t.Errorf("Send %s: %v", b, err)
		}
	}
	if n := ahead.Load(); n > 0 {
		t.Errorf("with Pipeline 1 the server saw a next request before answering %d times", n)
	}
}

// "Connection: close" on the third answer: the requests pipelined after it
// fail retryably (the server will not answer them), the ones answered are
// acknowledged, and sent again they go out on a new connection that
// starts at one request.
func TestHTTPSConnectionCloseMidPipelineFailsTheRest(t *testing.T) {
	pki := newTestPKI(t)
	s := startPipeServer(t, pki, holdAllAt(3, 9))
	var dials atomic.Int32
	h := newPipeHTTPS(t, pki, s.url, HTTPSConfig{}, &dials)
	s.setRespond(func(k int, w http.ResponseWriter, r *http.Request) {
		if k == 3 {
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(http.StatusNoContent)
	})
	errs := primeAndPipeline(t, h)
	answered, _ := s.check(t)
	failed := expectAckedIffAnswered(t, errs, answered)
	if len(failed) != 6 || len(answered) != 3 {
		t.Fatalf("after Connection: close on answer 3 of 9: %d answered, failed %v; want 3 answered, the 6 pipelined after it failed", len(answered), failed)
	}
	resendOnANewConnection(t, h, s, failed, &dials)
}

// resendOnANewConnection sends failed again, one at a time, and checks
// that each reaches the server exactly once in all, over one new
// connection that took one request before it was known to stay open.
func resendOnANewConnection(t *testing.T, h *HTTPS, s *pipeServer, failed []string, dials *atomic.Int32) {
	t.Helper()
	s.setRespond(nil)
	s.hold = nil
	before := dials.Load()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, b := range failed {
		if i == 0 {
			h.mu.Lock()
			if h.cur != nil && !h.cur.dead {
				t.Errorf("the connection that the server closed is still in use")
			}
			h.mu.Unlock()
		}
		if err := h.Send(ctx, Message{Payload: []byte(b)}); err != nil {
			t.Fatalf("resending %s: %v", b, err)
		}
		if i == 0 {
			h.mu.Lock()
			depth := h.cur.depth
			h.mu.Unlock()
			if depth != DefaultHTTPSPipeline {
				t.Errorf("after a persistent first answer the depth is %d, want %d", depth, DefaultHTTPSPipeline)
			}
		}
	}
	if d := dials.Load() - before; d != 1 {
		t.Errorf("resending took %d new connections, want 1", d)
	}
	answered, _ := s.check(t)
	for _, b := range failed {
		if answered[b] != 1 {
			t.Errorf("%s answered %d times in all, want exactly once", b, answered[b])
		}
	}
}

// A server that drops the connection mid-pipeline (request 4 of 9, with
// all nine on the wire): every request not answered fails retryably, and
// nothing is reported acknowledged that the server did not answer.
func TestHTTPSServerClosingMidPipelineFailsEveryOutstandingSend(t *testing.T) {
	pki := newTestPKI(t)
	s := startPipeServer(t, pki, holdAllAt(4, 9))
	var dials atomic.Int32
	h := newPipeHTTPS(t, pki, s.url, HTTPSConfig{}, &dials)
	s.setRespond(func(k int, w http.ResponseWriter, r *http.Request) {
		if k == 4 {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	errs := primeAndPipeline(t, h)
	answered, _ := s.check(t)
	failed := expectAckedIffAnswered(t, errs, answered)
	if len(failed) != 6 || len(answered) != 3 {
		t.Fatalf("server dropped the connection at request 4 of 9: %d answered, failed %v; want 3 answered and 6 failed", len(answered), failed)
	}
	resendOnANewConnection(t, h, s, failed, &dials)
}

// A 413 in the middle of a pipeline refuses that message for good (the
// agent splits it), and the requests around it are acknowledged on the
// same connection.
func TestHTTPS413MidPipelineIsPermanentForThatMessageOnly(t *testing.T) {
	pki := newTestPKI(t)
	s := startPipeServer(t, pki, pipelineHold(9))
	var dials atomic.Int32
	h := newPipeHTTPS(t, pki, s.url, HTTPSConfig{}, &dials)
	s.setRespond(func(k int, w http.ResponseWriter, r *http.Request) {
		if k == 5 {
			http.Error(w, "batch too large", http.StatusRequestEntityTooLarge)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	errs := primeAndPipeline(t, h)
	answered, conns := s.check(t)
	var refused []string
	for b, err := range errs {
		var perm *PermanentError
		var se *StatusError
		switch {
		case err == nil:
		case errors.As(err, &perm) && errors.As(err, &se) && se.StatusCode == http.StatusRequestEntityTooLarge:
			refused = append(refused, b)
		default:
			t.Errorf("Send of %s = %v, want nil or a permanent 413", b, err)
		}
	}
	if len(refused) != 1 || len(answered) != 8 {
		t.Errorf("413 on request 5 of 9: refused %v, %d acknowledged; want one refused, 8 acknowledged", refused, len(answered))
	}
	if d := dials.Load(); d != 1 || conns != 1 {
		t.Errorf("%d dials, %d connections: a 413 must not cost the connection", d, conns)
	}
}

// A 503 with Retry-After in a pipeline: its Send carries the wait, the
// requests already on the wire get their own answers, and a Send after it
// does not reach the server until the wait is over.
func TestHTTPSRetryAfterMidPipeline(t *testing.T) {
	pki := newTestPKI(t)
	// All nine on the wire before the 503: Sends not yet written when it
	// comes are held off without a request.
	s := startPipeServer(t, pki, holdAllAt(3, 9))
	h := newPipeHTTPS(t, pki, s.url, HTTPSConfig{}, nil)
	s.setRespond(func(k int, w http.ResponseWriter, r *http.Request) {
		if k == 3 {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	errs := primeAndPipeline(t, h)
	answered, _ := s.check(t)
	waits := 0
	for b, err := range errs {
		if d, ok := RetryAfter(err); ok {
			waits++
			if d <= 0 || d > 120*time.Second {
				t.Errorf("Send of %s: wait %v, want up to 120s", b, d)
			}
		} else if err != nil {
			t.Errorf("Send of %s = %v", b, err)
		}
	}
	if waits != 1 || len(answered) != 8 {
		t.Errorf("503 Retry-After on request 3 of 9: %d waits, %d acknowledged; want 1 and 8", waits, len(answered))
	}
	err := h.Send(context.Background(), Message{Payload: []byte(body(99))})
	if _, ok := RetryAfter(err); !ok {
		t.Fatalf("Send during the wait = %v, want a *RetryAfterError", err)
	}
	if a, _ := s.check(t); a[body(99)] != 0 {
		t.Fatal("a Send during the Retry-After wait reached the server")
	}
}

// Close with requests pipelined and unanswered ends each Send with
// ErrClosed, and leaves no goroutine behind (goleak, TestMain).
func TestHTTPSCloseEndsEveryPipelinedSend(t *testing.T) {
	pki := newTestPKI(t)
	s := startPipeServer(t, pki, nil)
	arrived := make(chan struct{}, 16)
	// net/http does not see a client hang up while pipelined bytes wait
	// (its background read stops at the first of them): release ends it.
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	s.setRespond(func(k int, w http.ResponseWriter, r *http.Request) {
		if k == 1 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		arrived <- struct{}{}
		select { // never answers
		case <-r.Context().Done():
		case <-release:
		}
	})
	h := newPipeHTTPS(t, pki, s.url, HTTPSConfig{}, nil)
	if err := h.Send(context.Background(), Message{Payload: []byte(body(0))}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 4)
	for i := 1; i <= 4; i++ {
		go func() { done <- h.Send(context.Background(), Message{Payload: []byte(body(i))}) }()
	}
	select {
	case <-arrived: // the first is being handled; the others are written or waiting
	case <-time.After(20 * time.Second):
		t.Fatal("no pipelined request arrived")
	}
	h.Close()
	for range 4 {
		select {
		case err := <-done:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("Send during Close = %v, want ErrClosed", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Close left a Send waiting")
		}
	}
}

// rawServer is a TLS server (client certificates required) that reads
// requests with http.ReadRequest and answers each with the bytes its
// script returns, for answers net/http does not give: interim responses,
// 101, HTTP/1.0, a response nobody asked for.
type rawServer struct {
	url   string
	conns atomic.Int32
}

// rawAnswer is what a rawServer writes for request k of connection conn,
// and whether it then closes the connection.
type rawAnswer func(conn, k int) (string, bool)

func startRawServer(t *testing.T, pki *testPKI, script rawAnswer) *rawServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.serverTLS())
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{url: "https://" + ln.Addr().String() + "/v1/ingest"}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conn := int(s.conns.Add(1))
			wg.Go(func() { s.serve(c, conn, script) })
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return s
}

func (s *rawServer) serve(c net.Conn, conn int, script rawAnswer) {
	defer c.Close()
	br := bufio.NewReader(c)
	for k := 1; ; k++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		out, closeAfter := script(conn, k)
		if _, err := io.WriteString(c, out); err != nil || closeAfter {
			return
		}
	}
}

func TestHTTPSAnswersTheServerMayGive(t *testing.T) {
	const noContent = "HTTP/1.1 204 No Content\r\n\r\n"
	for _, c := range []struct {
		name   string
		script rawAnswer
		// wantErr is a part of the second Send's error ("" for none);
		// conns is how many connections three Sends take.
		wantErr string
		conns   int32
	}{
		{"interim 100 and 103 are skipped", func(_, k int) (string, bool) {
			return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + noContent, false
		}, "", 1},
		{"101 fails the request", func(conn, k int) (string, bool) {
			if conn == 1 && k == 2 {
				return "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n", false
			}
			return noContent, false
		}, "101 Switching Protocols", 2},
		{"HTTP/1.0 is not kept", func(_, k int) (string, bool) {
			return "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", true
		}, "", 3},
		{"a response nobody asked for ends the connection", func(conn, k int) (string, bool) {
			if conn == 1 && k == 1 {
				return noContent + noContent, false
			}
			return noContent, false
		}, "", 2},
		{"a body is read to reach the next response", func(_, k int) (string, bool) {
			return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false
		}, "", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			pki := newTestPKI(t)
			s := startRawServer(t, pki, c.script)
			h := newPipeHTTPS(t, pki, s.url, HTTPSConfig{}, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for i := range 3 {
				err := h.Send(ctx, Message{Payload: []byte(body(i))})
				want := i == 1 && c.wantErr != ""
				switch {
				case want && (err == nil || !strings.Contains(err.Error(), c.wantErr) || !retryable(err)):
					t.Errorf("Send %d = %v, want a retryable error with %q", i, err, c.wantErr)
				case !want && err != nil:
					t.Errorf("Send %d: %v", i, err)
				}
			}
			if n := s.conns.Load(); n != c.conns {
				t.Errorf("three Sends took %d connections, want %d", n, c.conns)
			}
		})
	}
}

// A request the server never answers fails by Timeout, and with it every
// request pipelined behind it; the next Send gets a new connection.
func TestHTTPSTimeoutFailsTheRequestsBehindIt(t *testing.T) {
	pki := newTestPKI(t)
	release := make(chan struct{})
	s := startRawServer(t, pki, func(conn, k int) (string, bool) {
		if conn == 1 && k == 2 {
			<-release // answers nothing until the test ends
		}
		return "HTTP/1.1 204 No Content\r\n\r\n", false
	})
	t.Cleanup(func() { close(release) })
	h := newPipeHTTPS(t, pki, s.url, HTTPSConfig{Timeout: time.Second}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Send(ctx, Message{Payload: []byte(body(0))}); err != nil {
		t.Fatal(err)
	}
	// Each of the three is written behind the unanswered one and fails
	// with it, unless (on a very slow machine) the connection ended
	// before its turn to write: it then goes out on the next connection.
	timeouts := 0
	for b, err := range sendAll(ctx, h, 1, 4) {
		switch {
		case err == nil:
		case retryable(err) && strings.Contains(err.Error(), "no response within 1s"):
			timeouts++
		default:
			t.Errorf("Send of %s behind an unanswered request = %v, want a retryable timeout", b, err)
		}
	}
	if timeouts == 0 {
		t.Error("no Send failed by the timeout of the request never answered")
	}
	if err := h.Send(ctx, Message{Payload: []byte(body(9))}); err != nil {
		t.Fatalf("Send after the timeout: %v", err)
	}
	if n := s.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// In host-TLS mode the uplink runs TLS 1.3 itself over a plain dial
// (verifying the server by the URL's host) and pipelines the same way.
func TestHTTPSHostTLSPipelines(t *testing.T) {
	pki := newTestPKI(t)
	s := startPipeServer(t, pki, pipelineHold(9))
	var plainDials atomic.Int32
	addr := strings.TrimSuffix(strings.TrimPrefix(s.url, "https://"), "/v1/ingest")
	plain := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			plainDials.Add(1)
		}
		return c, err
	}
	log, _ := testutil.Logger(t)
	tc := pki.clientTLS(pki.client)
	tc.MinVersion = tls.VersionTLS13
	h := NewHTTPS(HTTPSConfig{URL: s.url, HostTLS: tc}, plain, log)
	t.Cleanup(func() { h.Close() })
	errs := primeAndPipeline(t, h)
	answered, conns := s.check(t)
	if failed := expectAckedIffAnswered(t, errs, answered); len(failed) > 0 {
		t.Errorf("over host TLS these failed: %v", failed)
	}
	if n := plainDials.Load(); n != 1 || conns != 1 {
		t.Errorf("%d plain dials, %d connections for 9 messages; want 1", n, conns)
	}
}
