package uplink

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// This file is the HTTPS uplink's connection: HTTP/1.1 pipelining on one
// kept-alive connection.
//
// A Send takes a slot on the current connection (slot), writes its request
// whole in its turn (pipeConn.send) and waits for its answer
// (pipeConn.await). Writing and queueing happen in the same turn, so the
// queue holds the exchanges in the order their requests went out, and the
// connection's reader goroutine (pipeConn.read), the only one that reads
// the connection, hands the responses out in that order: HTTP/1.1 matches
// a response to a request by position alone. While nothing is outstanding
// the reader waits for the server's next byte, so it notices a server that
// closes an idle connection, and refuses bytes nobody asked for.
//
// A new connection takes one request; its first response opens the
// pipeline to HTTPSConfig.Pipeline if it shows a persistent HTTP/1.1
// connection (HTTP/1.1, no "Connection: close"). RFC 9112 lets a client
// pipeline a POST when it can detect and recover from a partial failure:
// when the connection fails, every request written and not answered fails
// with a retryable error, so the agent sends those batches again
// (at-least-once; the Idempotency-Key lets the server drop repeats), and
// the next connection starts at one request again.
//
// Locking: HTTPS.mu guards the state of the HTTPS and of its pipeConns
// (cur, dialing, and each pipeConn's dead, depth, outstanding, answered,
// idle). The write turn is a channel, so that a Send waiting for it
// honours its ctx.

// maxInterim bounds the 1xx responses skipped before a final one.
const maxInterim = 8

// maxResponseBody is the most of a response body read to reach the next
// response; a longer body ends the connection after its response.
const maxResponseBody = 1 << 20

// answer is a final response, its body read: the start of it in snippet.
type answer struct {
	*http.Response
	snippet string
}

// exchange is one request on a connection, waiting for its answer.
type exchange struct {
	answered chan answer // buffered: the reader never waits for the Send
	timer    *time.Timer // ends the connection when the answer is late
}

// dialAttempt is a connection being opened; Sends waiting for it share its
// outcome, so that a failing dial is not repeated by every one of them.
type dialAttempt struct {
	done chan struct{} // closed when err is set
	err  error
}

// pipeConn is one connection carrying pipelined requests.
type pipeConn struct {
	h     *HTTPS
	conn  net.Conn
	br    *bufio.Reader // owned by the read goroutine
	name  int           // the connection's number, for logs
	queue chan *exchange
	turn  chan struct{} // holds a token while a Send writes
	done  chan struct{} // closed once the connection is finished

	// Guarded by h.mu.
	dead        bool
	err         error // why the connection ended
	depth       int   // how many requests it takes now: 1, then cfg.Pipeline
	outstanding int   // slots taken: being written, or written and not answered
	answered    int
	idle        *time.Timer // closes it after IdleTimeout with nothing outstanding
	idleGen     int         // counts slot takings, so a stale idle timer does nothing
}

// broadcastLocked wakes every Send waiting for a slot. Call with h.mu held.
func (h *HTTPS) broadcastLocked() {
	close(h.wake)
	h.wake = make(chan struct{})
}

// exchange sends raw, a whole request, on the connection and returns its
// final response with the body read.
func (h *HTTPS) exchange(ctx context.Context, raw []byte) (answer, error) {
	for {
		pc, err := h.slot(ctx)
		if err != nil {
			return answer{}, err
		}
		if wait, refusal := h.holdOff(); wait > 0 { // asked while this Send waited
			pc.release()
			return answer{}, &RetryAfterError{After: wait, Err: refusal}
		}
		e, err := pc.send(ctx, raw)
		if errors.Is(err, errNotSent) {
			continue // the connection ended before this request went out
		}
		if err != nil {
			return answer{}, err
		}
		return pc.await(ctx, e)
	}
}

// errNotSent: the connection ended while a Send waited for its turn to
// write; nothing of its request was written.
var errNotSent = errors.New("connection ended before the request was written")

// slot returns the current connection with a slot taken for one request,
// dialling one when there is none. Sends beyond the connection's depth wait
// for an answer to free a slot. A failed dial fails every Send that waited
// for it.
func (h *HTTPS) slot(ctx context.Context) (*pipeConn, error) {
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return nil, ErrClosed
		}
		pc := h.cur
		if pc != nil && !pc.dead && pc.outstanding < pc.depth {
			pc.outstanding++
			pc.idleGen++
			if pc.idle != nil {
				pc.idle.Stop()
				pc.idle = nil
			}
			h.mu.Unlock()
			return pc, nil
		}
		if pc == nil && h.dialing == nil {
			h.dialing = &dialAttempt{done: make(chan struct{})}
			h.bg.Add(1)
			go h.connect(h.dialing)
		}
		att, wake := h.dialing, h.wake
		h.mu.Unlock()
		var dialed <-chan struct{}
		if att != nil {
			dialed, wake = att.done, nil
		}
		select {
		case <-wake:
		case <-dialed:
			if att.err != nil {
				return nil, att.err
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the connection: %w", ctx.Err())
		case <-h.life.Done():
			return nil, ErrClosed
		}
	}
}

// connect opens a connection for att and makes it current.
func (h *HTTPS) connect(att *dialAttempt) {
	defer h.bg.Done()
	ctx, cancel := context.WithTimeout(h.life, h.cfg.Timeout)
	defer cancel()
	conn, err := h.open(ctx)
	var stale net.Conn // a dial Close cancelled but that finished anyway
	defer func() {
		if stale != nil {
			stale.Close() // not under mu: a modem session takes a while to close
		}
	}()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dialing = nil
	switch {
	case err != nil:
		att.err = err
	case h.closed:
		att.err = ErrClosed
		stale = conn
	default:
		h.conns++
		pc := &pipeConn{h: h, conn: conn, br: bufio.NewReaderSize(conn, 16<<10), name: h.conns,
			queue: make(chan *exchange, h.cfg.Pipeline), turn: make(chan struct{}, 1),
			done: make(chan struct{}), depth: 1}
		h.cur = pc
		h.bg.Add(1)
		go pc.read()
		h.log.Debug("connected", "conn", pc.name)
	}
	close(att.done)
	h.broadcastLocked()
}

// open dials and, in host-TLS mode, runs the TLS handshake, verifying the
// server.
func (h *HTTPS) open(ctx context.Context) (net.Conn, error) {
	conn, err := h.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	if h.cfg.HostTLS != nil {
		tc := h.cfg.HostTLS.Clone()
		tc.NextProtos = []string{"http/1.1"}
		if tc.ServerName == "" {
			tc.ServerName = h.url.Hostname()
		}
		tlsConn := tls.Client(conn, tc)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		return tlsConn, nil
	}
	if cs, ok := conn.(interface{ ConnectionState() tls.ConnectionState }); ok && cs.ConnectionState().NegotiatedProtocol == "h2" {
		conn.Close()
		return nil, errors.New("the dialer negotiated HTTP/2 (ALPN h2); the HTTPS uplink speaks HTTP/1.1, so leave h2 out of NextProtos")
	}
	return conn, nil
}

// send writes raw in its turn and queues its exchange. The slot taken for
// it is given back when nothing was written (ctx ended first: an error
// wrapping ctx.Err(); the connection ended first: errNotSent). A failed
// write ends the connection; the exchange then fails in await.
func (pc *pipeConn) send(ctx context.Context, raw []byte) (*exchange, error) {
	select {
	case pc.turn <- struct{}{}:
	case <-pc.done:
		return nil, errNotSent
	case <-ctx.Done():
		pc.release()
		return nil, fmt.Errorf("waiting to write the request: %w", ctx.Err())
	}
	defer func() { <-pc.turn }()
	select {
	case <-pc.done:
		return nil, errNotSent
	default:
	}
	timeout := pc.h.cfg.Timeout
	e := &exchange{answered: make(chan answer, 1)}
	e.timer = time.AfterFunc(timeout, func() {
		pc.fail(fmt.Errorf("no response within %s of writing a request", timeout))
	})
	select {
	case pc.queue <- e: // before the write: its answer cannot come sooner
	default: // cannot happen: slots bound the queue
		e.timer.Stop()
		pc.fail(errors.New("pipeline queue overflow"))
		return nil, errNotSent
	}
	if _, err := pc.conn.Write(raw); err != nil {
		pc.fail(fmt.Errorf("write request: %w", err))
	}
	return e, nil
}

// await returns e's answer, or why it will not come: the connection ended
// (for this request or one before it), or ctx ended. In the last case the
// request stays in the pipeline: its answer is read and dropped.
func (pc *pipeConn) await(ctx context.Context, e *exchange) (answer, error) {
	select {
	case a := <-e.answered:
		return a, nil
	case <-pc.done:
		select {
		case a := <-e.answered: // answered just before the connection ended
			return a, nil
		default:
		}
		pc.h.mu.Lock()
		err := pc.err
		pc.h.mu.Unlock()
		return answer{}, fmt.Errorf("connection %d ended before the response: %w", pc.name, err)
	case <-ctx.Done():
		return answer{}, fmt.Errorf("waiting for the response: %w", ctx.Err())
	}
}

// release gives back a slot taken for a request that was not written.
func (pc *pipeConn) release() {
	h := pc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	pc.outstanding--
	pc.idleLocked()
	h.broadcastLocked()
}

// idleLocked starts the idle timer when nothing is outstanding.
func (pc *pipeConn) idleLocked() {
	if pc.outstanding > 0 || pc.dead {
		return
	}
	gen := pc.idleGen
	pc.idle = time.AfterFunc(pc.h.cfg.IdleTimeout, func() {
		pc.h.mu.Lock()
		first := pc.outstanding == 0 && pc.idleGen == gen && pc.markLocked(errIdle)
		pc.h.mu.Unlock()
		if first {
			pc.finish()
		}
	})
}

// errIdle ends a connection unused for IdleTimeout.
var errIdle = errors.New("closed after IdleTimeout without requests")

// fail ends the connection for err; the requests outstanding on it fail.
// Only the first call counts.
func (pc *pipeConn) fail(err error) {
	pc.h.mu.Lock()
	first := pc.markLocked(err)
	pc.h.mu.Unlock()
	if first {
		pc.finish()
	}
}

// markLocked marks the connection dead for err; it reports whether it was
// alive. The connection stays current until finish has closed it, so that
// no new modem session opens while this one is still open.
func (pc *pipeConn) markLocked(err error) bool {
	if pc.dead {
		return false
	}
	pc.dead, pc.err = true, err
	if pc.idle != nil {
		pc.idle.Stop()
	}
	return true
}

// finish closes the connection after markLocked, wakes the Sends on it and
// lets the next Send dial.
func (pc *pipeConn) finish() {
	h := pc.h
	pc.conn.Close()
	close(pc.done)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur == pc {
		h.cur = nil
	}
	h.broadcastLocked()
	switch {
	case pc.outstanding > 0:
		h.log.Warn("connection ended with requests unanswered; they will be sent again",
			"conn", pc.name, "unanswered", pc.outstanding, "answered", pc.answered, "err", pc.err)
	default:
		h.log.Debug("connection closed", "conn", pc.name, "answered", pc.answered, "reason", pc.err)
	}
	for { // stop the timers of requests that will not be answered
		select {
		case e := <-pc.queue:
			e.timer.Stop()
		default:
			return
		}
	}
}

// read is the connection's reader: it hands each response to the oldest
// request outstanding, until the connection ends.
func (pc *pipeConn) read() {
	defer pc.h.bg.Done()
	for {
		if _, err := pc.br.Peek(1); err != nil {
			pc.fail(readError(err))
			return
		}
		var e *exchange
		select {
		case e = <-pc.queue:
		default:
			pc.fail(errors.New("the server sent data with no request outstanding"))
			return
		}
		a, bodyErr, err := pc.readAnswer()
		if err != nil {
			pc.fail(err)
			return
		}
		// Bytes already here with no request queued came before any
		// later request was written (a request is queued before it is
		// written): nobody asked for them. Checked before the answer is
		// handed out, which may let its Send's caller write the next.
		unasked := pc.br.Buffered() > 0 && len(pc.queue) == 0
		e.timer.Stop()
		pc.h.mu.Lock()
		if pc.dead {
			// Ended (Close, a timeout) before this answer came: its Send
			// reports the failure, and a server that answered after
			// seeing the TLS close_notify does not turn it into an ack.
			pc.h.mu.Unlock()
			return
		}
		ended := pc.answeredLocked(a.Response, bodyErr, unasked)
		pc.h.mu.Unlock()
		e.answered <- a
		if ended {
			pc.finish()
			return
		}
	}
}

// readError names how the server ended the connection.
func readError(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("the server closed the connection")
	}
	return fmt.Errorf("read: %w", err)
}

// readAnswer reads the next final response, skipping interim (1xx) ones,
// and its body. bodyErr says the body could not be read to its end (the
// response stands, the connection cannot go on); err says no final
// response could be read.
func (pc *pipeConn) readAnswer() (a answer, bodyErr, err error) {
	for interim := 0; ; interim++ {
		resp, err := http.ReadResponse(pc.br, nil)
		if err != nil {
			return answer{}, nil, fmt.Errorf("read response: %w", err)
		}
		switch c := resp.StatusCode; {
		case c == http.StatusSwitchingProtocols:
			return answer{}, nil, errors.New("the server answered 101 Switching Protocols to a request that asked for no upgrade")
		case c < 200 && interim == maxInterim:
			return answer{}, nil, fmt.Errorf("the server sent more than %d interim (1xx) responses to one request", maxInterim)
		case c < 200:
			continue // 100 Continue, 102, 103: a final response follows
		}
		a = answer{Response: resp, snippet: readSnippet(resp.Body)}
		n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
		switch {
		case err != nil:
			bodyErr = fmt.Errorf("read response body: %w", err)
		case n == maxResponseBody:
			bodyErr = fmt.Errorf("response body longer than %d bytes", maxResponseBody)
		}
		resp.Body.Close()
		return a, bodyErr, nil
	}
}

// answeredLocked accounts for a response: it frees its slot and opens the
// pipeline after a first response on a persistent connection. When the
// connection cannot carry more (the server closes it, its body could not
// be read to its end, bytes came that nobody asked for) it marks it dead,
// before any Send can take the slot, and reports true: the caller then
// finishes it. Call with h.mu held.
func (pc *pipeConn) answeredLocked(resp *http.Response, bodyErr error, unasked bool) bool {
	h := pc.h
	persistent := !resp.Close && resp.ProtoAtLeast(1, 1)
	pc.outstanding--
	pc.answered++
	if pc.answered == 1 && persistent && pc.depth < h.cfg.Pipeline {
		pc.depth = h.cfg.Pipeline
		h.log.Debug("pipelining", "conn", pc.name, "depth", pc.depth)
	}
	var end error
	switch {
	case unasked:
		end = errors.New("the server sent data with no request outstanding")
	case bodyErr != nil:
		end = bodyErr
	case resp.Close:
		end = fmt.Errorf("the server closed the connection after response %d (%s, Connection: close)", pc.answered, resp.Status)
	case !persistent:
		end = fmt.Errorf("the server answered %s: no persistent connection", resp.Proto)
	}
	if end != nil {
		return pc.markLocked(end)
	}
	pc.idleLocked()
	h.broadcastLocked()
	return false
}
