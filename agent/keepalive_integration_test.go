package agent_test

import (
	"testing"
	"time"
)

// TestNoKeepAlivePingWhileMessagesFlow checks, from outside, that the
// uplink sends no MQTT ping while messages flow more often than the
// keep-alive: a byte-counting relay between the emulated modem's socket
// and mosquitto counts the TLS records each way, and every one must be a
// PUBLISH going up or its PUBACK coming down. A ping is allowed only after
// a gap between acknowledgements at least as long as the keep-alive (a
// slow machine), so the check holds on a loaded host.
func TestNoKeepAlivePingWhileMessagesFlow(t *testing.T) {
	bin, dir, _, broker := startPKIBroker(t)
	const keep = 4 * time.Second
	a := startAirAgent(t, bin, dir, broker.Addr, "compact", "modem", keep)
	defer a.stop()
	gen := newAirGen(3)
	a.post(t, gen.next(1)) // past the connect and the first publish
	before := a.relay.Counts()
	const messages = 12
	allowed := int64(0)
	last := time.Now()
	for range messages {
		a.post(t, gen.next(1))
		if gap := time.Since(last); gap >= keep {
			allowed++ // the link was quiet for a keep-alive: a ping is legitimate
		}
		last = time.Now()
	}
	d := a.relay.Counts().Sub(before)
	if d.UpReads < messages || d.DownReads < messages {
		t.Fatalf("%d records up and %d down for %d messages: the relay missed traffic", d.UpReads, d.DownReads, messages)
	}
	if extra := d.UpReads - messages; extra > allowed {
		t.Fatalf("%d records went up for %d PUBLISHes (%d bytes): %d pings while messages flowed every < %s (%d gaps of a keep-alive), or a PUBLISH split over several records",
			d.UpReads, messages, d.Up, extra, keep, allowed)
	}
	t.Logf("%d messages: %d records up, %d down, %d bytes; %d gaps of a keep-alive", messages, d.UpReads, d.DownReads, d.Total(), allowed)
}
