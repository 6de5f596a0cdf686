package modemsim

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer accepts one connection on loopback and echoes it back.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	return l.Addr().String()
}

func dialDelayed(t *testing.T, delay time.Duration, rate int) *delayConn {
	t.Helper()
	c, err := net.Dial("tcp", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	d := newDelayConn(c, delay, rate)
	t.Cleanup(func() {
		d.Close()
		d.done.Wait() // no goroutine outlives the test
	})
	return d
}

func TestDelayLineOneByteEchoTakesARoundTrip(t *testing.T) {
	const delay = 150 * time.Millisecond
	d := dialDelayed(t, delay, 0)
	begun := time.Now()
	if _, err := d.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(begun); el >= delay {
		t.Fatalf("write blocked %v: a write must not wait for its bytes to arrive (delay %v)", el, delay)
	}
	d.SetReadDeadline(time.Now().Add(30 * time.Second))
	b := make([]byte, 1)
	if _, err := io.ReadFull(d, b); err != nil {
		t.Fatal(err)
	}
	el := time.Since(begun)
	if b[0] != 'x' {
		t.Fatalf("echo %q, want x", b)
	}
	// The byte crosses the delay twice: never sooner than 2×delay.
	if el < 2*delay {
		t.Fatalf("echo after %v, want at least 2×%v", el, delay)
	}
	if el > 20*delay {
		t.Fatalf("echo after %v, want about 2×%v", el, delay)
	}
}

func TestDelayLineKeepsManyWritesInFlightInOrder(t *testing.T) {
	const (
		delay  = 100 * time.Millisecond
		writes = 50
	)
	d := dialDelayed(t, delay, 0)
	var want bytes.Buffer
	begun := time.Now()
	for i := range writes {
		p := bytes.Repeat([]byte{byte('A' + i%26)}, 10)
		want.Write(p)
		if _, err := d.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	d.SetReadDeadline(time.Now().Add(60 * time.Second))
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(d, got); err != nil {
		t.Fatal(err)
	}
	el := time.Since(begun)
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("echo out of order:\n got %q\nwant %q", got, want.Bytes())
	}
	if el < 2*delay {
		t.Fatalf("echo after %v, want at least 2×%v", el, delay)
	}
	// One write per delay (the old model) would take writes×delay; in
	// flight together they take about one round trip.
	if el > writes*delay/5 {
		t.Fatalf("%d writes echoed after %v: not in flight together (delay %v)", writes, el, delay)
	}
}

func TestDelayLineRateCapSerialisesWrites(t *testing.T) {
	const (
		delay  = 100 * time.Millisecond
		rate   = 100_000 // bytes/s: 1000 B take 10 ms each way
		writes = 50
		size   = 1000
	)
	d := dialDelayed(t, delay, rate)
	begun := time.Now()
	for range writes {
		if _, err := d.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
	}
	d.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.ReadFull(d, make([]byte, writes*size)); err != nil {
		t.Fatal(err)
	}
	el := time.Since(begun)
	// Serialised once up at the cap (0.5 s), once down (overlapping),
	// plus the delay each way: never sooner than n×size/rate + 2×delay.
	serial := time.Duration(writes*size) * time.Second / rate
	if min := serial + 2*delay; el < min {
		t.Fatalf("echo after %v, want at least %v (rate cap %d B/s)", el, min, rate)
	}
	if max := 4 * (2*serial + 2*delay); el > max {
		t.Fatalf("echo after %v, want well under %v", el, max)
	}
}

func TestDelayLineCloseDeliversWhatWasWritten(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	d := newDelayConn(c, 50*time.Millisecond, 0)
	d.Write([]byte("last words"))
	d.Close()
	if _, err := d.Write([]byte("more")); err == nil {
		t.Fatal("write after Close succeeded")
	}
	if _, err := d.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after Close succeeded")
	}
	if b := <-got; string(b) != "last words" {
		t.Fatalf("server got %q, want the bytes written before Close, then EOF", b)
	}
	d.done.Wait()
}

// Through the AT interface: with NetworkDelay a session's connect takes a
// round trip, and ten sends queued back to back are echoed in order after
// about one round trip, not one per send.
func TestNetworkDelayThroughASession(t *testing.T) {
	const delay = 150 * time.Millisecond
	_, port, _ := net.SplitHostPort(echoServer(t))
	_, h := newHostModem(t, Config{Baud: -1, NetworkDelay: delay})
	startService(t, h, "")
	begun := time.Now()
	h.ok(`AT+CCHOPEN=0,"127.0.0.1",` + port + `,1`)
	h.waitLine("+CCHOPEN: 0,0")
	if el := time.Since(begun); el < 2*delay {
		t.Fatalf("connect took %v, want at least a round trip (2×%v)", el, delay)
	}
	const sends = 10
	want := pattern(sends * 100)
	begun = time.Now()
	for i := range sends {
		h.send(0, want[i*100:(i+1)*100])
	}
	got := h.readData(0, len(want))
	el := time.Since(begun)
	if !bytes.Equal(got, want) {
		t.Fatal("echo differs from what was sent, or is out of order")
	}
	if el < 2*delay {
		t.Fatalf("echo after %v, want at least 2×%v", el, delay)
	}
	if el > sends*delay {
		t.Fatalf("%d sends echoed after %v: not in flight together (delay %v)", sends, el, delay)
	}
}
