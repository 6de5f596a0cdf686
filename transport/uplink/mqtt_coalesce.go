package uplink

import (
	"bytes"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// coalescingConn sends each MQTT packet in one Write. paho writes a packet
// as several Writes (fixed header, variable header, payload: net.Buffers)
// while it holds the conn's lock, if the conn has one. Over a modem every
// Write becomes its own AT send and its own TLS record, about 29 bytes of
// record overhead each on a module's TLS 1.2: three records for one
// PUBLISH cost more than a small batch's payload. coalescingConn is that
// lock: between Lock and Unlock it gathers the Writes, and Unlock sends
// them as one. Holding the lock around a whole packet also keeps a PINGREQ
// from landing inside a PUBLISH, which is what the lock is for.
//
// A Write between Lock and Unlock cannot fail (it only buffers); when the
// Write in Unlock fails, the conn is closed, so paho's reader ends and the
// connection is made again (a QoS 1 message stays in the session and is
// sent again), and the next Write returns the error.
//
// It also gives each topic an MQTT v5 topic alias, up to the Topic Alias
// Maximum the broker granted in its CONNACK (setTopicAliasMaximum; 0, the
// default, turns aliases off): a topic's first PUBLISH on the connection
// carries the topic and its alias, the ones after it the alias alone,
// which saves the topic's length on every message. Aliases live and die
// with the connection, as the protocol says, and are added here, on the
// wire, rather than in paho's session: a message paho sends again after a
// reconnect is stored with its topic and gets the new connection's alias
// the same way. Retained publishes (a status, a payload context) are
// one-offs on their own topics and keep their topic, leaving the aliases
// to the topics that repeat.
type coalescingConn struct {
	net.Conn
	mu       sync.Mutex
	buf      []byte
	gather   bool
	flushErr error
	aliasMax uint16
	aliases  map[string]uint16
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	return &coalescingConn{Conn: c, aliases: map[string]uint16{}}
}

// setTopicAliasMaximum sets the broker's Topic Alias Maximum (CONNACK).
func (c *coalescingConn) setTopicAliasMaximum(n uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.aliasMax = n
}

// alias rewrites a PUBLISH to use a topic alias, or returns pkt as it is
// (another packet, aliases off, the table full, or a packet it cannot
// read: the broker then judges the original).
func (c *coalescingConn) alias(pkt []byte) []byte {
	if c.aliasMax == 0 || len(pkt) == 0 || pkt[0]>>4 != packets.PUBLISH {
		return pkt
	}
	cp, err := packets.ReadPacket(bytes.NewReader(pkt))
	if err != nil {
		return pkt
	}
	p, ok := cp.Content.(*packets.Publish)
	if !ok || p.Topic == "" || p.Retain || (p.Properties != nil && p.Properties.TopicAlias != nil) {
		return pkt
	}
	a, known := c.aliases[p.Topic]
	switch {
	case known:
		p.Topic = ""
	case len(c.aliases) < int(c.aliasMax):
		a = uint16(len(c.aliases) + 1)
		c.aliases[p.Topic] = a
	default:
		return pkt
	}
	if p.Properties == nil {
		p.Properties = &packets.Properties{}
	}
	p.Properties.TopicAlias = &a
	var out bytes.Buffer
	if _, err := p.ToControlPacket().WriteTo(&out); err != nil {
		return pkt
	}
	return out.Bytes()
}

// packetWriteTimeout bounds the Write of one packet of n bytes: two
// minutes, plus a millisecond a byte (the packet moving at no less than
// 1 kB/s; a UART modem at 115200 baud carries 11 kB/s). A Write that takes
// longer is a link or modem session that stopped taking data; and as every
// packet, the keep-alive's PINGREQ too, waits for the Write before it,
// nothing else would notice: the connection is closed instead, and made
// again (the session sends unacknowledged messages again).
var packetWriteTimeout = func(n int) time.Duration {
	return 2*time.Minute + time.Duration(n)*time.Millisecond
}

// Lock starts a packet.
func (c *coalescingConn) Lock() {
	c.mu.Lock()
	c.gather = true
}

// Unlock sends the packet gathered since Lock in one Write, within
// packetWriteTimeout.
func (c *coalescingConn) Unlock() {
	if len(c.buf) > 0 && c.flushErr == nil {
		pkt := c.alias(c.buf)
		c.Conn.SetWriteDeadline(time.Now().Add(packetWriteTimeout(len(pkt))))
		_, err := c.Conn.Write(pkt)
		c.Conn.SetWriteDeadline(time.Time{})
		if err != nil {
			c.flushErr = err
			c.Conn.Close()
		}
	}
	c.buf = c.buf[:0]
	if cap(c.buf) > 64<<10 {
		c.buf = nil // a large batch does not pin its buffer for the connection's life
	}
	c.gather = false
	c.mu.Unlock()
}

// Write buffers p inside Lock/Unlock and writes it at once otherwise (paho
// writes every packet under the lock; this is for anything else).
func (c *coalescingConn) Write(p []byte) (int, error) {
	if c.gather {
		if c.flushErr != nil {
			return 0, c.flushErr
		}
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flushErr != nil {
		return 0, c.flushErr
	}
	return c.Conn.Write(p)
}
