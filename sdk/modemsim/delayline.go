package modemsim

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// The delay model of a session's network (Config.NetworkDelay and
// Config.NetworkRate): each direction is a pipe that bytes enter when they
// are written and leave, in order, once they have been serialised at the
// rate cap and have then travelled the propagation delay. Many writes are in
// flight at once, as on a real link: a write returns as soon as its bytes
// are queued (while the pipe holds less than pipeLimit bytes), not when
// they arrive. A close travels like data: the server sees the FIN after the
// bytes written before it.

// pipeLimit bounds the bytes one direction holds in flight; a writer
// blocks beyond it, as on a socket whose send buffer is full.
const pipeLimit = 4 << 20

// chunk is one write travelling through a pipe; err, when set, is the end
// of the stream (the peer's FIN or a failure) arriving after the data.
type chunk struct {
	data []byte
	due  time.Time
	err  error
}

// pipe is one direction of the link.
type pipe struct {
	delay time.Duration
	rate  int // bytes per second; 0: no cap

	mu        sync.Mutex
	q         []chunk
	queued    int
	busyUntil time.Time     // when the serialisation of the last chunk ends
	ended     bool          // no more input (an err chunk is queued or the pipe was dropped)
	changed   chan struct{} // closed and replaced whenever q changes
}

func newPipe(delay time.Duration, rate int) *pipe {
	return &pipe{delay: delay, rate: rate, changed: make(chan struct{})}
}

// notifyLocked wakes everyone waiting on the pipe.
func (p *pipe) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// put queues data (owned by the pipe from now on) or, with err set, the end
// of the stream. It blocks while the pipe is full, until abort is closed
// (net.ErrClosed) or deadline passes (os.ErrDeadlineExceeded; zero: none).
func (p *pipe) put(data []byte, err error, abort <-chan struct{}, deadline func() time.Time) error {
	p.mu.Lock()
	for p.queued > 0 && p.queued+len(data) > pipeLimit && !p.ended {
		ch := p.changed
		p.mu.Unlock()
		if werr := sleep(-1, ch, abort, deadline()); werr != nil {
			return werr
		}
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	if p.ended {
		return net.ErrClosed
	}
	if len(data) == 0 && err == nil {
		return nil
	}
	now := time.Now()
	start := now
	if p.busyUntil.After(start) {
		start = p.busyUntil
	}
	if p.rate > 0 {
		start = start.Add(time.Duration(int64(len(data)) * int64(time.Second) / int64(p.rate)))
	}
	p.busyUntil = start
	p.q = append(p.q, chunk{data: data, due: start.Add(p.delay), err: err})
	p.queued += len(data)
	p.ended = err != nil
	p.notifyLocked()
	return nil
}

// drop ends the input of the pipe and forgets what it holds.
func (p *pipe) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.q, p.queued, p.ended = nil, 0, true
	p.notifyLocked()
}

// take waits until the first chunk is due and removes up to max bytes of
// it (max <= 0: all of it); a chunk carrying err is returned (and kept, so
// that every later take returns it too) once its data is consumed. It fails
// when abort is closed or the deadline passes.
func (p *pipe) take(max int, abort <-chan struct{}, deadline func() time.Time) (chunk, error) {
	for {
		p.mu.Lock()
		ch := p.changed
		wait := time.Duration(-1) // -1: until something changes
		if len(p.q) > 0 {
			wait = time.Until(p.q[0].due)
		}
		if wait != 0 && (wait > 0 || len(p.q) == 0) {
			p.mu.Unlock()
			if err := sleep(wait, ch, abort, deadline()); err != nil {
				return chunk{}, err
			}
			continue
		}
		out := p.takeLocked(max)
		p.mu.Unlock()
		return out, nil
	}
}

// takeLocked removes up to max bytes of the first chunk, which is due.
func (p *pipe) takeLocked(max int) chunk {
	head := p.q[0]
	if len(head.data) == 0 {
		return head // the end of the stream stays
	}
	out := chunk{data: head.data, due: head.due}
	switch {
	case max > 0 && len(head.data) > max:
		out.data = head.data[:max]
		p.q[0].data = head.data[max:]
	case head.err != nil:
		p.q[0].data = nil
	default:
		p.q[0] = chunk{}
		p.q = p.q[1:]
	}
	p.queued -= len(out.data)
	p.notifyLocked()
	return out
}

// sleep waits d (negative: without end) or less: until ch closes (nil), abort
// closes (net.ErrClosed) or the deadline passes (os.ErrDeadlineExceeded;
// zero: none).
func sleep(d time.Duration, ch, abort <-chan struct{}, deadline time.Time) error {
	expired := false
	if !deadline.IsZero() {
		if dl := time.Until(deadline); d < 0 || dl < d {
			d, expired = dl, true
		}
	}
	if expired && d <= 0 {
		return os.ErrDeadlineExceeded
	}
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		if expired {
			return os.ErrDeadlineExceeded
		}
		return nil
	case <-ch:
		return nil
	case <-abort:
		return net.ErrClosed
	}
}

// delayConn is a session socket behind the delay model. Its writes go into
// the up pipe, from which deliver writes them to the server when due;
// receive reads the server's bytes into the down pipe, from which Read
// takes them when due. Close ends the up pipe after what was written
// (deliver then closes the socket, which ends receive); Read and Write fail
// at once after it.
type delayConn struct {
	net.Conn
	up, down *pipe
	closed   chan struct{}
	once     sync.Once
	done     sync.WaitGroup

	mu             sync.Mutex
	rdl, wdl       time.Time
	deliverErr     error // the first failure writing to the server
	deliverErrOnce sync.Once
}

func newDelayConn(c net.Conn, delay time.Duration, rate int) *delayConn {
	d := &delayConn{Conn: c, up: newPipe(delay, rate), down: newPipe(delay, rate), closed: make(chan struct{})}
	d.done.Add(2)
	go d.deliver()
	go d.receive()
	return d
}

// deliver writes the up pipe to the server as it becomes due, then closes
// the socket once the end of the stream is due.
func (d *delayConn) deliver() {
	defer d.done.Done()
	defer d.Conn.Close()
	never := func() time.Time { return time.Time{} }
	for {
		c, err := d.up.take(0, nil, never)
		if err != nil || c.err != nil {
			return
		}
		if _, err := d.Conn.Write(c.data); err != nil {
			d.deliverErrOnce.Do(func() {
				d.mu.Lock()
				d.deliverErr = err
				d.mu.Unlock()
			})
			d.up.drop()
			d.down.drop()
			return
		}
	}
}

// receive moves the server's bytes into the down pipe, then the end of the
// stream.
func (d *delayConn) receive() {
	defer d.done.Done()
	never := func() time.Time { return time.Time{} }
	buf := make([]byte, 32<<10)
	for {
		n, err := d.Conn.Read(buf)
		if n > 0 {
			if d.down.put(append([]byte(nil), buf[:n]...), nil, d.closed, never) != nil {
				return
			}
		}
		if err != nil {
			d.down.put(nil, err, d.closed, never)
			return
		}
	}
}

func (d *delayConn) readDeadline() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rdl
}

func (d *delayConn) writeDeadline() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.wdl
}

func (d *delayConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c, err := d.down.take(len(b), d.closed, d.readDeadline)
	if err != nil {
		return 0, err
	}
	n := copy(b, c.data)
	if n == 0 && c.err != nil {
		return 0, c.err
	}
	return n, nil
}

func (d *delayConn) Write(b []byte) (int, error) {
	select {
	case <-d.closed:
		return 0, net.ErrClosed
	default:
	}
	d.mu.Lock()
	err := d.deliverErr
	d.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if !d.writeDeadline().IsZero() && time.Now().After(d.writeDeadline()) {
		return 0, os.ErrDeadlineExceeded
	}
	if err := d.up.put(append([]byte(nil), b...), nil, d.closed, d.writeDeadline); err != nil {
		if errors.Is(err, net.ErrClosed) {
			d.mu.Lock()
			if d.deliverErr != nil {
				err = d.deliverErr
			}
			d.mu.Unlock()
		}
		return 0, err
	}
	return len(b), nil
}

// Close ends the stream after the bytes already written, which still
// arrive; reads and writes fail from now on. It does not wait.
func (d *delayConn) Close() error {
	d.once.Do(func() {
		close(d.closed)
		d.up.put(nil, net.ErrClosed, nil, func() time.Time { return time.Time{} })
	})
	return nil
}

func (d *delayConn) SetDeadline(t time.Time) error {
	d.SetReadDeadline(t)
	return d.SetWriteDeadline(t)
}

func (d *delayConn) SetReadDeadline(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rdl = t
	return nil
}

func (d *delayConn) SetWriteDeadline(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wdl = t
	return nil
}
