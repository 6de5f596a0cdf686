package bg96

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
)

// session is one open socket. Its reader goroutine owns reading: it waits
// for the modem's "recv" URC, drains the socket with AT+QSSLRECV (AT+QIRD)
// until it answers 0 bytes, and is the only writer of frames, which it
// closes when it ends.
type session struct {
	d      *Driver
	id     int
	dl     *dialect
	frames chan sdk.Frame
	kick   chan struct{} // "recv" (or "closed") arrived: read
	ctx    context.Context
	stop   context.CancelFunc // ends the reader
	closed chan struct{}      // Close or Stop: deliveries are abandoned
	done   chan struct{}      // the reader ended

	mu         sync.Mutex // guards the fields below
	peerClosed bool       // "closed" URC seen: drain, then report
	event      *sdk.SessionEvent
	err        error // what Recv returns after the last frame; nil is io.EOF
	userClosed bool
	freed      bool // the id is free on the modem again
}

// startSession starts the reader of an opened socket and reads once, for
// data that arrived before the session was registered for its URCs.
func (d *Driver) startSession(id int, dl *dialect) *session {
	s := &session{d: d, id: id, dl: dl, frames: make(chan sdk.Frame, 16), kick: make(chan struct{}, 1),
		closed: make(chan struct{}), done: make(chan struct{})}
	s.ctx, s.stop = context.WithCancel(context.Background())
	d.mu.Lock()
	d.sessions[id] = s
	d.mu.Unlock()
	s.poke()
	go s.reader()
	return s
}

func (s *session) ID() int { return s.id }

// poke makes the reader read.
func (s *session) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *session) reader() {
	defer close(s.done)
	defer close(s.frames)
	for {
		select {
		case <-s.ctx.Done():
			s.finish()
			return
		case <-s.kick:
		}
		for {
			data, err := s.d.read(s.ctx, s.dl, s.id)
			if err != nil {
				if s.ctx.Err() == nil {
					s.fail(s.d.sdkError(fmt.Sprintf("recv session %d", s.id), err))
				}
				s.finish()
				return
			}
			if len(data) == 0 {
				break
			}
			if !s.deliver(sdk.Frame{Data: data}) {
				return
			}
		}
		s.mu.Lock()
		peer := s.peerClosed
		s.mu.Unlock()
		if peer {
			// The socket stays allocated in state 4 ("closing") until
			// closed (Quectel reference §8.12).
			s.free()
			s.setEvent(&sdk.SessionEvent{Kind: sdk.EventPeerClosed, Detail: fmt.Sprintf(`"closed",%d`, s.id)})
			s.finish()
			return
		}
	}
}

// deliver hands f to Recv, or gives up when the session is closed.
func (s *session) deliver(f sdk.Frame) bool {
	select {
	case s.frames <- f:
		return true
	case <-s.closed:
		return false
	}
}

// finish delivers the event that ended the session, if any.
func (s *session) finish() {
	s.mu.Lock()
	ev := s.event
	s.mu.Unlock()
	if ev != nil {
		s.deliver(sdk.Frame{Event: ev})
	}
}

func (s *session) setEvent(ev *sdk.SessionEvent) {
	s.mu.Lock()
	if s.event == nil && s.err == nil {
		s.event = ev
	}
	s.mu.Unlock()
}

func (s *session) fail(err error) {
	s.mu.Lock()
	if s.event == nil && s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// end stops the session from outside: ev is what happened (a reboot, a
// lost network), nil for Stop, which abandons deliveries too.
func (s *session) end(ev *sdk.SessionEvent) {
	if ev != nil {
		s.setEvent(ev)
	} else {
		s.mu.Lock()
		if !s.userClosed {
			s.userClosed = true
			close(s.closed)
		}
		s.mu.Unlock()
	}
	s.stop()
}

func (s *session) wait() { <-s.done }

// free closes the socket on the modem, once.
func (s *session) free() {
	s.mu.Lock()
	freed := s.freed
	s.freed = true
	s.mu.Unlock()
	if freed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if _, err := s.d.command(ctx, s.dl.closeCmd(s.id), cmdTimeout); err != nil {
		s.d.log.Debug("close socket", "session", s.id, "err", err)
	}
	s.d.forget(s)
}

// Recv returns the next frame; after the last one io.EOF, or the error
// that ended the session.
func (s *session) Recv(ctx context.Context) (sdk.Frame, error) {
	s.mu.Lock()
	closed := s.userClosed
	s.mu.Unlock()
	if closed {
		return sdk.Frame{}, sdk.ErrSessionClosed
	}
	select {
	case f, ok := <-s.frames:
		if ok {
			return f, nil
		}
	case <-ctx.Done():
		return sdk.Frame{}, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.userClosed:
		return sdk.Frame{}, sdk.ErrSessionClosed
	case s.err != nil:
		return sdk.Frame{}, s.err
	}
	return sdk.Frame{}, io.EOF
}

// Send writes p in pieces of at most 1460 bytes, each accepted by the
// modem (SEND OK) before the next; SEND FAIL (send buffer full) is retried
// until ctx ends.
func (s *session) Send(ctx context.Context, p []byte) (err error) {
	defer func() { err = honour(ctx, err) }()
	for len(p) > 0 {
		s.mu.Lock()
		closed, peer, ev := s.userClosed, s.peerClosed, s.event
		s.mu.Unlock()
		switch {
		case closed:
			return sdk.ErrSessionClosed
		case peer:
			return &sdk.NetError{Op: "send", Session: s.id, Kind: sdk.NetPeerClosed, Text: "the server closed the connection"}
		case ev != nil:
			return &sdk.NetError{Op: "send", Session: s.id, Kind: sdk.NetState, Text: "session ended: " + ev.Kind.String()}
		}
		n := min(len(p), maxSend)
		if err := s.d.sendChunk(ctx, s.dl, s.id, p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// Close closes the socket on the modem. It is idempotent.
func (s *session) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.userClosed {
		s.mu.Unlock()
		return nil
	}
	s.userClosed = true
	close(s.closed)
	s.mu.Unlock()
	s.stop()
	select {
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.free()
	return nil
}

// forget drops s from the driver's sessions, if it is still there.
func (d *Driver) forget(s *session) {
	d.mu.Lock()
	if d.sessions[s.id] == s {
		delete(d.sessions, s.id)
	}
	d.mu.Unlock()
}

// read asks the modem for up to 1500 bytes of socket id. The answer is
// "+QSSLRECV: <n>" followed by exactly n raw bytes, which the channel's
// binary handler (onReadData) passes here through recvData.
//
// A reboot under a read makes the modem's "RDY" race the read's ERROR (the
// socket is gone), and sdk/at delivers the one to the command and the
// other to the URC dispatcher, so the order a driver sees is not the order
// on the line. The read therefore claims "RDY" itself for as long as it
// runs (watchReboot), and an ERROR is confirmed with a probe: a modem that
// is booting discards it and sends RDY instead. A read that met a reboot
// returns errRebooted after onReboot ended the sessions, so its reader
// reports the modem-rebooted event, never the ERROR.
func (d *Driver) read(ctx context.Context, dl *dialect, id int) ([]byte, error) {
	ch, err := d.channel()
	if err != nil {
		return nil, err
	}
	var data []byte
	err = d.exchange(ctx, func(ctx context.Context) error {
		rdy := watchReboot(ch)
		defer rdy.end(d)
		select {
		case <-d.recvData: // a payload of a read given up on
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, cmdTimeout)
		defer cancel()
		cmd := fmt.Sprintf("%s=%d,%d", dl.recv, id, maxRead)
		if _, err := ch.Command(cctx, cmd); err != nil {
			var ae *at.Error
			if errors.As(err, &ae) && rdy.confirm(ctx, ch) {
				return fmt.Errorf("%s: %w", cmd, errRebooted)
			}
			return err
		}
		select {
		case data = <-d.recvData:
			return nil
		case <-cctx.Done():
			return fmt.Errorf("%s: OK without a data header: %w", cmd, cctx.Err())
		}
	})
	return data, err
}

// rebootWatch is a claim on the modem's "RDY" line for the length of one
// exchange: the channel's reader hands the line to it in line order, before
// any later command result.
type rebootWatch struct{ w *at.Waiter }

func watchReboot(ch *at.Channel) rebootWatch {
	return rebootWatch{ch.Expect(func(line string) bool { return at.Normalize(line) == "RDY" })}
}

// seen says whether RDY was read.
func (r rebootWatch) seen() bool {
	_, err := r.w.Wait(expired)
	return err == nil
}

// expired is a context that has ended: a Wait on it only looks.
var expired = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// confirm tells a modem that failed a command because it rebooted from one
// that refused it: when RDY has not been read yet, it sends AT and waits
// for its answer or for RDY, whichever comes first.
func (r rebootWatch) confirm(ctx context.Context, ch *at.Channel) bool {
	if r.seen() {
		return true
	}
	pctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	go func() {
		if _, err := r.w.Wait(pctx); err == nil {
			cancel() // booting: the probe will not be answered
		}
	}()
	ch.Command(pctx, "AT")
	return r.seen()
}

// end gives the claim up; a RDY it took is handled here, as the URC
// handler would have.
func (r rebootWatch) end(d *Driver) {
	r.w.Cancel()
	if r.seen() {
		d.onReboot(at.URC{Line: "RDY"})
	}
}

// sendOK and sendFail end AT+QSSLSEND/AT+QISEND after the payload, with
// no OK; the command declares them as its final results (sdk/at's
// WithFinalOK and WithFinalError). SEND FAIL means the modem's send buffer
// is full: the bytes were not taken.
const (
	sendOK   = "SEND OK"
	sendFail = "SEND FAIL"
)

// sendChunk sends p (at most 1460 bytes) on socket id, retrying while the
// modem's send buffer is full.
func (d *Driver) sendChunk(ctx context.Context, dl *dialect, id int, p []byte) error {
	wait := 10 * time.Millisecond
	for {
		err := d.sendOnce(ctx, dl, id, p)
		var ae *at.Error
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ae) && ae.Final == sendFail:
			// The send buffer is full: pause, then send the piece again.
		case errors.As(err, &ae):
			code, words := d.lastError(ctx)
			return netError("send", id, code, false, words)
		default:
			return d.sdkError(fmt.Sprintf("send session %d", id), err)
		}
		if err := pause(ctx, wait); err != nil {
			return fmt.Errorf("send session %d: modem send buffer full: %w", id, err)
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// sendOnce runs one AT+QSSLSEND=<id>,<len> (AT+QISEND): the command, the
// "> " prompt, the payload, then SEND OK, SEND FAIL or ERROR. Nothing is
// written after the payload.
func (d *Driver) sendOnce(ctx context.Context, dl *dialect, id int, p []byte) error {
	ch, err := d.channel()
	if err != nil {
		return err
	}
	return d.exchange(ctx, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, cmdTimeout)
		defer cancel()
		_, err := ch.CommandPayload(cctx, fmt.Sprintf("%s=%d,%d", dl.send, id, len(p)), p,
			at.WithFinalOK(sendOK), at.WithFinalError(sendFail))
		return err
	})
}
