package relay_test

import (
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cellgate/cellgate/internal/relay"
	"github.com/cellgate/cellgate/internal/testutil"
)

func TestRelayCountsBothWays(t *testing.T) {
	defer goleak.VerifyNone(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 100)
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		c.Write(append(buf, buf...)) // answers twice what it got
	}()
	r, err := relay.Start(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := net.DialTimeout("tcp", r.Addr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 200)); err != nil {
		t.Fatal(err)
	}
	// The upstream closes after answering: the relay ends the flow.
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after the upstream closed: %v, want EOF", err)
	}
	testutil.Eventually(t, 10*time.Second, "the relay to count the flow", func() bool {
		got := r.Counts()
		return got.Up == 100 && got.Down == 200 && got.Conns == 1
	})
	if got := r.Counts(); got.Total() != 300 {
		t.Fatalf("total %d, want 300", got.Total())
	}
}
