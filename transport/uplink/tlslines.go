package uplink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/cellgate/cellgate/transport"
)

// TLSLinesConfig configures a tls_lines uplink.
type TLSLinesConfig struct {
	// Addr names the peer (host:port) in logs and errors; the connection
	// itself comes from the Dialer.
	Addr string
	// Ack says the peer answers "ack <id>\n" for every reading it took
	// responsibility for. With Ack, Send returns nil only once every id of
	// the message is acked (at-least-once). Without it, Send returns nil
	// once the bytes are written: a reading in flight when the connection
	// fails is lost (at-most-once).
	Ack bool
	// ConnectTimeout bounds one dial (default 30s).
	ConnectTimeout time.Duration
	// AckTimeout bounds, with Ack, the wait for a message's acks once it
	// is written (default 60s). When it passes the connection is dropped
	// (a link that died silently, as cellular links do, never ends the
	// read otherwise) and Send fails with a retryable error.
	AckTimeout time.Duration
}

// Defaults of TLSLinesConfig.
const (
	DefaultTLSLinesConnectTimeout = 30 * time.Second
	DefaultTLSLinesAckTimeout     = 60 * time.Second
)

// maxPeerLine bounds a line from the peer; longer ones are skipped.
const maxPeerLine = 4 << 10

// TLSLines is the tls_lines uplink: newline-delimited JSON readings over one
// long-lived connection from the Dialer, dialled on the first Send and again
// after any failure. The peer's only words are lines "ack <id>"; anything
// else it sends is ignored. One Send writes to the connection at a time;
// others wait their turn (honouring their ctx). With Ack, a Send waits for
// its acks after its turn, so several messages can be awaiting their acks
// at once (InFlightLimit: 64); acks are matched by id, in whatever order
// they come.
//
// The message's Payload is the readings as JSON lines, one per reading,
// line i being reading IDs[i]; a missing final newline is supplied. With
// Ack, a message whose line count differs from len(IDs), or whose ids hold
// white space (they could never be acked), is refused with a
// *PermanentError before anything is sent.
type TLSLines struct {
	cfg  TLSLinesConfig
	dial transport.Dialer
	log  *slog.Logger

	turn   chan struct{} // holds a token while a Send uses the connection
	closed chan struct{} // closed by Close

	// mu guards cur and closing: the Send holding the turn replaces cur,
	// Close takes it away from under a running Send.
	mu        sync.Mutex
	cur       *linesConn
	closing   bool
	closeOnce sync.Once
}

// NewTLSLines returns a tls_lines uplink; it dials on the first Send. A nil
// log discards.
func NewTLSLines(cfg TLSLinesConfig, dial transport.Dialer, log *slog.Logger) *TLSLines {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultTLSLinesConnectTimeout
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultTLSLinesAckTimeout
	}
	t := &TLSLines{
		cfg:    cfg,
		dial:   dial,
		log:    orDiscard(log).With("uplink", "tls_lines", "peer", cfg.Addr),
		turn:   make(chan struct{}, 1),
		closed: make(chan struct{}),
	}
	if !cfg.Ack {
		t.log.Warn("acks off: a reading in flight when the connection fails is lost (at-most-once)")
	}
	return t
}

// Send writes msg's lines and, with Ack, waits until the peer acked every id
// of msg. Errors: ctx ended (wrapping ctx.Err() and naming the ids still
// unacked), AckTimeout passed without every ack (the connection is dropped),
// the dial or write failed, the peer closed or broke the
// connection before acking everything (the connection is dropped and the
// next Send dials again), a *PermanentError for a malformed message, or
// ErrClosed. Acks that arrive after their Send gave up are ignored, so a
// retried message may reach the peer twice.
func (t *TLSLines) Send(ctx context.Context, msg Message) error {
	payload, err := t.check(msg)
	if err != nil {
		return err
	}
	select {
	case t.turn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("tls_lines uplink to %s: waiting for the connection: %w", t.cfg.Addr, ctx.Err())
	case <-t.closed:
		return fmt.Errorf("tls_lines uplink to %s: %w", t.cfg.Addr, ErrClosed)
	}
	turn := sync.OnceFunc(func() { <-t.turn })
	defer turn()

	c, err := t.connection(ctx)
	if err != nil {
		return err
	}
	if t.cfg.Ack {
		c.expect(msg.IDs)
		defer c.forget(msg.IDs)
	}
	if err := c.write(ctx, payload); err != nil {
		t.drop(c)
		select {
		case <-t.closed:
			// Close cut the write short: t.closed is closed before
			// Close closes the connection, so it is seen here.
			return fmt.Errorf("tls_lines uplink to %s: closed while writing %d readings (%v): %w",
				t.cfg.Addr, len(msg.IDs), err, ErrClosed)
		default:
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("tls_lines uplink to %s: write %d readings (%d bytes): %w", t.cfg.Addr, len(msg.IDs), len(payload), err)
	}
	turn() // the next Send may write while this one awaits its acks
	if !t.cfg.Ack {
		t.log.Debug("sent", "bytes", len(payload), "ids", idsForLog(msg.IDs))
		return nil
	}
	ackWait := time.NewTimer(t.cfg.AckTimeout)
	defer ackWait.Stop()
	for {
		missing, progress := c.missing(msg.IDs)
		if len(missing) == 0 {
			t.log.Debug("acknowledged", "bytes", len(payload), "ids", idsForLog(msg.IDs))
			return nil
		}
		select {
		case <-progress:
		case <-c.done:
			t.drop(c)
			select {
			case <-t.closed:
				return fmt.Errorf("tls_lines uplink to %s: closed with %d of %d readings unacked: %w",
					t.cfg.Addr, len(missing), len(msg.IDs), ErrClosed)
			default:
			}
			return fmt.Errorf("tls_lines uplink to %s: connection ended with %d of %d readings unacked (%s): %w",
				t.cfg.Addr, len(missing), len(msg.IDs), summarise(missing), c.err)
		case <-ackWait.C:
			t.drop(c)
			return fmt.Errorf("tls_lines uplink to %s: %d of %d readings unacked (%s) %s after they were written; connection dropped",
				t.cfg.Addr, len(missing), len(msg.IDs), summarise(missing), t.cfg.AckTimeout)
		case <-ctx.Done():
			return fmt.Errorf("tls_lines uplink to %s: %d of %d readings unacked (%s): %w",
				t.cfg.Addr, len(missing), len(msg.IDs), summarise(missing), ctx.Err())
		case <-t.closed:
			return fmt.Errorf("tls_lines uplink to %s: closed with %d of %d readings unacked: %w",
				t.cfg.Addr, len(missing), len(msg.IDs), ErrClosed)
		}
	}
}

// check validates msg and returns the bytes to write.
func (t *TLSLines) check(msg Message) ([]byte, error) {
	p := msg.Payload
	if len(p) == 0 {
		return nil, &PermanentError{Err: errors.New("tls_lines: empty message")}
	}
	if p[len(p)-1] != '\n' {
		p = append(p[:len(p):len(p)], '\n')
	}
	if !t.cfg.Ack {
		return p, nil
	}
	if n := bytes.Count(p, []byte{'\n'}); n != len(msg.IDs) {
		return nil, &PermanentError{Err: fmt.Errorf("tls_lines: message has %d lines but %d reading ids", n, len(msg.IDs))}
	}
	for _, id := range msg.IDs {
		if id == "" || strings.IndexFunc(id, unicode.IsSpace) >= 0 {
			return nil, &PermanentError{Err: fmt.Errorf("tls_lines: reading id %q is empty or holds white space, so no ack line can name it", id)}
		}
	}
	return p, nil
}

// connection returns the live connection, dialling one if there is none or
// the peer closed the last one while it was idle. Only the Send holding the
// turn calls it.
func (t *TLSLines) connection(ctx context.Context) (*linesConn, error) {
	t.mu.Lock()
	c := t.cur
	t.mu.Unlock()
	if c != nil {
		select {
		case <-c.done:
			t.log.Info("peer closed the idle connection; dialling again", "err", c.err)
			t.drop(c)
		default:
			return c, nil
		}
	}
	dctx, cancel := context.WithTimeout(ctx, t.cfg.ConnectTimeout)
	defer cancel()
	conn, err := t.dial(dctx)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("tls_lines uplink: dial %s: %w", t.cfg.Addr, err)
	}
	c = &linesConn{conn: conn, done: make(chan struct{}), progress: make(chan struct{}), waiting: map[string]int{}}
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		conn.Close()
		return nil, fmt.Errorf("tls_lines uplink to %s: %w", t.cfg.Addr, ErrClosed)
	}
	t.cur = c
	t.mu.Unlock()
	go c.read(t.log)
	t.log.Info("connected")
	return c, nil
}

// drop closes c and forgets it, if it is still the current connection.
func (t *TLSLines) drop(c *linesConn) {
	t.mu.Lock()
	if t.cur == c {
		t.cur = nil
	}
	t.mu.Unlock()
	c.close()
}

// Close closes the connection, waits for its reader, and makes pending and
// later Sends fail with ErrClosed. It always returns nil.
func (t *TLSLines) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closing = true
		c := t.cur
		t.cur = nil
		t.mu.Unlock()
		close(t.closed)
		if c != nil {
			c.close()
		}
	})
	return nil
}

// linesConn is one connection and its reader goroutine.
type linesConn struct {
	conn      net.Conn
	closeOnce sync.Once

	done chan struct{} // closed when the reader ends; err then says why
	err  error

	mu sync.Mutex
	// progress is closed (and replaced) when an awaited id is acked.
	progress chan struct{}
	// waiting counts, by id, the Sends awaiting its ack; the reader
	// deletes an id when it is acked (one ack answers every such Send).
	waiting map[string]int
}

// read is the only reader of conn: it turns "ack <id>" lines into progress
// and, by ending, tells Send (and the next Send, if idle) that the
// connection is gone.
func (c *linesConn) read(log *slog.Logger) {
	defer close(c.done)
	br := bufio.NewReaderSize(c.conn, maxPeerLine)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			log.Debug("skipping an over-long line from the peer", "bytes", len(line))
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == nil {
				continue
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("peer closed the connection: %w", err)
			}
			c.err = err
			return
		}
		f := strings.Fields(string(line))
		if len(f) != 2 || f[0] != "ack" {
			log.Debug("ignoring a line from the peer that is not an ack", "bytes", len(line))
			continue
		}
		c.mu.Lock()
		_, awaited := c.waiting[f[1]]
		if awaited {
			delete(c.waiting, f[1])
			close(c.progress)
			c.progress = make(chan struct{})
		}
		c.mu.Unlock()
		if !awaited {
			log.Debug("ack for a reading no Send awaits (late or repeated)", "id", f[1])
		}
	}
}

// expect adds ids to those awaited, before the Send writes them.
func (c *linesConn) expect(ids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		c.waiting[id]++
	}
}

// forget stops awaiting ids (those still awaited) for one Send.
func (c *linesConn) forget(ids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		switch n := c.waiting[id]; {
		case n > 1:
			c.waiting[id] = n - 1
		case n == 1:
			delete(c.waiting, id)
		}
	}
}

// missing returns the ids, in order, not acked yet, and a channel closed
// at the next ack of an awaited id.
func (c *linesConn) missing(ids []string) ([]string, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, id := range ids {
		if _, ok := c.waiting[id]; ok {
			out = append(out, id)
		}
	}
	return out, c.progress
}

// write writes p whole, cut short when ctx ends.
func (c *linesConn) write(ctx context.Context, p []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() {
		// A deadline in the past wakes a blocked Write; the conn is then
		// dropped, since a TLS stream cut mid-record is unusable.
		c.conn.SetWriteDeadline(time.Unix(1, 0))
	})
	_, err := c.conn.Write(p)
	if !stop() && err == nil {
		// ctx ended just as the write finished: the deadline is poisoned,
		// so report it and let the caller drop the connection.
		return ctx.Err()
	}
	return err
}

// close closes the conn and waits for the reader to end.
func (c *linesConn) close() {
	c.closeOnce.Do(func() { c.conn.Close() })
	<-c.done
}

// summarise names a few ids for an error message.
func summarise(ids []string) string {
	const show = 5
	if len(ids) <= show {
		return "missing " + strings.Join(ids, ", ")
	}
	return fmt.Sprintf("missing %s, … and %d more", strings.Join(ids[:show], ", "), len(ids)-show)
}

// InFlightLimit (InFlightLimiter) is 64 with Ack: messages are written one
// at a time and then await their acks together, matched by id. Without Ack
// a Send ends when its bytes are written, so there is nothing to overlap: 1.
func (t *TLSLines) InFlightLimit() int {
	if t.cfg.Ack {
		return 64
	}
	return 1
}
