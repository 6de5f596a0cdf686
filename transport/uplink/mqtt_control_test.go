package uplink

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// SetTopic moves the next PUBLISH to the new topic on the same connection:
// a topic is a per-publish setting, and a reconnect over cellular costs a
// TLS handshake's worth of data.
func TestMQTTSetTopicMovesTheNextPublish(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, pki, brokerOpts{})
	sub := newSubscriber(t, b, pki, "cellgate/gw-test/moved")
	var dials atomic.Int32
	m, _ := newTestMQTT(t, b, "cellgate/gw-test/telemetry", tlsDial(b.addr(), pki.clientTLS(pki.client), &dials), nil)
	send := func(payload string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := m.Send(ctx, Message{Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
	}
	send("before")
	if err := m.SetTopic("cellgate/gw-test/moved"); err != nil {
		t.Fatal(err)
	}
	if got := m.Topic(); got != "cellgate/gw-test/moved" {
		t.Fatalf("Topic() = %q after SetTopic", got)
	}
	send("after")
	testutil.Eventually(t, 10*time.Second, "the message after SetTopic on the new topic", func() bool { return sub.has("after") })
	if sub.has("before") {
		t.Error("the message sent before SetTopic arrived on the new topic")
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("the uplink dialled %d times, want 1: a topic change needs no reconnect", d)
	}
	for _, bad := range []string{"", "cellgate/+/x", "cellgate/#"} {
		if err := m.SetTopic(bad); err == nil {
			t.Errorf("SetTopic(%q) accepted", bad)
		}
	}
}

// A subscription delivers, and comes back on its own after the broker lost
// the session (restarted without persistence).
func TestMQTTSubscriptionSurvivesALostSession(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, pki, brokerOpts{})
	const topic = "cellgate/gw-test/config"
	got := make(chan Incoming, 8)
	m, _ := newTestMQTT(t, b, "cellgate/gw-test/telemetry", tlsDial(b.addr(), pki.clientTLS(pki.client), nil), nil)
	if err := m.Subscribe(topic, 1, func(in Incoming) { got <- in }); err != nil {
		t.Fatal(err)
	}
	pusher, _ := newTestMQTT(t, b, topic, tlsDial(b.addr(), pki.clientTLS(pki.subscriber), nil), func(c *MQTTConfig) { c.ClientID = "pusher" })
	push := func(payload string) Incoming {
		t.Helper()
		// The subscription is made in the background: push until it is there.
		deadline := time.After(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := pusher.Send(ctx, Message{Payload: []byte(payload)})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			select {
			case in := <-got:
				return in
			case <-time.After(200 * time.Millisecond):
			case <-deadline:
				t.Fatalf("%q never arrived on the subscription", payload)
			}
		}
	}
	if in := push("one"); in.Topic != topic || string(in.Payload) != "one" {
		t.Fatalf("received %+v", in)
	}
	b.stop(syscall.SIGKILL) // no persistence: the session and subscription are gone
	b.start()
	if in := push("two"); string(in.Payload) != "two" {
		t.Fatalf("after the broker lost the session, received %+v", in)
	}
}

// PublishRetained leaves the message with the broker for the next
// subscriber, and waits for the PUBACK.
func TestMQTTPublishRetained(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, pki, brokerOpts{})
	m, _ := newTestMQTT(t, b, "cellgate/gw-test/telemetry", tlsDial(b.addr(), pki.clientTLS(pki.client), nil), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.PublishRetained(ctx, "cellgate/gw-test/config/status", []byte(`{"state":"committed"}`)); err != nil {
		t.Fatal(err)
	}
	if !m.Connected() {
		t.Error("Connected() is false right after a PUBACK")
	}
	sub := newSubscriber(t, b, pki, "cellgate/gw-test/config/status")
	testutil.Eventually(t, 10*time.Second, "the retained status for a later subscriber", func() bool { return sub.has(`{"state":"committed"}`) })
}
