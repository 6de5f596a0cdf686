package spool

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cellgate/cellgate/internal/backoff"
	"github.com/cellgate/cellgate/internal/testutil"
)

// fullDisk is a fault hook standing in for a file system that fills up and
// gets space back: while full is set, the writes and syncs at its points
// fail with ENOSPC (a write after taking half of its bytes), as on a real
// full disk. It is not a file system: the files stay on the test's
// temporary directory, and space "returns" when the test says so.
type fullDisk struct {
	points map[string]bool // set before Open, read-only after
	full   atomic.Bool
	faults atomic.Int64
}

func newFullDisk(points ...string) *fullDisk {
	d := &fullDisk{points: map[string]bool{}}
	for _, p := range points {
		d.points[p] = true
	}
	return d
}

func (d *fullDisk) hook(point string) error {
	if d.full.Load() && d.points[point] {
		d.faults.Add(1)
		return syscall.ENOSPC
	}
	return nil
}

// fastRetry makes the spool retry its recovery within milliseconds.
var fastRetry = backoff.Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 2}

// diskLedger is what the spool reported: the payload of every seq Append
// returned, and the seqs Ack reported durable.
type diskLedger struct {
	payloads map[uint64][]byte
	acked    map[uint64]bool
	appended uint64
}

// record checks seqs are new and consecutive, and keeps them.
func (l *diskLedger) record(t *testing.T, seqs []uint64, batch [][]byte) {
	t.Helper()
	for i, q := range seqs {
		if _, dup := l.payloads[q]; dup {
			t.Fatalf("Append returned seq %d a second time", q)
		}
		if i > 0 && q != seqs[i-1]+1 {
			t.Fatalf("Append returned seqs %v: not consecutive", seqs)
		}
		l.payloads[q] = batch[i]
	}
	l.appended += uint64(len(seqs))
}

func (l *diskLedger) pending() []uint64 {
	var out []uint64
	for q := range l.payloads {
		if !l.acked[q] {
			out = append(out, q)
		}
	}
	slices.Sort(out)
	return out
}

// check compares the spool with the ledger: Stats, and every pending
// record with its exact payload; and with the directory unless the disk is
// full (the bytes a failed write took stay until recovery cuts them).
func (l *diskLedger) check(t *testing.T, s *Spool, since, acked uint64, full bool) {
	t.Helper()
	want := l.pending()
	st := s.Stats()
	if st.Pending != uint64(len(want)) || st.Appended != since || st.Acked != acked {
		t.Fatalf("Stats pending %d appended %d acked %d; want %d, %d, %d", st.Pending, st.Appended, st.Acked, len(want), since, acked)
	}
	if !full {
		checkDiskStats(t, s)
	}
	checkRecords(t, readPending(t, s), l.payloads, want)
}

// TestDiskFullRecoversInPlace: when the file system fills, appends fail
// with ErrNoSpace (which is ErrFull: 507 at the inputs) and store nothing,
// acks fail with ErrWriteFailed and apply nothing, and reading goes on;
// once space returns the spool resumes by itself, without a reopen: the
// refused acks are retried and succeed, appends succeed with fresh
// sequence numbers, Stats and the directory agree, and a reopen finds
// exactly what was reported, with no damage (the parts of writes the full
// disk took were cut). One ERROR starts the outage, one INFO ends it.
func TestDiskFullRecoversInPlace(t *testing.T) {
	cases := []struct {
		name string
		// points fail while the disk is full.
		points []string
		// acksFail: acks fail too (else the ack log has room left).
		acksFail bool
	}{
		{"EveryWriteFails", []string{hookSegmentWrite, hookAckWrite}, true},
		{"SyncsFailAfterDelayedAllocation", []string{hookSegmentSync, hookAckSync}, true},
		{"AckLogStillHasRoom", []string{hookSegmentWrite}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			disk := newFullDisk(c.points...)
			log, logs := testutil.Logger(t)
			s, err := Open(Options{Dir: dir, SegmentBytes: 4 << 10, Logger: log, hook: disk.hook, retry: fastRetry})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			l := &diskLedger{payloads: map[uint64][]byte{}, acked: map[uint64]bool{}}
			var batches [][]uint64
			appendBatch := func(tag string, n int) ([]uint64, error) {
				var batch [][]byte
				for i := range n {
					batch = append(batch, payloadOf(tag, i))
				}
				seqs, err := s.Append(context.Background(), batch...)
				if err == nil {
					l.record(t, seqs, batch)
					batches = append(batches, seqs)
				}
				return seqs, err
			}
			var ackedCount uint64
			ack := func(seqs []uint64) error {
				err := s.Ack(seqs...)
				if err == nil {
					for _, q := range seqs {
						l.acked[q] = true
					}
					ackedCount += uint64(len(seqs))
				}
				return err
			}

			// Before: several segments' worth, the first batches acked.
			for b := range 60 {
				if _, err := appendBatch(fmt.Sprint("before", b), 1+b%4); err != nil {
					t.Fatal(err)
				}
			}
			for _, seqs := range batches[:10] {
				if err := ack(seqs); err != nil {
					t.Fatal(err)
				}
			}
			l.check(t, s, l.appended, ackedCount, false)

			// Full: nothing is stored, acks either fail whole or succeed.
			disk.full.Store(true)
			for b := range 20 {
				_, err := s.Append(context.Background(), payloadOf(fmt.Sprint("refused", b), 0), payloadOf("refused", 1))
				if !errors.Is(err, ErrFull) || !errors.Is(err, ErrNoSpace) || !errors.Is(err, ErrWriteFailed) || !strings.Contains(err.Error(), "no space left on device") {
					t.Fatalf("append %d on a full disk: %v; want ErrFull, ErrNoSpace and ErrWriteFailed with the cause", b, err)
				}
			}
			var refusedAcks [][]uint64
			for _, seqs := range batches[10:20] {
				err := ack(seqs)
				switch {
				case err == nil && c.acksFail:
					t.Fatalf("ack of %v succeeded on a full disk", seqs)
				case err != nil && !c.acksFail:
					t.Fatalf("ack of %v failed although the ack log has room: %v", seqs, err)
				case err != nil && !errors.Is(err, ErrWriteFailed):
					t.Fatalf("ack of %v on a full disk: %v; want ErrWriteFailed", seqs, err)
				case err != nil:
					refusedAcks = append(refusedAcks, seqs)
				}
			}
			l.check(t, s, l.appended, ackedCount, true) // reading goes on; nothing moved
			if disk.faults.Load() == 0 {
				t.Fatal("the full disk injected no fault")
			}

			// Space returns. With no caller doing anything, the spool's
			// own retry cuts what the failed writes left: a crash now
			// leaves no damage.
			disk.full.Store(false)
			// A write that read the hook just before space returned may
			// still fail (and leave a torn ack record) after the segments
			// look right: wait for the spool to say it has recovered too.
			testutil.Eventually(t, waitLimit, "recovery to cut the bytes the failed writes left", func() bool {
				s.mu.Lock()
				failed := s.failed
				s.mu.Unlock()
				bytes, files := diskUsage(t, dir)
				st := s.Stats()
				return failed == nil && bytes == st.DiskBytes && files == st.Segments
			})
			if rep := crashCopy(t, dir).Recovery(); !rep.Clean() {
				t.Fatalf("a crash once space returned would find damage: %v", rep.Damage)
			}

			// Appends and the refused acks go through again, with no
			// reopen.
			testutil.Eventually(t, waitLimit, "an append to succeed once space returned", func() bool {
				_, err := appendBatch("after", 3)
				return err == nil
			})
			for _, seqs := range refusedAcks {
				if err := ack(seqs); err != nil {
					t.Fatalf("retried ack of %v after space returned: %v", seqs, err)
				}
			}
			for b := range 30 {
				if _, err := appendBatch(fmt.Sprint("later", b), 1+b%3); err != nil {
					t.Fatal(err)
				}
			}
			for _, seqs := range batches[20:40] {
				if err := ack(seqs); err != nil {
					t.Fatal(err)
				}
			}
			l.check(t, s, l.appended, ackedCount, false)

			out := logs.String()
			if n := strings.Count(out, "level=ERROR"); n != 1 || !strings.Contains(out, "no_space=true") {
				t.Fatalf("%d ERROR lines, want the outage's one, with no_space=true:\n%s", n, out)
			}
			if n := strings.Count(out, `msg="spool: accepting readings again`); n != 1 {
				t.Fatalf("%d INFO lines ending the outage, want 1:\n%s", n, out)
			}

			// A reopen finds exactly what was reported, and no damage.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openT(t, Options{Dir: dir, SegmentBytes: 4 << 10})
			if rep := s.Recovery(); !rep.Clean() {
				t.Fatalf("reopen after the full disk found damage: %v", rep.Damage)
			}
			l.check(t, s, 0, 0, false)
			seqs := mustAppend(t, s, []byte("next"))
			if top := slices.Max(slices.Collect(maps.Keys(l.payloads))); seqs[0] <= top {
				t.Fatalf("after the reopen Append gave seq %d, not above %d", seqs[0], top)
			}
		})
	}
}

// TestDropOldestOnAFullDiskCountsOnceTheFloorIsDurable: under drop_oldest,
// an append that drops segments while the ack log cannot take the new
// floor fails; once space returns, recovery writes the floor, counts the
// readings dropped and deletes their segments, and a reopen agrees.
func TestDropOldestOnAFullDiskCountsOnceTheFloorIsDurable(t *testing.T) {
	dir := t.TempDir()
	disk := newFullDisk(hookAckWrite, hookSegmentWrite)
	opts := Options{Dir: dir, MaxBytes: 16 << 10, WhenFull: PolicyDropOldest, Logger: testLogger(t), hook: disk.hook, retry: fastRetry}
	s := openT(t, opts)
	n := 0
	for s.Stats().DiskBytes+2*(headerSize+int64(len(payloadOf("x", 0)))) <= opts.MaxBytes {
		mustAppend(t, s, payloadOf("x", n))
		n++
	}
	before := s.Stats()
	disk.full.Store(true)
	if _, err := s.Append(context.Background(), payloadOf("y", 0), payloadOf("y", 1)); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("append that drops on a full disk: %v", err)
	}
	if st := s.Stats(); st.Drops.DropOldest != 0 {
		t.Fatalf("counted %d drops before the floor was durable", st.Drops.DropOldest)
	}
	disk.full.Store(false)
	testutil.Eventually(t, waitLimit, "an append to succeed once space returned", func() bool {
		_, err := s.Append(context.Background(), payloadOf("z", 0))
		return err == nil
	})
	st := s.Stats()
	if st.Drops.DropOldest == 0 || st.Drops.DropOldest != st.Dropped || st.Pending+st.Dropped != before.Pending+1 {
		t.Fatalf("after space returned: %+v (before: %+v)", st, before)
	}
	checkDiskStats(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, Options{Dir: dir, MaxBytes: opts.MaxBytes, WhenFull: PolicyDropOldest})
	if again := s.Stats(); again.Pending != st.Pending || again.Drops != st.Drops || !s.Recovery().Clean() {
		t.Fatalf("reopened: %+v, %v; before the reopen %+v", again, s.Recovery().Damage, st)
	}
}

// TestWriteErrorRecoversInPlace: a write failing for another reason than
// space (the segment's file was closed under the spool) fails that append
// with ErrWriteFailed, not ErrFull; the spool reopens its files by itself
// and the next append succeeds.
func TestWriteErrorRecoversInPlace(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, Logger: discardLogger(), retry: fastRetry})
	mustAppend(t, s, []byte("kept"))
	s.mu.Lock()
	s.active.f.Close()
	s.mu.Unlock()
	_, err := s.Append(context.Background(), []byte("lost"))
	if !errors.Is(err, ErrWriteFailed) || errors.Is(err, ErrFull) || !errors.Is(err, os.ErrClosed) {
		t.Fatalf("append after a write error: %v; want ErrWriteFailed with the cause, not ErrFull", err)
	}
	testutil.Eventually(t, waitLimit, "an append to succeed after the write error", func() bool {
		_, err := s.Append(context.Background(), []byte("again"))
		return err == nil
	})
	mustAck(t, s, 1)
	if err := s.Close(); err != nil {
		t.Fatalf("close after recovering in place: %v", err)
	}
	s = openT(t, Options{Dir: dir})
	if recs := readPending(t, s); len(recs) != 1 || string(recs[0].Payload) != "again" || recs[0].Seq != 2 || !s.Recovery().Clean() {
		t.Fatalf("after reopening: %+v, %v", recs, s.Recovery().Damage)
	}
}

// TestLostSyncedBytesNeedAReopen: a recovery in place that finds records
// it synced gone from the active segment cannot mend that: the spool
// refuses appends and acks for good, with an error that is not
// ErrWriteFailed (so callers stop retrying) and says to reopen, and
// Open's recovery does the rest.
func TestLostSyncedBytesNeedAReopen(t *testing.T) {
	dir := t.TempDir()
	disk := newFullDisk(hookSegmentWrite)
	s := openT(t, Options{Dir: dir, Logger: discardLogger(), hook: disk.hook, retry: fastRetry})
	mustAppend(t, s, []byte("one"), []byte("two")) // 49 bytes
	mustAppend(t, s, []byte("three"))
	s.mu.Lock()
	path := s.active.path
	s.mu.Unlock()
	if err := os.Truncate(path, 49); err != nil { // the last record's synced bytes are gone
		t.Fatal(err)
	}
	disk.full.Store(true)
	if _, err := s.Append(context.Background(), []byte("four")); !errors.Is(err, ErrWriteFailed) {
		t.Fatalf("append on a full disk: %v", err)
	}
	disk.full.Store(false)
	var err error
	testutil.Eventually(t, waitLimit, "recovery to give up", func() bool {
		_, err = s.Append(context.Background(), []byte("five"))
		return err != nil && !errors.Is(err, ErrWriteFailed)
	})
	if !strings.Contains(err.Error(), "reopen it to recover") || !strings.Contains(err.Error(), "synced") {
		t.Fatalf("append after synced bytes were lost: %v", err)
	}
	if err := s.Ack(1); err == nil || errors.Is(err, ErrWriteFailed) {
		t.Fatalf("ack after synced bytes were lost: %v", err)
	}
	s.Close()
	s = openT(t, Options{Dir: dir})
	if got := s.Stats().Pending; got != 2 {
		t.Fatalf("reopened: %d pending, want the two records of the batch still whole", got)
	}
}

// TestAckLogCompactionFailureIsNotFatal: a compaction that cannot write
// its new file (the disk is full) leaves the ack log as it was; the ack is
// reported durable, the spool goes on, and the log is compacted once
// space returns.
func TestAckLogCompactionFailureIsNotFatal(t *testing.T) {
	dir := t.TempDir()
	disk := newFullDisk(hookAckCompact)
	s := openT(t, Options{Dir: dir, hook: disk.hook, retry: fastRetry})
	s.ackCompactBytes = 200
	_, seqs := appendEach(t, s, "c", 60, nil)
	disk.full.Store(true)
	for _, q := range seqs[:30] {
		mustAck(t, s, q)
	}
	logSize := func() int64 {
		info, err := os.Stat(filepath.Join(dir, ackLogName))
		if err != nil {
			t.Fatal(err)
		}
		return info.Size()
	}
	if disk.faults.Load() == 0 || logSize() <= 200 {
		t.Fatalf("no compaction was attempted and refused (%d faults, log %d bytes)", disk.faults.Load(), logSize())
	}
	if _, err := os.Stat(filepath.Join(dir, ackLogTemp)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed compaction left %s: %v", ackLogTemp, err)
	}
	mustAppend(t, s, []byte("still appending"))
	disk.full.Store(false)
	for _, q := range seqs[30:] {
		mustAck(t, s, q)
	}
	if n := logSize(); n > 200+100 {
		t.Fatalf("ack log is %d bytes once space returned; it was not compacted", n)
	}
	s.Close()
	s = openT(t, Options{Dir: dir})
	if recs := readPending(t, s); len(recs) != 1 || string(recs[0].Payload) != "still appending" {
		t.Fatalf("reopened: %+v", recs)
	}
}

// crashCopy copies the spool directory dir as a crash would leave it (the
// spool is still open) and opens the copy.
func crashCopy(t *testing.T, dir string) *Spool {
	t.Helper()
	cp := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cp, e.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return openT(t, Options{Dir: cp, Logger: discardLogger()})
}

// TestAckLogKeepsRoomForAcks: the ack log keeps space allocated past its
// end, after Open, after acks and after a compaction, so that acks, which
// free segments, still go through on a file system that appends filled.
func TestAckLogKeepsRoomForAcks(t *testing.T) {
	dir := t.TempDir()
	probe, err := os.Create(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	ferr := unix.Fallocate(int(probe.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, 4096)
	probe.Close()
	os.Remove(probe.Name())
	if ferr != nil {
		t.Skipf("the file system of %s cannot reserve space: %v", dir, ferr)
	}
	s := openT(t, Options{Dir: dir})
	s.ackCompactBytes = 2000
	room := func(when string) {
		t.Helper()
		info, err := os.Stat(filepath.Join(dir, ackLogName))
		if err != nil {
			t.Fatal(err)
		}
		allocated := info.Sys().(*syscall.Stat_t).Blocks * 512
		if allocated < info.Size()+ackReserveBytes/2 {
			t.Fatalf("%s: the ack log is %d bytes with %d allocated; want at least %d more", when, info.Size(), allocated, ackReserveBytes/2)
		}
	}
	room("after Open")
	_, seqs := appendEach(t, s, "r", 200, nil)
	for i, q := range seqs {
		mustAck(t, s, q)
		if i == 10 {
			room("after acks")
		}
	}
	if s.Stats().Pending != 0 {
		t.Fatal("not everything was acked")
	}
	room("after compactions")
}
