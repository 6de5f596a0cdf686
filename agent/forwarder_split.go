package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/transport/uplink"
)

// This file is what the forwarder does when the upstream refuses a batch
// because it is too large (HTTP 413, MQTT reason code 0x95): a server or
// broker with a smaller limit than the agent's batches (a backlog drains
// in batches of up to uplink.batch.backlog_max_readings) must not make the
// agent set readings aside that it would take in smaller messages. The
// batch is sent again in halves, and halves of those, down to single
// readings; only a single reading still too large is refused for good.

// tooLarge reports whether err is the upstream refusing a message for its
// size.
func tooLarge(err error) bool {
	var se *uplink.StatusError
	if errors.As(err, &se) && se.StatusCode == http.StatusRequestEntityTooLarge {
		return true
	}
	var pe *uplink.PublishError
	return errors.As(err, &pe) && pe.ReasonCode == 0x95
}

// delivery is how a batch's send ended: the readings the upstream took
// and those it refused for good (with the refusal), or err when the send
// was abandoned (drain ended) or failed in a way that stops the forwarder.
type delivery struct {
	took, refused []spool.Record
	refusal       error
	bytes         int // the payload bytes the upstream took
}

// deliver sends msg, the encoding of recs, and splits it on a refusal for
// size.
func (f *forwarder) deliver(ctx, drain context.Context, recs []spool.Record, msg uplink.Message) (delivery, error) {
	err := f.send(ctx, drain, msg, len(recs))
	if err == nil {
		return delivery{took: recs, bytes: len(msg.Payload)}, nil
	}
	var perm *uplink.PermanentError
	if !errors.As(err, &perm) {
		return delivery{}, err
	}
	if !tooLarge(err) || len(recs) < 2 {
		return delivery{refused: recs, refusal: err}, nil
	}
	f.log.Warn("the upstream refused a batch as too large; sending it in halves",
		"readings", len(recs), "bytes", len(msg.Payload), "err", err)
	var d delivery
	half := len(recs) / 2
	for _, part := range [][]spool.Record{recs[:half], recs[half:]} {
		m, err := f.message(part)
		if err != nil {
			return delivery{}, fmt.Errorf("encode half of a batch refused as too large: %w", err)
		}
		pd, err := f.deliver(ctx, drain, part, m)
		if err != nil {
			// Abandoned midway: the whole batch stays in the spool and
			// what was taken of it goes again (at-least-once).
			return delivery{}, err
		}
		d.took = append(d.took, pd.took...)
		d.refused = append(d.refused, pd.refused...)
		d.bytes += pd.bytes
		if pd.refusal != nil {
			d.refusal = pd.refusal
		}
	}
	return d, nil
}

// acks turns a delivery into the acks to make in the spool, the refused
// readings first set aside in the dead-letter directory; the ack holding
// the batch's last record comes last, so that acking them in order moves
// the cursor to the end of the batch.
func (f *forwarder) acks(d delivery, pipelined bool) ([]*pendingAck, error) {
	var out []*pendingAck
	if len(d.refused) > 0 {
		file, err := f.deadLetter(d.refused)
		if err != nil {
			return nil, fmt.Errorf("upstream refused a batch (%v) and it could not be kept: %w", d.refusal, err)
		}
		f.log.Error("upstream refused a batch for good; kept it aside", "readings", len(d.refused), "file", file,
			"cause", string(spool.CauseRefusedUpstream), "err", d.refusal)
		out = append(out, &pendingAck{sent: true, pipelined: pipelined, cause: spool.CauseRefusedUpstream, seqs: seqsOf(d.refused)})
	}
	if len(d.took) > 0 {
		out = append(out, &pendingAck{sent: true, pipelined: pipelined, bytes: d.bytes, seqs: seqsOf(d.took)})
	}
	if len(out) == 2 && out[0].seqs[len(out[0].seqs)-1] > out[1].seqs[len(out[1].seqs)-1] {
		out[0], out[1] = out[1], out[0]
	}
	return out, nil
}

func seqsOf(recs []spool.Record) []uint64 {
	seqs := make([]uint64, len(recs))
	for i, r := range recs {
		seqs[i] = r.Seq
	}
	return seqs
}
