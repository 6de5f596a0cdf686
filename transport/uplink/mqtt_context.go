package uplink

import (
	"context"
	"fmt"
	"sync"
)

// This file is how the MQTT uplink makes a message's context available
// before the message (Message.Context; docs/payloads.md, compact version
// 2): the context is published retained, at QoS 1, to Topic()/ctx/<id>,
// and the message follows only once the broker acknowledged it. Retained,
// so that a consumer meeting a batch with a context it has not seen
// fetches it by subscribing to that topic; republished once on every new
// connection, because a broker restarted without persistence forgets its
// retained messages.

// mqttContexts is the state of the contexts published, one per MQTT uplink.
type mqttContexts struct {
	// turn lets one Send at a time publish a context, so that messages in
	// flight together publish a new context once.
	turn chan struct{}
	mu   sync.Mutex
	// published maps a context topic to the connection it was published
	// on (MQTT.conns when it was).
	published map[string]uint64
}

// ContextTopic is the topic a context with this id is published to: the
// publish topic, then /ctx/ and the id.
func (m *MQTT) ContextTopic(id string) string { return m.Topic() + "/ctx/" + id }

// ensureContext publishes c unless it was published on the current
// connection already. Errors: ctx ended, the broker refused it (a
// *PublishError), or ErrClosed.
func (m *MQTT) ensureContext(ctx context.Context, c *Context) error {
	select {
	case m.contexts.turn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("mqtt uplink to %s: waiting to publish context %s: %w", m.broker, c.ID, ctx.Err())
	}
	defer func() { <-m.contexts.turn }()
	if err := m.awaitConnection(ctx); err != nil {
		return err
	}
	topic := m.ContextTopic(c.ID)
	m.mu.Lock()
	conn := m.conns
	m.mu.Unlock()
	m.contexts.mu.Lock()
	on, ok := m.contexts.published[topic]
	m.contexts.mu.Unlock()
	if ok && on == conn {
		return nil
	}
	if err := m.publishRetained(ctx, topic, c.Payload, ContextContentType); err != nil {
		return fmt.Errorf("publish the payload's context %s: %w", c.ID, err)
	}
	m.contexts.mu.Lock()
	if m.contexts.published == nil {
		m.contexts.published = map[string]uint64{}
	}
	m.contexts.published[topic] = conn
	m.contexts.mu.Unlock()
	m.log.Debug("published a payload context", "topic", topic, "bytes", len(c.Payload))
	return nil
}
