// Package pipewitness lets a test's HTTP server see HTTP/1.1 pipelining
// from its own side. Its Listener's connections read eagerly (as the
// kernel buffers bytes whatever the server reads) and count the request
// lines that arrive, so that a handler can answer request k of a
// connection only once request k+1 has begun to arrive: something a client
// that waits for each answer before writing the next request can never
// bring about. net/http reads nothing more of a connection while a
// handler runs, so the count cannot come from what the server reads.
//
// It is for tests of the HTTPS uplink (transport/uplink) and the agent's
// end-to-end tests; it imports no testing so that both can use it.
package pipewitness

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Listener accepts TLS connections and wraps each in a *Conn counting
// RequestLine. Serve it with an http.Server whose ConnContext is
// ConnContext, and find a request's Conn with FromRequest. The server's
// requests have no TLS state (r.TLS is nil): the handshake happens inside
// the Conn; use tls.Config.VerifyConnection to see it.
type Listener struct {
	net.Listener
	// TLS is the server's TLS config.
	TLS *tls.Config
	// RequestLine is what starts every request counted, e.g.
	// "POST /ingest HTTP/1.1\r\n".
	RequestLine string
	// Accepted, if set, is called for each accepted connection.
	Accepted func()
}

// Accept returns the next connection, wrapped.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.Accepted != nil {
		l.Accepted()
	}
	wc := &Conn{Conn: tls.Server(c, l.TLS), line: []byte(l.RequestLine), wake: make(chan struct{})}
	go wc.pump()
	return wc, nil
}

type connKey struct{}

// ConnContext is for http.Server.ConnContext: it makes the *Conn of a
// request reachable by FromRequest.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if wc, ok := c.(*Conn); ok {
		return context.WithValue(ctx, connKey{}, wc)
	}
	return ctx
}

// FromRequest returns the *Conn r came on, or nil if it did not come
// through a Listener served with ConnContext.
func FromRequest(r *http.Request) *Conn {
	wc, _ := r.Context().Value(connKey{}).(*Conn)
	return wc
}

// Conn is one accepted connection: it reads eagerly and counts request
// lines as they arrive. Its read deadline applies to what the server reads
// from it (net/http ends its background read with a deadline in the past),
// never to the eager reading.
type Conn struct {
	net.Conn
	line []byte

	// Served is free for the handler: the requests handled so far, to
	// know which request of the connection it is answering.
	Served atomic.Int32

	mu       sync.Mutex
	buf      []byte // arrived, not yet read by the server
	readErr  error
	tail     []byte // the end of what arrived, for a line split between reads
	lines    int
	deadline time.Time     // of Read
	wake     chan struct{} // closed and replaced when something arrives or the deadline moves
}

func (c *Conn) pump() {
	p := make([]byte, 32<<10)
	for {
		n, err := c.Conn.Read(p)
		c.mu.Lock()
		c.buf = append(c.buf, p[:n]...)
		all := append(c.tail, p[:n]...)
		c.lines += bytes.Count(all, c.line)
		c.tail = slices.Clone(all[max(0, len(all)-len(c.line)+1):])
		c.readErr = err
		c.notifyLocked()
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (c *Conn) notifyLocked() {
	close(c.wake)
	c.wake = make(chan struct{})
}

// Read returns what arrived, waiting for it until the read deadline.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		c.mu.Lock()
		buf, err, wake, deadline := c.buf, c.readErr, c.wake, c.deadline
		if len(buf) > 0 {
			n := copy(p, buf)
			c.buf = buf[n:]
			c.mu.Unlock()
			return n, nil
		}
		c.mu.Unlock()
		if err != nil {
			return 0, err
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		waitFor(wake, deadline)
	}
}

// waitFor waits for wake or the deadline (zero: none).
func waitFor(wake <-chan struct{}, deadline time.Time) {
	if deadline.IsZero() {
		<-wake
		return
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-wake:
	case <-t.C:
	}
}

// SetReadDeadline sets the deadline of Read.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	c.notifyLocked()
	return nil
}

// SetDeadline sets the deadlines of Read and Write.
func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

// Lines is how many request lines arrived so far.
func (c *Conn) Lines() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lines
}

// WaitLines waits until n request lines arrived, the connection ended, or
// within passed; it reports whether they arrived.
func (c *Conn) WaitLines(n int, within time.Duration) bool {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		got, ended, wake := c.lines, c.readErr != nil, c.wake
		c.mu.Unlock()
		if got >= n {
			return true
		}
		if ended {
			return false
		}
		select {
		case <-wake:
		case <-deadline.C:
			return false
		}
	}
}
