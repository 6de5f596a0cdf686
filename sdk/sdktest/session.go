package sdktest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"

	"github.com/cellgate/cellgate/sdk"
)

// echoBacklog bounds the echoed frames a session holds for Recv, so a caller
// that sends without reading stalls, as it would on a full TCP window.
const echoBacklog = 16

// ErrConcurrentSend is what Send returns when another Send on the same
// session is still running. sdk.Session callers send one at a time (the
// sdk's server does), so this is the double catching a caller that does not.
var ErrConcurrentSend = errors.New("sdktest: concurrent Send calls on one session")

// SessionConfig says how one session behaves; Config.Dial returns it. The
// zero value is a session that accepts and discards what is sent and
// receives only what its far side delivers.
type SessionConfig struct {
	// Echo makes every payload Send accepts come back from Recv as one data
	// frame, like a server that echoes. Send waits while 16 echoed frames
	// are not yet received.
	Echo bool
	// Transform, when set, rewrites each echoed payload (a copy, which it
	// may modify in place), so a test can tell bytes that went through the
	// session from bytes that never left the caller.
	Transform func(p []byte) []byte
	// Send, when set, runs in every Send before the payload is accepted;
	// its error is that Send's result. Blocking models a modem slow to
	// accept data; its ctx ends when the caller's does or the session is
	// closed. It sees the caller's p: it must copy what it keeps.
	Send func(ctx context.Context, p []byte) error
	// Close, when set, runs in the first Close, after the session is closed
	// and its id freed; its error is that Close's result, and every later
	// Close's.
	Close func(ctx context.Context) error
}

// Session is one session of a Transport: the sdk.Session that Dial returns,
// plus the far side's controls (Deliver, Disconnect, FailRecv), which a test
// may call from any goroutine at any time.
//
// Its receive side is a queue: Recv returns queued frames in order, then,
// once the receive side ended, the error it ended with, for good. Close
// discards what was not received; Recv then returns sdk.ErrSessionClosed,
// unless the receive side had ended before (Disconnect, FailRecv, Stop),
// whose error it keeps returning. Send after Close returns
// sdk.ErrSessionClosed.
type Session struct {
	t   *Transport
	id  int
	req sdk.DialRequest

	sending sync.Mutex // held through Send; a failed TryLock is a concurrent Send

	// closedCtx ends when the session is closed; it cancels a blocked
	// SessionConfig.Send.
	closedCtx   context.Context
	markClosed  context.CancelFunc
	closeOnce   sync.Once
	closeResult error // set inside closeOnce

	mu      sync.Mutex
	cfg     SessionConfig
	queue   []sdk.Frame   // what Recv returns next
	end     error         // non-nil once the receive side ended
	changed chan struct{} // closed and replaced whenever queue or end changes
}

var _ sdk.Session = (*Session)(nil)

func newSession(t *Transport, id int, req sdk.DialRequest) *Session {
	ctx, cancel := context.WithCancel(context.Background())
	return &Session{t: t, id: id, req: req, closedCtx: ctx, markClosed: cancel, changed: make(chan struct{})}
}

func (s *Session) configure(cfg SessionConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg
}

// ID is the session's id, the lowest that was free at Dial.
func (s *Session) ID() int { return s.id }

// Request is the DialRequest that opened the session.
func (s *Session) Request() sdk.DialRequest { return s.req }

// Send runs SessionConfig.Send, then, with Echo, queues a copy of p
// (transformed) for Recv. It returns ErrConcurrentSend when another Send is
// running, and sdk.ErrSessionClosed once the session is closed. After the
// receive side ended, echoed bytes are dropped, as a link whose far side is
// gone loses them.
func (s *Session) Send(ctx context.Context, p []byte) error {
	if !s.sending.TryLock() {
		return ErrConcurrentSend
	}
	defer s.sending.Unlock()
	if s.closedCtx.Err() != nil {
		return sdk.ErrSessionClosed
	}
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	if cfg.Send != nil {
		hookCtx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(s.closedCtx, cancel)
		err := cfg.Send(hookCtx, p)
		stop()
		cancel()
		if s.closedCtx.Err() != nil {
			return sdk.ErrSessionClosed
		}
		if err != nil {
			return err
		}
	}
	if !cfg.Echo || len(p) == 0 {
		return nil
	}
	out := bytes.Clone(p)
	if cfg.Transform != nil {
		out = cfg.Transform(out)
	}
	for {
		s.mu.Lock()
		switch {
		case s.closedCtx.Err() != nil:
			s.mu.Unlock()
			return sdk.ErrSessionClosed
		case s.end != nil:
			s.mu.Unlock()
			return nil
		case len(s.queue) < echoBacklog:
			s.queue = append(s.queue, sdk.Frame{Data: out})
			s.signal()
			s.mu.Unlock()
			return nil
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Recv returns the next queued frame, waiting for one until the receive side
// ends or ctx does.
func (s *Session) Recv(ctx context.Context) (sdk.Frame, error) {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			f := s.queue[0]
			s.queue = s.queue[1:]
			s.signal()
			s.mu.Unlock()
			return f, nil
		}
		if s.end != nil {
			err := s.end
			s.mu.Unlock()
			return sdk.Frame{}, err
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return sdk.Frame{}, ctx.Err()
		}
	}
}

// Close closes the session, which makes a blocked Send or Recv return, frees
// its id for the next Dial, and runs SessionConfig.Close. Every call returns
// the first call's result.
func (s *Session) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.markClosed()
		s.queue = nil
		if s.end == nil {
			s.end = sdk.ErrSessionClosed
		}
		s.signal()
		cfg := s.cfg
		s.mu.Unlock()
		s.t.release(s)
		if cfg.Close != nil {
			s.closeResult = cfg.Close(ctx)
		}
	})
	return s.closeResult
}

// Deliver queues data from the far side for Recv (a copy of p; an empty p
// queues nothing). It reports false, and drops p, when the receive side
// already ended.
func (s *Session) Deliver(p []byte) bool {
	var f *sdk.Frame
	if len(p) > 0 {
		f = &sdk.Frame{Data: bytes.Clone(p)}
	}
	return s.endRecv(f, nil)
}

// Disconnect is the far side going away: Recv returns the queued frames,
// then ev, then io.EOF, as the sdk asks of a plugin after any SessionEvent.
// It reports false, and does nothing, when the receive side already ended.
func (s *Session) Disconnect(ev sdk.SessionEvent) bool {
	return s.endRecv(&sdk.Frame{Event: &ev}, io.EOF)
}

// FailRecv ends the receive side with err (nil means io.EOF): Recv returns
// the queued frames, then err, for good. It reports false, and does nothing,
// when the receive side already ended.
func (s *Session) FailRecv(err error) bool {
	if err == nil {
		err = io.EOF
	}
	return s.endRecv(nil, err)
}

// endRecv queues f (when not nil) and then ends the receive side with end
// (when not nil), unless it ended already.
func (s *Session) endRecv(f *sdk.Frame, end error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.end != nil {
		return false
	}
	if f != nil {
		s.queue = append(s.queue, *f)
	}
	s.end = end
	s.signal()
	return true
}

// signal wakes every goroutine waiting on s.changed. s.mu is held.
func (s *Session) signal() {
	close(s.changed)
	s.changed = make(chan struct{})
}
