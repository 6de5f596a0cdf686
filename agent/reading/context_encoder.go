package reading

import (
	"fmt"
	"sync"
	"time"
)

// DefaultMinRebuild is ContextOptions.MinRebuild's default.
const DefaultMinRebuild = 10 * time.Minute

// How a ContextEncoder refreshes a context that still describes the
// readings (docs/payloads.md, "When the context changes").
const (
	// refreshAge is when a context is old enough that a new one (counter0
	// and t0 from the batch) is worth its publishing.
	refreshAge = 24 * time.Hour
	// learnSaving is how many bytes of the sensors and ts columns a
	// context with learned intervals, phases and cycle must save on the
	// batch at hand to replace the current one.
	learnSaving = 2
	// publishCost is what publishing a context costs beyond its bytes
	// (topic, MQTT and TLS framing, PUBACK), for the refresh's sums.
	publishCost = 100
)

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
	learned int             // contexts made for predictions since the first; each doubles the wait for the next
	recheck time.Time       // no learning or refresh is tried before
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
	prev := e.ctx
	if err := e.update(deviceID, rs); err != nil {
		return nil, nil, fmt.Errorf("reading: encode compact batch: %w", err)
	}
	raw, fit, err := encodeCompactV2Fit(e.ctx, e.opts.Inline, rs)
	if err == nil && e.ctx == prev {
		raw, err = e.improve(deviceID, rs, raw, fit)
	}
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
		e.adopt(ctx, rs, now)
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
	e.adopt(next, rs, now)
	return nil
}

// adopt makes ctx, built from the batch rs, the current context. Its run
// is known when rs had a ULID or ctx carries on the current context's.
func (e *ContextEncoder) adopt(ctx *CompactContext, rs []Reading, now time.Time) {
	_, haveULID := firstULID(rs)
	e.hasRun = haveULID || (e.ctx != nil && e.hasRun && ctx.run == e.ctx.run)
	e.ctx, e.made, e.misfits, e.win, e.recheck = ctx, now, 0, newContextWindow(), time.Time{}
}

// improve replaces a context that still describes the batch when a new one
// would make batches smaller, and returns the batch (raw under the current
// context) as encoded under the context then current:
//   - learning: the context mispredicted the batch (a sensor's ts, or the
//     sensor order), at least 3 batches and MinRebuild × 2^learned passed
//     since it was made, and a context from what was seen since saves at
//     least learnSaving bytes of the sensors and ts columns;
//   - refresh: the context is refreshAge old and a new one makes this
//     batch smaller by enough that, at the batch rate since the context,
//     a day of batches saves more than publishing it costs.
//
// A try that does not replace the context waits MinRebuild for the next.
func (e *ContextEncoder) improve(deviceID string, rs []Reading, raw []byte, fit v2Fit) ([]byte, error) {
	now := e.opts.Now()
	age := now.Sub(e.made)
	learn := (fit.mispredicted > 0 || fit.offCycle) && e.win.batches >= keepAfterBatches && age >= e.learnWait()
	refresh := age >= refreshAge
	if (!learn && !refresh) || now.Before(e.recheck) {
		return raw, nil
	}
	next, err := e.win.build(deviceID, rs, e.ctx)
	if err != nil {
		return nil, err
	}
	nextRaw, nextFit, err := encodeCompactV2Fit(next, e.opts.Inline, rs)
	if err != nil {
		return nil, err
	}
	perDay := float64(e.win.batches) * float64(refreshAge) / float64(max(age, time.Minute))
	switch {
	case learn && fit.predBytes-nextFit.predBytes >= learnSaving:
		e.learned++
	case refresh && perDay*float64(len(raw)-len(nextRaw)) > float64(len(next.raw)+publishCost):
	default:
		e.recheck = now.Add(e.opts.MinRebuild)
		return raw, nil
	}
	e.adopt(next, rs, now)
	return nextRaw, nil
}

// learnWait is how old the context must be before learning replaces it:
// MinRebuild, doubled for every context learning made, at most refreshAge.
func (e *ContextEncoder) learnWait() time.Duration {
	w := e.opts.MinRebuild
	for range e.learned {
		if w >= refreshAge {
			break
		}
		w *= 2
	}
	return min(w, refreshAge)
}
