package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/nettest"

	"github.com/cellgate/cellgate/sdk"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestConnConformance runs x/net's net.Conn conformance suite (deadlines,
// concurrent use, close semantics) over two Conns joined by a session pair.
func TestConnConformance(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		a, b := newPipeSessions()
		c1, c2 = NewConn(a, "peer-b:1"), NewConn(b, "peer-a:1")
		return c1, c2, func() { c1.Close(); c2.Close() }, nil
	})
}

func TestReadReturnsSessionErrorForNetworkLoss(t *testing.T) {
	s := &eventSession{ev: sdk.SessionEvent{Kind: sdk.EventNetworkLost, Code: 9, Detail: "+CCH_RECV_CLOSED: 0,9"}}
	c := NewConn(s, "h:1")
	defer c.Close()
	_, err := c.Read(make([]byte, 8))
	var se *SessionError
	if !errors.As(err, &se) || se.Event.Kind != sdk.EventNetworkLost {
		t.Fatalf("Read = %v, want *SessionError for network loss", err)
	}
	if _, err2 := c.Read(make([]byte, 8)); err2 != err {
		t.Fatalf("second Read = %v, want the same error %v", err2, err)
	}
}

func TestPeerCloseReadsEOFAfterData(t *testing.T) {
	a, b := newPipeSessions()
	ca, cb := NewConn(a, "b"), NewConn(b, "a")
	defer ca.Close()
	go func() {
		cb.Write([]byte("last words"))
		cb.Close()
	}()
	got, err := io.ReadAll(ca)
	if err != nil || !bytes.Equal(got, []byte("last words")) {
		t.Fatalf("ReadAll = %q, %v; want the data then a clean EOF", got, err)
	}
}

func TestWriteWaitsForSlowPeerAndTimesOut(t *testing.T) {
	a, b := newPipeSessions()
	ca, cb := NewConn(a, "b"), NewConn(b, "a")
	defer ca.Close()
	defer cb.Close()
	// Nobody reads cb past its small receive buffer: writes must block and
	// then fail by deadline rather than buffer without bound.
	ca.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	big := make([]byte, 1<<20)
	_, err := ca.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write = %v, want a deadline error", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Write error %v is not a net.Error timeout", err)
	}
}

// eventSession is a test double that ends at once with one event.
type eventSession struct {
	ev   sdk.SessionEvent
	sent bool
}

func (s *eventSession) ID() int                                  { return 0 }
func (s *eventSession) Send(ctx context.Context, p []byte) error { return nil }
func (s *eventSession) Recv(ctx context.Context) (sdk.Frame, error) {
	if s.sent {
		<-ctx.Done()
		return sdk.Frame{}, ctx.Err()
	}
	s.sent = true
	return sdk.Frame{Event: &s.ev}, nil
}
func (s *eventSession) Close(context.Context) error { return nil }
