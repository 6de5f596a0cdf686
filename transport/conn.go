// Package transport is the agent's side of a modem session: Conn makes a
// plugin session stream a net.Conn, so Go's protocol clients (crypto/tls,
// paho.golang, net/http) run over a modem unchanged.
package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// Conn is a net.Conn over one sdk.Session.
//
// Reads: a single goroutine receives frames from the session into a small
// buffer; Read takes from it and honours the read deadline. A peer close or
// a clean end of session reads as io.EOF; any other session event reads as
// a *SessionError carrying it.
//
// Writes: Write hands the bytes to Session.Send, which returns once the
// modem accepted them, so a slow modem makes Write wait (with the write
// deadline) rather than buffer without bound. Concurrent Writes are
// serialised; each Write's bytes stay contiguous. A Write cut short by its
// deadline may have sent a prefix of its bytes; as with a TCP conn, the
// stream is then only good for closing.
//
// Half-close: a modem session has no half-close, so CloseWrite is not
// offered. Close ends the session on the modem and unblocks pending Reads
// and Writes.
type Conn struct {
	sess   sdk.Session
	local  net.Addr
	remote net.Addr

	frames chan frameOrErr // from the receive loop; closed when it ends
	ctx    context.Context // cancelled by Close: stops the receive loop and Sends
	cancel context.CancelFunc
	loop   sync.WaitGroup

	readMu  sync.Mutex // one Read at a time; owns pending and readErr
	pending []byte
	readErr error

	writeMu sync.Mutex // one Write at a time

	readDeadline  deadline
	writeDeadline deadline

	closeOnce sync.Once
	closeErr  error
	// closeTimeout bounds the plugin's Session.Close in Close.
	closeTimeout time.Duration
}

type frameOrErr struct {
	data []byte
	err  error
}

// SessionError is what a Read returns when the session ended with an event
// other than a clean peer close (network lost, modem rebooted, …).
type SessionError struct {
	Event sdk.SessionEvent
}

func (e *SessionError) Error() string {
	return fmt.Sprintf("modem session ended: %s (code %d) %s", e.Event.Kind, e.Event.Code, e.Event.Detail)
}

// Addr is the address of one end of a modem session.
type Addr struct{ Host string }

// Network returns "modem".
func (a Addr) Network() string { return "modem" }
func (a Addr) String() string  { return a.Host }

// NewConn wraps sess. remote names the peer (host:port) for RemoteAddr. The
// Conn owns sess from now on: Close closes it.
func NewConn(sess sdk.Session, remote string) *Conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		sess:         sess,
		local:        Addr{Host: fmt.Sprintf("modem-session-%d", sess.ID())},
		remote:       Addr{Host: remote},
		frames:       make(chan frameOrErr, 4),
		ctx:          ctx,
		cancel:       cancel,
		closeTimeout: 15 * time.Second,
	}
	c.readDeadline.init()
	c.writeDeadline.init()
	c.loop.Add(1)
	go c.receive()
	return c
}

// receive is the only caller of sess.Recv.
func (c *Conn) receive() {
	defer c.loop.Done()
	defer close(c.frames)
	for {
		f, err := c.sess.Recv(c.ctx)
		var out frameOrErr
		switch {
		case err != nil:
			if c.ctx.Err() != nil {
				return
			}
			out.err = err
		case f.Event != nil:
			if f.Event.Kind == sdk.EventPeerClosed {
				out.err = io.EOF
			} else {
				out.err = &SessionError{Event: *f.Event}
			}
		case len(f.Data) == 0:
			continue
		default:
			out.data = f.Data
		}
		select {
		case c.frames <- out:
		case <-c.ctx.Done():
			return
		}
		if out.err != nil {
			return
		}
	}
}

// Read reads received bytes, waiting for some until the read deadline.
func (c *Conn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if len(c.pending) == 0 {
		if c.readErr != nil {
			return 0, c.readErr
		}
		if c.ctx.Err() != nil {
			return 0, net.ErrClosed
		}
		if len(p) == 0 {
			return 0, nil
		}
		expired := c.readDeadline.wait()
		select {
		case f, ok := <-c.frames:
			switch {
			case !ok:
				if c.ctx.Err() != nil {
					return 0, net.ErrClosed
				}
				c.readErr = io.EOF
				return 0, io.EOF
			case f.err != nil:
				c.readErr = f.err
				return 0, f.err
			}
			c.pending = f.data
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		case <-c.ctx.Done():
			return 0, net.ErrClosed
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Write sends p, waiting for the modem to accept it until the write deadline.
func (c *Conn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.ctx.Err() != nil {
		return 0, net.ErrClosed
	}
	if c.writeDeadline.expired() {
		return 0, os.ErrDeadlineExceeded
	}
	// The session's Send takes a context, not a deadline: a watcher turns
	// the (movable) write deadline into a cancellation.
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	expired := c.writeDeadline.wait()
	var timedOut atomic.Bool
	watchDone := make(chan struct{})
	defer close(watchDone)
	go func() {
		select {
		case <-expired:
			timedOut.Store(true)
			cancel()
		case <-watchDone:
		}
	}()
	if err := c.sess.Send(ctx, p); err != nil {
		if timedOut.Load() {
			return 0, os.ErrDeadlineExceeded
		}
		if c.ctx.Err() != nil {
			return 0, net.ErrClosed
		}
		return 0, err
	}
	return len(p), nil
}

// Close ends the session and releases the receive loop. It is safe to call
// more than once; later calls return nil.
func (c *Conn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		c.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), c.closeTimeout)
		defer cancel()
		c.closeErr = c.sess.Close(ctx)
		c.loop.Wait()
		err = c.closeErr
	})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// LocalAddr names the modem session ("modem-session-0").
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr is the host:port the session was dialed to.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.readDeadline.set(t)
	c.writeDeadline.set(t)
	return nil
}

// SetReadDeadline sets the read deadline; a zero t means none.
func (c *Conn) SetReadDeadline(t time.Time) error { c.readDeadline.set(t); return nil }

// SetWriteDeadline sets the write deadline; a zero t means none.
func (c *Conn) SetWriteDeadline(t time.Time) error { c.writeDeadline.set(t); return nil }

// deadline is a resettable deadline whose expiry is a channel, so a blocked
// Read or Write wakes when a deadline is moved into the past.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{} // closed when the deadline passes
}

func (d *deadline) init() { d.cancel = make(chan struct{}) }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for it to close the channel
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		if !closed {
			close(d.cancel)
		}
		return
	}
	if closed {
		d.cancel = make(chan struct{})
	}
	ch := d.cancel
	d.timer = time.AfterFunc(dur, func() { close(ch) })
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func (d *deadline) expired() bool { return isClosed(d.wait()) }

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

var _ net.Conn = (*Conn)(nil)
