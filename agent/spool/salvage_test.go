package spool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// salvageFixture is a spool directory written with readings that carry
// ids, and where each record lies on disk.
type salvageFixture struct {
	files   map[string][]byte
	payload map[uint64][]byte
	id      map[uint64]string
	segs    []string // segment names, oldest first
	// at[seq] is the record's segment and byte range.
	at map[uint64]recordAt
	// lastBatch holds the seqs of the last Append.
	lastBatch []uint64
}

type recordAt struct {
	seg        string
	start, end int64
}

// buildSalvageFixture appends n readings in batches of 1 to 50 (the last one
// of 50), in segments of segBytes, and captures the files.
func buildSalvageFixture(t *testing.T, n int, segBytes int64, seed uint64) salvageFixture {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 12))
	fx := salvageFixture{payload: map[uint64][]byte{}, id: map[uint64]string{}, at: map[uint64]recordAt{}}
	build := build(t, Options{SegmentBytes: segBytes, NoSync: true, Logger: discardLogger()}, func(s *Spool) map[uint64][]byte {
		for i := 0; i < n; {
			k := min(1+rng.IntN(50), n-i)
			if n-i <= 100 {
				k = min(50, n-i) // end on a batch of 50
				if n-i > 50 {
					k = n - i - 50
				}
			}
			batch := make([][]byte, k)
			ids := make([]string, k)
			for j := range batch {
				ids[j] = fmt.Sprintf("r-%04d", i+j+1)
				batch[j] = fmt.Appendf(nil, `{"id":%q,"sensor":"t%d","ts":"2026-11-27T10:00:00Z","value":%d.25}`, ids[j], (i+j)%7, i+j)
			}
			seqs, err := s.Append(context.Background(), batch...)
			if err != nil {
				panic(err)
			}
			for j, q := range seqs {
				fx.payload[q], fx.id[q] = batch[j], ids[j]
			}
			fx.lastBatch = seqs
			i += k
		}
		return fx.payload
	})
	fx.files = build.files
	for name, b := range fx.files {
		first, ok := parseSegmentName(name)
		if !ok {
			continue
		}
		fx.segs = append(fx.segs, name)
		for i, off := range recordOffsets(t, b) {
			_, _, size, _ := decodeRecord(b[off:])
			fx.at[first+uint64(i)] = recordAt{seg: name, start: off, end: off + int64(size)}
		}
	}
	sort.Strings(fx.segs)
	return fx
}

// hit returns the seqs whose records hold one of the given byte offsets of
// segment seg.
func (fx salvageFixture) hit(seg string, offsets ...int64) map[uint64]bool {
	out := map[uint64]bool{}
	for q, a := range fx.at {
		for _, o := range offsets {
			if a.seg == seg && o >= a.start && o < a.end {
				out[q] = true
			}
		}
	}
	return out
}

// damage is what TestSalvageKeepsEveryIntactReading does to a fixture:
// flip bytes in an older segment and cut bytes from the newest one.
type damage struct {
	flipSeg   string
	flips     []int64
	cut       int64
	edits     map[string][]byte
	flipped   map[uint64]bool // records hit by a flip
	tornBatch map[uint64]bool // the last batch, whose end the cut removes
	visible   uint64          // records of the last batch whose header survives the cut
	unknown   bool            // the cut took the batch end record's header
}

func applyDamage(t *testing.T, fx salvageFixture, rng *rand.Rand, flips int, cut int64) damage {
	t.Helper()
	if len(fx.segs) < 3 {
		t.Fatalf("fixture has %d segments, want at least 3", len(fx.segs))
	}
	d := damage{flipSeg: fx.segs[1], cut: cut, edits: map[string][]byte{}, tornBatch: map[uint64]bool{}}
	b := slices.Clone(fx.files[d.flipSeg])
	for range flips {
		o := rng.Int64N(int64(len(b)))
		b[o] ^= byte(1 + rng.IntN(255))
		d.flips = append(d.flips, o)
	}
	d.edits[d.flipSeg] = b
	d.flipped = fx.hit(d.flipSeg, d.flips...)

	newest := fx.segs[len(fx.segs)-1]
	nb := fx.files[newest]
	if fx.at[fx.lastBatch[0]].seg != newest || int64(len(nb))-cut <= fx.at[fx.lastBatch[0]].start {
		t.Fatalf("the last batch must be in the newest segment and outlast the cut")
	}
	end := int64(len(nb)) - cut
	d.edits[newest] = nb[:end]
	// The count is exact only if the batch's end record still has its
	// header: otherwise at least that record is gone unseen.
	d.unknown = true
	for i, q := range fx.lastBatch {
		d.tornBatch[q] = true
		if a := fx.at[q]; a.start+headerSize <= end {
			d.visible++
			d.unknown = i < len(fx.lastBatch)-1
		}
	}
	return d
}

// TestSalvageKeepsEveryIntactReading is issue 12's case: 2,000 readings
// across segments, 4 bytes flipped in an older segment and 500 bytes cut
// from the newest. Every intact record is delivered (checked by id), the
// damaged ones are counted, and their bytes are kept aside.
func TestSalvageKeepsEveryIntactReading(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			checkSalvage(t, seed, seed == 1)
		})
	}
}

func checkSalvage(t *testing.T, seed uint64, logFigures bool) {
	const readings = 2000
	fx := buildSalvageFixture(t, readings, 32<<10, seed)
	if len(fx.segs) < 4 {
		t.Fatalf("fixture has %d segments, want at least 4", len(fx.segs))
	}
	d := applyDamage(t, fx, rand.New(rand.NewPCG(seed, 34)), 4, 500)
	dir := fixture{files: fx.files}.materialize(t, d.edits)

	s := openT(t, Options{Dir: dir, Logger: discardLogger()})
	rep := s.Recovery()
	got := map[string]bool{}
	for _, r := range readPending(t, s) {
		if !slices.Equal(r.Payload, fx.payload[r.Seq]) {
			t.Fatalf("record %d: payload %q is not what was appended", r.Seq, r.Payload)
		}
		got[fx.id[r.Seq]] = true
	}
	var missing []string
	for q, id := range fx.id {
		intact := !d.flipped[q] && !d.tornBatch[q]
		if intact && !got[id] {
			missing = append(missing, id)
		}
		if !intact && got[id] {
			t.Errorf("%s (seq %d) was damaged or torn but was delivered", id, q)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Fatalf("%d intact readings not recovered: %v", len(missing), missing)
	}

	// Counted: every flipped record by sequence number, the torn batch by
	// the headers left.
	wantLost := uint64(len(d.flipped)) + d.visible
	if rep.Lost != wantLost || (rep.LostUnknown == 1) != d.unknown {
		t.Fatalf("report lost %d (unknown regions %d), want %d (unknown %v): %v", rep.Lost, rep.LostUnknown, wantLost, d.unknown, rep.Damage)
	}
	if drops := s.Stats().Drops; drops.Damaged != wantLost || drops.Total() != wantLost {
		t.Fatalf("drops %+v, want %d damaged", drops, wantLost)
	}
	torn := 0
	for _, dm := range rep.Damage {
		switch {
		case dm.Kind == DamageTornTail:
			torn++
			if dm.Quarantine == "" || !strings.HasSuffix(dm.Quarantine, ".torn") {
				t.Errorf("torn tail not kept aside: %v", dm)
			}
		case dm.File != d.flipSeg || dm.Quarantine == "" || !strings.HasSuffix(dm.Quarantine, ".corrupt"):
			t.Errorf("unexpected damage %v", dm)
		}
		if dm.Quarantine != "" {
			q, err := os.ReadFile(filepath.Join(dir, dm.Quarantine))
			if err != nil || !slices.Equal(q, d.edits[dm.File][dm.Offset:dm.Offset+dm.Bytes]) {
				t.Errorf("%s does not hold the %d removed bytes of %s at %d: %v", dm.Quarantine, dm.Bytes, dm.File, dm.Offset, err)
			}
		}
	}
	if torn != 1 {
		t.Fatalf("%d torn tails reported, want 1: %v", torn, rep.Damage)
	}
	if logFigures {
		t.Logf("%d readings in %d segments; %d bytes flipped in %s hit %d records; %d bytes cut from %s tore the last batch of %d (%d headers left)",
			readings, len(fx.segs), len(d.flips), d.flipSeg, len(d.flipped), d.cut, fx.segs[len(fx.segs)-1], len(fx.lastBatch), d.visible)
		t.Logf("recovered %d of %d by id (%d salvaged after damage, in %d new segment files); lost %d, counted %d (%d regions: %v)",
			len(got), readings, rep.Salvaged, len(rep.Pieces), readings-len(got), rep.Lost, len(rep.Damage), rep.Damage)
	}

	// A restart remembers the count and finds nothing more to repair.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, Options{Dir: dir, Logger: discardLogger()})
	if !s.Recovery().Clean() || s.Stats().Drops.Damaged != wantLost || s.Stats().Pending != uint64(len(got)) {
		t.Fatalf("after a restart: %+v, drops %+v, pending %d", s.Recovery().Damage, s.Stats().Drops, s.Stats().Pending)
	}
	checkDiskStats(t, s)
}

var errStopRecovery = errors.New("recovery stopped here by the test")

// TestSalvageInterruptedAtEveryStep stops recovery at each step of a
// salvage in turn, as a crash would, and opens the directory again: the
// result is the same as an uninterrupted salvage (the same records, the
// same files kept aside), and the readings lost are counted at most once.
func TestSalvageInterruptedAtEveryStep(t *testing.T) {
	fx := buildSalvageFixture(t, 600, 8<<10, 5)
	d := applyDamage(t, fx, rand.New(rand.NewPCG(5, 6)), 3, 200)

	// The reference: one uninterrupted recovery.
	refDir := fixture{files: fx.files}.materialize(t, d.edits)
	ref := openT(t, Options{Dir: refDir, Logger: discardLogger()})
	refRecs := seqsOf(readPending(t, ref))
	refRep := ref.Recovery()
	var refQuarantine []string
	for _, dm := range refRep.Damage {
		refQuarantine = append(refQuarantine, dm.Quarantine)
	}
	sort.Strings(refQuarantine)
	var tailReadings uint64
	for _, dm := range refRep.Damage {
		if dm.Kind == DamageTornTail {
			tailReadings += dm.Readings
		}
	}

	points := map[string]bool{}
	for stop := 1; ; stop++ {
		dir := fixture{files: fx.files}.materialize(t, d.edits)
		calls := 0
		s, err := Open(Options{Dir: dir, Logger: discardLogger(), hook: func(point string) error {
			calls++
			if calls == stop {
				points[point] = true
				return errStopRecovery
			}
			return nil
		}})
		if err == nil {
			s.Close()
			if stop == 1 {
				t.Fatal("recovery of a damaged spool called no fault hook")
			}
			break
		}
		if !errors.Is(err, errStopRecovery) {
			t.Fatalf("stop at hook call %d: %v", stop, err)
		}
		s = openT(t, Options{Dir: dir, Logger: discardLogger()})
		if got := seqsOf(readPending(t, s)); !slices.Equal(got, refRecs) {
			t.Fatalf("stopped at hook call %d, then reopened: %d records delivered, want %d", stop, len(got), len(refRecs))
		}
		var kept []string
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".corrupt") || strings.HasSuffix(e.Name(), ".torn") {
				kept = append(kept, e.Name())
			}
			if strings.HasSuffix(e.Name(), salvageSuffix) {
				t.Errorf("stopped at hook call %d: temporary file %s left behind", stop, e.Name())
			}
		}
		sort.Strings(kept)
		if !slices.Equal(kept, refQuarantine) {
			t.Fatalf("stopped at hook call %d: files kept aside %v, want %v", stop, kept, refQuarantine)
		}
		// A crash after the newest segment was cut can only miss the torn
		// tail's count; nothing is counted twice.
		if n := s.Stats().Drops.Damaged; n > refRep.Lost || n+tailReadings < refRep.Lost {
			t.Fatalf("stopped at hook call %d: %d readings counted as damaged, want %d (or %d less)", stop, n, refRep.Lost, tailReadings)
		}
		checkDiskStats(t, s)
		s.Close()
	}
	for _, p := range []string{hookSalvageKept, hookSalvagePiece, hookSalvageCut} {
		if !points[p] {
			t.Errorf("no recovery was stopped at %q", p)
		}
	}
}
