package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	pb "github.com/cellgate/cellgate/sdk/proto"
)

const (
	// DefaultSendWindow is the default number of bytes an agent-side session
	// keeps in flight to the plugin before Send waits for acknowledgements.
	DefaultSendWindow = 16 << 10
	// maxSendFrame bounds one host→plugin data frame, so a full window is
	// several frames and the plugin finds the next one waiting the moment
	// its Send returns.
	maxSendFrame = 4 << 10
	// recvQueueFrames is how many received frames (each at most
	// maxRecvFrame bytes) an agent-side session holds for its caller before
	// it stops reading the stream.
	recvQueueFrames = 8
)

// hostSession is the agent-side Session: one Session stream to the plugin.
//
// Its reader goroutine owns the stream's receive side and is the only writer
// of the fields under mu; Send (one at a time, under sendLock) and Close own
// the stream's send side.
type hostSession struct {
	c      *client
	stream pb.SecureTransport_SessionClient
	cancel context.CancelFunc
	id     int
	window int

	// sendLock serialises the stream's send side (gRPC forbids concurrent
	// SendMsg) and is a channel so waiting for it honours a context.
	sendLock chan struct{}
	// credit is signalled (never blocking) whenever acknowledged bytes
	// return credit or the send side breaks.
	credit chan struct{}

	mu       sync.Mutex
	inflight int
	sendErr  error // the plugin's Send failed; sticky
	deadErr  error // set before dead is closed
	closeErr error // the plugin's answer to close, set before closedCh closes

	recvCh   chan Frame    // data and events for Recv; closed after recvErr is set
	recvErr  error         // io.EOF or why receiving ended
	dialed   chan struct{} // closed when the plugin answered the dial
	closing  chan struct{} // closed by Close: the reader drops data from then on
	closedCh chan struct{} // closed when the plugin answered close
	dead     chan struct{} // closed when the stream ended
	done     chan struct{} // closed when the reader goroutine returned

	closeOnce   sync.Once
	closeResult error
}

var _ Session = (*hostSession)(nil)

func dialSession(ctx context.Context, c *client, req DialRequest) (Session, error) {
	// The stream outlives this call, so it gets its own context; ctx only
	// bounds the wait for the plugin's answer.
	streamCtx, cancel := context.WithCancel(context.Background())
	stream, err := c.rpc.Session(streamCtx)
	if err != nil {
		cancel()
		return nil, c.callError(ctx, "Dial", err)
	}
	s := &hostSession{
		c:        c,
		stream:   stream,
		cancel:   cancel,
		window:   c.window,
		sendLock: make(chan struct{}, 1),
		credit:   make(chan struct{}, 1),
		recvCh:   make(chan Frame, recvQueueFrames),
		dialed:   make(chan struct{}),
		closing:  make(chan struct{}),
		closedCh: make(chan struct{}),
		dead:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	wireReq := dialRequestToPB(req)
	// The plugin's Dial should know the caller's deadline, not only see the
	// stream cut when it passes, so it can fail with the modem's own words.
	if deadline, ok := ctx.Deadline(); ok {
		if left := time.Until(deadline); req.Timeout <= 0 || left < req.Timeout {
			wireReq.TimeoutNanos = int64(max(left, time.Millisecond))
		}
	}
	if err := stream.Send(&pb.ClientFrame{Kind: &pb.ClientFrame_Dial{Dial: wireReq}}); err != nil {
		// A failed SendMsg means the stream ended; Recv has the status that
		// says why.
		_, recvErr := stream.Recv()
		cancel()
		if recvErr == nil || errors.Is(recvErr, io.EOF) {
			recvErr = err
		}
		return nil, c.callError(ctx, "Dial", recvErr)
	}
	go s.read(streamCtx)
	select {
	case <-s.dialed:
		return s, nil
	case <-s.dead:
		<-s.done
		return nil, s.deadErr
	case <-ctx.Done():
		cancel()
		<-s.done
		return nil, fmt.Errorf("plugin Dial %s:%d: %w", req.Host, req.Port, ctx.Err())
	}
}

// read owns the receive side of the stream until it ends.
func (s *hostSession) read(ctx context.Context) {
	defer close(s.done)
	defer s.cancel()
	first, err := s.stream.Recv()
	if err != nil {
		s.die(ctx, "Dial", err)
		return
	}
	d := first.GetDialed()
	if d == nil {
		s.die(ctx, "Dial", fmt.Errorf("plugin answered a dial with %T instead of a dialed frame", first.GetKind()))
		return
	}
	s.id = int(d.GetSessionId())
	close(s.dialed)
	recvOpen := true
	for {
		f, err := s.stream.Recv()
		if err != nil {
			s.die(ctx, "session", err)
			return
		}
		switch k := f.GetKind().(type) {
		case *pb.ServerFrame_Ack:
			s.mu.Lock()
			s.inflight -= int(k.Ack.GetBytes())
			s.mu.Unlock()
			s.signalCredit()
		case *pb.ServerFrame_SendFailed:
			s.mu.Lock()
			s.sendErr = fmt.Errorf("session %d: plugin Send: %w", s.id, errorFromDetail("Send", k.SendFailed))
			s.mu.Unlock()
			s.signalCredit()
		case *pb.ServerFrame_Data:
			if recvOpen {
				s.deliver(ctx, Frame{Data: k.Data})
			}
		case *pb.ServerFrame_Event:
			if recvOpen {
				s.deliver(ctx, Frame{Event: eventFromPB(k.Event)})
			}
		case *pb.ServerFrame_RecvEnd:
			if recvOpen {
				recvOpen = false
				s.endRecv(recvEndError(s.id, k.RecvEnd))
			}
		case *pb.ServerFrame_Closed:
			s.mu.Lock()
			if e := k.Closed.GetError(); e != nil {
				s.closeErr = fmt.Errorf("session %d: plugin Close: %w", s.id, errorFromDetail("Close", e))
			}
			s.mu.Unlock()
			close(s.closedCh)
		}
	}
}

func recvEndError(id int, end *pb.RecvEnd) error {
	if e := end.GetError(); e != nil {
		return fmt.Errorf("session %d: plugin Recv: %w", id, errorFromDetail("Recv", e))
	}
	return io.EOF
}

// deliver hands f to Recv, waiting while the queue is full: that wait is what
// stops the reader and, through gRPC flow control, the plugin.
func (s *hostSession) deliver(ctx context.Context, f Frame) {
	select {
	case s.recvCh <- f:
	case <-s.closing:
	case <-ctx.Done():
	}
}

// endRecv records why receiving ended and closes recvCh. Only the reader
// calls it, at most once.
func (s *hostSession) endRecv(err error) {
	s.mu.Lock()
	s.recvErr = err
	s.mu.Unlock()
	close(s.recvCh)
}

// die records why the stream ended and wakes everybody waiting on it.
func (s *hostSession) die(ctx context.Context, op string, err error) {
	var cause error
	switch {
	case errors.Is(err, io.EOF):
		// The plugin ended the RPC after answering close.
		cause = ErrSessionClosed
	case ctx.Err() != nil:
		// We cancelled the stream ourselves (Close, or a Dial given up) —
		// unless the plugin died at the same moment, which matters more.
		if s.c.hasExited(0) {
			cause = fmt.Errorf("session %d: %w", s.id, ErrPluginExited)
		} else {
			cause = ErrSessionClosed
		}
	default:
		if d, ok := detailFromStatus(err); ok {
			cause = fmt.Errorf("plugin %s: %w", op, errorFromDetail(op, d))
		} else {
			cause = s.c.transportError(op, err)
		}
	}
	s.mu.Lock()
	s.deadErr = cause
	recvDone := s.recvErr != nil
	s.mu.Unlock()
	if !recvDone {
		select {
		case <-s.dialed:
			s.endRecv(cause)
		default:
		}
	}
	close(s.dead)
	s.signalCredit()
}

func (s *hostSession) signalCredit() {
	select {
	case s.credit <- struct{}{}:
	default:
	}
}

// ID returns the modem's session id.
func (s *hostSession) ID() int { return s.id }

// Send hands p to the plugin in frames, keeping at most the session's window
// of unacknowledged bytes in flight. It returns when the last frame is in
// flight; a failure of the plugin's Send surfaces on a later call.
func (s *hostSession) Send(ctx context.Context, p []byte) error {
	if err := s.lockSend(ctx); err != nil {
		return fmt.Errorf("session %d: Send: %w", s.id, err)
	}
	defer s.unlockSend()
	sent := 0
	fail := func(err error) error {
		if sent > 0 && errors.Is(err, ctx.Err()) {
			return &PartialSendError{Sent: sent, Err: err}
		}
		return err
	}
	for sent < len(p) {
		n := min(len(p)-sent, maxSendFrame, s.window)
		if err := s.waitCredit(ctx, n); err != nil {
			return fail(err)
		}
		frame := &pb.ClientFrame{Kind: &pb.ClientFrame_Data{Data: p[sent : sent+n]}}
		if err := s.stream.Send(frame); err != nil {
			// The stream is broken; the reader learns why from Recv.
			<-s.dead
			return fail(s.deadErr)
		}
		sent += n
	}
	return nil
}

// waitCredit reserves n bytes of window, waiting for acknowledgements.
func (s *hostSession) waitCredit(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		err, ok := s.sendErr, s.inflight+n <= s.window
		if err == nil && ok {
			s.inflight += n
		}
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-s.credit:
		case <-s.dead:
			return s.deadErr
		case <-s.closing:
			return ErrSessionClosed
		case <-ctx.Done():
			return fmt.Errorf("session %d: Send waiting for the plugin to accept %d bytes in flight: %w", s.id, s.window, ctx.Err())
		}
	}
}

func (s *hostSession) lockSend(ctx context.Context) error {
	select {
	case <-s.closing:
		return ErrSessionClosed
	default:
	}
	select {
	case s.sendLock <- struct{}{}:
	case <-s.closing:
		return ErrSessionClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-s.closing:
		<-s.sendLock
		return ErrSessionClosed
	case <-s.dead:
		<-s.sendLock
		return s.deadErr
	default:
		return nil
	}
}

func (s *hostSession) unlockSend() { <-s.sendLock }

// Recv returns the next frame the plugin sent, then io.EOF or the error that
// ended receiving. Cancelling ctx abandons the wait only; the session stays
// usable.
func (s *hostSession) Recv(ctx context.Context) (Frame, error) {
	select {
	case <-s.closing:
		return Frame{}, fmt.Errorf("session %d: Recv: %w", s.id, ErrSessionClosed)
	default:
	}
	// A frame that is already queued wins over a cancelled ctx.
	select {
	case f, ok := <-s.recvCh:
		return s.recvResult(f, ok)
	default:
	}
	select {
	case f, ok := <-s.recvCh:
		return s.recvResult(f, ok)
	case <-s.closing:
		return Frame{}, fmt.Errorf("session %d: Recv: %w", s.id, ErrSessionClosed)
	case <-ctx.Done():
		return Frame{}, fmt.Errorf("session %d: Recv: %w", s.id, ctx.Err())
	}
}

func (s *hostSession) recvResult(f Frame, ok bool) (Frame, error) {
	if ok {
		return f, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return Frame{}, s.recvErr
}

// Close waits until the plugin accepted every byte in flight, asks it to
// close the session (AT+CCHCLOSE) and waits for the answer, all bounded by
// ctx; if ctx ends first the stream is cut and the plugin closes the session
// on its own. It returns the plugin's Close error joined with a Send failure
// of the plugin, if any (bytes were lost then). Close is idempotent and
// returns the first call's result.
func (s *hostSession) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeResult = s.close(ctx) })
	return s.closeResult
}

func (s *hostSession) close(ctx context.Context) error {
	// closing first: it wakes a Send waiting for window and a blocked Recv,
	// and makes the reader drop data nobody will read.
	close(s.closing)
	defer func() {
		s.cancel()
		<-s.done
	}()
	select {
	case s.sendLock <- struct{}{}:
	case <-s.dead:
		return s.deadResult()
	case <-ctx.Done():
		return fmt.Errorf("session %d: Close waiting for a Send to return: %w", s.id, ctx.Err())
	}
	defer s.unlockSend()

	if err := s.flush(ctx); err != nil {
		return fmt.Errorf("session %d: Close: %w", s.id, err)
	}
	req := &pb.CloseRequest{}
	if deadline, ok := ctx.Deadline(); ok {
		req.TimeoutNanos = int64(max(time.Until(deadline), time.Millisecond))
	}
	if err := s.stream.Send(&pb.ClientFrame{Kind: &pb.ClientFrame_Close{Close: req}}); err != nil {
		<-s.dead
		return s.deadResult()
	}
	select {
	case <-s.closedCh:
		// A Send failure nobody may have seen yet means bytes were lost:
		// the caller of Close must hear about it.
		s.mu.Lock()
		defer s.mu.Unlock()
		return errors.Join(s.sendErr, s.closeErr)
	case <-s.dead:
		return s.deadResult()
	case <-ctx.Done():
		return fmt.Errorf("session %d: Close waiting for the plugin: %w", s.id, ctx.Err())
	}
}

// flush waits until every byte sent was acknowledged, or the send side broke
// (then there is nothing left to wait for: the error was or will be reported
// by Send or Recv, and closing is still right).
func (s *hostSession) flush(ctx context.Context) error {
	for {
		s.mu.Lock()
		idle := s.inflight == 0 || s.sendErr != nil
		s.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-s.credit:
		case <-s.dead:
			return s.deadResult()
		case <-ctx.Done():
			return fmt.Errorf("waiting for the plugin to accept the bytes in flight: %w", ctx.Err())
		}
	}
}

// deadResult is what Close reports when the stream is already gone: nothing
// if it ended cleanly, the cause (e.g. the plugin exited) otherwise.
func (s *hostSession) deadResult() error {
	if errors.Is(s.deadErr, ErrSessionClosed) {
		return nil
	}
	return s.deadErr
}
