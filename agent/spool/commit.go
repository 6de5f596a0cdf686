package spool

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// run is the committer: the only goroutine that writes segment files and the
// ack log. Callers queue requests; each wake-up takes everything queued, so
// requests that arrived meanwhile share the next write (group commit). Data
// writes are handed to the syncer (syncLoop), which syncs and answers them
// while the committer already writes the next group; acks and drops are
// synced by the committer itself before it deletes anything.
//
// After a failed write or sync the committer also recovers in place: when
// woken by a request or by the recovery backoff's timer, it rolls the
// files back to what was reported durable (recoverIfDue) before it
// processes the queue.
func (s *Spool) run() {
	defer close(s.exited)
	defer close(s.tickets)
	var g groups
	for {
		if wait, ok := s.recoveryWait(); ok {
			t := time.NewTimer(wait)
			select {
			case <-s.wake:
			case <-t.C:
			}
			t.Stop()
		} else {
			<-s.wake
		}
		s.holdWhileSyncing(&g)
		s.qmu.Lock()
		q := s.queue
		s.queue = nil
		closed := s.qclosed
		s.qmu.Unlock()
		s.recoverIfDue()
		s.process(q)
		g.wrote(q)
		if closed {
			return
		}
	}
}

// maxGather bounds how long the committer gathers appends after a sync
// (see holdWhileSyncing).
const maxGather = 2 * time.Millisecond

// groups is what the committer remembers of the groups it wrote, to judge
// how many appends to gather for the next one. Only the committer
// goroutine touches it.
type groups struct {
	last     int           // append calls in the last group written
	wroteAt  time.Time     // when it was handed to the syncer
	syncTook time.Duration // how long the last sync waited for took, about
}

// wrote notes the group just written from q, unless q held only acks.
func (g *groups) wrote(q []*request) {
	n := 0
	for _, r := range q {
		if r.acks == nil {
			n++
		}
	}
	if n > 0 {
		g.last, g.wroteAt = n, time.Now()
	}
}

// holdWhileSyncing keeps queued appends in the queue while the syncer is
// still syncing units written earlier: they could not be synced before that
// sync ends anyway, so waiting for it costs them nothing, and everything
// that arrived meanwhile then goes out in one write and one fdatasync
// instead of a write per wake-up.
//
// Once the syncer is idle, it gathers: the appenders of the group just
// synced (as many as the last group had) are likely to append again soon,
// each while the others are being answered, so it waits for them too, until
// the queue holds as many appends as the last group plus those that
// arrived during its sync, for at most as long as that sync took (and
// maxGather). Otherwise concurrent appenders split into two cohorts, one
// syncing while the other waits, and each append waits out two syncs;
// with one group it waits out one, and the syncs are half as many (with 64
// single-reading HTTP clients: 55 readings per fdatasync instead of 23).
//
// It returns at once when acks are queued (they never wait for data), when
// the spool is closing or has failed, and with NoSync; and, as a lone
// appender's last group had one append, a lone append is written
// immediately. An append therefore waits at most for the one sync in
// progress when it arrived and then one sync's time more.
func (s *Spool) holdWhileSyncing(g *groups) {
	if s.opts.NoSync || s.opts.noHold {
		return
	}
	q := queueWatch{s: s}
	waited := false
	for {
		if _, urgent := q.check(); urgent {
			return
		}
		if s.unsynced.Load() == 0 {
			break
		}
		waited = true
		select {
		case <-s.synced:
		case <-s.wake:
			// More requests: an ack among them ends the hold.
		}
	}
	target := g.last
	if waited {
		g.syncTook = time.Since(g.wroteAt)
		n, _ := q.check()
		target += n
	}
	q.gather(target, min(g.syncTook, maxGather))
}

// queueWatch looks at the queue for the committer while it holds it: only
// the committer takes requests out, so a request it has looked at stays
// where it was, and each check reads only what was queued since the last.
type queueWatch struct {
	s    *Spool
	seen int // requests at the front of the queue already looked at
}

// check returns how many appends are queued, and whether the queue holds a
// request that must not be held for a sync: an ack, or the spool is
// closing or has failed.
func (q *queueWatch) check() (n int, urgent bool) {
	s := q.s
	s.mu.Lock()
	failed := s.failed != nil
	s.mu.Unlock()
	if failed {
		return 0, true
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.qclosed {
		return 0, true
	}
	for _, r := range s.queue[q.seen:] {
		if r.acks != nil {
			return 0, true
		}
	}
	q.seen = len(s.queue)
	return len(s.queue), false
}

// gather keeps appends in the queue until it holds target of them, for at
// most limit, ending early as holdWhileSyncing does.
func (q *queueWatch) gather(target int, limit time.Duration) {
	if n, urgent := q.check(); urgent || n >= target || limit <= 0 {
		return
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case <-q.s.wake:
		}
		if n, urgent := q.check(); urgent || n >= target {
			return
		}
	}
}

func (s *Spool) process(q []*request) {
	var acks, appends []*request
	for _, r := range q {
		if r.acks != nil {
			acks = append(acks, r)
		} else {
			appends = append(appends, r)
		}
	}
	if len(acks) > 0 {
		s.commitAcks(acks)
	}
	for len(appends) > 0 {
		n := s.commitUnit(appends)
		appends = appends[n:]
	}
}

func reply(reqs []*request, err error) {
	for _, r := range reqs {
		if err != nil && r.err == nil {
			r.err = err
		}
		close(r.done)
	}
}

// commitAcks makes a group of Ack calls durable with one ack log record and
// one sync, then applies them and deletes segments they emptied.
func (s *Spool) commitAcks(reqs []*request) {
	s.mu.Lock()
	if err := s.acksRefusedLocked(); err != nil {
		s.mu.Unlock()
		reply(reqs, err)
		return
	}
	var fresh []uint64
	for _, r := range reqs {
		for _, q := range r.acks {
			if q == 0 || q > s.lastSeq {
				r.err = fmt.Errorf("spool: ack of sequence %d, which was never appended (the last appended is %d)", q, s.lastSeq)
				break
			}
		}
		if r.err != nil {
			continue
		}
		for _, q := range r.acks {
			if q > s.floor && !s.acked.contains(q) {
				fresh = append(fresh, q)
			}
		}
	}
	floor := s.floor
	s.mu.Unlock()
	if len(fresh) == 0 {
		reply(reqs, nil)
		return
	}
	spans := spansOf(fresh)
	if err := s.writeAckRecord(floor, spans); err != nil {
		reply(reqs, s.failAckLog(err))
		return
	}
	s.mu.Lock()
	var applyErr error
	for _, sp := range spans {
		for q := sp.lo; q <= sp.hi && applyErr == nil; q++ {
			applyErr = s.markAckedLocked(q)
		}
	}
	s.floor = s.acked.absorbFloor(s.floor)
	doomed := s.reclaimLocked()
	if applyErr != nil {
		// The acks are durable but the counts are not what the disk says:
		// only Open recounts them.
		applyErr = s.failTerminalLocked(applyErr)
	}
	s.mu.Unlock()
	s.removeSegments(doomed)
	if applyErr == nil && s.ackLogSize > s.ackCompactBytes && s.ackLogSize >= s.compactRetryAt {
		s.compactAckLog()
	}
	reply(reqs, applyErr)
}

// markAckedLocked records that seq (durably acknowledged) left the spool.
func (s *Spool) markAckedLocked(seq uint64) error {
	if seq <= s.floor || s.acked.contains(seq) {
		return nil
	}
	s.acked.add(seq, seq)
	g := s.segmentForLocked(seq)
	if g == nil {
		return nil
	}
	if err := s.ensureLoadedLocked(g); err != nil {
		return err
	}
	size := g.recordSize(seq - g.first)
	g.ackedCount++
	g.ackedBytes += size
	s.pending--
	s.pendingBytes -= size
	s.ackedCount++
	return nil
}

// reclaimLocked takes every sealed segment whose records are all gone out of
// the index and returns them for deletion. Their acks must already be durable.
func (s *Spool) reclaimLocked() []*segment {
	var doomed []*segment
	for _, g := range s.segs {
		if g != s.active && g.ackedCount == g.count {
			doomed = append(doomed, g)
		}
	}
	for _, g := range doomed {
		s.forgetLocked(g)
	}
	return doomed
}

// removeSegments deletes the files of segments already out of the index. A
// failure only leaks disk space until the next Open, which deletes fully
// acknowledged segments again, so it is logged rather than returned.
func (s *Spool) removeSegments(doomed []*segment) {
	for _, g := range doomed {
		if err := os.Remove(g.path); err != nil && !os.IsNotExist(err) {
			s.log.Warn("spool: delete acknowledged segment", "file", g.name, "err", err)
		}
	}
}

// writeAckRecord appends one ack record and syncs the ack log.
func (s *Spool) writeAckRecord(floor uint64, spans []span) error {
	rec := appendRecord(nil, kindAcks, floor, encodeSpans(nil, spans))
	if err := s.writeThrough(hookAckWrite, rec, s.ackLog.Write); err != nil {
		return fmt.Errorf("write ack log %s: %w", s.path(ackLogName), err)
	}
	s.ackLogSize += int64(len(rec))
	if err := s.opts.fault(hookAckWritten); err != nil {
		return err
	}
	if !s.opts.NoSync {
		if err := s.syncThrough(hookAckSync, s.ackLog); err != nil {
			return fmt.Errorf("sync ack log %s: %w", s.path(ackLogName), err)
		}
		s.syncs.Add(1)
	}
	s.ackLogDurable = s.ackLogSize
	s.reserveAckLog()
	return nil
}

// compactAckLog replaces the ack log with a single snapshot record. The
// acks are durable either way: a compaction that fails before it replaced
// the log (no room for the new file) leaves the log as it was, to be
// compacted at a later ack; one that fails after makes the spool recover
// in place, which reopens the log.
func (s *Spool) compactAckLog() {
	s.mu.Lock()
	floor := s.floor
	spans := append([]span(nil), s.acked.s...)
	s.mu.Unlock()
	var err error
	if ferr := s.opts.fault(hookAckCompact); ferr != nil {
		err = &snapshotNotInstalled{ferr}
	} else {
		err = s.writeAckSnapshot(floor, spans)
	}
	var early *snapshotNotInstalled
	switch {
	case errors.As(err, &early):
		s.log.Warn("spool: could not compact the ack log; keeping it as it is", "bytes", s.ackLogSize, "err", err)
		// Not again at every ack: once the log has grown by a quarter more.
		s.compactRetryAt = s.ackLogSize + s.ackCompactBytes/4
	case err != nil:
		s.failAckLog(err)
	default:
		s.compactRetryAt = 0
	}
}

// snapshotNotInstalled is a writeAckSnapshot that failed before its rename:
// the ack log is untouched and still open.
type snapshotNotInstalled struct{ err error }

func (e *snapshotNotInstalled) Error() string { return e.err.Error() }
func (e *snapshotNotInstalled) Unwrap() error { return e.err }

// writeAckSnapshot writes floor and spans to a temporary file, syncs it,
// renames it over the ack log and reopens the ack log for appending. A crash
// at any point leaves either the old log or the new one, both complete.
// It fails with a *snapshotNotInstalled before the rename.
func (s *Spool) writeAckSnapshot(floor uint64, spans []span) error {
	tmp := s.path(ackLogTemp)
	rec := appendRecord(nil, kindAcks, floor, encodeSpans(nil, spans))
	early := func(err error) error {
		os.Remove(tmp)
		return &snapshotNotInstalled{err}
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return early(fmt.Errorf("create ack snapshot %s: %w", tmp, err))
	}
	if _, err := f.Write(rec); err != nil {
		f.Close()
		return early(fmt.Errorf("write ack snapshot %s: %w", tmp, err))
	}
	if !s.opts.NoSync {
		if err := fdatasync(f); err != nil {
			f.Close()
			return early(fmt.Errorf("sync ack snapshot %s: %w", tmp, err))
		}
		s.syncs.Add(1)
	}
	if err := f.Close(); err != nil {
		return early(fmt.Errorf("close ack snapshot %s: %w", tmp, err))
	}
	if err := os.Rename(tmp, s.path(ackLogName)); err != nil {
		return early(fmt.Errorf("install ack snapshot: %w", err))
	}
	// From here the log is the snapshot: a failure below leaves the spool
	// to recover in place, which reopens it.
	s.ackLogSize, s.ackLogDurable = int64(len(rec)), int64(len(rec))
	if s.ackLog != nil {
		s.ackLog.Close()
		s.ackLog = nil
	}
	if !s.opts.NoSync {
		if err := syncDir(s.opts.Dir); err != nil {
			return err
		}
	}
	s.ackLog, err = os.OpenFile(s.path(ackLogName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("reopen ack log: %w", err)
	}
	s.ackReservedTo = 0
	s.reserveAckLog()
	return nil
}

// unit is one group commit: records for one segment, written at once.
type unit struct {
	reqs       []*request // to write, in order
	finished   []*request // rejected or cancelled during planning
	bytes      int64
	roll       bool       // write into a new segment
	doomed     []*segment // to delete once the ack log says they are gone
	floorMoved bool       // records were dropped: persist the new floor first
	floor      uint64
	dropped    uint64
	droppedSeg []string
}

// ticket hands a written unit to the syncer, or, with barrier set, asks the
// syncer to signal once everything handed over before it is published.
type ticket struct {
	g       *segment
	reqs    []*request
	offsets []int64
	first   uint64
	n       uint64
	bytes   int64
	barrier chan struct{}
}

// commitUnit plans and writes the longest prefix of reqs that goes into one
// segment, hands it to the syncer, and returns how many requests it
// consumed. Rejected and cancelled requests are answered here; written ones
// by the syncer once durable.
func (s *Spool) commitUnit(reqs []*request) int {
	s.mu.Lock()
	u := unit{roll: s.active == nil}
	lim := s.lim.Load()
	consumed := 0
	for _, r := range reqs {
		if s.failed != nil {
			r.err = s.failed
			u.finished = append(u.finished, r)
			consumed++
			continue
		}
		if err := r.ctx.Err(); err != nil {
			r.err = fmt.Errorf("spool: append cancelled before it was written: %w", err)
			u.finished = append(u.finished, r)
			consumed++
			continue
		}
		used := u.bytes
		if !u.roll {
			used += s.active.written
		}
		if used > 0 && used+r.bytes > lim.segmentBytes {
			if u.bytes > 0 {
				break // this unit is full; the next one rolls
			}
			// A segment is sealed only once all its records are synced, so
			// an older segment is never torn and never dropped or deleted
			// with records still in flight.
			if s.inflightBytes > 0 {
				s.mu.Unlock()
				s.waitSynced()
				s.mu.Lock()
				if s.failed != nil {
					r.err = s.failed
					u.finished = append(u.finished, r)
					consumed++
					continue
				}
			}
			s.sealActiveLocked(&u)
		}
		if u.bytes > 0 && u.bytes+r.bytes > maxUnitBytes {
			break
		}
		if s.diskBytes+s.inflightBytes+u.bytes+r.bytes > lim.MaxBytes {
			if lim.WhenFull == PolicyDropOldest {
				s.dropOldestLocked(&u, r.bytes, lim.MaxBytes)
			}
			if inUse := s.diskBytes + s.inflightBytes + u.bytes; inUse+r.bytes > lim.MaxBytes {
				r.err = fmt.Errorf("%w: a batch of %d records needs %d bytes; %d of %d bytes are in use in %s (%d records pending)",
					ErrFull, len(r.payloads), r.bytes, inUse, lim.MaxBytes, s.opts.Dir, s.pending)
				u.finished = append(u.finished, r)
				consumed++
				continue
			}
		}
		r.first = s.nextSeq
		s.nextSeq += uint64(len(r.payloads))
		u.reqs = append(u.reqs, r)
		u.bytes += r.bytes
		consumed++
	}
	u.floor = s.floor
	s.mu.Unlock()

	reply(u.finished, nil)
	if u.dropped > 0 {
		s.log.Warn("spool: full, dropped oldest unacknowledged records", "cause", string(CauseDropOldest),
			"readings", u.dropped, "segments", u.droppedSeg, "max_bytes", lim.MaxBytes)
	}
	if err := s.writeUnit(&u); err != nil {
		reply(u.reqs, s.fail(err))
	}
	return consumed
}

// sealActiveLocked ends the active segment: the unit being planned goes into
// a new one. A sealed segment that is already fully acknowledged is deleted.
// Nothing of the active segment may be in flight.
func (s *Spool) sealActiveLocked(u *unit) {
	u.roll = true
	old := s.active
	s.active = nil
	if old == nil {
		return
	}
	if old.ackedCount == old.count {
		s.forgetLocked(old)
		u.doomed = append(u.doomed, old)
		return
	}
	s.loaded = append(s.loaded, old)
	for len(s.loaded) > loadedCap {
		victim := s.loaded[0]
		s.loaded = s.loaded[1:]
		if err := victim.unload(); err != nil {
			s.log.Warn("spool: close segment", "file", victim.name, "err", err)
		}
	}
}

// dropOldestLocked drops whole segments, oldest first, until need more bytes
// fit under MaxBytes. Dropped records count as gone: the floor moves past
// them, and the unit persists the new floor before deleting their files.
func (s *Spool) dropOldestLocked(u *unit, need, maxBytes int64) {
	for s.diskBytes+s.inflightBytes+u.bytes+need > maxBytes && len(s.segs) > 0 {
		g := s.segs[0]
		if g == s.active {
			// The active segment holds at most SegmentBytes <= MaxBytes/8
			// and the unit targets it, so it is never the one to drop.
			return
		}
		lost := g.count - g.ackedCount
		s.dropped += lost
		s.pending -= lost
		s.pendingBytes -= g.size - g.ackedBytes
		s.floor = s.acked.absorbFloor(max(s.floor, g.last()))
		s.forgetLocked(g)
		u.doomed = append(u.doomed, g)
		u.floorMoved = true
		u.dropped += lost
		u.droppedSeg = append(u.droppedSeg, g.name)
	}
}

// writeUnit does the unit's I/O: persist a moved floor, delete doomed
// segments, create the new segment if the unit rolls, write the records,
// and hand them to the syncer.
func (s *Spool) writeUnit(u *unit) error {
	if u.floorMoved {
		if err := s.writeAckRecord(u.floor, nil); err != nil {
			// The segments are out of the index already: recovery writes
			// the floor, then counts and deletes them.
			s.lostFloor.readings += u.dropped
			s.lostFloor.doomed = append(s.lostFloor.doomed, u.doomed...)
			return s.failAckLog(err)
		}
		// Counted once the new floor is durable: from then on the
		// records are gone, whatever happens to their files.
		if err := s.addDrops(Drops{DropOldest: u.dropped}); err != nil {
			s.log.Error("spool: could not keep the count of dropped readings", "err", err)
		}
	}
	s.removeSegments(u.doomed)
	if len(u.reqs) == 0 {
		return nil
	}
	first := u.reqs[0].first
	g := s.active
	if u.roll {
		name := segmentName(first)
		path := s.path(name)
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			return fmt.Errorf("create segment: %w", err)
		}
		if !s.opts.NoSync {
			if err := syncDir(s.opts.Dir); err != nil {
				f.Close()
				os.Remove(path)
				return err
			}
		}
		g = &segment{name: name, path: path, first: first, f: f, offsets: []int64{}}
		// Listed (and protected as the active segment) before it holds a
		// published record; readers see records only once published.
		s.mu.Lock()
		s.segs = append(s.segs, g)
		s.active = g
		s.mu.Unlock()
	}

	base := g.written
	buf := s.buf[:0]
	t := &ticket{g: g, reqs: u.reqs, first: first, offsets: make([]int64, 0, len(u.reqs))}
	for _, r := range u.reqs {
		last := len(r.payloads) - 1
		for i, p := range r.payloads {
			kind := byte(kindData)
			if i == last {
				kind = kindDataEnd
			}
			t.offsets = append(t.offsets, base+int64(len(buf)))
			buf = appendRecord(buf, kind, r.first+uint64(i), p)
			t.n++
		}
	}
	t.bytes = int64(len(buf))
	if cap(buf) <= 4*maxUnitBytes {
		s.buf = buf
	} else {
		s.buf = nil // one huge batch should not pin its buffer forever
	}
	err := s.writeThrough(hookSegmentWrite, buf, func(b []byte) (int, error) { return g.f.WriteAt(b, base) })
	if err != nil {
		return fmt.Errorf("write %d bytes to segment %s at offset %d: %w", len(buf), g.path, base, err)
	}
	g.written += t.bytes
	if err := s.opts.fault(hookSegmentWritten); err != nil {
		return err
	}
	s.mu.Lock()
	s.inflightBytes += t.bytes
	s.mu.Unlock()
	s.unsynced.Add(1)
	s.tickets <- t
	return nil
}

// waitSynced returns once the syncer has published (or failed) every unit
// handed to it so far.
func (s *Spool) waitSynced() {
	t := &ticket{barrier: make(chan struct{})}
	s.tickets <- t
	<-t.barrier
}

// syncLoop is the syncer: it makes written units durable. While it syncs,
// the committer writes the next unit, so one fdatasync covers every unit
// written before it started and the disk never waits for the committer.
func (s *Spool) syncLoop() {
	defer close(s.syncerExited)
	for t := range s.tickets {
		batch := []*ticket{t}
	drain:
		for {
			select {
			case t2, ok := <-s.tickets:
				if !ok {
					break drain
				}
				batch = append(batch, t2)
			default:
				break drain
			}
		}
		s.syncAndPublish(batch)
	}
}

// syncAndPublish syncs the files the batch's units went to, publishes the
// records to readers in order, and answers their appenders.
func (s *Spool) syncAndPublish(batch []*ticket) {
	s.mu.Lock()
	err := s.failed // units written after a failure are not trusted
	s.mu.Unlock()
	var synced *segment
	data := 0
	for _, t := range batch {
		if t.barrier != nil {
			continue
		}
		data++
		if err == nil && !s.opts.NoSync && t.g != synced {
			if serr := s.syncThrough(hookSegmentSync, t.g.f); serr != nil {
				err = s.fail(fmt.Errorf("sync segment %s: %w", t.g.path, serr))
			} else {
				s.syncs.Add(1)
				synced = t.g
			}
		}
	}
	if data > 0 {
		// The committer may write the next unit while these are
		// published.
		s.unsynced.Add(-int64(data))
		select {
		case s.synced <- struct{}{}:
		default:
		}
		s.mu.Lock()
		for _, t := range batch {
			if t.barrier != nil {
				continue
			}
			s.inflightBytes -= t.bytes
			if err != nil {
				continue
			}
			g := t.g
			g.offsets = append(g.offsets, t.offsets...)
			g.count += t.n
			g.size += t.bytes
			s.diskBytes += t.bytes
			s.pending += t.n
			s.pendingBytes += t.bytes
			s.appended += t.n
			s.lastSeq = t.first + t.n - 1
		}
		if err == nil {
			close(s.notify)
			s.notify = make(chan struct{})
			s.appendSucceededLocked()
		}
		s.mu.Unlock()
		if err == nil {
			s.commits.Add(1)
		}
	}
	for _, t := range batch {
		if t.barrier != nil {
			close(t.barrier)
			continue
		}
		reply(t.reqs, err)
	}
}
