package reading

import (
	"fmt"
	"sync"
	"time"
)

// DefaultMinRebuild is ContextOptions.MinRebuild's default.
const DefaultMinRebuild = 10 * time.Minute

// ContextOptions configure a ContextEncoder.
type ContextOptions struct {
	// Inline: every batch carries its context inline, for transports
	// without retained messages (HTTPS, tls_lines).
	Inline bool
	// MinRebuild is the least time between two contexts made because the
	// readings changed (default DefaultMinRebuild); 0 means the default.
	MinRebuild time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ContextEncoder encodes compact version 2 batches and learns the context
// they reference: the first context is made from the first batch, a new
// one when the device id changes, when the id counter wraps into the next
// run, or when sensors the context does not describe (or describes with
// another unit or tags) keep appearing (docs/payloads.md, "When the context
// changes"). It is safe for concurrent use; batches are encoded one at a
// time.
type ContextEncoder struct {
	opts ContextOptions

	mu      sync.Mutex
	ctx     *CompactContext // the current context; nil before the first batch
	hasRun  bool            // ctx's run and counter0 came from a ULID
	made    time.Time       // when ctx was made
	misfits int             // batches since ctx that it did not describe
	win     *contextWindow  // sensor figures since ctx
}

// NewContextEncoder returns an encoder with no context yet.
func NewContextEncoder(o ContextOptions) *ContextEncoder {
	if o.MinRebuild <= 0 {
		o.MinRebuild = DefaultMinRebuild
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &ContextEncoder{opts: o, win: newContextWindow()}
}

// Encode returns the payload of records (stored canonical JSON) and, when
// not Inline, the context it references (never nil then; nil when
// Inline). The caller must make that context available upstream before
// the payload (over MQTT: retained on <telemetry topic>/ctx/<HexID>). A
// record that is not a valid stored reading fails the call with a
// *RecordError before the encoder learns anything from the batch.
func (e *ContextEncoder) Encode(deviceID string, records [][]byte) (payload []byte, ctx *CompactContext, err error) {
	if err := checkDeviceID(deviceID); err != nil {
		return nil, nil, fmt.Errorf("reading: encode compact batch: %w", err)
	}
	rs, err := unmarshalRecords(records)
	if err != nil {
		return nil, nil, fmt.Errorf("reading: encode compact batch: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.update(deviceID, rs); err != nil {
		return nil, nil, fmt.Errorf("reading: encode compact batch: %w", err)
	}
	raw, err := encodeCompactV2(e.ctx, e.opts.Inline, rs)
	if err != nil {
		return nil, nil, fmt.Errorf("reading: encode compact batch: %w", err)
	}
	if payload, err = compressCompact(raw); err != nil {
		return nil, nil, err
	}
	if e.opts.Inline {
		return payload, nil, nil
	}
	return payload, e.ctx, nil
}

// update applies the context policy to the batch rs about to be encoded.
func (e *ContextEncoder) update(deviceID string, rs []Reading) error {
	now := e.opts.Now()
	if e.ctx != nil && e.ctx.deviceID != deviceID {
		e.ctx, e.win = nil, newContextWindow()
	}
	e.win.observe(rs)
	_, haveULID := firstULID(rs)
	if e.ctx == nil || (len(e.ctx.sensors) == 0 && len(rs) > 0) || runWrapped(e.ctx, rs) || (!e.hasRun && haveULID) {
		ctx, err := e.win.build(deviceID, rs, nil)
		if err != nil {
			return err
		}
		e.adopt(ctx, now)
		e.hasRun = haveULID
		return nil
	}
	if !misfits(e.ctx, rs) {
		return nil
	}
	e.misfits++
	if e.misfits < rebuildAfterMisfits || now.Sub(e.made) < e.opts.MinRebuild {
		return nil
	}
	next, err := e.win.build(deviceID, rs, e.ctx)
	if err != nil {
		return err
	}
	if sameDescription(next.sensors, e.ctx.sensors) {
		// Nothing kept appearing: start counting afresh.
		e.misfits, e.win = 0, newContextWindow()
		return nil
	}
	e.adopt(next, now)
	return nil
}

func (e *ContextEncoder) adopt(ctx *CompactContext, now time.Time) {
	e.ctx, e.made, e.misfits, e.win = ctx, now, 0, newContextWindow()
}
