package uplink

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// sendConcurrently publishes n messages from n goroutines over m, with the
// broker's PUBACKs held by link, and returns once all are acknowledged.
func sendConcurrently(t *testing.T, m *MQTT, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			errs <- m.Send(ctx, Message{Payload: fmt.Appendf(nil, "msg-%d", i)})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
}

// The broker's Receive Maximum (mosquitto's max_inflight_messages) bounds
// the publishes awaiting a PUBACK: with 2, never more than 2 are out,
// whatever the number of concurrent Sends, and InFlightLimit says 2.
func TestMQTTHonoursTheBrokersReceiveMaximum(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, pki, brokerOpts{extra: []string{"max_inflight_messages 2"}})
	const topic = "cellgate/gw-test/telemetry"
	sub := newSubscriber(t, b, pki, topic)
	var dials atomic.Int32
	link := &ackHoldLink{dial: tlsDial(b.addr(), pki.clientTLS(pki.client), &dials), hold: time.Second}
	m, _ := newTestMQTT(t, b, topic, link.Dial, nil)
	const n = 8
	sendConcurrently(t, m, n)
	if got := m.InFlightLimit(); got != 2 {
		t.Errorf("InFlightLimit = %d, want the broker's Receive Maximum 2", got)
	}
	if got := link.maxHeld.Load(); got != 2 {
		t.Errorf("at most %d PUBACKs were outstanding at once, want exactly the Receive Maximum 2", got)
	}
	testutil.Eventually(t, 15*time.Second, "every message at the subscriber", func() bool {
		got, _ := sub.distinct()
		return got == n
	})
	if _, dups := sub.distinct(); dups != 0 {
		t.Errorf("%d duplicates at the subscriber", dups)
	}
}

// Without a small Receive Maximum, concurrent Sends are all in flight at
// once: the line is not idle while PUBACKs travel.
func TestMQTTConcurrentSendsAreInFlightTogether(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, pki, brokerOpts{extra: []string{"max_inflight_messages 20"}})
	const topic = "cellgate/gw-test/telemetry"
	var dials atomic.Int32
	link := &ackHoldLink{dial: tlsDial(b.addr(), pki.clientTLS(pki.client), &dials), hold: 2 * time.Second}
	m, _ := newTestMQTT(t, b, topic, link.Dial, nil)
	const n = 6
	sendConcurrently(t, m, n)
	if got := m.InFlightLimit(); got != 20 {
		t.Errorf("InFlightLimit = %d, want the broker's Receive Maximum 20", got)
	}
	// Each PUBACK is held 2 s: the Sends overlap unless the uplink
	// serialised them.
	if got := link.maxHeld.Load(); got < 2 {
		t.Errorf("at most %d PUBACKs were outstanding at once, want the %d concurrent Sends to overlap", got, n)
	}
}
