package agent

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/internal/atomicfile"
	"github.com/cellgate/cellgate/internal/backoff"
	"github.com/cellgate/cellgate/transport/uplink"
)

// maxBatchBytes bounds one uplink message's readings, well under brokers'
// and HTTP servers' usual limits.
const maxBatchBytes = 256 << 10

// spoolQueue is what the forwarder uses of the spool: *spool.Spool. Tests
// wrap one to make its acks fail.
type spoolQueue interface {
	Next(ctx context.Context, after uint64, maxRecords int, maxBytes int) ([]spool.Record, error)
	Ack(seqs ...uint64) error
	CountDropped(cause spool.Cause, n uint64) error
}

// forwarder moves readings from the spool to the uplink in batches, read
// in spool order, and acks a batch in the spool only after the upstream
// acknowledged it. It is the only reader of the spool. With maxInFlight
// above 1 (and an uplink that takes more than one), several batches are in
// flight at once and acked as they complete, in any order
// (forwarder_pipeline.go); otherwise one at a time, in spool order.
//
// Its fields are owned by run's goroutine, except the counters (atomic,
// read by the status surfaces) and acked: reconfigure changes uplink, enc
// and batch only while the forwarder holds (see hold), the hold's channels
// handing them over.
type forwarder struct {
	spool  spoolQueue
	uplink uplink.Uplink
	enc    reading.Encoder
	// ctx encodes compact batches (forwarder_context.go); nil until the
	// first one; ctxMu guards it.
	ctx      *contextEncoding
	ctxMu    sync.Mutex
	lines    bool // tls_lines: the payload is the readings as JSON lines
	deviceID string
	batch    config.Batch
	// maxInFlight is uplink.max_in_flight: the most batches sent and not
	// yet acknowledged at once (below 2: one at a time, in spool order).
	// The uplink may lower it (uplink.InFlightLimiter). Changed only while
	// the forwarder holds.
	maxInFlight int
	// deadDir keeps batches the upstream refused for good, as JSON lines,
	// so an operator can inspect and replay them; refusedMax bounds it
	// (spool.refused_max_bytes; 0: no bound), oldest files out first. It is
	// atomic so that a reconfiguration can change it while batches flow.
	deadDir    string
	refusedMax atomic.Int64
	log        *slog.Logger

	// holds carries reconfigure's requests to stop between batches, and
	// grace is how long a batch being sent then has (0: holdGrace).
	holds chan holdRequest
	grace time.Duration
	// cursor is the last sequence number sent and acknowledged (pipelined:
	// everything up to it is acknowledged, set aside, or pending an ack
	// in unacked or held), kept across holds.
	cursor uint64
	// unacked is a batch done with (acknowledged upstream, or set aside)
	// whose ack the spool refused while it recovers from a failed write (a
	// full disk); nil when there is none. It is kept across holds, and
	// acked before anything else is read from the spool, so that it is
	// never sent again in this run (after a crash it is: at-least-once).
	unacked *pendingAck
	// held are more such batches, when several were in flight as a hold or
	// the end came: acked, in order, before anything is read again.
	held []*pendingAck
	// ackRetry spaces the retries of unacked (zero: ackRetryPolicy), and
	// ackFailing is when the spool first refused it.
	ackRetry   backoff.Policy
	ackFailing time.Time

	// sent counts batches and readings acknowledged upstream, and lastAck
	// is when (unix ns); read by the status endpoint.
	sentBatches, sentReadings atomic.Int64
	lastAck                   atomic.Int64
	// acked wakes those waiting for the next acknowledgement upstream (the
	// remote configuration's confirm window); nil: nobody waits.
	acked *notifier
	// link counts publishes by outcome, retries and ack latency
	// (linkstate.go); nil counts nothing.
	link *linkState
}

// holdRequest asks the forwarder to stop between batches: it closes held
// once no batch is in flight, then waits for release.
type holdRequest struct {
	held, release chan struct{}
}

// holdGrace is how long a batch being sent when a hold comes in has to be
// acknowledged before it is abandoned (it stays in the spool and is sent
// again after the hold).
const holdGrace = 5 * time.Second

// ackRetryPolicy spaces the retries of an ack the spool refused: 100 ms
// doubling to 5 s, about the pace at which the spool itself retries its
// recovery, so that acks go through within seconds of space coming back.
var ackRetryPolicy = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.25}

// pendingAck is a batch the forwarder is done with, to ack in the spool.
type pendingAck struct {
	seqs []uint64
	// sent: the batch went upstream (acknowledged, or refused for good),
	// and the cursor and the sent counters move once it is acked.
	sent  bool
	bytes int
	// cause, when set, is why its readings count as dropped once acked.
	cause spool.Cause
	// pipelined: sent with others in flight, so the cursor (the pipeline's
	// read position) does not move when it is acked.
	pipelined bool
}

// hold stops the forwarder between batches and returns the function that
// lets it go on (call it exactly once). A batch being collected is put
// back (nothing of it was sent); a batch being sent gets holdGrace to be
// acknowledged, and is acked in the spool if it is, so that it is not sent
// twice; otherwise its send is abandoned and it stays in the spool. An
// acknowledged batch whose ack the spool refuses (a full disk) stays
// pending through the hold and is acked first after it. hold fails only
// when ctx ends first.
func (f *forwarder) hold(ctx context.Context) (release func(), err error) {
	r := holdRequest{held: make(chan struct{}), release: make(chan struct{})}
	select {
	case f.holds <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-r.held:
		return sync.OnceFunc(func() { close(r.release) }), nil
	case <-ctx.Done():
		close(r.release) // the forwarder goes on as soon as it holds
		return nil, ctx.Err()
	}
}

// run sends batches until ctx ends, holding when asked to.
func (f *forwarder) run(ctx context.Context) error {
	for {
		r, err := f.runUntilHeld(ctx)
		if err != nil || r == nil {
			return err
		}
		close(r.held)
		select {
		case <-r.release:
		case <-ctx.Done():
			return nil
		}
	}
}

// runUntilHeld sends batches until ctx ends (it returns nil, nil) or a
// hold request comes in (it returns the request, with no batch in flight).
func (f *forwarder) runUntilHeld(ctx context.Context) (*holdRequest, error) {
	drain, stop := context.WithCancel(ctx)
	defer stop()
	got := make(chan holdRequest, 1)
	go func() {
		select {
		case r := <-f.holds:
			got <- r
			stop()
		case <-drain.Done():
		}
	}()
	err := f.batches(ctx, drain)
	stop()
	if err != nil || ctx.Err() != nil {
		return nil, err
	}
	r := <-got // drain ended and ctx did not: a hold came in
	return &r, nil
}

// batches sends batches until drain ends. drain ends with ctx, or early
// for a hold; then a batch being collected is dropped and one being sent
// finishes within holdGrace or is abandoned.
func (f *forwarder) batches(ctx, drain context.Context) error {
	if f.maxInFlight > 1 && f.inFlightLimit() > 1 {
		return f.pipeline(ctx, drain)
	}
	for {
		// A batch whose ack is pending is acked before anything is
		// read: Next would return it again.
		if ok, err := f.settleAll(drain); !ok {
			return err
		}
		cursor := f.cursor
		recs, err := f.collect(drain, cursor)
		if err != nil {
			if drain.Err() != nil {
				return nil
			}
			return fmt.Errorf("read spool: %w", err)
		}
		through := recs[len(recs)-1].Seq
		recs, msg, ok, err := f.prepare(drain, recs)
		if !ok {
			return err
		}
		if len(recs) == 0 {
			f.cursor = through
			continue
		}
		d, err := f.deliver(ctx, drain, recs, msg)
		if err != nil {
			if drain.Err() != nil {
				return nil // abandoned: the batch stays in the spool
			}
			return err
		}
		acks, err := f.acks(d, false)
		if err != nil {
			return err
		}
		f.unacked, f.held = acks[0], append(f.held, acks[1:]...)
	}
}

// prepare encodes recs into a message. The spool holds what an input
// validated, so a record that cannot be encoded is damage or a bug; it would
// stop every reading behind it, on every restart. It is set aside instead
// (dead-lettered and acked), and prepare returns the records left, possibly
// none. ok is false when the forwarder must stop: err says why, or is nil
// when drain ended while the spool refused the ack of a record set aside.
func (f *forwarder) prepare(drain context.Context, recs []spool.Record) (_ []spool.Record, _ uplink.Message, ok bool, _ error) {
	msg, err := f.message(recs)
	var bad *reading.RecordError
	for errors.As(err, &bad) && bad.Index >= 0 && bad.Index < len(recs) {
		r := recs[bad.Index]
		file, derr := f.deadLetter([]spool.Record{r})
		if derr != nil {
			return nil, msg, false, fmt.Errorf("spool record %d cannot be sent (%v) nor kept aside: %w", r.Seq, err, derr)
		}
		f.log.Error("spool record is not a usable reading; kept it aside", "seq", r.Seq, "file", file,
			"cause", string(spool.CauseDamaged), "readings", 1, "err", err)
		f.unacked = &pendingAck{seqs: []uint64{r.Seq}, cause: spool.CauseDamaged}
		if err := f.settle(drain); err != nil || f.unacked != nil {
			return nil, msg, false, err
		}
		recs = append(recs[:bad.Index:bad.Index], recs[bad.Index+1:]...)
		if len(recs) == 0 {
			return nil, msg, true, nil
		}
		msg, err = f.message(recs)
	}
	if err != nil {
		return nil, msg, false, err
	}
	return recs, msg, true, nil
}

// settleAll settles f.unacked, then each of f.held in order. ok is false
// when one stays pending (drain ended; err nil) or the spool failed (err).
func (f *forwarder) settleAll(drain context.Context) (ok bool, err error) {
	for {
		if err := f.settle(drain); err != nil || f.unacked != nil {
			return false, err
		}
		if len(f.held) == 0 {
			return true, nil
		}
		f.unacked, f.held = f.held[0], f.held[1:]
	}
}

// settle acks f.unacked in the spool. While the spool refuses the ack
// because it is recovering from a failed write (spool.ErrWriteFailed: a
// full disk, an I/O error), settle retries with backoff until the ack goes
// through, or until drain ends: the ack then stays pending, and batches
// settles it first when it runs again. The first refusal of an outage is
// logged at WARN, the ack that goes through after it at INFO. Any other
// error (a spool that must be reopened, a closed one) is returned.
func (f *forwarder) settle(drain context.Context) error {
	p := f.unacked
	if p == nil {
		return nil
	}
	for {
		err := f.spool.Ack(p.seqs...)
		if err == nil {
			break
		}
		if !errors.Is(err, spool.ErrWriteFailed) {
			return fmt.Errorf("ack %d readings in the spool: %w", len(p.seqs), err)
		}
		if f.ackFailing.IsZero() {
			f.ackFailing = time.Now()
			if f.ackRetry.Initial == 0 {
				f.ackRetry = ackRetryPolicy
			}
			f.ackRetry.Reset()
			f.log.Warn("the spool refused an ack; retrying until it takes it, without sending the batch again",
				"readings", len(p.seqs), "err", err)
		}
		if backoff.Sleep(drain, f.ackRetry.Next()) != nil {
			return nil
		}
	}
	f.unacked = nil
	if !f.ackFailing.IsZero() {
		f.log.Info("the spool takes acks again", "readings", len(p.seqs), "outage", time.Since(f.ackFailing).Round(time.Millisecond))
		f.ackFailing = time.Time{}
	}
	if p.cause != "" {
		f.countDropped(p.cause, len(p.seqs))
	}
	if p.sent {
		if !p.pipelined {
			f.cursor = p.seqs[len(p.seqs)-1]
		}
		f.sentBatches.Add(1)
		f.sentReadings.Add(int64(len(p.seqs)))
		f.lastAck.Store(time.Now().UnixNano())
		f.acked.notify()
		f.log.Debug("batch acknowledged", "readings", len(p.seqs), "bytes", p.bytes, "through_seq", p.seqs[len(p.seqs)-1])
	}
	return nil
}

// collect waits for at least one reading after cursor, then for up to
// batch.max_delay more until batch.max_readings are there: fewer, larger
// messages cost fewer bytes over the air. When more than max_readings are
// waiting already (a backlog), the batch takes up to
// batch.backlog_max_readings of them at once.
func (f *forwarder) collect(ctx context.Context, cursor uint64) ([]spool.Record, error) {
	max := f.batch.MaxReadings
	if max <= 0 {
		max = 100
	}
	backlog := f.batch.BacklogMaxReadings
	if backlog < max {
		backlog = max
	}
	recs, err := f.spool.Next(ctx, cursor, backlog, maxBatchBytes)
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
	wait, cancel := context.WithTimeout(ctx, f.maxDelay())
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

// maxDelay is how long a batch waits to fill: batch.max_delay, but no
// longer than nine tenths of an MQTT uplink's keep-alive. A batch that
// waited longer would leave the connection quiet for a keep-alive, and the
// client would ping, a message both ways that costs about what the batch
// does; sent a little early the readings travel in its place, and no ping
// goes while readings flow.
func (f *forwarder) maxDelay() time.Duration {
	d := f.batch.MaxDelay
	if k, ok := f.uplink.(interface{ KeepAlive() time.Duration }); ok {
		if ka := k.KeepAlive() * 9 / 10; ka > 0 && ka < d {
			d = ka
		}
	}
	return d
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
	if f.enc.Name() == reading.EncodingCompact {
		return f.compactMessage(payloads, ids)
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
// the batch aside instead of blocking the gateway forever. When drain ends
// (a hold), no new attempt starts and the attempt under way gets
// holdGrace; an acknowledgement within it is still a success.
func (f *forwarder) send(ctx, drain context.Context, m uplink.Message, n int) error {
	// 1 s doubling to 1 min, each wait shortened by up to a quarter so that
	// gateways that lost the upstream together do not return in step.
	retry := backoff.Policy{Initial: time.Second, Max: time.Minute, Multiplier: 2, Jitter: 0.25}
	for attempt := 1; ; attempt++ {
		if drain.Err() != nil {
			return drain.Err()
		}
		if attempt > 1 && f.link != nil {
			f.link.retries.Add(1)
		}
		begun := time.Now()
		err := f.sendOnce(ctx, drain, m)
		if f.link != nil {
			f.link.published(time.Since(begun), err)
		}
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
		if err := backoff.Sleep(drain, wait); err != nil {
			return err
		}
	}
}

// sendOnce is one Send, cut holdGrace after drain ends.
func (f *forwarder) sendOnce(ctx, drain context.Context, m uplink.Message) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(drain, func() {
		t := time.NewTimer(cmp.Or(f.grace, holdGrace))
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-sctx.Done():
		}
	})
	defer stop()
	return f.uplink.Send(sctx, m)
}

// setBatch takes new batching settings; call it only while the forwarder
// holds.
func (f *forwarder) setBatch(b config.Batch) error {
	enc, err := reading.NewEncoder(b.Encoding)
	if err != nil {
		return fmt.Errorf("uplink.batch.encoding: %w", err)
	}
	if f.enc == nil || f.enc.Name() != enc.Name() {
		f.ctx = nil // a compact encoder keeps its context across other changes
	}
	f.enc, f.batch = enc, b
	return nil
}

// notifier wakes every waiter at each event: wait returns a channel that
// the next notify closes.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func (n *notifier) wait() <-chan struct{} {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) notify() {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}

// countDropped adds n readings the forwarder set aside and acknowledged in
// the spool, which will never be delivered, to the spool's drop counts
// (kept on disk; /v1/status and /metrics show them by cause). Each reading
// is counted once, here, after its ack: removing its file from refused/
// later does not count it again.
func (f *forwarder) countDropped(cause spool.Cause, n int) {
	if err := f.spool.CountDropped(cause, uint64(n)); err != nil {
		f.log.Error("could not count dropped readings", "cause", string(cause), "readings", n, "err", err)
	}
}

// deadLetter writes recs as JSON lines to a new file in deadDir, synced
// before the caller acks them in the spool, then brings deadDir back under
// refusedMax.
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
	if err := atomicfile.SyncDir(f.deadDir); err != nil {
		return "", err
	}
	f.trimRefused(name)
	return name, nil
}

// refusedFile is one file of deadDir, as trimRefused sees it.
type refusedFile struct {
	name  string
	first uint64 // the first sequence number in the name: files sort by age
	size  int64
}

// trimRefused removes the oldest files of deadDir (by the first sequence
// number in their names, which the spool never reuses) until the refused
// batches take at most refusedMax bytes. The file just written (keep) stays
// whatever its size; files not named refused-<first>-<last>.ndjson are the
// operator's and stay too. The readings removed were counted as dropped
// when they were set aside; their removal is logged at WARN with their
// number. Failures are logged: the bound is enforced again at the next
// refusal.
func (f *forwarder) trimRefused(keep string) {
	limit := f.refusedMax.Load()
	if limit <= 0 {
		return
	}
	entries, err := os.ReadDir(f.deadDir)
	if err != nil {
		f.log.Error("refused batches: list the directory to bound it", "dir", f.deadDir, "err", err)
		return
	}
	var files []refusedFile
	var total int64
	for _, e := range entries {
		first, ok := parseRefusedName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		files = append(files, refusedFile{e.Name(), first, info.Size()})
		total += info.Size()
	}
	slices.SortFunc(files, func(a, b refusedFile) int { return cmp.Compare(a.first, b.first) })
	var removed []string
	readings := 0
	for _, rf := range files {
		if total <= limit {
			break
		}
		path := filepath.Join(f.deadDir, rf.name)
		if path == keep {
			continue
		}
		data, err := os.ReadFile(path)
		if err == nil {
			err = os.Remove(path)
		}
		if err != nil {
			f.log.Error("refused batches: remove the oldest file to bound the directory", "file", path, "err", err)
			continue
		}
		total -= rf.size
		readings += bytes.Count(data, []byte{'\n'})
		removed = append(removed, rf.name)
	}
	if len(removed) > 0 {
		f.log.Warn("refused batches over spool.refused_max_bytes: removed the oldest files (their readings were counted as dropped when refused)",
			"files", removed, "readings", readings, "cause", string(spool.CauseRefusedUpstream),
			"refused_max_bytes", limit, "kept_bytes", total)
	}
}

// parseRefusedName returns the first sequence number in the name of a
// file deadLetter writes, refused-<first>-<last>.ndjson.
func parseRefusedName(name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, "refused-")
	if !ok {
		return 0, false
	}
	if rest, ok = strings.CutSuffix(rest, ".ndjson"); !ok {
		return 0, false
	}
	a, b, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	first, err1 := strconv.ParseUint(a, 10, 64)
	_, err2 := strconv.ParseUint(b, 10, 64)
	return first, err1 == nil && err2 == nil
}
