package at

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// failAfter bounds every wait in these tests. It only detects failures (a
// hang); no test asserts on elapsed time.
const failAfter = 10 * time.Second

// testCtx is the context for a test's calls: bounded, so a bug makes the
// test fail instead of hang.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), failAfter)
	t.Cleanup(cancel)
	return ctx
}

// peer is the modem end of a net.Pipe for unit tests. It is a scripted peer,
// not a modem emulator: it reads exactly what a test says the host should
// have sent, and writes exactly the bytes the test gives it, nothing more.
type peer struct {
	t    *testing.T
	conn net.Conn
}

// newPair returns a Channel over one end of a net.Pipe and the scripted peer
// on the other. Both are closed at cleanup.
func newPair(t *testing.T, opts ...Option) (*Channel, *peer) {
	t.Helper()
	hostEnd, modemEnd := net.Pipe()
	c := New(hostEnd, opts...)
	t.Cleanup(func() {
		_ = c.Close()
		_ = modemEnd.Close()
	})
	return c, &peer{t: t, conn: modemEnd}
}

// expect reads exactly len(want) bytes from the host and compares them.
func (p *peer) expect(want string) {
	p.t.Helper()
	_ = p.conn.SetReadDeadline(time.Now().Add(failAfter))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(p.conn, got); err != nil {
		p.t.Fatalf("peer: reading %q from the host: %v (got %q)", want, err, got)
	}
	if string(got) != want {
		p.t.Fatalf("peer: host sent %q, want %q", got, want)
	}
}

// send writes raw bytes to the host.
func (p *peer) send(s string) {
	p.t.Helper()
	_ = p.conn.SetWriteDeadline(time.Now().Add(failAfter))
	if _, err := p.conn.Write([]byte(s)); err != nil {
		p.t.Fatalf("peer: writing %q to the host: %v", s, err)
	}
}

// outcome is the result of a command run in the background.
type outcome struct {
	resp *Response
	err  error
}

// goCommand starts c.Command in a goroutine; the returned channel yields its
// outcome once.
func goCommand(ctx context.Context, c *Channel, cmd string, opts ...CommandOption) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		resp, err := c.Command(ctx, cmd, opts...)
		ch <- outcome{resp, err}
	}()
	return ch
}

func goPayload(ctx context.Context, c *Channel, cmd string, payload []byte, opts ...CommandOption) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		resp, err := c.CommandPayload(ctx, cmd, payload, opts...)
		ch <- outcome{resp, err}
	}()
	return ch
}

// await waits for a background command.
func await(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(failAfter):
		t.Fatal("command did not return")
		return outcome{}
	}
}

// urcSink collects handler calls on a channel so tests can wait for them.
type urcSink chan URC

func newSink() urcSink { return make(urcSink, 256) }

func (s urcSink) handle(u URC) { s <- u }

// next waits for the next delivered URC.
func (s urcSink) next(t *testing.T) URC {
	t.Helper()
	select {
	case u := <-s:
		return u
	case <-time.After(failAfter):
		t.Fatal("no URC delivered")
		return URC{}
	}
}

// chunkedConn limits every Read to n bytes, to prove framing survives
// arbitrary splits, down to one byte per read.
type chunkedConn struct {
	net.Conn
	n int
}

func (c *chunkedConn) Read(b []byte) (int, error) {
	if len(b) > c.n {
		b = b[:c.n]
	}
	return c.Conn.Read(b)
}

// manualDeadline is a context whose deadline "passes" when the test says
// so, so that a command can be timed out at a chosen step of a script
// without racing a clock. Err reports context.DeadlineExceeded, exactly as
// a real deadline does.
type manualDeadline struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newManualDeadline() *manualDeadline {
	return &manualDeadline{Context: context.Background(), done: make(chan struct{})}
}

func (m *manualDeadline) Done() <-chan struct{} { return m.done }

func (m *manualDeadline) Err() error {
	select {
	case <-m.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (m *manualDeadline) expire() { m.once.Do(func() { close(m.done) }) }
