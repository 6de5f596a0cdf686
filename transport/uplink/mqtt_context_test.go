package uplink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/cellgate/cellgate/internal/testutil"
)

// arrivals is a paho client on its own TLS connection subscribed to a
// filter; it records every message in the order the broker delivered it.
type arrivals struct {
	mu   sync.Mutex
	got  []arrival
	subd chan struct{}
}

type arrival struct {
	topic, payload, contentType string
	retained                    bool
}

func subscribeArrivals(t *testing.T, b *broker, pki *testPKI, filter, id string) *arrivals {
	t.Helper()
	a := &arrivals{subd: make(chan struct{}, 8)}
	ctx, cancel := context.WithCancel(context.Background())
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{b.url()}, TlsCfg: pki.clientTLS(pki.subscriber), KeepAlive: 30,
		CleanStartOnInitialConnection: true, ConnectTimeout: 10 * time.Second,
		ReconnectBackoff: autopaho.NewConstantBackoff(100 * time.Millisecond),
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go func() {
				sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
				defer scancel()
				if _, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err == nil {
					a.subd <- struct{}{}
				}
			}()
		},
		ClientConfig: paho.ClientConfig{ClientID: id,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				p := pr.Packet
				ar := arrival{topic: p.Topic, payload: string(p.Payload), retained: p.Retain}
				if p.Properties != nil {
					ar.contentType = p.Properties.ContentType
				}
				a.mu.Lock()
				a.got = append(a.got, ar)
				a.mu.Unlock()
				return true, nil
			}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		cm.Disconnect(dctx)
		cancel()
		<-cm.Done()
	})
	select {
	case <-a.subd:
	case <-time.After(15 * time.Second):
		t.Fatal("the subscription was not acknowledged within 15s")
	}
	return a
}

func (a *arrivals) list() []arrival {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.got)
}

// TestMQTTPublishesAContextOncePerConnectionBeforeItsMessages: messages
// sent together that refer to one context publish it once, retained, on
// Topic()/ctx/<id>, and the broker delivers it before any of them; the
// messages carry no content type when they have none; after the broker
// restarted without persistence (its retained messages gone) the next
// message publishes the context again, so a consumer that meets it can
// still fetch the context.
func TestMQTTPublishesAContextOncePerConnectionBeforeItsMessages(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, pki, brokerOpts{})
	const topic = "cellgate/gw-test/telemetry"
	watch := subscribeArrivals(t, b, pki, topic+"/#", "watch-ctx")
	m, _ := newTestMQTT(t, b, topic, tlsDial(b.addr(), pki.clientTLS(pki.client), nil), nil)
	c := &Context{ID: "0a1b2c3d", Payload: []byte{0x87, 1, 2, 3}}
	if got := m.ContextTopic(c.ID); got != topic+"/ctx/0a1b2c3d" {
		t.Fatalf("ContextTopic = %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sendAll := func(from, n int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := from; i < from+n; i++ {
			wg.Go(func() { errs <- m.Send(ctx, Message{Payload: fmt.Appendf(nil, "batch-%d", i), Context: c}) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	sendAll(0, 8)
	testutil.Eventually(t, 10*time.Second, "8 batches at the watcher", func() bool { return len(watch.list()) >= 9 })
	got := watch.list()
	if got[0].topic != topic+"/ctx/0a1b2c3d" || got[0].payload != string(c.Payload) || got[0].contentType != ContextContentType {
		t.Fatalf("first arrival %+v, want the context before every batch", got[0])
	}
	for _, a := range got[1:] {
		if a.topic != topic {
			t.Errorf("the context was published again on the same connection: %+v", a)
		}
		if a.contentType != "" {
			t.Errorf("a message sent without a content type arrived with %q", a.contentType)
		}
	}
	late := subscribeArrivals(t, b, pki, topic+"/ctx/+", "late-1")
	testutil.Eventually(t, 10*time.Second, "the retained context for a later consumer", func() bool {
		l := late.list()
		return len(l) == 1 && l[0].retained && l[0].payload == string(c.Payload)
	})

	// A broker restarted without persistence forgets retained messages.
	b.stop(syscall.SIGKILL)
	b.start()
	sendAll(100, 1)
	again := subscribeArrivals(t, b, pki, topic+"/ctx/+", "late-2")
	testutil.Eventually(t, 10*time.Second, "the context published again on the new connection", func() bool {
		l := again.list()
		return len(l) == 1 && l[0].retained && l[0].payload == string(c.Payload)
	})
}

// TestMQTTRefusesAMessageLargerThanTheBrokerTakes: a broker that said its
// Maximum Packet Size in CONNACK would disconnect a client sending a larger
// PUBLISH, and the session would send it again on every connection; Send
// refuses it for good instead (reason 0x95, which the forwarder answers by
// splitting the batch), and the connection stays up for the next message.
func TestMQTTRefusesAMessageLargerThanTheBrokerTakes(t *testing.T) {
	pki := newTestPKI(t)
	b := startBroker(t, pki, brokerOpts{extra: []string{"max_packet_size 2000"}})
	const topic = "cellgate/gw-test/telemetry"
	sub := newSubscriber(t, b, pki, topic)
	var dials atomic.Int32
	m, _ := newTestMQTT(t, b, topic, tlsDial(b.addr(), pki.clientTLS(pki.client), &dials), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Send(ctx, Message{Payload: []byte("small")}); err != nil {
		t.Fatal(err)
	}
	err := m.Send(ctx, Message{Payload: bytes.Repeat([]byte{'x'}, 3000)})
	var perm *PermanentError
	var pe *PublishError
	if !errors.As(err, &perm) || !errors.As(err, &pe) || pe.ReasonCode != 0x95 || !strings.Contains(err.Error(), "Maximum Packet Size of 2000") {
		t.Fatalf("Send of 3000 bytes = %v, want a permanent 0x95 naming the broker's limit", err)
	}
	if err := m.Send(ctx, Message{Payload: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "both small messages at the subscriber", func() bool { return sub.has("small") && sub.has("after") })
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections, want 1: the large message must not reach the broker", n)
	}
}
