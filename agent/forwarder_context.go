package agent

import (
	"fmt"
	"os"
	"time"

	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/transport/uplink"
)

// This file is the forwarder's side of compact version 2 (docs/payloads.md):
// with uplink.batch.encoding compact, batches are encoded by a stateful
// reading.ContextEncoder, which moves what does not change from batch to
// batch (the device id, sensor names, units, tags, the id run) into a
// context. Over MQTT the batch refers to the context by its id and the
// uplink publishes the context, retained, before the first batch that
// needs it (uplink.Message.Context); over HTTPS and tls_lines, which
// cannot publish a document beside the messages, every batch carries its
// context inline.

// contextEncoding is the compact encoder and how it was made.
type contextEncoding struct {
	enc    *reading.ContextEncoder
	byRef  bool // contexts by reference: the uplink is an uplink.ContextCarrier
	device string
}

// compactMessage encodes payloads as a compact v2 batch for the current
// uplink. The encoder is made on first use and made again when the uplink
// changes between one that publishes contexts and one that does not (a
// reconfiguration).
func (f *forwarder) compactMessage(payloads [][]byte, ids []string) (uplink.Message, error) {
	// Senders encode the halves of a batch refused as too large while the
	// pipeline encodes the next batch (forwarder_split.go).
	f.ctxMu.Lock()
	defer f.ctxMu.Unlock()
	_, byRef := f.uplink.(uplink.ContextCarrier)
	if f.ctx == nil || f.ctx.byRef != byRef || f.ctx.device != f.deviceID {
		f.ctx = &contextEncoding{enc: reading.NewContextEncoder(reading.ContextOptions{Inline: !byRef, MinRebuild: contextMinRebuild()}),
			byRef: byRef, device: f.deviceID}
	}
	body, c, err := f.ctx.enc.Encode(f.deviceID, payloads)
	if err != nil {
		return uplink.Message{}, fmt.Errorf("encode batch of %d readings: %w", len(payloads), err)
	}
	m := uplink.Message{Payload: body, IDs: ids}
	if byRef {
		// The payload says what it is by its first bytes; the 37-byte
		// content-type property would cost more than a small batch's
		// readings on every message.
		m.Context = &uplink.Context{ID: fmt.Sprintf("%08x", c.ID()), Payload: c.Bytes()}
	} else {
		m.ContentType = reading.ContentTypeCompact
	}
	return m, nil
}

// contextMinRebuildEnv, when set to a duration, replaces the least time
// between two contexts (reading.DefaultMinRebuild, 10 minutes): the
// air-bytes benchmark's hook to reach in seconds the context a gateway
// learns over its first minutes. Unset (production), the default holds.
const contextMinRebuildEnv = "CGTEST_CONTEXT_MIN_REBUILD"

func contextMinRebuild() time.Duration {
	d, err := time.ParseDuration(os.Getenv(contextMinRebuildEnv))
	if err != nil || d <= 0 {
		return 0
	}
	return d
}
