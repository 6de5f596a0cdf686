package ipstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// recvChunk is the most one Recv frame carries (the sdk's frame size).
const recvChunk = 16 << 10

// session is one connection. Its reader goroutine owns reading: it turns
// what the connection delivers into frames, ends with an event when the
// peer closes, and sets end before closing frames. Close owns conn's
// teardown.
type session struct {
	id      int
	conn    net.Conn
	log     *slog.Logger
	release func(id int)

	frames chan sdk.Frame // closed by the reader after end is set
	end    error          // what Recv returns once frames is drained
	done   chan struct{}  // closed by Close
	once   sync.Once
	reader sync.WaitGroup
}

func newSession(id int, conn net.Conn, release func(int), log *slog.Logger) *session {
	s := &session{id: id, conn: conn, log: log, release: release, frames: make(chan sdk.Frame), done: make(chan struct{})}
	s.reader.Add(1)
	go s.read()
	return s
}

func (s *session) ID() int { return s.id }

// read delivers data frames until the connection ends. A clean end (EOF,
// TLS close_notify) is an EventPeerClosed and then io.EOF; a reset is an
// EventPeerClosed and then a *sdk.NetError of kind NetPeerClosed; after
// Close, Recv reports sdk.ErrSessionClosed.
func (s *session) read() {
	defer s.reader.Done()
	defer close(s.frames)
	for {
		buf := make([]byte, recvChunk)
		n, err := s.conn.Read(buf)
		if n > 0 {
			select {
			case s.frames <- sdk.Frame{Data: buf[:n]}:
			case <-s.done:
				s.end = sdk.ErrSessionClosed
				return
			}
		}
		if err == nil {
			continue
		}
		select {
		case <-s.done:
			s.end = sdk.ErrSessionClosed
			return
		default:
		}
		ev := sdk.SessionEvent{Kind: sdk.EventPeerClosed, Detail: err.Error()}
		if errors.Is(err, io.EOF) {
			s.end = io.EOF
			ev.Detail = "the peer closed the connection"
		} else {
			ne := netError("recv", s.id, err)
			if ne.Kind != sdk.NetPeerClosed {
				ev.Kind = sdk.EventRecvClosed
			}
			s.end = ne
		}
		s.log.Info("session ended", "op", "recv", "session", s.id, "event", ev.Kind.String(), "detail", ev.Detail)
		select {
		case s.frames <- sdk.Frame{Event: &ev}:
		case <-s.done:
			s.end = sdk.ErrSessionClosed
		}
		return
	}
}

// Recv returns the next frame; after the end event, the end (io.EOF or a
// typed error), again and again.
func (s *session) Recv(ctx context.Context) (sdk.Frame, error) {
	select {
	case f, ok := <-s.frames:
		if !ok {
			return sdk.Frame{}, s.end
		}
		return f, nil
	case <-s.done:
		return sdk.Frame{}, sdk.ErrSessionClosed
	case <-ctx.Done():
		return sdk.Frame{}, fmt.Errorf("recv on session %d: %w", s.id, ctx.Err())
	}
}

// Send returns once the kernel took all of p. When ctx ends first, the
// write is cut short and the session is no longer usable (a TLS stream
// cannot resume a half-written record).
func (s *session) Send(ctx context.Context, p []byte) error {
	select {
	case <-s.done:
		return sdk.ErrSessionClosed
	default:
	}
	stop := context.AfterFunc(ctx, func() { s.conn.SetWriteDeadline(time.Now()) })
	_, err := s.conn.Write(p)
	if !stop() && ctx.Err() != nil {
		return fmt.Errorf("send on session %d: %w", s.id, ctx.Err())
	}
	if err == nil {
		return nil
	}
	select {
	case <-s.done:
		return sdk.ErrSessionClosed
	default:
	}
	ne := netError("send", s.id, err)
	if ne.Kind == sdk.NetOther {
		ne.Kind = sdk.NetSendFailed
	}
	return ne
}

// Close ends the session: a blocked Send or Recv returns. It sends the TLS
// close_notify when it can, without waiting past ctx. Closing twice is
// harmless.
func (s *session) Close(ctx context.Context) error {
	s.once.Do(func() {
		close(s.done)
		closed := make(chan struct{})
		go func() {
			s.conn.Close()
			s.reader.Wait()
			close(closed)
		}()
		select {
		case <-closed:
		case <-ctx.Done():
		}
		s.release(s.id)
		s.log.Info("session closed", "op", "close", "session", s.id)
	})
	return nil
}
