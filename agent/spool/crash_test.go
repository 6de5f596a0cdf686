package spool

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The crash test runs its own test binary as a child (TestMain dispatches on
// crashChildEnv) that appends and acknowledges as fast as it can and prints
// every sequence number the spool reported durable. The parent SIGKILLs it at
// a random moment, mid-write or mid-sync, or the child SIGKILLs itself at an
// exact point of the spool's write path (crashHookEnv, through the spool's
// test-only fault hook), and the parent checks the directory.
const (
	crashChildEnv = "CELLGATE_SPOOL_CRASH_CHILD_DIR"
	crashSeedEnv  = "CELLGATE_SPOOL_CRASH_CHILD_SEED"
	// crashHookEnv is "<hook point>:<n>": the child kills itself with
	// SIGKILL the n-th time the spool reaches that point.
	crashHookEnv = "CELLGATE_SPOOL_CRASH_CHILD_HOOK"
)

var crashFiller = func() []byte {
	rng := rand.New(rand.NewPCG(7, 7))
	b := make([]byte, 1500)
	for i := range b {
		b[i] = byte('a' + rng.IntN(26))
	}
	return b
}()

// crashPayload builds a self-checking payload: a readable prefix, random
// filler, and a CRC-32 (IEEE, unlike the spool's Castagnoli) of all that.
func crashPayload(rng *rand.Rand, writer, batch, k int) []byte {
	p := fmt.Appendf(nil, `{"writer":%d,"batch":%d,"k":%d,"fill":"`, writer, batch, k)
	// Slicing a fixed random alphabet keeps payload making cheap: the child
	// must spend its time in the spool, or kills land while it is idle.
	from := rng.IntN(len(crashFiller))
	p = append(p, crashFiller[from:from+rng.IntN(len(crashFiller)-from)]...)
	p = append(p, `"}`...)
	return binary.BigEndian.AppendUint32(p, crc32.ChecksumIEEE(p))
}

func crashPayloadOK(p []byte) bool {
	if len(p) < 4 {
		return false
	}
	body := p[:len(p)-4]
	return binary.BigEndian.Uint32(p[len(p)-4:]) == crc32.ChecksumIEEE(body)
}

// lineOut writes whole lines to stdout, each with one write(2), so a line
// the parent reads completely was printed completely.
type lineOut struct{ mu sync.Mutex }

func (l *lineOut) printf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := os.Stdout.WriteString(line); err != nil {
		os.Exit(4)
	}
}

// crashChild is the child's main. It never returns normally: the parent
// kills it.
func crashChild(dir string) int {
	seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
	opts := Options{
		Dir:          dir,
		SegmentBytes: 64 << 10, // roll often, so kills land around rolls too
		MaxBytes:     256 << 20,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	}
	if spec := os.Getenv(crashHookEnv); spec != "" {
		point, nth, _ := strings.Cut(spec, ":")
		n, _ := strconv.ParseInt(nth, 10, 64)
		var calls atomic.Int64
		opts.hook = func(p string) error {
			if p == point && calls.Add(1) == n {
				// Dead at this exact instant: no deferred code, no
				// other goroutine gets to write or sync after it.
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
			return nil
		}
	}
	s, err := Open(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 2
	}
	var out lineOut
	for w := 0; w < 6; w++ {
		go crashAppend(s, &out, seed, w)
	}
	go crashAck(s, &out, seed)
	select {}
}

// crashAppend is writer w of the child: it appends batches of payloads for
// ever and prints "D <first seq> <crc>,<crc>,…" for each batch the spool
// reported durable. It ends the process if Append fails.
func crashAppend(s *Spool, out *lineOut, seed uint64, w int) {
	rng := rand.New(rand.NewPCG(seed, uint64(w)))
	for b := 0; ; b++ {
		n := 1 + rng.IntN(4)
		if w == 0 {
			// Large batches make large writes, which a SIGKILL
			// can interrupt halfway: torn tails for real.
			n = 50 + rng.IntN(400)
		}
		batch := make([][]byte, n)
		for k := range batch {
			batch[k] = crashPayload(rng, w, b, k)
		}
		seqs, err := s.Append(context.Background(), batch...)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child append:", err)
			os.Exit(3)
		}
		// One line per batch: the child's printing must not hold up
		// its appenders, or every kill lands while they are idle.
		line := fmt.Appendf(nil, "D %d ", seqs[0])
		for k := range batch {
			if k > 0 {
				line = append(line, ',')
			}
			line = fmt.Appendf(line, "%08x", crc32.ChecksumIEEE(batch[k]))
		}
		out.printf("%s\n", line)
	}
}

// crashAck is the child's consumer: it reads the spool for ever and
// acknowledges, out of order, all but every third record, printing
// "P <seq>…" before each Ack and "A <seq>" for each seq after it. It ends
// the process if Next or Ack fails.
func crashAck(s *Spool, out *lineOut, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	var after uint64
	for {
		recs, err := s.Next(context.Background(), after, 64, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child next:", err)
			os.Exit(3)
		}
		after = recs[len(recs)-1].Seq
		// Leave every third record unacknowledged so the parent has
		// both kinds to check; ack the rest out of order.
		var acks []uint64
		for _, r := range recs {
			if r.Seq%3 != 0 {
				acks = append(acks, r.Seq)
			}
		}
		rng.Shuffle(len(acks), func(i, j int) { acks[i], acks[j] = acks[j], acks[i] })
		// An ack is durable before the child can say so; announce it
		// first, so that a kill in between leaves it "maybe acked".
		line := []byte("P")
		for _, q := range acks {
			line = fmt.Appendf(line, " %d", q)
		}
		out.printf("%s\n", line)
		if err := s.Ack(acks...); err != nil {
			fmt.Fprintln(os.Stderr, "child ack:", err)
			os.Exit(3)
		}
		for _, q := range acks {
			out.printf("A %d\n", q)
		}
	}
}

type crashRun struct {
	durable map[uint64]uint32 // seq -> CRC-32 of the payload, as the child reported
	acked   map[uint64]bool
	maybe   map[uint64]bool // announced for acking, not confirmed
	lines   int
	stderr  string
}

// runCrashChild starts the child on dir, kills it with SIGKILL after it has
// reported killAfter durable records (or lets it kill itself at the point
// hook names, "<point>:<n>", when hook is set), and returns what it
// reported.
func runCrashChild(t *testing.T, dir string, seed uint64, killAfter int, hook string) crashRun {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, crashSeedEnv+"="+strconv.FormatUint(seed, 10))
	// A child outliving a test binary that died would append for ever.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if hook != "" {
		cmd.Env = append(cmd.Env, crashHookEnv+"="+hook)
		killAfter = math.MaxInt // the child kills itself
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start crash child: %v", err)
	}
	// Should the child stall, the parent still kills it and fails below.
	var timedOut atomic.Bool
	timer := time.AfterFunc(waitLimit*2, func() {
		timedOut.Store(true)
		cmd.Process.Kill()
	})
	defer timer.Stop()

	run := crashRun{durable: map[uint64]uint32{}, acked: map[uint64]bool{}, maybe: map[uint64]bool{}}
	run.read(t, stdout, killAfter, func() error { return cmd.Process.Signal(syscall.SIGKILL) })
	werr := cmd.Wait()
	run.stderr = stderr.String()
	if timedOut.Load() {
		t.Fatalf("crash child reported only %d durable records in %v; stderr:\n%s", len(run.durable), waitLimit*2, run.stderr)
	}
	var exitErr *exec.ExitError
	if !errors.As(werr, &exitErr) {
		t.Fatalf("crash child: %v; stderr:\n%s", werr, run.stderr)
	}
	if ws, ok := exitErr.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("crash child ended with %v instead of being killed; stderr:\n%s", werr, run.stderr)
	}
	return run
}

// read takes the child's lines from stdout into run until stdout ends,
// calling kill once run holds killAfter durable records.
func (run *crashRun) read(t *testing.T, stdout io.Reader, killAfter int, kill func() error) {
	t.Helper()
	r := bufio.NewReader(stdout)
	killed := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			// A line cut by the kill is incomplete: it proves nothing.
			if !errors.Is(err, io.EOF) {
				t.Errorf("read child stdout: %v", err)
			}
			return
		}
		run.lines++
		if !run.record(line) {
			t.Fatalf("bad child line %q", line)
		}
		if !killed && len(run.durable) >= killAfter {
			if err := kill(); err != nil {
				t.Fatalf("kill child: %v", err)
			}
			killed = true
		}
	}
}

// record adds one line of the child (D, P or A; see crashAppend and
// crashAck) to run, and reports whether it was well-formed.
func (run *crashRun) record(line string) bool {
	f := strings.Fields(line)
	switch {
	case len(f) == 3 && f[0] == "D":
		q, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return false
		}
		for k, hex := range strings.Split(f[2], ",") {
			c, err := strconv.ParseUint(hex, 16, 32)
			if err != nil {
				return false
			}
			run.durable[q+uint64(k)] = uint32(c)
		}
	case len(f) == 2 && f[0] == "A":
		q, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return false
		}
		run.acked[q] = true
		delete(run.maybe, q)
	case len(f) >= 1 && f[0] == "P":
		for _, w := range f[1:] {
			q, err := strconv.ParseUint(w, 10, 64)
			if err != nil {
				return false
			}
			run.maybe[q] = true
		}
	default:
		return false
	}
	return true
}

// crashRounds is how many times TestKill9LosesNothing kills a child: each
// round takes 0.2 to 0.25 s on the 2-core dev machine under -race.
const crashRounds = 200

func TestKill9LosesNothing(t *testing.T) {
	start := time.Now()
	seed := uint64(time.Now().UnixNano())
	if env := os.Getenv("CELLGATE_SPOOL_CRASH_SEED"); env != "" {
		seed, _ = strconv.ParseUint(env, 10, 64) // to replay a failure
	}
	t.Logf("seed %d", seed)
	defer func() {
		if t.Failed() {
			t.Logf("replay with CELLGATE_SPOOL_CRASH_SEED=%d", seed)
		}
	}()
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	l := crashLedger{durable: map[uint64]uint32{}, acked: map[uint64]bool{}, open: map[uint64]bool{}, maxDurable: new(uint64)}
	damaged, powerCuts := 0, 0
	kills := map[string]int{}
	rounds := crashRounds
	if testing.Short() {
		rounds = 20
	}
	for round := 0; round < rounds; round++ {
		// Every fourth round the child kills itself between a segment
		// write and its fdatasync, every fourth between an ack write and
		// its fdatasync; the others are killed from outside after a
		// random number of durable records.
		killAfter, hook, how := 1+rng.IntN(600), "", "random"
		switch round % 4 {
		case 1:
			hook, how = fmt.Sprintf("%s:%d", hookSegmentWritten, 1+rng.IntN(60)), hookSegmentWritten
		case 3:
			hook, how = fmt.Sprintf("%s:%d", hookAckWritten, 1+rng.IntN(20)), hookAckWritten
		}
		kills[how]++
		run := runCrashChild(t, dir, seed+uint64(round), killAfter, hook)
		l.add(t, round, run)
		// Records whose ack was in flight at the kill may or may not come
		// back; either is correct. Once seen here they are acked below or
		// checked as pending in later rounds.
		maybe := run.maybe

		// Every other round also loses power: bytes the child was not told
		// were durable may not have reached the disk, so cut or zero them.
		var cut powerCut
		if round%2 == 1 {
			cut = simulatePowerLoss(t, dir, *l.maxDurable, rng)
			powerCuts++
		}

		s := openT(t, Options{Dir: dir, Logger: discardLogger()})
		rep := s.Recovery()
		checkCrashRecovery(t, round, rep, cut)
		damaged += len(rep.Damage)
		recs := readPending(t, s)
		present := l.checkPending(t, round, recs)
		l.checkNothingLost(t, round, maybe, present)
		// The parent acknowledges a random half of what is pending, as an
		// uplink would, so later rounds start from a mix.
		l.ackRandomHalf(t, s, rng, recs, maybe, present)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			t.Fatalf("round %d (%s kill, %s): %d durable records reported, %d lines", round, how, cut, len(run.durable), run.lines)
		}
	}
	t.Logf("%d kills in %v (%v), %d with a simulated power loss; %d records reported durable, %d acknowledged, none lost; %d torn tails cut",
		rounds, time.Since(start).Round(time.Millisecond), kills, powerCuts, len(l.durable), len(l.acked), damaged)
}

// crashLedger is what TestKill9LosesNothing knows over all its rounds:
// every record a child reported durable (seq -> CRC-32 of the payload),
// every one known to be acknowledged durably, and those of the first kind
// not of the second (open), which must all be delivered.
type crashLedger struct {
	durable map[uint64]uint32
	acked   map[uint64]bool
	open    map[uint64]bool
	// maxDurable is the highest seq ever reported durable: a power loss
	// cannot take bytes at or before the end of its batch.
	maxDurable *uint64
}

// ack records that q is acknowledged durably.
func (l crashLedger) ack(q uint64) {
	l.acked[q] = true
	delete(l.open, q)
}

// add takes in what the child of round reported; a sequence number
// reported durable in an earlier round too was reused, which fails t.
func (l crashLedger) add(t *testing.T, round int, run crashRun) {
	t.Helper()
	for q, c := range run.durable {
		if old, ok := l.durable[q]; ok {
			t.Fatalf("round %d: seq %d reported durable twice (crc %08x, then %08x): a sequence number was reused", round, q, old, c)
		}
		l.durable[q] = c
		l.open[q] = true
		*l.maxDurable = max(*l.maxDurable, q)
	}
	for q := range run.acked {
		l.ack(q)
	}
}

// checkCrashRecovery checks the recovery report after round: a torn power
// cut is reported where it tore, and a SIGKILL damages nothing but tails.
func checkCrashRecovery(t *testing.T, round int, rep RecoveryReport, cut powerCut) {
	t.Helper()
	if cut.torn {
		found := false
		for _, d := range rep.Damage {
			found = found || (d.File == cut.file && d.Offset >= cut.min && d.Offset <= cut.at)
		}
		if !found {
			t.Errorf("round %d: power loss tore %s at %d (first unconfirmed byte %d) but recovery reported %v",
				round, cut.file, cut.at, cut.min, rep.Damage)
		}
	}
	for _, d := range rep.Damage {
		if d.Kind != DamageTornTail {
			t.Errorf("round %d: a SIGKILL can only tear the tail, recovery found %v", round, d)
		}
	}
}

// checkPending checks the records pending after recovery: in order, whole,
// the payloads reported durable, none acknowledged. It returns their seqs.
func (l crashLedger) checkPending(t *testing.T, round int, recs []Record) map[uint64]bool {
	t.Helper()
	present := map[uint64]bool{}
	var prev uint64
	for _, r := range recs {
		if r.Seq <= prev {
			t.Fatalf("round %d: seq %d delivered after %d", round, r.Seq, prev)
		}
		prev = r.Seq
		if !crashPayloadOK(r.Payload) {
			t.Fatalf("round %d: record %d has a corrupt payload (%d bytes)", round, r.Seq, len(r.Payload))
		}
		if c, ok := l.durable[r.Seq]; ok && c != crc32.ChecksumIEEE(r.Payload) {
			t.Fatalf("round %d: record %d is not the payload reported durable", round, r.Seq)
		}
		if l.acked[r.Seq] {
			t.Fatalf("round %d: record %d was acknowledged durably but is delivered again", round, r.Seq)
		}
		present[r.Seq] = true
	}
	return present
}

// checkNothingLost fails unless every record reported durable is
// acknowledged, maybe acknowledged (in flight at the kill) or present.
func (l crashLedger) checkNothingLost(t *testing.T, round int, maybe, present map[uint64]bool) {
	t.Helper()
	lost := 0
	for q := range l.open {
		if !maybe[q] && !present[q] {
			lost++
			if lost < 10 {
				t.Errorf("round %d: record %d was reported durable and never acknowledged, but is gone", round, q)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("round %d: %d durable records lost", round, lost)
	}
}

// ackRandomHalf records as acknowledged the maybe-acked records that did
// not come back, then acknowledges a random half of recs on s.
func (l crashLedger) ackRandomHalf(t *testing.T, s *Spool, rng *rand.Rand, recs []Record, maybe, present map[uint64]bool) {
	t.Helper()
	for q := range maybe {
		if !present[q] {
			l.ack(q) // the in-flight ack made it to disk
		}
	}
	var acks []uint64
	for _, r := range recs {
		if rng.IntN(2) == 0 {
			acks = append(acks, r.Seq)
		}
	}
	mustAck(t, s, acks...)
	for _, q := range acks {
		l.ack(q)
	}
}

// powerCut describes a simulated power loss.
type powerCut struct {
	file    string
	min, at int64 // first byte not known durable; where the loss starts
	size    int64
	zeros   bool // the lost range reads as zeros instead of being gone
	torn    bool // the cut falls inside a batch, so recovery must report it
}

func (c powerCut) String() string {
	if c.file == "" {
		return "no segment"
	}
	how := "truncated"
	if c.zeros {
		how = "zeroed"
	}
	return fmt.Sprintf("%s %s from %d to %d (first unconfirmed byte %d, torn %v)", c.file, how, c.at, c.size, c.min, c.torn)
}

// simulatePowerLoss cuts the newest segment at a random point after the
// last record ever reported durable (maxDurable, in this round or an
// earlier one), by truncating or by zeroing, as a power cut with delayed
// allocation can leave a file.
func simulatePowerLoss(t *testing.T, dir string, maxDurable uint64, rng *rand.Rand) powerCut {
	t.Helper()
	var newest string
	var first uint64
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if f, ok := parseSegmentName(e.Name()); ok && f >= first {
			newest, first = e.Name(), f
		}
	}
	if newest == "" {
		return powerCut{}
	}
	path := dir + "/" + newest
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := scanSegment(bytes.NewReader(data), int64(len(data)), first)
	if err != nil {
		t.Fatal(err)
	}
	c := powerCut{file: newest, size: int64(len(data))}
	// A kill leaves at most a torn tail: the valid records are the run at
	// the start of the file.
	var prefix run
	if len(sc.runs) > 0 && sc.runs[0].offsets[0] == 0 {
		prefix = sc.runs[0]
	}
	// Bytes up to the end of the last reported record are durable; any
	// batch boundary at or after it is a place where a cut tears nothing.
	// A batch is durable as a whole, so the line starts at the end of the
	// batch holding the last reported record, not at that record's end.
	boundaries := map[int64]bool{prefix.end: true}
	inReported := false
	for i, off := range prefix.offsets {
		h, _, n, _ := decodeRecord(data[off:])
		end := off + int64(n)
		inReported = inReported || first+uint64(i) <= maxDurable
		if h.kind == kindDataEnd {
			boundaries[end] = true
			if inReported {
				c.min = end
			}
			inReported = false
		}
	}
	c.at = c.min + rng.Int64N(c.size-c.min+1)
	c.zeros = rng.IntN(2) == 0
	changed := !bytes.Equal(data[c.at:], make([]byte, c.size-c.at))
	if c.zeros {
		clear(data[c.at:])
		err = os.WriteFile(path, data, 0o640)
	} else {
		err = os.Truncate(path, c.at)
	}
	if err != nil {
		t.Fatal(err)
	}
	// Truncating exactly at a batch end leaves a clean file; zeroing
	// leaves damage unless the bytes were zeros already.
	c.torn = c.at < c.size && (c.zeros && changed || !c.zeros && !boundaries[c.at])
	return c
}
