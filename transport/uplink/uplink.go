package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Message is one unit of upstream delivery: usually a batch of readings.
type Message struct {
	// Payload is what goes upstream: an encoded batch for MQTT and HTTPS,
	// and for tls_lines the readings as JSON lines, one line per reading
	// ending in '\n', line i being the reading IDs[i].
	Payload []byte
	// ContentType is the payload's media type (e.g. application/json). It
	// goes in the MQTT v5 content-type property or the HTTP Content-Type
	// header; empty sends none.
	ContentType string
	// ContentEncoding names a compression applied to the payload (e.g.
	// deflate). It goes in an MQTT v5 user property "content-encoding" or the
	// HTTP Content-Encoding header; empty sends none.
	ContentEncoding string
	// IDs are the ids of the readings in the payload, for tls_lines acks
	// and for logs.
	IDs []string
	// Context, when set, is a document the payload refers to and that the
	// upstream must hold before the payload arrives: a compact version 2
	// context (docs/payloads.md). Only MQTT takes messages with one: it
	// publishes the context retained to Topic()/ctx/<ID> once on each
	// connection, before the first message that refers to it. Over other
	// uplinks payloads carry their context inline.
	Context *Context
}

// Context is a payload's context as the MQTT uplink publishes it.
type Context struct {
	// ID names the context in its topic: 8 lower-case hex digits.
	ID string
	// Payload is the context itself (CBOR).
	Payload []byte
}

// ContextContentType is the MQTT v5 content type of a published context.
const ContextContentType = "application/vnd.cellgate.compact-context+cbor"

// ContextCarrier is implemented by uplinks that take messages with a
// Context (MQTT); the others need payloads that carry it inline.
type ContextCarrier interface {
	// ContextTopic is the topic a context with this id is published to.
	ContextTopic(id string) string
}

// Uplink sends messages upstream and reports their acknowledgement.
// Delivery is at-least-once: when Send fails the caller sends the message
// again later, and the upstream may then see it twice (for example when the
// acknowledgement, not the message, was lost). Implementations are safe for
// concurrent use.
type Uplink interface {
	// Send returns nil once the upstream acknowledged m (MQTT PUBACK, HTTP
	// 2xx, an "ack <id>" line for every id of m), and an error otherwise:
	// ctx ended, the connection failed, or the upstream refused m. A
	// *PermanentError means sending m again cannot succeed; a
	// *RetryAfterError says how long the upstream asked to be left alone.
	// Any other error is worth retrying with backoff.
	Send(ctx context.Context, m Message) error
	// Close releases the connection and every goroutine of the uplink.
	// Send after Close returns an error wrapping ErrClosed.
	Close() error
}

// InFlightLimiter is implemented by uplinks that bound how many Sends can be
// awaiting their acknowledgement at once. InFlightLimit returns that bound,
// or 0 when it is not known yet. MQTT: the broker's Receive Maximum;
// TLSLines: 64 with acks (matched by id), 1 without; HTTPS: its pipeline
// depth (HTTPSConfig.Pipeline, 8: requests pipelined on its one
// connection).
type InFlightLimiter interface {
	InFlightLimit() int
}

// ErrClosed is wrapped by the error of a Send on a closed uplink.
var ErrClosed = errors.New("uplink closed")

// PermanentError is a refusal by the upstream that sending the same message
// again will not change (an HTTP 4xx other than 408 and 429, an MQTT PUBACK
// saying the payload format is invalid, a tls_lines message whose lines and
// ids do not match). The agent sets such a batch aside (dead-letters it)
// instead of retrying it forever and blocking the readings behind it.
type PermanentError struct {
	// Err is the refusal: a *StatusError, a *PublishError, or a
	// description of the malformed message.
	Err error
}

func (e *PermanentError) Error() string {
	return "upstream refused the message for good: " + e.Err.Error()
}

func (e *PermanentError) Unwrap() error { return e.Err }

// RetryAfterError is a retryable failure for which the upstream named a time
// to wait (an HTTP Retry-After header). After is how long is left of that
// wait, measured when the error was made. An uplink that returned one
// refuses to send again, without touching the network, until the wait is
// over, returning a new RetryAfterError that wraps the same cause.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (upstream asks to wait %s)", e.Err, e.After.Round(time.Second))
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter returns how long the upstream asked the caller to wait before
// sending again, if err carries such a request.
func RetryAfter(err error) (time.Duration, bool) {
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return ra.After, true
	}
	return 0, false
}

var (
	_ Uplink = (*MQTT)(nil)
	_ Uplink = (*TLSLines)(nil)
	_ Uplink = (*HTTPS)(nil)

	_ InFlightLimiter = (*MQTT)(nil)
	_ InFlightLimiter = (*TLSLines)(nil)
	_ InFlightLimiter = (*HTTPS)(nil)

	_ ContextCarrier = (*MQTT)(nil)
)

// orDiscard lets every constructor take a nil logger.
func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}

// idsForLog keeps log lines short for large batches.
func idsForLog(ids []string) any {
	const show = 3
	if len(ids) <= show {
		return ids
	}
	return fmt.Sprintf("%v … %s (%d)", ids[:show-1], ids[len(ids)-1], len(ids))
}
