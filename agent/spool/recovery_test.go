package spool

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fixture is a spool directory's files as bytes, plus what was appended.
type fixture struct {
	files   map[string][]byte
	payload map[uint64][]byte
}

// build runs fn against a fresh spool, closes it and captures its files.
func build(t *testing.T, opts Options, fn func(s *Spool) map[uint64][]byte) fixture {
	t.Helper()
	opts.Dir = t.TempDir()
	s := openT(t, opts)
	want := fn(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fx := fixture{files: map[string][]byte{}, payload: want}
	entries, err := os.ReadDir(opts.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(opts.Dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fx.files[e.Name()] = b
	}
	return fx
}

// materialize writes the fixture's files, with edits applied, to a new dir.
func (fx fixture) materialize(t *testing.T, edit map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range fx.files {
		if e, ok := edit[name]; ok {
			b = e
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// reopenAndCheck opens dir, checks that exactly wantSeqs are delivered with
// their original payloads, and returns the recovery report.
func reopenAndCheck(t *testing.T, dir string, fx fixture, wantSeqs []uint64) (*Spool, RecoveryReport) {
	t.Helper()
	s := openT(t, Options{Dir: dir, Logger: discardLogger()})
	checkRecords(t, readPending(t, s), fx.payload, wantSeqs)
	return s, s.Recovery()
}

// lastSegmentLayout returns the record offsets of a single-segment fixture.
func recordOffsets(t *testing.T, seg []byte) []int64 {
	t.Helper()
	var offs []int64
	for off := 0; off < len(seg); {
		_, _, n, err := decodeRecord(seg[off:])
		if err != nil {
			t.Fatalf("fixture segment is invalid at %d: %v", off, err)
		}
		offs = append(offs, int64(off))
		off += n
	}
	return offs
}

// twoBatches appends a batch of 2 records, then a batch of 3.
func twoBatches(s *Spool) map[uint64][]byte {
	want := map[uint64][]byte{}
	b1 := [][]byte{[]byte(`{"sensor":"a","value":1}`), []byte(`{"sensor":"b","value":2.5}`)}
	b2 := [][]byte{[]byte(`{"sensor":"c","value":"on"}`), []byte(`{"sensor":"d","value":{"x":1}}`), []byte(`{"sensor":"e","value":true}`)}
	for _, b := range [][][]byte{b1, b2} {
		seqs, err := s.Append(context.Background(), b...)
		if err != nil {
			panic(err)
		}
		for i, q := range seqs {
			want[q] = b[i]
		}
	}
	return want
}

func TestTornTailAtEveryOffset(t *testing.T) {
	fx := build(t, Options{}, twoBatches)
	seg := fx.files[segmentName(1)]
	offs := recordOffsets(t, seg)
	batch2 := offs[2] // the last batch starts with record 3
	for cut := batch2; cut < int64(len(seg)); cut++ {
		t.Run(fmt.Sprint("cut at ", cut), func(t *testing.T) {
			dir := fx.materialize(t, map[string][]byte{segmentName(1): seg[:cut]})
			s, rep := reopenAndCheck(t, dir, fx, []uint64{1, 2})
			if cut == batch2 {
				if !rep.Clean() {
					t.Fatalf("a cut on a batch boundary is a clean file, got %v", rep.Damage)
				}
			} else {
				// The torn tail is kept aside, and every reading whose
				// header is still there is counted; a cut inside a header
				// leaves the count open.
				want := Damage{Kind: DamageTornTail, File: segmentName(1), Offset: batch2, Bytes: cut - batch2, FirstSeq: 3,
					Quarantine: fmt.Sprintf("%s.%d.torn", segmentName(1), batch2)}
				// The count is exact only when the header of the batch's
				// end record (5) is left.
				want.ReadingsUnknown = true
				for k, off := range offs[2:] {
					if off+headerSize <= cut {
						want.Readings++
						want.ReadingsUnknown = k < 2
					}
				}
				if len(rep.Damage) != 1 || !sameDamage(rep.Damage[0], want) {
					t.Fatalf("cut at %d: damage %v, want %v", cut, rep.Damage, want)
				}
				checkKeptAside(t, dir, want.Quarantine, seg[batch2:cut])
			}
			if info, err := os.Stat(filepath.Join(dir, segmentName(1))); err != nil || info.Size() != batch2 {
				t.Fatalf("segment not cut back to %d: %v, %v", batch2, info.Size(), err)
			}
			// The torn batch's seqs are free again and appends continue.
			if seqs := mustAppend(t, s, []byte("next")); seqs[0] != 3 {
				t.Fatalf("after cutting the torn batch the next seq is %d, want 3", seqs[0])
			}
		})
	}
}

func TestTornTailByteFlips(t *testing.T) {
	fx := build(t, Options{}, twoBatches)
	seg := fx.files[segmentName(1)]
	offs := recordOffsets(t, seg)
	ends := append(slices.Clone(offs[1:]), int64(len(seg)))
	batch2, lastRec := offs[2], offs[4]
	for i := batch2; i < int64(len(seg)); i++ {
		t.Run(fmt.Sprint("flip at ", i), func(t *testing.T) {
			bad := slices.Clone(seg)
			bad[i] ^= 0xFF
			dir := fx.materialize(t, map[string][]byte{segmentName(1): bad})
			if i >= lastRec {
				// A flip in the last record looks like a torn write: the
				// whole last batch goes aside, from its first byte.
				_, rep := reopenAndCheck(t, dir, fx, []uint64{1, 2})
				want := Damage{Kind: DamageTornTail, File: segmentName(1), Offset: batch2, Bytes: int64(len(seg)) - batch2,
					FirstSeq: 3, Quarantine: fmt.Sprintf("%s.%d.torn", segmentName(1), batch2), Readings: 2}
				if h, err := parseHeader(bad[lastRec:]); err == nil && isDataKind(h.kind) && h.seq == 5 {
					want.Readings = 3
				} else {
					want.ReadingsUnknown = true
				}
				if len(rep.Damage) != 1 || !sameDamage(rep.Damage[0], want) {
					t.Fatalf("flip at %d: damage %v, want %v", i, rep.Damage, want)
				}
				checkKeptAside(t, dir, want.Quarantine, bad[batch2:])
				return
			}
			// A flip with valid records after it is corruption: only the
			// flipped record goes, the records around it are kept.
			k := 2
			for offs[k+1] <= i {
				k++
			}
			lost := uint64(k + 1)
			var keep []uint64
			for q := uint64(1); q <= 5; q++ {
				if q != lost {
					keep = append(keep, q)
				}
			}
			_, rep := reopenAndCheck(t, dir, fx, keep)
			want := Damage{Kind: DamageCorrupt, File: segmentName(1), Offset: offs[k], Bytes: ends[k] - offs[k], FirstSeq: lost,
				Quarantine: fmt.Sprintf("%s.%d.corrupt", segmentName(1), offs[k]), Readings: 1}
			if len(rep.Damage) != 1 || !sameDamage(rep.Damage[0], want) || rep.Damage[0].LastSeq != lost {
				t.Fatalf("flip at %d: damage %v, want %v", i, rep.Damage, want)
			}
			checkKeptAside(t, dir, want.Quarantine, bad[offs[k]:ends[k]])
			if rep.NextSeq != 6 || rep.Salvaged != 5-lost || rep.Lost != 1 {
				t.Fatalf("report: next seq %d (want 6), salvaged %d (want %d), lost %d (want 1)", rep.NextSeq, rep.Salvaged, 5-lost, rep.Lost)
			}
			if !slices.Equal(rep.Pieces, []string{segmentName(lost + 1)}) {
				t.Fatalf("pieces %v, want %s for the records after the damage", rep.Pieces, segmentName(lost+1))
			}
		})
	}
}

// checkKeptAside fails unless name in dir holds exactly want.
func checkKeptAside(t *testing.T, dir, name string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s does not hold the removed bytes (%d bytes, want %d): %v", name, len(got), len(want), err)
	}
}

func sameDamage(got, want Damage) bool {
	return got.Kind == want.Kind && got.File == want.File && got.Offset == want.Offset &&
		got.Bytes == want.Bytes && got.FirstSeq == want.FirstSeq && got.Quarantine == want.Quarantine && got.Reason != "" &&
		got.Readings == want.Readings && got.ReadingsUnknown == want.ReadingsUnknown
}

func TestPowerLossTails(t *testing.T) {
	fx := build(t, Options{}, twoBatches)
	seg := fx.files[segmentName(1)]
	end := int64(len(seg))
	// What a power cut can leave after the last synced byte: blocks of
	// zeros where the file size grew before the data landed, stale garbage,
	// or part of the next group commit.
	next := appendRecord(nil, kindData, 6, []byte(`{"sensor":"f"}`))
	next = appendRecord(next, kindDataEnd, 7, []byte(`{"sensor":"g"}`))
	// Each tail with the readings it is known to have held, and whether
	// more may have been there (bytes no header accounts for, or a batch
	// whose end record was not seen).
	cases := map[string]struct {
		tail     []byte
		readings uint64
		unknown  bool
	}{
		"zeros":                    {make([]byte, 4096), 0, true},
		"garbage":                  {bytes.Repeat([]byte{0xCE, 0x5A, 0x01, 0x02, 0xFF}, 300), 0, true},
		"half a record":            {next[:30], 1, true},
		"a batch without its end":  {next[:len(next)/2], 1, true},
		"whole records then zeros": {append(append([]byte(nil), next[:len(next)/2]...), make([]byte, 512)...), 1, true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			tail := c.tail
			dir := fx.materialize(t, map[string][]byte{segmentName(1): append(slices.Clone(seg), tail...)})
			s, rep := reopenAndCheck(t, dir, fx, []uint64{1, 2, 3, 4, 5})
			want := Damage{Kind: DamageTornTail, File: segmentName(1), Offset: end, Bytes: int64(len(tail)), FirstSeq: 6,
				Readings: c.readings, ReadingsUnknown: c.unknown}
			if !allZero(tail) {
				// Zeros hold nothing to keep; anything else is kept aside.
				want.Quarantine = fmt.Sprintf("%s.%d.torn", segmentName(1), end)
			}
			if len(rep.Damage) != 1 || !sameDamage(rep.Damage[0], want) {
				t.Fatalf("damage %v, want %v", rep.Damage, want)
			}
			if want.Quarantine != "" {
				checkKeptAside(t, dir, want.Quarantine, tail)
			}
			if got := s.Stats().Drops; got.Damaged != c.readings || got.DamagedUncounted != map[bool]uint64{false: 0, true: 1}[c.unknown] {
				t.Fatalf("drops %+v after recovery, want %d damaged (uncounted regions: %v)", got, c.readings, c.unknown)
			}
			if seqs := mustAppend(t, s, []byte("after")); seqs[0] != 6 {
				t.Fatalf("next seq %d, want 6", seqs[0])
			}
		})
	}
	t.Run("complete next batch is kept", func(t *testing.T) {
		dir := fx.materialize(t, map[string][]byte{segmentName(1): append(slices.Clone(seg), next...)})
		fx2 := fx
		fx2.payload = map[uint64][]byte{6: []byte(`{"sensor":"f"}`), 7: []byte(`{"sensor":"g"}`)}
		for q, p := range fx.payload {
			fx2.payload[q] = p
		}
		_, rep := reopenAndCheck(t, dir, fx2, []uint64{1, 2, 3, 4, 5, 6, 7})
		if !rep.Clean() {
			t.Fatalf("valid tail reported as damage: %v", rep.Damage)
		}
	})
}

func TestCorruptRecordInOlderSegmentIsCutAround(t *testing.T) {
	var segNames []string
	fx := build(t, Options{SegmentBytes: 256}, func(s *Spool) map[uint64][]byte {
		want := map[uint64][]byte{}
		for i := 0; i < 12; i++ {
			p := payloadOf("q", i)
			seqs, err := s.Append(context.Background(), p)
			if err != nil {
				panic(err)
			}
			want[seqs[0]] = p
		}
		for _, g := range s.segs {
			segNames = append(segNames, g.name)
		}
		return want
	})
	if len(segNames) < 3 {
		t.Fatalf("fixture has %d segments, want at least 3", len(segNames))
	}
	victim := segNames[0]
	seg := fx.files[victim]
	offs := recordOffsets(t, seg)
	if len(offs) < 3 {
		t.Fatalf("first segment holds %d records, want at least 3", len(offs))
	}
	bad := slices.Clone(seg)
	bad[offs[1]+headerSize+3] ^= 0x01 // one bit in record 2's payload
	dir := fx.materialize(t, map[string][]byte{victim: bad})

	var want []uint64
	for q := uint64(1); q <= 12; q++ {
		if q != 2 {
			want = append(want, q)
		}
	}
	s, rep := reopenAndCheck(t, dir, fx, want)
	d := Damage{Kind: DamageCorrupt, File: victim, Offset: offs[1], Bytes: offs[2] - offs[1],
		FirstSeq: 2, Quarantine: fmt.Sprintf("%s.%d.corrupt", victim, offs[1]), Readings: 1}
	if len(rep.Damage) != 1 || !sameDamage(rep.Damage[0], d) {
		t.Fatalf("damage %v, want %v", rep.Damage, d)
	}
	if !strings.Contains(rep.Damage[0].Reason, "checksum") {
		t.Fatalf("reason %q does not say checksum", rep.Damage[0].Reason)
	}
	checkKeptAside(t, dir, d.Quarantine, bad[offs[1]:offs[2]])
	if rep.Salvaged != uint64(len(offs)-2) || rep.Lost != 1 || !slices.Equal(rep.Pieces, []string{segmentName(3)}) {
		t.Fatalf("salvaged %d (want %d), lost %d (want 1), pieces %v (want %s)", rep.Salvaged, len(offs)-2, rep.Lost, rep.Pieces, segmentName(3))
	}
	if info, err := os.Stat(filepath.Join(dir, victim)); err != nil || info.Size() != offs[1] {
		t.Fatalf("%s not cut back to its first record: %v", victim, err)
	}
	// The lost seq counts as gone: acknowledging everything else empties
	// the spool and moves the floor past it.
	mustAck(t, s, want...)
	if st := s.Stats(); st.Pending != 0 || s.floor != 12 || st.Drops.Damaged != 1 {
		t.Fatalf("after acking every surviving record: %+v, floor %d", st, s.floor)
	}
	checkDiskStats(t, s)
}

// ackFixture appends 10 records and acks them in four ack log records.
func ackFixture(s *Spool) map[uint64][]byte {
	want := map[uint64][]byte{}
	for i := 0; i < 10; i++ {
		p := payloadOf("ack", i)
		seqs, err := s.Append(context.Background(), p)
		if err != nil {
			panic(err)
		}
		want[seqs[0]] = p
	}
	for _, acks := range [][]uint64{{2}, {5, 6}, {9}, {1}} {
		if err := s.Ack(acks...); err != nil {
			panic(err)
		}
	}
	return want
}

func TestAckLogDamageOnlyRedelivers(t *testing.T) {
	fx := build(t, Options{}, ackFixture)
	log := fx.files[ackLogName]
	offs := recordOffsets(t, log)
	if len(offs) != 5 { // the snapshot written at Open, then four acks
		t.Fatalf("ack log holds %d records, want 5", len(offs))
	}
	// pendingAfter[k] is what must be delivered when the ack log keeps only
	// its first k records.
	pendingAfter := [][]uint64{
		{1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
		{1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
		{1, 3, 4, 5, 6, 7, 8, 9, 10},
		{1, 3, 4, 7, 8, 9, 10},
		{1, 3, 4, 7, 8, 10},
		{3, 4, 7, 8, 10},
	}
	for cut := int64(0); cut <= int64(len(log)); cut++ {
		kept := 0
		for kept < len(offs) && (kept+1 == len(offs) && int64(len(log)) <= cut || kept+1 < len(offs) && offs[kept+1] <= cut) {
			kept++
		}
		t.Run(fmt.Sprint("cut at ", cut), func(t *testing.T) {
			dir := fx.materialize(t, map[string][]byte{ackLogName: log[:cut]})
			_, rep := reopenAndCheck(t, dir, fx, pendingAfter[kept])
			if torn := cut != int64(len(log)) && !slices.Contains(offs, cut); torn {
				if len(rep.Damage) != 1 || rep.Damage[0].Kind != DamageTornTail || rep.Damage[0].File != ackLogName ||
					rep.Damage[0].Offset != offs[kept] {
					t.Fatalf("cut inside record %d: damage %v", kept, rep.Damage)
				}
			} else if !rep.Clean() {
				t.Fatalf("cut on a record boundary: damage %v", rep.Damage)
			}
		})
	}
	t.Run("flip in a middle record", func(t *testing.T) {
		bad := slices.Clone(log)
		bad[offs[2]+headerSize] ^= 0x40 // the {5, 6} record
		dir := fx.materialize(t, map[string][]byte{ackLogName: bad})
		// Only that record's acks are lost: the records after it count.
		_, rep := reopenAndCheck(t, dir, fx, []uint64{3, 4, 5, 6, 7, 8, 10})
		if len(rep.Damage) != 1 || rep.Damage[0].Kind != DamageCorrupt || rep.Damage[0].Offset != offs[2] ||
			rep.Damage[0].Bytes != offs[3]-offs[2] || rep.Damage[0].Quarantine == "" || rep.Damage[0].Readings != 0 || rep.Lost != 0 {
			t.Fatalf("damage %v", rep.Damage)
		}
		checkKeptAside(t, dir, rep.Damage[0].Quarantine, bad[offs[2]:offs[3]])
	})
}

func TestStrayFilesAndEmptySegments(t *testing.T) {
	fx := build(t, Options{}, twoBatches)
	dir := fx.materialize(t, nil)
	for name, b := range map[string][]byte{
		"README":                             []byte("not a segment"),
		"00000000000000000099.seg.1.corrupt": []byte("an old quarantine file"),
		segmentName(50):                      nil, // created, then the process died
		"12.seg":                             []byte("badly named"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	_, rep := reopenAndCheck(t, dir, fx, []uint64{1, 2, 3, 4, 5})
	if !rep.Clean() || !slices.Contains(rep.Removed, segmentName(50)) || rep.NextSeq != 6 {
		t.Fatalf("recovery with stray files: %+v", rep)
	}
	for _, name := range []string{"README", "12.seg", "00000000000000000099.seg.1.corrupt"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("recovery touched %s: %v", name, err)
		}
	}
}

func TestOverlappingSegmentIsQuarantined(t *testing.T) {
	fx := build(t, Options{}, twoBatches)
	// A file whose name claims records 3.. while segment 1 already holds
	// 1..5: whatever it is, the older segment's records win.
	stray := appendRecord(nil, kindDataEnd, 3, []byte("impostor"))
	dir := fx.materialize(t, nil)
	if err := os.WriteFile(filepath.Join(dir, segmentName(3)), stray, 0o640); err != nil {
		t.Fatal(err)
	}
	_, rep := reopenAndCheck(t, dir, fx, []uint64{1, 2, 3, 4, 5})
	want := Damage{Kind: DamageCorrupt, File: segmentName(3), Offset: 0, Bytes: int64(len(stray)), FirstSeq: 3,
		Quarantine: segmentName(3) + ".0.corrupt"}
	if len(rep.Damage) != 1 || !sameDamage(rep.Damage[0], want) || !strings.Contains(rep.Damage[0].Reason, "previous segment") {
		t.Fatalf("damage %v, want %v", rep.Damage, want)
	}
	if _, err := os.Stat(filepath.Join(dir, segmentName(3))); !os.IsNotExist(err) {
		t.Fatalf("overlapping segment still there: %v", err)
	}
}

func TestBitRotAfterOpenIsCaughtOnRead(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir})
	mustAppend(t, s, []byte(`{"sensor":"a"}`), []byte(`{"sensor":"b"}`))
	f, err := os.OpenFile(filepath.Join(dir, segmentName(1)), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	second := int64(headerSize + len(`{"sensor":"a"}`))
	if _, err := f.WriteAt([]byte("X"), second+headerSize+3); err != nil {
		t.Fatal(err)
	}
	f.Close()
	recs, err := s.Next(context.Background(), 0, 1, 0)
	if err != nil || len(recs) != 1 || string(recs[0].Payload) != `{"sensor":"a"}` {
		t.Fatalf("intact first record: %v, %v", recs, err)
	}
	_, err = s.Next(context.Background(), 1, 10, 0)
	if err == nil || !strings.Contains(err.Error(), segmentName(1)) || !strings.Contains(err.Error(), fmt.Sprint("offset ", second)) ||
		!strings.Contains(err.Error(), "checksum") {
		t.Fatalf("reading a record that rotted on disk: %v; want a checksum error naming file and offset %d", err, second)
	}
}

func TestMisplacedRecordIsCorruptNotTorn(t *testing.T) {
	fx := build(t, Options{}, twoBatches)
	seg := fx.files[segmentName(1)]
	// A whole, checksummed record with the wrong sequence number cannot
	// come from an interrupted write, even at the very end.
	misplaced := appendRecord(nil, kindDataEnd, 42, []byte("from elsewhere"))
	dir := fx.materialize(t, map[string][]byte{segmentName(1): append(slices.Clone(seg), misplaced...)})
	_, rep := reopenAndCheck(t, dir, fx, []uint64{1, 2, 3, 4, 5})
	// It says nothing of how many records of this segment were lost with
	// it: the count is open.
	want := Damage{Kind: DamageCorrupt, File: segmentName(1), Offset: int64(len(seg)), Bytes: int64(len(misplaced)), FirstSeq: 6,
		Quarantine: fmt.Sprintf("%s.%d.corrupt", segmentName(1), len(seg)), ReadingsUnknown: true}
	if len(rep.Damage) != 1 || !sameDamage(rep.Damage[0], want) || !strings.Contains(rep.Damage[0].Reason, "sequence 42 where 6 was expected") {
		t.Fatalf("damage %v, want %v", rep.Damage, want)
	}
}
