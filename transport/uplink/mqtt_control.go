package uplink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"

	"github.com/cellgate/cellgate/internal/backoff"
)

// This file is the MQTT uplink's control surface beside Send: the publish
// topic changed while it runs, subscriptions (remote configuration arrives
// on one), and retained publishes (its outcome is published as one). It
// touches the uplink's connection only through autopaho and the uplink's
// own awaitConnection.

// Incoming is a message the broker delivered on a subscribed topic.
type Incoming struct {
	Topic    string
	Payload  []byte
	Retained bool
}

// mqttControl is the state of the control surface, one per MQTT uplink.
type mqttControl struct {
	// topic is the publish topic set by SetTopic; nil means cfg.Topic.
	topic atomic.Pointer[string]

	// mu guards subs, written by Subscribe and read by autopaho's
	// goroutines (a message arriving, a connection coming up).
	mu   sync.Mutex
	subs map[string]subscription // by topic
}

type subscription struct {
	qos     byte
	handler func(Incoming)
}

// subscribeTimeout bounds one SUBSCRIBE's wait for its SUBACK.
const subscribeTimeout = 30 * time.Second

// publishTopic is the topic Send publishes to.
func (c *mqttControl) publishTopic(configured string) string {
	if t := c.topic.Load(); t != nil {
		return *t
	}
	return configured
}

// Topic returns the topic Send publishes to now.
func (m *MQTT) Topic() string { return m.control.publishTopic(m.cfg.Topic) }

// SetTopic makes Send publish to topic from its next PUBLISH on, without
// reconnecting. A Send waiting for its acknowledgement keeps the topic it
// published to. It fails for an empty topic or one with wildcards.
func (m *MQTT) SetTopic(topic string) error {
	if topic == "" || strings.ContainsAny(topic, "+#") {
		return fmt.Errorf("mqtt uplink: topic %q: want one topic name without wildcards", topic)
	}
	if old := m.control.topic.Swap(&topic); old == nil || *old != topic {
		m.log.Info("publish topic changed", "topic", topic)
	}
	return nil
}

// Subscribe subscribes to topic (no wildcards) at qos, now if connected and
// again on every connection, so a broker that lost the session (restarted
// without persistence) still delivers. handler gets every message on topic,
// from paho's goroutine: it must not block, and the broker's
// acknowledgement (QoS 1) waits for it to return. Subscribing to a topic
// again replaces its handler. A SUBACK refusing the subscription is logged;
// the next connection tries again.
func (m *MQTT) Subscribe(topic string, qos byte, handler func(Incoming)) error {
	if topic == "" || strings.ContainsAny(topic, "+#") || qos > 2 || handler == nil {
		return fmt.Errorf("mqtt uplink: subscribe %q at QoS %d: want one topic name without wildcards, QoS 0 to 2 and a handler", topic, qos)
	}
	m.control.mu.Lock()
	if m.control.subs == nil {
		m.control.subs = map[string]subscription{}
	}
	m.control.subs[topic] = subscription{qos: qos, handler: handler}
	m.control.mu.Unlock()
	m.mu.Lock()
	live := m.live
	m.mu.Unlock()
	if live {
		go m.subscribe(map[string]byte{topic: qos})
	}
	return nil
}

// resubscribe renews every subscription on a new connection; it is called
// from autopaho's OnConnectionUp, which must not block.
func (c *mqttControl) resubscribe(m *MQTT) {
	c.mu.Lock()
	topics := make(map[string]byte, len(c.subs))
	for t, s := range c.subs {
		topics[t] = s.qos
	}
	c.mu.Unlock()
	if len(topics) > 0 {
		go m.subscribe(topics)
	}
}

func (m *MQTT) subscribe(topics map[string]byte) {
	ctx, cancel := context.WithTimeout(m.life, subscribeTimeout)
	defer cancel()
	sub := &paho.Subscribe{}
	for t, q := range topics {
		sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{Topic: t, QoS: q})
	}
	ack, err := m.cm.Subscribe(ctx, sub)
	if err != nil {
		if m.life.Err() == nil {
			m.log.Warn("subscribe failed; the next connection tries again", "topics", len(topics), "err", err)
		}
		return
	}
	for i, o := range sub.Subscriptions {
		switch {
		case i >= len(ack.Reasons):
		case ack.Reasons[i] >= 0x80:
			m.log.Warn("broker refused a subscription", "topic", o.Topic, "code", fmt.Sprintf("0x%02x", ack.Reasons[i]))
		default:
			m.log.Info("subscribed", "topic", o.Topic, "qos", ack.Reasons[i])
		}
	}
}

// received is paho's OnPublishReceived: it hands a message on a
// subscribed topic to its handler.
func (c *mqttControl) received(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	c.mu.Lock()
	s, ok := c.subs[p.Topic]
	c.mu.Unlock()
	if !ok {
		return false, nil
	}
	s.handler(Incoming{Topic: p.Topic, Payload: p.Payload, Retained: p.Retain})
	return true, nil
}

// PublishRetained publishes payload to topic, retained, at QoS 1, and
// returns once the broker acknowledged it. It waits for the connection
// while ctx allows and publishes again after a connection dropped before
// the message was sent. Errors: ctx ended, a *PublishError for a PUBACK
// of 0x80 or above, or ErrClosed.
func (m *MQTT) PublishRetained(ctx context.Context, topic string, payload []byte) error {
	return m.publishRetained(ctx, topic, payload, "application/json")
}

func (m *MQTT) publishRetained(ctx context.Context, topic string, payload []byte, contentType string) error {
	pub := &paho.Publish{QoS: 1, Retain: true, Topic: topic, Payload: payload,
		Properties: &paho.PublishProperties{ContentType: contentType}}
	for {
		if m.life.Err() != nil {
			return fmt.Errorf("mqtt uplink to %s: %w", m.broker, ErrClosed)
		}
		if err := m.awaitConnection(ctx); err != nil {
			return err
		}
		resp, err := m.cm.Publish(ctx, pub)
		if resp != nil && resp.ReasonCode >= 0x80 {
			perr := &PublishError{ReasonCode: resp.ReasonCode}
			if resp.Properties != nil {
				perr.Reason = resp.Properties.ReasonString
			}
			return fmt.Errorf("mqtt uplink to %s: publish to %s: %w", m.broker, topic, perr)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, autopaho.ConnectionDownError), errors.Is(err, session.ErrNoConnection):
			if err := backoff.Sleep(ctx, 50*time.Millisecond); err != nil {
				return fmt.Errorf("mqtt uplink: not connected to %s: %w", m.broker, err)
			}
		default:
			return fmt.Errorf("mqtt uplink to %s: publish to %s: %w", m.broker, topic, err)
		}
	}
}

// Connected reports whether the uplink is connected to the broker now.
func (m *MQTT) Connected() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live
}
