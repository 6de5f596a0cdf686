package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		os.Exit(crashChild(dir))
	}
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait in these tests. It only matters when
// something is broken, so it is generous for a slow, noisy machine.
const waitLimit = 30 * time.Second

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func openT(t testing.TB, opts Options) *Spool {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", opts.Dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustAppend(t testing.TB, s *Spool, payloads ...[]byte) []uint64 {
	t.Helper()
	seqs, err := s.Append(context.Background(), payloads...)
	if err != nil {
		t.Fatalf("Append(%d payloads): %v", len(payloads), err)
	}
	if len(seqs) != len(payloads) {
		t.Fatalf("Append(%d payloads) returned %d seqs", len(payloads), len(seqs))
	}
	return seqs
}

func mustAck(t testing.TB, s *Spool, seqs ...uint64) {
	t.Helper()
	if err := s.Ack(seqs...); err != nil {
		t.Fatalf("Ack(%v): %v", seqs, err)
	}
}

// readPending reads every pending record, from the oldest, with Next.
func readPending(t testing.TB, s *Spool) []Record {
	t.Helper()
	want := s.Stats().Pending
	var out []Record
	var after uint64
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for uint64(len(out)) < want {
		recs, err := s.Next(ctx, after, 1000, 0)
		if err != nil {
			t.Fatalf("Next(after %d) with %d of %d pending read: %v", after, len(out), want, err)
		}
		out = append(out, recs...)
		after = recs[len(recs)-1].Seq
	}
	return out
}

func payloadOf(tag string, i int) []byte {
	return fmt.Appendf(nil, `{"id":"%s-%d","sensor":"t1","value":%d.5,"unit":"C"}`, tag, i, i)
}

// appendEach appends payloadOf(tag, i) for i from 0 to n-1, one Append
// each, and calls check (unless nil) with i after each. It returns the
// payload stored under each seq, and the seqs in append order.
func appendEach(t testing.TB, s *Spool, tag string, n int, check func(i int)) (map[uint64][]byte, []uint64) {
	t.Helper()
	want := map[uint64][]byte{}
	var seqs []uint64
	for i := 0; i < n; i++ {
		p := payloadOf(tag, i)
		q := mustAppend(t, s, p)[0]
		want[q] = p
		seqs = append(seqs, q)
		if check != nil {
			check(i)
		}
	}
	return want, seqs
}

func seqsOf(recs []Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}

// checkRecords compares what Next returned with the payloads that were
// appended under those sequence numbers, and checks the order.
func checkRecords(t testing.TB, got []Record, want map[uint64][]byte, wantSeqs []uint64) {
	t.Helper()
	if !slices.Equal(seqsOf(got), wantSeqs) {
		t.Fatalf("records: got seqs %v, want %v", seqsOf(got), wantSeqs)
	}
	for _, r := range got {
		if !bytes.Equal(r.Payload, want[r.Seq]) {
			t.Fatalf("record %d: got payload %q, want %q", r.Seq, r.Payload, want[r.Seq])
		}
	}
}

// segmentBytes sums the sizes of the segment files in dir. Files deleted
// while it looks are skipped, so it may run concurrently with the spool.
func segmentBytes(dir string) (int64, int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	var total int64
	n := 0
	for _, e := range entries {
		if _, ok := parseSegmentName(e.Name()); ok {
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return 0, 0, err
			}
			total += info.Size()
			n++
		}
	}
	return total, n, nil
}

// diskUsage is segmentBytes for the test goroutine.
func diskUsage(t testing.TB, dir string) (int64, int) {
	t.Helper()
	total, n, err := segmentBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	return total, n
}

func checkDiskStats(t testing.TB, s *Spool) {
	t.Helper()
	st := s.Stats()
	bytes, files := diskUsage(t, s.opts.Dir)
	if st.DiskBytes != bytes || st.Segments != files {
		t.Fatalf("Stats says %d bytes in %d segments, the directory holds %d bytes in %d segment files",
			st.DiskBytes, st.Segments, bytes, files)
	}
}

func TestAppendNextAckRoundTrip(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir()})
	if !s.Recovery().Clean() || s.Recovery().NextSeq != 1 {
		t.Fatalf("fresh spool recovery report: %+v", s.Recovery())
	}
	want := map[uint64][]byte{}
	var all []uint64
	for b := 0; b < 5; b++ {
		var batch [][]byte
		for i := 0; i <= b; i++ {
			batch = append(batch, payloadOf(fmt.Sprint("b", b), i))
		}
		seqs := mustAppend(t, s, batch...)
		for i, q := range seqs {
			want[q] = batch[i]
		}
		all = append(all, seqs...)
	}
	if !slices.Equal(all, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}) {
		t.Fatalf("sequence numbers are not 1..15 in append order: %v", all)
	}
	got := readPending(t, s)
	checkRecords(t, got, want, all)

	// The caller owns returned payloads: scribbling on them must not change
	// what the next read returns.
	for _, r := range got {
		for i := range r.Payload {
			r.Payload[i] = 'X'
		}
	}
	checkRecords(t, readPending(t, s), want, all)

	mustAck(t, s, all[:10]...)
	st := s.Stats()
	if st.Pending != 5 || st.Appended != 15 || st.Acked != 10 || st.Dropped != 0 {
		t.Fatalf("stats after acking 10 of 15: %+v", st)
	}
	var wantBytes int64
	for _, q := range all[10:] {
		wantBytes += headerSize + int64(len(want[q]))
	}
	if st.PendingBytes != wantBytes {
		t.Fatalf("PendingBytes = %d, want %d", st.PendingBytes, wantBytes)
	}
	checkRecords(t, readPending(t, s), want, all[10:])
	checkDiskStats(t, s)
}

func TestReopenRedeliversOnlyUnacked(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir})
	want, _ := appendEach(t, s, "r", 20, nil)
	mustAck(t, s, 1, 2, 3, 4, 5, 10)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openT(t, Options{Dir: dir})
	rep := s.Recovery()
	if !rep.Clean() || rep.Pending != 14 || rep.NextSeq != 21 {
		t.Fatalf("recovery after a clean close: %+v", rep)
	}
	checkRecords(t, readPending(t, s), want, []uint64{6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	if seqs := mustAppend(t, s, []byte("after reopen")); seqs[0] != 21 {
		t.Fatalf("first append after reopen got seq %d, want 21", seqs[0])
	}
}

func TestOutOfOrderAcks(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir})
	want, _ := appendEach(t, s, "o", 10, nil)
	mustAck(t, s, 5, 3, 9)
	mustAck(t, s, 9, 3) // repeated PUBACKs change nothing
	checkRecords(t, readPending(t, s), want, []uint64{1, 2, 4, 6, 7, 8, 10})
	if st := s.Stats(); st.Acked != 3 || st.Pending != 7 {
		t.Fatalf("stats after acks 5,3,9 (twice): %+v", st)
	}
	// A cursor past acknowledged records skips them.
	recs, err := s.Next(context.Background(), 2, 2, 0)
	if err != nil || !slices.Equal(seqsOf(recs), []uint64{4, 6}) {
		t.Fatalf("Next(after 2, max 2) = %v, %v; want [4 6]", seqsOf(recs), err)
	}
	s.Close()

	s = openT(t, Options{Dir: dir})
	checkRecords(t, readPending(t, s), want, []uint64{1, 2, 4, 6, 7, 8, 10})
	mustAck(t, s, 2, 1, 4)
	if s.floor != 5 {
		t.Fatalf("after acking 1..5 (and 9) the floor is %d, want 5", s.floor)
	}
	mustAck(t, s, 10, 8, 7, 6)
	if st := s.Stats(); st.Pending != 0 || st.PendingBytes != 0 {
		t.Fatalf("everything acknowledged but stats say %+v", st)
	}
	s.Close()
	s = openT(t, Options{Dir: dir})
	if st := s.Stats(); st.Pending != 0 || st.Segments != 0 {
		t.Fatalf("reopened fully acknowledged spool: %+v", st)
	}
	if seqs := mustAppend(t, s, []byte("x")); seqs[0] != 11 {
		t.Fatalf("sequence numbers restarted after every segment was deleted: got %d, want 11", seqs[0])
	}
}

func TestSegmentRollAndDeletion(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, SegmentBytes: 1024})
	want, all := appendEach(t, s, "seg", 100, func(int) { checkDiskStats(t, s) })
	st := s.Stats()
	if st.Segments < 8 {
		t.Fatalf("100 records of ~75 bytes in 1 KiB segments made only %d segments", st.Segments)
	}
	for _, g := range s.segs {
		if g.size > 1024 {
			t.Fatalf("segment %s is %d bytes, over SegmentBytes 1024", g.name, g.size)
		}
	}
	// Acknowledge the first half out of order: fully acknowledged segments go.
	half := slices.Clone(all[:50])
	rand.Shuffle(len(half), func(i, j int) { half[i], half[j] = half[j], half[i] })
	for len(half) > 0 {
		n := min(7, len(half))
		mustAck(t, s, half[:n]...)
		half = half[n:]
		checkDiskStats(t, s)
	}
	after := s.Stats()
	if after.Segments >= st.Segments || after.DiskBytes >= st.DiskBytes {
		t.Fatalf("acknowledging half the records freed nothing: before %+v, after %+v", st, after)
	}
	if first := s.segs[0].first; first > 51 {
		t.Fatalf("oldest segment starts at %d although record 51 is not acknowledged", first)
	}
	checkRecords(t, readPending(t, s), want, all[50:])

	mustAck(t, s, all[50:]...)
	checkDiskStats(t, s)
	if st := s.Stats(); st.Segments > 1 {
		t.Fatalf("all acknowledged but %d segments remain (only the active one may)", st.Segments)
	}
	// The active segment, full of acknowledged records, goes once it has
	// rolled and what was appended to it since is acknowledged too.
	var more []uint64
	for i := 0; i < 40; i++ {
		more = append(more, mustAppend(t, s, payloadOf("more", i))...)
		checkDiskStats(t, s)
	}
	mustAck(t, s, more[:20]...)
	checkDiskStats(t, s)
	for _, g := range s.segs {
		if g != s.active && g.ackedCount == g.count {
			t.Fatalf("sealed segment %s is fully acknowledged but still there", g.name)
		}
		if g.first <= 100 {
			t.Fatalf("segment %s holding only acknowledged records up to 100 survived", g.name)
		}
	}
}

func TestMaxBytesReject(t *testing.T) {
	dir := t.TempDir()
	const maxBytes = 8 << 10
	s := openT(t, Options{Dir: dir, MaxBytes: maxBytes, SegmentBytes: 1 << 10})
	var appended []uint64
	var full error
	for i := 0; i < 1000; i++ {
		seqs, err := s.Append(context.Background(), payloadOf("full", i))
		if err != nil {
			full = err
			break
		}
		appended = append(appended, seqs...)
		if st := s.Stats(); st.DiskBytes > maxBytes {
			t.Fatalf("DiskBytes %d over MaxBytes %d", st.DiskBytes, maxBytes)
		}
	}
	if !errors.Is(full, ErrFull) {
		t.Fatalf("filling an 8 KiB spool: got %v, want ErrFull", full)
	}
	if !strings.Contains(full.Error(), fmt.Sprint(maxBytes)) {
		t.Fatalf("ErrFull does not say the limit: %v", full)
	}
	before := s.Stats()
	if _, err := s.Append(context.Background(), payloadOf("full", 0)); !errors.Is(err, ErrFull) {
		t.Fatalf("second append into a full spool: %v", err)
	}
	if st := s.Stats(); st != before || st.Dropped != 0 {
		t.Fatalf("a rejected append changed the spool: before %+v, after %+v", before, st)
	}
	checkDiskStats(t, s)

	// Acknowledging frees whole segments, and appends work again.
	mustAck(t, s, appended[:len(appended)/2]...)
	mustAppend(t, s, payloadOf("again", 0))
	checkDiskStats(t, s)
	if got := len(readPending(t, s)); got != len(appended)-len(appended)/2+1 {
		t.Fatalf("pending after ack and append: %d records", got)
	}
}

func TestMaxBytesDropOldest(t *testing.T) {
	dir := t.TempDir()
	const maxBytes = 8 << 10
	opts := Options{Dir: dir, MaxBytes: maxBytes, SegmentBytes: 1 << 10, WhenFull: PolicyDropOldest}
	s := openT(t, opts)
	want, all := appendEach(t, s, "drop", 400, func(i int) {
		st := s.Stats()
		if st.DiskBytes > maxBytes {
			t.Fatalf("after %d appends DiskBytes %d > MaxBytes %d", i+1, st.DiskBytes, maxBytes)
		}
		if st.Appended != st.Pending+st.Dropped {
			t.Fatalf("records unaccounted for: %+v", st)
		}
	})
	st := s.Stats()
	if st.Dropped == 0 {
		t.Fatalf("400 records of ~75 bytes into 8 KiB dropped nothing: %+v", st)
	}
	// What is left is exactly the newest records, in order.
	recs := readPending(t, s)
	checkRecords(t, recs, want, all[st.Dropped:])
	checkDiskStats(t, s)

	// Acknowledged records are dropped too when they share a segment, and
	// acks of dropped records are harmless.
	mustAck(t, s, all[0], all[1], recs[0].Seq)
	s.Close()

	s = openT(t, opts)
	rest := readPending(t, s)
	checkRecords(t, rest, want, all[st.Dropped+1:])
}

func TestTooLarge(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir(), MaxRecordBytes: 1000, MaxBytes: 64 << 10})
	_, err := s.Append(context.Background(), make([]byte, 1001))
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1001") || !strings.Contains(err.Error(), "1000") {
		t.Fatalf("1001-byte record with a 1000-byte limit: %v", err)
	}
	// All-or-nothing: one bad record keeps the whole batch out.
	_, err = s.Append(context.Background(), []byte("ok"), make([]byte, 1001), []byte("ok too"))
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "record 1 ") {
		t.Fatalf("batch with record 1 too large: %v", err)
	}
	// A batch larger than the whole spool can never fit, whatever the policy.
	batch := make([][]byte, 100)
	for i := range batch {
		batch[i] = make([]byte, 1000)
	}
	if _, err = s.Append(context.Background(), batch...); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("batch bigger than MaxBytes: %v", err)
	}
	if st := s.Stats(); st.Appended != 0 || st.Pending != 0 || st.DiskBytes != 0 {
		t.Fatalf("rejected batches left records behind: %+v", st)
	}
	mustAppend(t, s, make([]byte, 1000))
	mustAppend(t, s) // an empty batch is a no-op
	if st := s.Stats(); st.Appended != 1 {
		t.Fatalf("stats after one append: %+v", st)
	}
}

func TestConcurrentAppendersAndConsumer(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, SegmentBytes: 16 << 10})
	const writers, perWriter = 8, 150
	sent := &sentLog{bySeq: map[uint64]sentRecord{}}
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Go(func() { sent.appendAsWriter(t, s, w, perWriter) })
	}
	// The consumer acknowledges everything it reads, out of order, while
	// the writers run.
	total := writers * perWriter
	consumed := make(chan error, 1)
	go func() { consumed <- consumeAndAck(s, total) }()
	wg.Wait()
	if err := <-consumed; err != nil {
		t.Fatal(err)
	}
	if len(sent.bySeq) != total {
		t.Fatalf("%d distinct seqs for %d records", len(sent.bySeq), total)
	}
	// Global order is append order, which implies each writer's order.
	lastByWriter := map[int]int{}
	for q := uint64(1); q <= uint64(total); q++ {
		m, ok := sent.bySeq[q]
		if !ok {
			t.Fatalf("seq %d was never handed out", q)
		}
		if prev, ok := lastByWriter[m.writer]; ok && m.n != prev+1 {
			t.Fatalf("writer %d: record %d follows %d in seq order", m.writer, m.n, prev)
		}
		lastByWriter[m.writer] = m.n
	}
	st := s.Stats()
	if st.Appended != uint64(total) || st.Acked != uint64(total) || st.Pending != 0 {
		t.Fatalf("stats after all acknowledged: %+v", st)
	}
	t.Logf("%d records from %d writers in %d commits (%d syncs)", st.Appended, writers, st.Commits, st.Syncs)
	checkDiskStats(t, s)
}

// sentRecord is record n of writer number writer.
type sentRecord struct {
	writer, n int
}

// sentLog is which record each seq was handed out for, over all writers.
type sentLog struct {
	mu    sync.Mutex
	bySeq map[uint64]sentRecord
}

// appendAsWriter is writer w: it appends records 0 to perWriter-1 on s, in batches
// of 1 to 3, logs the seq of each, and fails t (without stopping it, since
// it runs on its own goroutine) if its seqs do not increase.
func (l *sentLog) appendAsWriter(t *testing.T, s *Spool, w, perWriter int) {
	t.Helper()
	var last uint64
	for n := 0; n < perWriter; {
		k := 1 + (n % 3)
		var batch [][]byte
		for i := 0; i < k; i++ {
			batch = append(batch, fmt.Appendf(nil, "w%d n%d", w, n+i))
		}
		seqs, err := s.Append(context.Background(), batch...)
		if err != nil {
			t.Errorf("writer %d: %v", w, err)
			return
		}
		l.mu.Lock()
		for i, q := range seqs {
			if q <= last {
				t.Errorf("writer %d: seq %d after %d: per-input order broken", w, q, last)
			}
			last = q
			l.bySeq[q] = sentRecord{w, n + i}
		}
		l.mu.Unlock()
		n += k
	}
}

// consumeAndAck reads total records from s, checking that Next moves its
// cursor forward, and acknowledges each read in reverse order.
func consumeAndAck(s *Spool, total int) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var after uint64
	seen := 0
	for seen < total {
		recs, err := s.Next(ctx, after, 37, 0)
		if err != nil {
			return fmt.Errorf("Next after %d (%d of %d read): %w", after, seen, total, err)
		}
		for _, r := range recs {
			if r.Seq <= after {
				return fmt.Errorf("Next returned %d after cursor %d", r.Seq, after)
			}
			after = r.Seq
		}
		seen += len(recs)
		seqs := seqsOf(recs)
		slices.Reverse(seqs)
		if err := s.Ack(seqs...); err != nil {
			return err
		}
	}
	return nil
}

func TestGroupCommitSharesOneSync(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir()})
	base := s.Stats().Syncs // Open synced its ack log snapshot
	// Queue 50 appends in one step so the committer sees them together, as
	// it does when appenders arrive during a sync.
	reqs := make([]*request, 50)
	s.qmu.Lock()
	for i := range reqs {
		p := payloadOf("group", i)
		reqs[i] = &request{ctx: context.Background(), payloads: [][]byte{p}, bytes: headerSize + int64(len(p)), done: make(chan struct{})}
		s.queue = append(s.queue, reqs[i])
	}
	s.qmu.Unlock()
	s.signal()
	for i, r := range reqs {
		select {
		case <-r.done:
		case <-time.After(waitLimit):
			t.Fatalf("request %d never completed", i)
		}
		if r.err != nil || r.first != uint64(i+1) {
			t.Fatalf("request %d: first %d, err %v", i, r.first, r.err)
		}
	}
	st := s.Stats()
	if st.Commits != 1 || st.Syncs-base != 1 || st.Appended != 50 {
		t.Fatalf("50 queued appends: %+v; want 1 commit and 1 sync", st)
	}

	// Acks queued together share one ack log record and one sync.
	acks := make([]*request, 10)
	s.qmu.Lock()
	for i := range acks {
		acks[i] = &request{acks: []uint64{uint64(50 - i), uint64(i + 1)}, done: make(chan struct{})}
		s.queue = append(s.queue, acks[i])
	}
	s.qmu.Unlock()
	s.signal()
	for _, r := range acks {
		<-r.done
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	if st := s.Stats(); st.Syncs-base != 2 || st.Acked != 20 {
		t.Fatalf("10 queued acks: %+v; want one more sync and 20 acked", st)
	}
}

func TestNextLimits(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir()})
	big := bytes.Repeat([]byte("B"), 500)
	mustAppend(t, s, []byte("a"), []byte("bb"), big, []byte("ccc"), []byte("dddd"))
	ctx := context.Background()
	cases := []struct {
		name     string
		after    uint64
		max      int
		maxBytes int
		want     []uint64
	}{
		{"max records", 0, 2, 0, []uint64{1, 2}},
		{"max bytes stops before the record that would exceed it", 0, 10, 10, []uint64{1, 2}},
		{"a record larger than max bytes comes alone", 2, 10, 10, []uint64{3}},
		{"cursor in the middle", 3, 10, 0, []uint64{4, 5}},
		{"bytes exactly at the limit", 3, 10, 7, []uint64{4, 5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recs, err := s.Next(ctx, c.after, c.max, c.maxBytes)
			if err != nil || !slices.Equal(seqsOf(recs), c.want) {
				t.Fatalf("Next(after %d, max %d, maxBytes %d) = %v, %v; want %v", c.after, c.max, c.maxBytes, seqsOf(recs), err, c.want)
			}
		})
	}
	if _, err := s.Next(ctx, 0, 0, 0); err == nil {
		t.Fatal("Next with max 0 did not fail")
	}
}

func TestNextBlocksUntilAppend(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir()})
	mustAppend(t, s, []byte("one"))
	got := make(chan []Record, 1)
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		recs, err := s.Next(ctx, 1, 10, 0)
		if err != nil {
			errc <- err
			return
		}
		got <- recs
	}()
	mustAppend(t, s, []byte("two"))
	select {
	case recs := <-got:
		if len(recs) != 1 || recs[0].Seq != 2 || string(recs[0].Payload) != "two" {
			t.Fatalf("waiting Next got %+v", recs)
		}
	case err := <-errc:
		t.Fatal(err)
	}

	t.Run("context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := s.Next(ctx, 2, 10, 0)
			done <- err
		}()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Next after cancel: %v", err)
		}
	})

	t.Run("close wakes waiters", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := s.Next(ctx, 2, 10, 0)
			done <- err
		}()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Fatalf("Next waiting during Close: %v", err)
		}
	})
}

func TestAckErrors(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir()})
	mustAppend(t, s, []byte("1"), []byte("2"), []byte("3"))
	for _, seqs := range [][]uint64{{0}, {4}, {2, 99}} {
		err := s.Ack(seqs...)
		if err == nil || !strings.Contains(err.Error(), "never appended") {
			t.Fatalf("Ack(%v): %v; want a never-appended error", seqs, err)
		}
	}
	if st := s.Stats(); st.Acked != 0 || st.Pending != 3 {
		t.Fatalf("a failed Ack applied some of its seqs: %+v", st)
	}
	mustAck(t, s)
}

func TestAppendContext(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context: %v", err)
	}
	if st := s.Stats(); st.Appended != 0 {
		t.Fatalf("cancelled append was written: %+v", st)
	}
}

func TestClosed(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir()})
	mustAppend(t, s, []byte("x"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Append(context.Background(), []byte("y")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := s.Ack(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ack after Close: %v", err)
	}
	if _, err := s.Next(context.Background(), 0, 1, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
}

func TestDirectoryLock(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir})
	_, err := Open(Options{Dir: dir, Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open of %s: %v; want an in-use error naming the directory", dir, err)
	}
	s.Close()
	s2 := openT(t, Options{Dir: dir})
	s2.Close()
}

func TestAckLogCompaction(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir})
	s.ackCompactBytes = 200
	var seqs []uint64
	for i := 0; i < 200; i++ {
		seqs = append(seqs, mustAppend(t, s, payloadOf("c", i))...)
	}
	// Ack the odd seqs one by one: many ack records and many holes.
	for i := 1; i < len(seqs); i += 2 {
		mustAck(t, s, seqs[i])
		info, err := os.Stat(filepath.Join(dir, ackLogName))
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() > s.ackCompactBytes+400 {
			t.Fatalf("ack log is %d bytes, compaction threshold %d", info.Size(), s.ackCompactBytes)
		}
	}
	s.Close()
	s = openT(t, Options{Dir: dir})
	var even []uint64
	for i := 0; i < len(seqs); i += 2 {
		even = append(even, seqs[i])
	}
	if got := seqsOf(readPending(t, s)); !slices.Equal(got, even) {
		t.Fatalf("after compaction and reopen pending = %v, want the even seqs %v", got, even)
	}
}

func TestOptionsValidation(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"no dir", Options{}, "Dir is empty"},
		{"negative max bytes", Options{Dir: "x", MaxBytes: -1}, "MaxBytes -1"},
		{"bad policy", Options{Dir: "x", WhenFull: 7}, "WhenFull 7"},
		{"negative segment", Options{Dir: "x", SegmentBytes: -5}, "SegmentBytes -5"},
		{"record larger than spool", Options{Dir: "x", MaxBytes: 1000, MaxRecordBytes: 2000}, "MaxRecordBytes 2000"},
		{"spool too small for a record", Options{Dir: "x", MaxBytes: 10}, "MaxBytes 10"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.opts.normalize()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("normalize(%+v) = %v; want an error containing %q", c.opts, err, c.want)
			}
		})
	}
	o, err := Options{Dir: "x", MaxBytes: 4096}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if o.SegmentBytes != 512 || o.MaxRecordBytes != 4096-headerSize {
		t.Fatalf("defaults for a 4 KiB spool: segment %d, record %d", o.SegmentBytes, o.MaxRecordBytes)
	}
	o, err = Options{Dir: "x"}.normalize()
	if err != nil || o.MaxBytes != DefaultMaxBytes || o.SegmentBytes != DefaultSegmentBytes || o.MaxRecordBytes != DefaultMaxRecordBytes {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
}

func TestParsePolicy(t *testing.T) {
	for _, p := range []Policy{PolicyReject, PolicyDropOldest} {
		text, err := p.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Policy
		if err := back.UnmarshalText(text); err != nil || back != p {
			t.Fatalf("round trip of %v via %q: %v, %v", p, text, back, err)
		}
	}
	if p, err := ParsePolicy("drop_oldest"); err != nil || p != PolicyDropOldest {
		t.Fatalf("ParsePolicy(drop_oldest) = %v, %v", p, err)
	}
	for _, bad := range []string{"", "Reject", "drop-oldest", "drop"} {
		if _, err := ParsePolicy(bad); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Fatalf("ParsePolicy(%q) = %v; want an error quoting the input", bad, err)
		}
	}
	if _, err := Policy(9).MarshalText(); err == nil {
		t.Fatal("MarshalText of an unknown policy succeeded")
	}
}

func TestConcurrentDropOldestStaysBounded(t *testing.T) {
	const maxBytes = 16 << 10
	s := openT(t, Options{Dir: t.TempDir(), MaxBytes: maxBytes, WhenFull: PolicyDropOldest})
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 150; i++ {
				batch := [][]byte{payloadOf(fmt.Sprint("w", w), i), payloadOf(fmt.Sprint("w", w), -i)}
				if _, err := s.Append(context.Background(), batch...); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				// Published plus written-but-unsynced bytes: what the files
				// would add up to if they could be measured atomically.
				s.mu.Lock()
				used := s.diskBytes + s.inflightBytes
				s.mu.Unlock()
				if used > maxBytes {
					t.Errorf("segments hold %d bytes, over MaxBytes %d", used, maxBytes)
					return
				}
			}
		}()
	}
	// A slow consumer acknowledges some of what it reads while writers
	// overrun it; its acks of records dropped meanwhile are no-ops.
	stop := make(chan struct{})
	consumed := make(chan error, 1)
	go func() {
		var after uint64
		for {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			recs, err := s.Next(ctx, after, 10, 0)
			cancel()
			select {
			case <-stop:
				consumed <- nil
				return
			default:
			}
			if err != nil {
				consumed <- err
				return
			}
			for _, r := range recs {
				if r.Seq <= after {
					consumed <- fmt.Errorf("Next returned %d after cursor %d", r.Seq, after)
					return
				}
				after = r.Seq
			}
			if err := s.Ack(recs[0].Seq); err != nil {
				consumed <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	mustAppend(t, s, []byte("wake the consumer"))
	if err := <-consumed; err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Dropped == 0 || st.Appended != st.Pending+st.Dropped+st.Acked || st.DiskBytes > maxBytes {
		t.Fatalf("after 1800 records into 16 KiB with drop_oldest: %+v", st)
	}
	checkDiskStats(t, s)
	recs := readPending(t, s)
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq <= recs[i-1].Seq {
			t.Fatalf("pending records out of order at %d: %d after %d", i, recs[i].Seq, recs[i-1].Seq)
		}
	}
}

func TestOldestIsTheFirstRecordNotYetAcknowledged(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir()})
	if _, ok, err := s.Oldest(); ok || err != nil {
		t.Fatalf("Oldest of an empty spool = ok %v, %v; want none", ok, err)
	}
	want, _ := appendEach(t, s, "old", 4, nil)
	mustAck(t, s, 1, 3) // out of order: 2 is now the oldest
	rec, ok, err := s.Oldest()
	if err != nil || !ok || rec.Seq != 2 || !bytes.Equal(rec.Payload, want[2]) {
		t.Fatalf("Oldest after acking 1 and 3 = %d %q, %v, %v; want record 2", rec.Seq, rec.Payload, ok, err)
	}
	mustAck(t, s, 2, 4)
	if _, ok, err := s.Oldest(); ok || err != nil {
		t.Fatalf("Oldest with everything acknowledged = ok %v, %v; want none", ok, err)
	}
	s.Close()
	if _, _, err := s.Oldest(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Oldest after Close = %v, want ErrClosed", err)
	}
}
