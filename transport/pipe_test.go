package transport

import (
	"context"
	"io"
	"sync"

	"github.com/cellgate/cellgate/sdk"
)

// pipeSession is a test double, not a modem: one end of an in-memory pair of
// sdk.Sessions. Send hands bytes to the peer's Recv synchronously, so a peer
// that does not read makes Send block, as a modem whose line is full does.
// Close on one end shows up at the other as a peer-closed event.
type pipeSession struct {
	id     int
	out    chan []byte   // to the peer
	in     chan []byte   // from the peer
	closed chan struct{} // this end closed
	peer   *pipeSession
	once   sync.Once
}

func newPipeSessions() (*pipeSession, *pipeSession) {
	ab, ba := make(chan []byte), make(chan []byte)
	a := &pipeSession{id: 0, out: ab, in: ba, closed: make(chan struct{})}
	b := &pipeSession{id: 1, out: ba, in: ab, closed: make(chan struct{})}
	a.peer, b.peer = b, a
	return a, b
}

func (s *pipeSession) ID() int { return s.id }

func (s *pipeSession) Send(ctx context.Context, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), 2048)
		chunk := append([]byte(nil), p[:n]...)
		select {
		case s.out <- chunk:
			p = p[n:]
		case <-s.closed:
			return sdk.ErrSessionClosed
		case <-s.peer.closed:
			return &sdk.NetError{Op: "send", Session: s.id, Kind: sdk.NetPeerClosed}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (s *pipeSession) Recv(ctx context.Context) (sdk.Frame, error) {
	select {
	case b := <-s.in:
		return sdk.Frame{Data: b}, nil
	case <-s.closed:
		return sdk.Frame{}, io.EOF
	case <-ctx.Done():
		return sdk.Frame{}, ctx.Err()
	case <-s.peer.closed:
		select {
		case b := <-s.in:
			return sdk.Frame{Data: b}, nil
		default:
		}
		select {
		case <-s.closed:
			return sdk.Frame{}, io.EOF
		default:
		}
		// Report the close once; after it the session is over.
		s.once.Do(func() { close(s.closed) })
		return sdk.Frame{Event: &sdk.SessionEvent{Kind: sdk.EventPeerClosed}}, nil
	}
}

func (s *pipeSession) Close(context.Context) error {
	s.once.Do(func() { close(s.closed) })
	return nil
}
