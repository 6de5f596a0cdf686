package spool

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// A failed write or sync (a full disk, an I/O error) does not end the
// spool's life. The failure makes the spool refuse appends and acks
// (failLocked); the committer then rolls the files back to what the spool
// last reported durable, the way Open's recovery would, and resumes
// (recoverInPlace). It tries at once, then with backoff (recoveryRetry),
// whenever a request arrives or the backoff's timer fires, so a full disk
// that gets space back is written again within seconds, with no caller
// doing anything. Readers are not affected: Next only ever returns
// published records.

// ackReserveBytes is how much space the ack log keeps allocated past its
// end (fallocate, keeping its size), some 2,000 ack records: acks are
// what frees a full disk's space (segments are deleted once acknowledged),
// so they should still go through when appends no longer do.
const ackReserveBytes = 64 << 10

// reserveAckLog allocates ackReserveBytes past the ack log's end when less
// than half of that is left. A failure (a full disk, a file system without
// fallocate) only costs the reserve.
func (s *Spool) reserveAckLog() {
	if s.ackLog == nil || s.ackReservedTo-s.ackLogSize >= ackReserveBytes/2 {
		return
	}
	if err := unix.Fallocate(int(s.ackLog.Fd()), unix.FALLOC_FL_KEEP_SIZE, s.ackLogSize, ackReserveBytes); err != nil {
		s.log.Debug("spool: could not reserve space for the ack log", "err", err)
		return
	}
	s.ackReservedTo = s.ackLogSize + ackReserveBytes
}

// writeFailure is the error Append and Ack return while the spool recovers
// from a failed write or sync.
type writeFailure struct {
	dir     string
	noSpace bool
	err     error
}

func (e *writeFailure) Error() string {
	if e.noSpace {
		return fmt.Sprintf("spool: the file system holding %s is full; refusing writes until space comes back (the spool retries by itself): %v", e.dir, e.err)
	}
	return fmt.Sprintf("spool: a write to %s failed; refusing writes until the spool has recovered (it retries by itself): %v", e.dir, e.err)
}

// Unwrap makes a full disk ErrFull too, which inputs answer with 507.
func (e *writeFailure) Unwrap() []error {
	if e.noSpace {
		return []error{ErrWriteFailed, ErrNoSpace, ErrFull, e.err}
	}
	return []error{ErrWriteFailed, e.err}
}

// isNoSpace reports whether err says the file system is out of space.
func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// writeThrough writes b with write, through the fault hook at point. An
// error from the hook fails the write as a full disk does: only the first
// half of b is written.
func (s *Spool) writeThrough(point string, b []byte, write func([]byte) (int, error)) error {
	if err := s.opts.fault(point); err != nil {
		write(b[:len(b)/2])
		return err
	}
	_, err := write(b)
	return err
}

// syncThrough fdatasyncs f, through the fault hook at point: an error from
// the hook fails the sync without syncing.
func (s *Spool) syncThrough(point string, f *os.File) error {
	if err := s.opts.fault(point); err != nil {
		return err
	}
	return fdatasync(f)
}

// recoveryWait returns how long the committer may sleep before it should
// try to recover, and false when there is nothing to recover.
func (s *Spool) recoveryWait() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == nil || s.terminal {
		return 0, false
	}
	if s.freshOutage {
		return 0, true
	}
	return max(time.Until(s.nextRecovery), 0), true
}

// recoverIfDue runs recoverInPlace when the spool refuses writes and the
// backoff allows another attempt.
func (s *Spool) recoverIfDue() {
	s.mu.Lock()
	failed, terminal, fresh := s.failed, s.terminal, s.freshOutage
	s.freshOutage = false
	s.mu.Unlock()
	if failed == nil || terminal {
		return
	}
	if fresh {
		s.retry.Reset()
		s.nextRecovery = time.Time{}
	}
	now := time.Now()
	if now.Before(s.nextRecovery) {
		return
	}
	s.nextRecovery = now.Add(s.retry.Next())
	ackLogOK, err := s.recoverInPlace()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recoveries++
	var broken *inconsistency
	switch {
	case errors.As(err, &broken):
		s.failTerminalLocked(err)
	case err != nil:
		s.failed = &writeFailure{dir: s.opts.Dir, noSpace: isNoSpace(err), err: err}
		s.ackLogFailed = !ackLogOK
		s.log.Debug("spool: recovery after a write failure failed; will retry", "err", err,
			"attempt", s.recoveries, "retry_at", s.nextRecovery)
	default:
		s.failed, s.ackLogFailed = nil, false
		s.log.Debug("spool: recovered after a write failure; accepting writes", "attempt", s.recoveries)
	}
}

// inconsistency is a recovery in place that found the files differing
// from what the spool reported durable: only Open's recovery, which sets
// damage aside and counts it, may go on from there.
type inconsistency struct{ err error }

func (e *inconsistency) Error() string { return e.err.Error() }
func (e *inconsistency) Unwrap() error { return e.err }

func inconsistent(format string, args ...any) error {
	return &inconsistency{fmt.Errorf(format, args...)}
}

// recoverInPlace brings the files back to what the spool last reported
// durable and reopens them, as Open's recovery would for a torn tail:
//
//   - it waits for the syncer to drain: the units it still held were
//     refused, since the failure, and nothing is in flight any more;
//   - if the ack log failed, it is cut back to its size at its last
//     successful sync (a record whose write or sync failed was never
//     reported durable, and a part of one would be damage in the middle of
//     the log once more records follow it), synced, and reopened; a floor
//     that drop_oldest moved while the ack log refused it is written, then
//     its readings are counted and its segments deleted;
//   - the active segment is cut back to its published size (records that
//     were written but never reported durable: their appenders got an
//     error), synced, reopened, and its records are verified again;
//   - the sequence numbers of those records are given out again, as Open
//     does for a torn tail: nobody saw them.
//
// It returns an *inconsistency when the files hold less than the spool
// reported durable, any other error when a step failed (the next attempt
// starts again from the beginning: every step can be repeated), and
// whether the ack log takes records again.
func (s *Spool) recoverInPlace() (ackLogOK bool, err error) {
	s.waitSynced()
	s.mu.Lock()
	ackLogOK = !s.ackLogFailed
	floor := s.floor
	s.mu.Unlock()
	if !ackLogOK {
		if err := s.reopenAckLog(); err != nil {
			return false, err
		}
		if lf := &s.lostFloor; len(lf.doomed) > 0 {
			if err := s.writeAckRecord(floor, nil); err != nil {
				return false, err
			}
			if err := s.addDrops(Drops{DropOldest: lf.readings}); err != nil {
				s.log.Error("spool: could not keep the count of dropped readings", "err", err)
			}
			s.removeSegments(lf.doomed)
			lf.readings, lf.doomed = 0, nil
		}
	}
	if err := s.reopenActive(); err != nil {
		return true, err
	}
	s.mu.Lock()
	s.nextSeq = s.lastSeq + 1
	s.mu.Unlock()
	return true, nil
}

// reopenAckLog cuts the ack log back to its last synced size and reopens it.
func (s *Spool) reopenAckLog() error {
	path := s.path(ackLogName)
	if s.ackLog != nil {
		s.ackLog.Close() // it failed already; what matters is what is on disk
		s.ackLog = nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("reopen ack log %s: %w", path, err)
	}
	keep := func() {
		s.ackLog, s.ackLogSize = f, s.ackLogDurable
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat ack log %s: %w", path, err)
	}
	switch size := info.Size(); {
	case size < s.ackLogDurable:
		f.Close()
		return inconsistent("ack log %s is %d bytes, %d were synced", path, size, s.ackLogDurable)
	case size == s.ackLogDurable:
		keep()
		return nil
	}
	s.ackReservedTo = 0 // a cut frees what lies past the end
	if err := f.Truncate(s.ackLogDurable); err != nil {
		f.Close()
		return fmt.Errorf("cut ack log %s back to %d bytes: %w", path, s.ackLogDurable, err)
	}
	if !s.opts.NoSync {
		if err := fdatasync(f); err != nil {
			f.Close()
			return fmt.Errorf("sync ack log %s after cutting it: %w", path, err)
		}
		s.syncs.Add(1)
	}
	keep()
	s.reserveAckLog()
	return nil
}

// reopenActive cuts the active segment back to its published records,
// reopens it and verifies them; with no active segment, it removes a
// segment file that a failed roll may have left where the next one goes.
func (s *Spool) reopenActive() error {
	s.mu.Lock()
	g := s.active
	next := s.lastSeq + 1
	if g != nil && g.count == 0 && g.first != next {
		// Created for records that were never published and named after
		// them: the next append starts a new segment.
		s.forgetLocked(g)
		s.mu.Unlock()
		s.removeSegments([]*segment{g})
		return nil
	}
	s.mu.Unlock()
	if g == nil {
		if err := os.Remove(s.path(segmentName(next))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove segment %s left by a failed write: %w", segmentName(next), err)
		}
		return nil
	}
	f, err := os.OpenFile(g.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("reopen segment %s: %w", g.path, err)
	}
	if err := s.cutSegment(f, g); err != nil {
		f.Close()
		return err
	}
	s.mu.Lock()
	if g.f != nil {
		g.f.Close() // it failed already
	}
	g.f = f
	g.written = g.size
	s.mu.Unlock()
	return nil
}

// cutSegment cuts f, the active segment g's file, back to g's published
// size, syncs it and verifies the records it keeps, as Open's scan does.
// g's published fields only change in the syncer, which is idle.
func (s *Spool) cutSegment(f *os.File, g *segment) error {
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat segment %s: %w", g.path, err)
	}
	if info.Size() < g.size {
		return inconsistent("segment %s is %d bytes, %d were synced", g.path, info.Size(), g.size)
	}
	if info.Size() > g.size {
		if err := f.Truncate(g.size); err != nil {
			return fmt.Errorf("cut segment %s back to %d bytes: %w", g.path, g.size, err)
		}
		if !s.opts.NoSync {
			if err := fdatasync(f); err != nil {
				return fmt.Errorf("sync segment %s after cutting it: %w", g.path, err)
			}
			s.syncs.Add(1)
		}
	}
	sc, err := scanSegment(f, g.size, g.first)
	if err != nil {
		return fmt.Errorf("verify segment %s: %w", g.path, err)
	}
	var kept uint64
	for _, r := range sc.runs {
		kept += uint64(len(r.offsets))
	}
	if len(sc.bad) > 0 || len(sc.runs) > 1 || kept != g.count {
		reason := fmt.Sprintf("%d damaged regions", len(sc.bad))
		if len(sc.bad) > 0 {
			reason = fmt.Sprintf("at offset %d: %s", sc.bad[0].start, sc.bad[0].reason)
		}
		return inconsistent("segment %s no longer holds the %d records synced in it (%d verify; %s)", g.path, g.count, kept, reason)
	}
	return nil
}
