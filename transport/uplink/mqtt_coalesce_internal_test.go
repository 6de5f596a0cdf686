package uplink

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// writeCounter is a net.Conn that records each Write.
type writeCounter struct {
	net.Conn
	writes [][]byte
	fail   error
	closed bool
}

func (w *writeCounter) Write(p []byte) (int, error) {
	if w.fail != nil {
		return 0, w.fail
	}
	w.writes = append(w.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (w *writeCounter) Close() error { w.closed = true; return nil }

func (w *writeCounter) SetWriteDeadline(time.Time) error { return nil }

// TestCoalescingConnGivesUpOnAWriteThatStalls: a packet whose Write makes
// no progress (a modem session that stopped taking data) ends within the
// packet's write timeout with the conn closed, so paho reconnects instead
// of waiting forever with every later packet, PINGREQs too, queued behind
// it.
func TestCoalescingConnGivesUpOnAWriteThatStalls(t *testing.T) {
	defer func(f func(int) time.Duration) { packetWriteTimeout = f }(packetWriteTimeout)
	packetWriteTimeout = func(int) time.Duration { return 100 * time.Millisecond }
	ours, peer := net.Pipe() // nobody reads peer: a Write blocks until its deadline
	defer peer.Close()
	c := newCoalescingConn(ours)
	done := make(chan struct{})
	go func() {
		defer close(done)
		publishPacket().WriteTo(c) // it takes the conn's lock itself, as paho does
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("a stalled Write was never given up")
	}
	if _, err := c.Write([]byte{0xc0, 0}); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the next Write = %v, want the stalled write's deadline error", err)
	}
	if _, err := peer.Write([]byte{1}); err == nil {
		t.Fatal("the conn is still open after the stalled write")
	}
}

func publishPacket() *packets.ControlPacket {
	cp := packets.NewControlPacket(packets.PUBLISH)
	p := cp.Content.(*packets.Publish)
	p.Topic, p.QoS, p.PacketID, p.Payload = "cellgate/gw/telemetry", 1, 7, []byte("payload bytes")
	return cp
}

func TestCoalescingConnSendsAPacketInOneWrite(t *testing.T) {
	var want bytes.Buffer
	if _, err := publishPacket().WriteTo(&want); err != nil {
		t.Fatal(err)
	}
	rec := &writeCounter{}
	c := newCoalescingConn(rec)
	for range 2 {
		if _, err := publishPacket().WriteTo(c); err != nil {
			t.Fatal(err)
		}
	}
	if len(rec.writes) != 2 {
		t.Fatalf("two packets took %d Writes, want 2", len(rec.writes))
	}
	for i, w := range rec.writes {
		if !bytes.Equal(w, want.Bytes()) {
			t.Fatalf("write %d = %x, want the whole packet %x", i, w, want.Bytes())
		}
	}
}

func TestCoalescingConnClosesOnAFailedFlush(t *testing.T) {
	boom := errors.New("modem send failed")
	rec := &writeCounter{fail: boom}
	c := newCoalescingConn(rec)
	// The Writes under the lock only buffer; the failure comes at Unlock.
	if _, err := publishPacket().WriteTo(c); err != nil {
		t.Fatalf("first packet: %v (the failure surfaces on the next write)", err)
	}
	if !rec.closed {
		t.Fatal("the conn stayed open after its write failed: paho would not notice the dead connection")
	}
	if _, err := publishPacket().WriteTo(c); !errors.Is(err, boom) {
		t.Fatalf("next packet: %v, want %v", err, boom)
	}
}

// readBack decodes one packet the conn wrote.
func readBack(t *testing.T, b []byte) *packets.Publish {
	t.Helper()
	cp, err := packets.ReadPacket(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the conn wrote an unreadable packet %x: %v", b, err)
	}
	return cp.Content.(*packets.Publish)
}

func TestCoalescingConnAliasesTopicsUpToTheBrokersMaximum(t *testing.T) {
	rec := &writeCounter{}
	c := newCoalescingConn(rec)
	c.setTopicAliasMaximum(1)
	other := publishPacket()
	other.Content.(*packets.Publish).Topic = "cellgate/gw/other"
	for _, cp := range []*packets.ControlPacket{publishPacket(), publishPacket(), other, publishPacket()} {
		if _, err := cp.WriteTo(c); err != nil {
			t.Fatal(err)
		}
	}
	first, second, third, fourth := readBack(t, rec.writes[0]), readBack(t, rec.writes[1]), readBack(t, rec.writes[2]), readBack(t, rec.writes[3])
	if first.Topic != "cellgate/gw/telemetry" || first.Properties.TopicAlias == nil || *first.Properties.TopicAlias != 1 {
		t.Errorf("first publish: topic %q alias %v, want the topic and alias 1", first.Topic, first.Properties.TopicAlias)
	}
	for i, p := range []*packets.Publish{second, fourth} {
		if p.Topic != "" || p.Properties.TopicAlias == nil || *p.Properties.TopicAlias != 1 {
			t.Errorf("publish %d: topic %q alias %v, want alias 1 alone", i+2, p.Topic, p.Properties.TopicAlias)
		}
		if string(p.Payload) != "payload bytes" || p.PacketID != 7 || p.QoS != 1 {
			t.Errorf("publish %d lost its content: %+v", i+2, p)
		}
	}
	if third.Topic != "cellgate/gw/other" || third.Properties.TopicAlias != nil {
		t.Errorf("a topic past the broker's maximum: topic %q alias %v, want the topic in full", third.Topic, third.Properties.TopicAlias)
	}
	if len(rec.writes[1]) >= len(rec.writes[0]) {
		t.Errorf("the aliased publish is %d bytes, the first %d: nothing saved", len(rec.writes[1]), len(rec.writes[0]))
	}
	// A new connection (a new conn) starts without aliases: a message sent
	// again after a reconnect carries its topic.
	rec2 := &writeCounter{}
	c2 := newCoalescingConn(rec2)
	c2.setTopicAliasMaximum(10)
	dup := publishPacket()
	dup.Content.(*packets.Publish).Duplicate = true
	if _, err := dup.WriteTo(c2); err != nil {
		t.Fatal(err)
	}
	if p := readBack(t, rec2.writes[0]); p.Topic != "cellgate/gw/telemetry" || !p.Duplicate {
		t.Errorf("resent publish on a new connection: topic %q dup %v, want its topic and DUP", p.Topic, p.Duplicate)
	}
}

func TestCoalescingConnWithoutAliasMaximumLeavesPublishesAlone(t *testing.T) {
	var want bytes.Buffer
	publishPacket().WriteTo(&want)
	rec := &writeCounter{}
	c := newCoalescingConn(rec)
	for range 2 {
		publishPacket().WriteTo(c)
	}
	for i, w := range rec.writes {
		if !bytes.Equal(w, want.Bytes()) {
			t.Errorf("write %d changed without a broker maximum: %x", i, w)
		}
	}
}
