// Package spool is cellgate's durable on-disk queue of readings.
//
// Inputs Append payloads (a reading's canonical JSON, opaque here); Append
// returns only once they are on stable storage. The uplink reads them in
// append order with Next and removes them with Ack once the upstream has
// acknowledged them. Unacknowledged records survive kill -9 and power loss
// and are delivered again after a restart (at-least-once delivery).
//
// Many concurrent Append calls share one write and one fdatasync (group
// commit), and the next group is written while the previous one syncs; see
// README.md for the on-disk format, the recovery rules and the limits.
package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cellgate/cellgate/internal/backoff"
)

var (
	// ErrFull is returned (wrapped, with the sizes) by Append under
	// PolicyReject when the batch does not fit under Options.MaxBytes.
	ErrFull = errors.New("spool: full")
	// ErrTooLarge is returned (wrapped, with the size and the limit) by Append
	// for a record over Options.MaxRecordBytes or a batch that could never
	// fit under Options.MaxBytes, whatever the policy.
	ErrTooLarge = errors.New("spool: too large")
	// ErrClosed is returned by every method called after Close, and by Next
	// calls that were waiting when Close ran.
	ErrClosed = errors.New("spool: closed")
	// ErrWriteFailed is returned (wrapped, with the cause) by Append and Ack
	// while the spool refuses writes after a write or sync of its files
	// failed. The spool rolls its files back to what it last reported
	// durable and resumes by itself (it retries with backoff, and at the
	// next call once the backoff has passed): nothing reported durable is
	// lost, and the call may simply be retried later.
	ErrWriteFailed = errors.New("spool: a write failed")
	// ErrNoSpace marks an ErrWriteFailed whose cause is a file system out
	// of space (ENOSPC, EDQUOT). Such an error also wraps ErrFull, so that
	// a caller answering a full spool (HTTP 507) answers a full disk the
	// same way.
	ErrNoSpace = errors.New("spool: no space left in the file system")
)

// maxUnitBytes bounds how many bytes one group commit writes, which bounds
// the committer's buffer (a single larger batch still goes in one write).
const maxUnitBytes = 1 << 20

// ackCompactBytes is the ack log size past which it is rewritten as one
// snapshot record.
const ackCompactBytes = 1 << 20

// Record is one spooled payload and the sequence number Append gave it.
type Record struct {
	Seq     uint64
	Payload []byte
}

// Stats is a snapshot of a spool's counters. Appended, Acked, Dropped, Syncs
// and Commits count since Open; the others describe the spool as it is.
type Stats struct {
	// Pending is the number of records appended and neither acknowledged
	// nor dropped, including those recovered at Open.
	Pending uint64
	// PendingBytes is the on-disk size (headers included) of those records.
	PendingBytes int64
	// DiskBytes is the total size of the segment files, the figure that
	// MaxBytes bounds.
	DiskBytes int64
	// Segments is the number of segment files.
	Segments int
	// Appended counts records made durable by Append.
	Appended uint64
	// Acked counts records removed by Ack (repeated acks count once).
	Acked uint64
	// Dropped counts unacknowledged records given up under PolicyDropOldest.
	Dropped uint64
	// Drops counts, by cause, every reading Append reported stored that
	// will never be delivered, over the life of the directory (not only
	// since Open): damage found by recovery, drop_oldest, and what the
	// consumer reported with CountDropped.
	Drops Drops
	// Syncs counts fdatasync calls on segments and the ack log.
	Syncs uint64
	// Commits counts group commits: the times a batch of written records
	// was made durable and published together. Appended/Commits is the
	// average group size.
	Commits uint64
}

// DamageKind classifies what recovery found wrong in a file.
type DamageKind int

const (
	// DamageTornTail is what an interrupted write leaves at the end of the
	// newest segment (or of the ack log): a partial header or payload, a
	// checksum that does not match, or a batch without its end record, with
	// no valid record after it. Recovery copies the bytes of a segment's
	// torn tail to <file>.<offset>.torn (unless they are all zeros), then
	// cuts them. Its readings are counted as lost: the spool cannot tell a
	// write that never completed (its sender got no answer) from synced
	// bytes the storage lost.
	DamageTornTail DamageKind = iota + 1
	// DamageCorrupt is a bad region with valid records after it, a record
	// with a valid checksum in the wrong place, bad bytes anywhere in an
	// older segment, or records missing from the end of an older segment:
	// bytes that were once complete went bad. Recovery copies the region's
	// bytes (only them) to <file>.<offset>.corrupt and keeps every valid
	// record before and after it.
	DamageCorrupt
)

// String returns "torn tail" or "corrupt".
func (k DamageKind) String() string {
	switch k {
	case DamageTornTail:
		return "torn tail"
	case DamageCorrupt:
		return "corrupt"
	}
	return fmt.Sprintf("DamageKind(%d)", int(k))
}

// Damage is one damaged region of a file found by recovery.
type Damage struct {
	Kind DamageKind
	// File is the damaged file's name inside the spool directory.
	File string
	// Offset is the byte offset where the removed bytes start: the start of
	// the first record (or of the incomplete batch) that was not kept.
	Offset int64
	// Bytes is how many bytes were removed from Offset on: up to the next
	// kept record, or to the file's end. It is 0 for records missing from
	// the end of an older segment.
	Bytes int64
	// Reason says what was wrong at Offset.
	Reason string
	// Quarantine names the file now holding the removed bytes: a .corrupt
	// file, or a .torn file for a segment's torn tail; empty when the bytes
	// were all zeros or the damage is in the ack log's torn tail.
	Quarantine string
	// FirstSeq is the sequence number expected at Offset. LastSeq is the
	// last one the region held when kept records (or the next segment)
	// bound it, else the highest among the records whose headers were read
	// in it, or 0 (segments only).
	FirstSeq, LastSeq uint64
	// Readings is how many unacknowledged readings the region held, which
	// are now lost: counted by sequence number when kept records (or the
	// next segment) bound it, else by the record headers still readable in
	// it. Damage in the ack log loses no readings (they are delivered again).
	Readings uint64
	// ReadingsUnknown is set when more readings may have been there than
	// Readings counts, which is then a lower bound: the region ends in bytes
	// no header accounts for (a header is gone), or its last header is not
	// a batch end (the batch's end record went unseen).
	ReadingsUnknown bool
}

// String renders d for logs and test failures.
func (d Damage) String() string {
	s := fmt.Sprintf("%s in %s at offset %d: %s (%d bytes removed", d.Kind, d.File, d.Offset, d.Reason, d.Bytes)
	if d.Quarantine != "" {
		s += ", kept in " + d.Quarantine
	}
	if d.File != ackLogName {
		s += fmt.Sprintf("; readings lost: %d", d.Readings)
		if d.ReadingsUnknown {
			s += " or more (unknown: a header is gone)"
		}
	}
	return s + ")"
}

// RecoveryReport says what Open found on disk.
type RecoveryReport struct {
	Dir string
	// Segments is the number of segment files found.
	Segments int
	// Records is the number of valid records kept in them.
	Records uint64
	// Salvaged is how many of those lie after damage in their file: kept
	// rather than quarantined with it.
	Salvaged uint64
	// Lost is the number of readings lost to damage (the sum of the
	// Damage's Readings), and LostUnknown the number of damaged regions
	// whose count is only a lower bound.
	Lost        uint64
	LostUnknown int
	// Pending and PendingBytes describe the records still to be delivered.
	Pending      uint64
	PendingBytes int64
	// AckRecords is the number of valid ack log records replayed.
	AckRecords int
	// Removed lists segment files deleted because every record in them had
	// been acknowledged or they held no complete batch.
	Removed []string
	// Pieces lists segment files that recovery created to hold the records
	// salvaged after damage (each named after its first sequence number).
	Pieces []string
	// NextSeq is the sequence number the next appended record gets.
	NextSeq uint64
	// Damage lists every cut or quarantine, in the order found.
	Damage []Damage
}

// Clean reports whether recovery found no damage.
func (r RecoveryReport) Clean() bool { return len(r.Damage) == 0 }

// request is one Append batch or one Ack call on its way to the committer.
type request struct {
	ctx      context.Context
	payloads [][]byte
	bytes    int64 // encoded size of payloads
	acks     []uint64
	first    uint64 // set by the committer: sequence number of payloads[0]
	err      error
	done     chan struct{} // closed by the committer when err/first are final
}

// Spool is an open spool directory. Its methods are safe for concurrent use.
type Spool struct {
	opts   Options
	lim    atomic.Pointer[limits] // MaxBytes, WhenFull and what they imply; see limits.go
	log    *slog.Logger
	lock   *os.File
	report RecoveryReport

	// The queue between callers and the committer goroutine.
	qmu     sync.Mutex
	queue   []*request
	qclosed bool
	wake    chan struct{} // capacity 1: "the queue may be non-empty"
	exited  chan struct{} // closed when the committer returns

	// tickets carries written units from the committer to the syncer.
	tickets      chan *ticket
	syncerExited chan struct{}
	// synced (capacity 1) is signalled by the syncer each time it has
	// synced its units: the committer, holding appends while a sync runs
	// (holdWhileSyncing), looks again.
	synced chan struct{}
	// unsynced counts the units handed to the syncer and not yet through
	// their fdatasync (or its failure).
	unsynced atomic.Int64

	// Owned by the committer goroutine (and by Open/Close before it starts
	// and after it exits).
	buf             []byte
	ackLog          *os.File
	ackLogSize      int64
	ackLogDurable   int64 // the ack log's size at its last sync: recovery cuts it back there
	ackReservedTo   int64 // the ack log has space allocated up to here (reserveAckLog)
	nextSeq         uint64
	ackCompactBytes int64
	compactRetryAt  int64 // the ack log size before which a failed compaction is not retried
	// retry spaces the attempts to recover after a failed write, and
	// nextRecovery is when the next one may start.
	retry        backoff.Policy
	nextRecovery time.Time
	// lostFloor holds what drop_oldest dropped while the ack log could
	// not take the new floor: recovery writes the floor, then counts the
	// readings and deletes the segments.
	lostFloor struct {
		readings uint64
		doomed   []*segment
	}

	syncs   atomic.Uint64
	commits atomic.Uint64

	// mu guards the index below. The committer never holds it across a write
	// or a sync, so readers wait at most for an index update or for another
	// reader's ReadAt.
	mu      sync.Mutex
	segs    []*segment // oldest first
	active  *segment   // appends go here; nil means the next append creates one
	loaded  []*segment // sealed segments holding offsets, least recently used first
	acked   spanSet    // acknowledged, dropped or missing seqs above floor
	floor   uint64     // every seq <= floor is acknowledged, dropped or missing
	lastSeq uint64     // highest durable seq: Next never reads past it

	pending       uint64
	pendingBytes  int64
	diskBytes     int64
	inflightBytes int64 // written, not yet synced and published
	appended      uint64
	ackedCount    uint64
	dropped       uint64
	closed        bool
	// failed is set while the spool refuses appends: after a failed write
	// or sync until the committer has recovered (a *writeFailure), or for
	// good once terminal is set (a failure recovery in place cannot mend).
	// Acks are refused too only when the ack log is what failed
	// (ackLogFailed), or for good: a full disk that fails segment writes
	// while the ack log still takes records lets acks free space.
	failed       error
	ackLogFailed bool
	terminal     bool
	// outageSince is when the first write of an outage failed; zero once a
	// write succeeded again. freshOutage tells the committer to try to
	// recover at once, and recoveries counts its attempts in this outage.
	outageSince time.Time
	freshOutage bool
	recoveries  int
	notify      chan struct{} // closed and replaced whenever records appear

	// dropsMu serializes changes to drops and writes of DIR/dropped.json.
	dropsMu sync.Mutex
	drops   Drops

	// ackLogCorrupt is set by recovery when the ack log held corrupt
	// damage: acknowledgements may be missing, so sequence numbers missing
	// between segments are not counted as lost readings.
	ackLogCorrupt bool
}

// Open opens (creating if needed) the spool in opts.Dir, takes an exclusive
// lock on it, and recovers its contents: every record's checksum is
// verified, every record that verifies is kept, damaged bytes (a torn tail,
// corruption) are copied aside and removed, the readings they held are
// counted as dropped, and acknowledged records are removed. What recovery
// did is in Recovery() and in the log.
// Open fails if the options are invalid, if another process (or another
// Spool in this one) holds the directory, or if a file cannot be read or
// repaired; the error names the directory or file.
func Open(opts Options) (*Spool, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: create directory %s: %w", opts.Dir, err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	s := &Spool{
		opts:            opts,
		log:             opts.Logger.With("dir", opts.Dir),
		lock:            lock,
		wake:            make(chan struct{}, 1),
		exited:          make(chan struct{}),
		tickets:         make(chan *ticket, 64),
		syncerExited:    make(chan struct{}),
		synced:          make(chan struct{}, 1),
		notify:          make(chan struct{}),
		ackCompactBytes: ackCompactBytes,
		retry:           opts.retry,
	}
	if s.retry.Initial == 0 {
		s.retry = recoveryRetry
	}
	s.lim.Store(&limits{Limits: Limits{MaxBytes: opts.MaxBytes, WhenFull: opts.WhenFull}, maxRecordBytes: opts.MaxRecordBytes, segmentBytes: opts.SegmentBytes})
	err = s.loadDrops()
	if err == nil {
		err = s.recover()
	}
	if err != nil {
		s.closeFiles()
		lock.Close()
		return nil, err
	}
	go s.run()
	go s.syncLoop()
	return s, nil
}

// Recovery returns what Open found and repaired.
func (s *Spool) Recovery() RecoveryReport {
	r := s.report
	r.Damage = append([]Damage(nil), r.Damage...)
	r.Removed = append([]string(nil), r.Removed...)
	r.Pieces = append([]string(nil), r.Pieces...)
	return r
}

// Append adds payloads as one batch and returns their sequence numbers,
// consecutive and in argument order. It returns only after the records are
// on stable storage (unless Options.NoSync), and the batch is all-or-nothing,
// also across a crash: recovery drops a batch whose last record is missing.
// Append copies the payloads, so the caller may reuse them once it returns,
// except after a context error: then the committer may still be copying
// them, and they must be left alone.
//
// It fails with ErrTooLarge for a payload over MaxRecordBytes or a batch that
// can never fit, with ErrFull under PolicyReject when the spool is full, with
// ErrClosed after Close, and with ErrWriteFailed while the spool recovers
// from a failed write or sync (also ErrNoSpace and ErrFull when the file
// system is full); the batch was then not stored. If ctx ends before the
// batch is written it is not written; if ctx ends while the batch is being
// written, Append returns ctx's error but the batch may still become
// durable and be delivered.
func (s *Spool) Append(ctx context.Context, payloads ...[]byte) ([]uint64, error) {
	if len(payloads) == 0 {
		return nil, nil
	}
	var total int64
	lim := s.lim.Load()
	for i, p := range payloads {
		if len(p) > lim.maxRecordBytes {
			return nil, fmt.Errorf("%w: record %d of the batch is %d bytes, the limit is %d",
				ErrTooLarge, i, len(p), lim.maxRecordBytes)
		}
		total += headerSize + int64(len(p))
	}
	if total > lim.MaxBytes {
		return nil, fmt.Errorf("%w: the batch of %d records needs %d bytes, more than the spool's max bytes %d",
			ErrTooLarge, len(payloads), total, lim.MaxBytes)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("spool: append: %w", err)
	}
	r := &request{ctx: ctx, payloads: payloads, bytes: total, done: make(chan struct{})}
	if err := s.enqueue(r); err != nil {
		return nil, err
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		select {
		case <-r.done:
		default:
			return nil, fmt.Errorf("spool: append abandoned before it was known to be durable (it may still be delivered): %w", ctx.Err())
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	seqs := make([]uint64, len(payloads))
	for i := range seqs {
		seqs[i] = r.first + uint64(i)
	}
	return seqs, nil
}

// Next returns up to maxRecords unacknowledged records with sequence numbers
// above after, in order, whose payloads total at most maxBytes (0 or less
// means no byte limit). The first record is returned even if it alone is
// larger than maxBytes, so a large record cannot stall the reader. after = 0
// reads from the oldest unacknowledged record. Records become visible only
// once durable, and stay visible until acknowledged or dropped.
//
// Next blocks until at least one record is available, ctx ends (its error is
// returned, wrapped) or the spool is closed (ErrClosed). It fails if a record
// read back from disk does not match its checksum, naming file and offset.
// The returned payloads belong to the caller.
func (s *Spool) Next(ctx context.Context, after uint64, maxRecords int, maxBytes int) ([]Record, error) {
	if maxRecords <= 0 {
		return nil, fmt.Errorf("spool: next: max records must be positive, got %d", maxRecords)
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		recs, err := s.collectLocked(after, maxRecords, maxBytes)
		wait := s.notify
		s.mu.Unlock()
		if err != nil || len(recs) > 0 {
			return recs, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("spool: waiting for records after %d: %w", after, ctx.Err())
		case <-wait:
		}
	}
}

// Ack removes the records with the given sequence numbers. Acks may come in
// any order and more than once; acknowledging a record already acknowledged
// or dropped does nothing. Ack returns once the acknowledgement is durable;
// segments whose records are all acknowledged are then deleted.
//
// Ack fails, applying none of seqs, if one of them was never appended
// durably (0, or above the last appended). It fails with ErrClosed after
// Close, and with ErrWriteFailed (and ErrNoSpace when the file system is
// full) while the spool recovers from a failed write or sync: none of seqs
// is then acknowledged, and the same Ack may be retried.
func (s *Spool) Ack(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	r := &request{acks: seqs, done: make(chan struct{})}
	if err := s.enqueue(r); err != nil {
		return err
	}
	<-r.done
	return r.err
}

// Oldest returns the oldest record neither acknowledged nor dropped, without
// waiting: ok is false when none is pending. It reads the record back from
// disk like Next, so a checksum mismatch is an error naming file and offset.
func (s *Spool) Oldest() (rec Record, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Record{}, false, ErrClosed
	}
	recs, err := s.collectLocked(0, 1, 0)
	if err != nil || len(recs) == 0 {
		return Record{}, false, err
	}
	return recs[0], true, nil
}

// Stats returns a snapshot of the spool's counters.
func (s *Spool) Stats() Stats {
	s.dropsMu.Lock()
	drops := s.drops
	s.dropsMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Drops:        drops,
		Pending:      s.pending,
		PendingBytes: s.pendingBytes,
		DiskBytes:    s.diskBytes,
		Segments:     len(s.segs),
		Appended:     s.appended,
		Acked:        s.ackedCount,
		Dropped:      s.dropped,
		Syncs:        s.syncs.Load(),
		Commits:      s.commits.Load(),
	}
}

// Close waits for the appends and acks already submitted to finish, stops
// the committer, wakes waiting Next calls with ErrClosed, closes the files
// and releases the directory lock. Calling it again waits for the first
// call's committer to stop and returns nil. It returns the errors closing
// the files reported, joined.
func (s *Spool) Close() error {
	s.qmu.Lock()
	already := s.qclosed
	s.qclosed = true
	s.qmu.Unlock()
	if already {
		<-s.exited
		<-s.syncerExited
		return nil
	}
	s.signal()
	<-s.exited
	<-s.syncerExited
	err := s.closeFiles()
	if cerr := s.lock.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("spool: release lock on %s: %w", s.opts.Dir, cerr)
	}
	return err
}

// closeFiles marks the spool closed and closes every file it holds.
func (s *Spool) closeFiles() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if !s.closed {
		s.closed = true
		close(s.notify)
	}
	for _, g := range s.segs {
		if err := g.unload(); err != nil {
			errs = append(errs, fmt.Errorf("spool: close segment %s: %w", g.name, err))
		}
	}
	s.loaded = nil
	if s.ackLog != nil {
		if err := s.ackLog.Close(); err != nil {
			errs = append(errs, fmt.Errorf("spool: close ack log in %s: %w", s.opts.Dir, err))
		}
		s.ackLog = nil
	}
	return errors.Join(errs...)
}

func (s *Spool) enqueue(r *request) error {
	s.qmu.Lock()
	if s.qclosed {
		s.qmu.Unlock()
		return ErrClosed
	}
	s.queue = append(s.queue, r)
	s.qmu.Unlock()
	s.signal()
	return nil
}

func (s *Spool) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// segmentForLocked returns the segment holding seq, or nil.
func (s *Spool) segmentForLocked(seq uint64) *segment {
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].first > seq }) - 1
	if i < 0 || !s.segs[i].contains(seq) {
		return nil
	}
	return s.segs[i]
}

// ensureLoadedLocked gives g its offset index and open file, evicting the
// least recently used sealed segment past loadedCap.
func (s *Spool) ensureLoadedLocked(g *segment) error {
	if g == s.active {
		return nil
	}
	for i, l := range s.loaded {
		if l == g {
			s.loaded = append(append(s.loaded[:i:i], s.loaded[i+1:]...), g)
			return nil
		}
	}
	if err := g.load(); err != nil {
		return err
	}
	s.loaded = append(s.loaded, g)
	for len(s.loaded) > loadedCap {
		old := s.loaded[0]
		s.loaded = s.loaded[1:]
		if err := old.unload(); err != nil {
			s.log.Warn("spool: close segment", "file", old.name, "err", err)
		}
	}
	return nil
}

// forgetLocked removes g from the index and the loaded set and closes it.
func (s *Spool) forgetLocked(g *segment) {
	for i, x := range s.segs {
		if x == g {
			s.segs = append(s.segs[:i:i], s.segs[i+1:]...)
			break
		}
	}
	for i, x := range s.loaded {
		if x == g {
			s.loaded = append(s.loaded[:i:i], s.loaded[i+1:]...)
			break
		}
	}
	if s.active == g {
		s.active = nil
	}
	s.diskBytes -= g.size
	if err := g.unload(); err != nil {
		s.log.Warn("spool: close segment", "file", g.name, "err", err)
	}
}

// collectLocked gathers the records Next returns.
func (s *Spool) collectLocked(after uint64, maxRecords, maxBytes int) ([]Record, error) {
	var out []Record
	total := 0
	seq := max(after, s.floor) + 1
	for len(out) < maxRecords {
		seq = s.acked.nextAbsent(seq)
		if seq > s.lastSeq {
			break
		}
		g := s.segmentForLocked(seq)
		if g == nil {
			return nil, fmt.Errorf("spool: internal error: record %d is neither acknowledged nor in a segment of %s", seq, s.opts.Dir)
		}
		if err := s.ensureLoadedLocked(g); err != nil {
			return nil, err
		}
		// A run of unacknowledged records inside g, cut by count and bytes.
		end := g.last()
		if p, ok := s.acked.nextPresent(seq); ok && p <= end {
			end = p - 1
		}
		stop := false
		n := uint64(0)
		for q := seq; q <= end && len(out)+int(n) < maxRecords; q++ {
			size := int(g.recordSize(q-g.first)) - headerSize
			if maxBytes > 0 && total+size > maxBytes && (len(out) > 0 || n > 0) {
				stop = true
				break
			}
			total += size
			n++
		}
		if n == 0 {
			break
		}
		recs, err := readRun(g, seq-g.first, n)
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
		if stop {
			break
		}
		seq += n
	}
	return out, nil
}

// readRun reads n consecutive records of g starting at index i with one
// ReadAt and verifies each one's checksum and sequence number.
func readRun(g *segment, i, n uint64) ([]Record, error) {
	from := g.offsets[i]
	to := g.size
	if i+n < uint64(len(g.offsets)) {
		to = g.offsets[i+n]
	}
	buf := make([]byte, to-from)
	if _, err := g.f.ReadAt(buf, from); err != nil {
		return nil, fmt.Errorf("spool: read segment %s at offset %d (%d bytes): %w", g.name, from, len(buf), err)
	}
	out := make([]Record, 0, n)
	off := from
	for k := uint64(0); k < n; k++ {
		h, p, size, derr := decodeRecord(buf)
		if derr == nil && h.seq != g.first+i+k {
			derr = badRecord("sequence %d where %d was expected", h.seq, g.first+i+k)
		}
		if derr != nil {
			return nil, fmt.Errorf("spool: segment %s offset %d: record %d failed verification on read: %s",
				g.name, off, g.first+i+k, derr.reason)
		}
		out = append(out, Record{Seq: h.seq, Payload: p[:len(p):len(p)]})
		buf = buf[size:]
		off += int64(size)
	}
	return out, nil
}

// path returns the absolute path of a file in the spool directory.
func (s *Spool) path(name string) string { return filepath.Join(s.opts.Dir, name) }

// failLocked refuses appends after err, a failed write or sync of a
// segment, until the committer has rolled the files back to what was
// reported durable (recoverInPlace). The first failure of an outage is
// logged at ERROR; failures until an append succeeds again belong to the
// same outage.
func (s *Spool) failLocked(err error) error {
	if s.failed != nil {
		return s.failed
	}
	s.failed = &writeFailure{dir: s.opts.Dir, noSpace: isNoSpace(err), err: err}
	if s.outageSince.IsZero() {
		s.outageSince, s.freshOutage, s.recoveries = time.Now(), true, 0
		s.log.Error("spool: write failed; refusing writes until recovered (retrying by itself)", "err", err,
			"no_space", isNoSpace(err))
	} else {
		s.log.Debug("spool: write failed again", "err", err)
	}
	s.signal() // the committer starts recovering, even if nothing else is queued
	return s.failed
}

func (s *Spool) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failLocked(err)
}

// failAckLog is fail for a failed write or sync of the ack log: acks are
// refused too until the committer has recovered.
func (s *Spool) failAckLog(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ackLogFailed = true
	return s.failLocked(err)
}

// acksRefusedLocked returns the error acks fail with, or nil.
func (s *Spool) acksRefusedLocked() error {
	if s.ackLogFailed || s.terminal {
		return s.failed
	}
	return nil
}

// failTerminalLocked refuses writes for good: what is on disk is not what
// the spool reported, and only Open's recovery settles that.
func (s *Spool) failTerminalLocked(err error) error {
	if s.terminal {
		return s.failed
	}
	s.terminal = true
	s.failed = fmt.Errorf("spool: %s stopped accepting writes after an I/O error (reopen it to recover): %w", s.opts.Dir, err)
	s.log.Error("spool: I/O error that recovery in place cannot mend; the spool is now read-only until reopened", "err", err)
	return s.failed
}

// appendSucceededLocked ends an outage once appended records were made
// durable again.
func (s *Spool) appendSucceededLocked() {
	if s.outageSince.IsZero() || s.failed != nil {
		return
	}
	s.log.Info("spool: accepting readings again after a write failure", "outage", time.Since(s.outageSince).Round(time.Millisecond),
		"recoveries", s.recoveries)
	s.outageSince = time.Time{}
}
