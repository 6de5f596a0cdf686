package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/internal/backoff"
	"github.com/cellgate/cellgate/transport/uplink"
)

// maxBatchBytes bounds one uplink message's readings, well under brokers'
// and HTTP servers' usual limits.
const maxBatchBytes = 256 << 10

// forwarder moves readings from the spool to the uplink, one batch at a
// time and in spool order, and acks a batch in the spool only after the
// upstream acknowledged it. It is the only reader of the spool.
type forwarder struct {
	spool    *spool.Spool
	uplink   uplink.Uplink
	enc      reading.Encoder
	lines    bool // tls_lines: the payload is the readings as JSON lines
	deviceID string
	batch    config.Batch
	// deadDir keeps batches the upstream refused for good, as JSON lines,
	// so an operator can inspect and replay them.
	deadDir string
	log     *slog.Logger

	// sent counts batches and readings acknowledged upstream, and lastAck
	// is when (unix ns); read by the status endpoint.
	sentBatches, sentReadings atomic.Int64
	lastAck                   atomic.Int64
}

func (f *forwarder) run(ctx context.Context) error {
	var cursor uint64
	for {
		recs, err := f.collect(ctx, cursor)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read spool: %w", err)
		}
		through := recs[len(recs)-1].Seq
		msg, err := f.message(recs)
		// The spool holds what an input validated, so a record that
		// cannot be encoded is damage or a bug; it would stop every
		// reading behind it, on every restart. It is set aside instead.
		var bad *reading.RecordError
		for errors.As(err, &bad) && bad.Index >= 0 && bad.Index < len(recs) {
			r := recs[bad.Index]
			file, derr := f.deadLetter([]spool.Record{r})
			if derr != nil {
				return fmt.Errorf("spool record %d cannot be sent (%v) nor kept aside: %w", r.Seq, err, derr)
			}
			if aerr := f.spool.Ack(r.Seq); aerr != nil {
				return fmt.Errorf("ack unusable spool record %d: %w", r.Seq, aerr)
			}
			f.log.Error("spool record is not a usable reading; kept it aside", "seq", r.Seq, "file", file, "err", err)
			recs = append(recs[:bad.Index:bad.Index], recs[bad.Index+1:]...)
			if len(recs) == 0 {
				break
			}
			msg, err = f.message(recs)
		}
		if len(recs) == 0 {
			cursor = through
			continue
		}
		if err != nil {
			return err
		}
		if err := f.send(ctx, msg, len(recs)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var perm *uplink.PermanentError
			if !errors.As(err, &perm) {
				return err
			}
			file, derr := f.deadLetter(recs)
			if derr != nil {
				return fmt.Errorf("upstream refused a batch (%v) and it could not be kept: %w", err, derr)
			}
			f.log.Error("upstream refused a batch for good; kept it aside", "readings", len(recs), "file", file, "err", err)
		}
		seqs := make([]uint64, len(recs))
		for i, r := range recs {
			seqs[i] = r.Seq
		}
		if err := f.spool.Ack(seqs...); err != nil {
			return fmt.Errorf("ack %d readings in the spool: %w", len(seqs), err)
		}
		cursor = recs[len(recs)-1].Seq
		f.sentBatches.Add(1)
		f.sentReadings.Add(int64(len(recs)))
		f.lastAck.Store(time.Now().UnixNano())
		f.log.Debug("batch acknowledged", "readings", len(recs), "bytes", len(msg.Payload), "through_seq", cursor)
	}
}

// collect waits for at least one reading after cursor, then for up to
// batch.max_delay more until batch.max_readings are there: fewer, larger
// messages cost fewer bytes over the air.
func (f *forwarder) collect(ctx context.Context, cursor uint64) ([]spool.Record, error) {
	max := f.batch.MaxReadings
	if max <= 0 {
		max = 100
	}
	recs, err := f.spool.Next(ctx, cursor, max, maxBatchBytes)
	if err != nil {
		return nil, err
	}
	if len(recs) >= max || f.batch.MaxDelay <= 0 {
		return recs, nil
	}
	size := 0
	for _, r := range recs {
		size += len(r.Payload)
	}
	wait, cancel := context.WithTimeout(ctx, f.batch.MaxDelay)
	defer cancel()
	for len(recs) < max && size < maxBatchBytes {
		more, err := f.spool.Next(wait, recs[len(recs)-1].Seq, max-len(recs), maxBatchBytes-size)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			break // max_delay passed: send what there is
		}
		for _, r := range more {
			size += len(r.Payload)
		}
		recs = append(recs, more...)
	}
	return recs, nil
}

// message encodes a batch for the uplink.
func (f *forwarder) message(recs []spool.Record) (uplink.Message, error) {
	payloads := make([][]byte, len(recs))
	ids := make([]string, len(recs))
	for i, r := range recs {
		payloads[i] = r.Payload
		var id struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(r.Payload, &id); err != nil {
			return uplink.Message{}, fmt.Errorf("spool record %d is not a reading: %w", r.Seq, &reading.RecordError{Index: i, Err: err})
		}
		ids[i] = id.ID
	}
	if f.lines {
		var b bytes.Buffer
		for _, p := range payloads {
			b.Write(p)
			b.WriteByte('\n')
		}
		return uplink.Message{Payload: b.Bytes(), ContentType: "application/x-ndjson", IDs: ids}, nil
	}
	body, err := f.enc.Encode(f.deviceID, payloads)
	if err != nil {
		return uplink.Message{}, fmt.Errorf("encode batch of %d readings: %w", len(recs), err)
	}
	m := uplink.Message{Payload: body, ContentType: f.enc.ContentType(), IDs: ids}
	if ce, ok := f.enc.(interface{ ContentEncoding() string }); ok {
		m.ContentEncoding = ce.ContentEncoding()
	}
	return m, nil
}

// send retries a batch with capped exponential backoff until the upstream
// acknowledges it or ctx ends. A *uplink.PermanentError (the upstream
// refuses this batch for good) is returned at once, so the caller can set
// the batch aside instead of blocking the gateway forever.
func (f *forwarder) send(ctx context.Context, m uplink.Message, n int) error {
	// 1 s doubling to 1 min, each wait shortened by up to a quarter so that
	// gateways that lost the upstream together do not return in step.
	retry := backoff.Policy{Initial: time.Second, Max: time.Minute, Multiplier: 2, Jitter: 0.25}
	for attempt := 1; ; attempt++ {
		err := f.uplink.Send(ctx, m)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var perm *uplink.PermanentError
		if errors.As(err, &perm) {
			return err
		}
		wait := retry.Next()
		if after, ok := uplink.RetryAfter(err); ok && after > wait {
			wait = after // the upstream said when to come back
		}
		f.log.Warn("send failed; will retry", "attempt", attempt, "readings", n, "retry_in", wait, "err", err)
		if err := backoff.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// deadLetter writes recs as JSON lines to a new file in deadDir, synced
// before the caller acks them in the spool.
func (f *forwarder) deadLetter(recs []spool.Record) (string, error) {
	if err := os.MkdirAll(f.deadDir, 0o750); err != nil {
		return "", err
	}
	name := filepath.Join(f.deadDir, fmt.Sprintf("refused-%d-%d.ndjson", recs[0].Seq, recs[len(recs)-1].Seq))
	file, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriter(file)
	for _, r := range recs {
		w.Write(r.Payload)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		file.Close()
		return "", err
	}
	if err := file.Sync(); err != nil {
		file.Close()
		return "", err
	}
	if err := file.Close(); err != nil {
		return "", err
	}
	// The new name must be durable too before the spool forgets the
	// readings, or a power cut could lose both.
	dir, err := os.Open(f.deadDir)
	if err != nil {
		return "", err
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return "", err
	}
	return name, nil
}
