package spool

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the record decoder, the segment and
// ack log scanners, the header counter and the ack span decoder. None may
// panic or read past the input; whatever the decoder accepts must re-encode
// to the same bytes; the scanners' kept records and damaged regions must
// tile the input, and every kept record be whole, valid and in sequence.
// The seed corpus in testdata/fuzz/FuzzDecode runs with every go test.
func FuzzDecode(f *testing.F) {
	f.Add(appendRecord(nil, kindDataEnd, 1, []byte(`{"sensor":"t1","value":21.5}`)))
	f.Add(appendRecord(nil, kindAcks, 7, encodeSpans(nil, []span{{9, 9}, {12, 20}})))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, p, n, err := decodeRecord(data)
		if err != nil {
			if n != 0 || p != nil {
				t.Fatalf("failed decode returned n=%d and a payload", n)
			}
		} else {
			if n != headerSize+len(p) || n > len(data) {
				t.Fatalf("decode returned n=%d for a %d-byte payload in %d bytes", n, len(p), len(data))
			}
			if re := appendRecord(nil, h.kind, h.seq, p); !bytes.Equal(re, data[:n]) {
				t.Fatalf("accepted record does not re-encode to its bytes")
			}
			if h.kind == kindAcks {
				if spans, err := decodeSpans(p); err == nil {
					for i, sp := range spans {
						if sp.lo == 0 || sp.hi < sp.lo || (i > 0 && sp.lo <= spans[i-1].hi) {
							t.Fatalf("decodeSpans accepted unsorted or overlapping spans %v", spans)
						}
					}
				}
			}
		}

		first := uint64(1)
		if err == nil {
			first = h.seq
		}
		size := int64(len(data))
		sc, serr := scanSegment(bytes.NewReader(data), size, first)
		if serr != nil {
			t.Fatalf("scanning in-memory bytes failed: %v", serr)
		}
		checkSegScan(t, data, sc, first)
		sc.cutIncompleteBatch(size)
		checkSegScan(t, data, sc, first)
		if n := len(sc.runs); n > 0 {
			r := sc.runs[n-1]
			last, _, _, _ := decodeRecord(data[r.offsets[len(r.offsets)-1]:])
			if last.kind != kindDataEnd {
				t.Fatalf("segment scan kept a batch without its end record at the end of the newest segment")
			}
		}
		if n, _, err := countHeaders(bytes.NewReader(data), size, 0, size, first); err != nil || n > uint64(size/headerSize)+1 {
			t.Fatalf("countHeaders counted %d records in %d bytes (%v)", n, size, err)
		}
		ac, serr := scanAckLog(bytes.NewReader(data), size)
		if serr != nil {
			t.Fatalf("scanning in-memory bytes failed: %v", serr)
		}
		checkAckScan(t, data, ac)
	})
}

// checkSegScan checks that a segment scan's runs and damaged regions tile
// the data in order, that every kept record is whole, valid, data, and in
// sequence (consecutive within a run, increasing across runs, the run at
// offset 0 starting at first), and that no two regions touch.
func checkSegScan(t *testing.T, data []byte, sc segScan, first uint64) {
	t.Helper()
	var off int64
	var prevSeq uint64
	ri, bi := 0, 0
	lastWasRegion := false
	for off < int64(len(data)) {
		switch {
		case ri < len(sc.runs) && sc.runs[ri].offsets[0] == off:
			r := sc.runs[ri]
			if off == 0 && r.first != first {
				t.Fatalf("run at offset 0 starts at seq %d, the name says %d", r.first, first)
			}
			if ri > 0 && r.first <= prevSeq {
				t.Fatalf("run %d starts at seq %d, not above %d", ri, r.first, prevSeq)
			}
			for i, o := range r.offsets {
				h, _, n, err := decodeRecord(data[o:])
				if o != off || err != nil || !isDataKind(h.kind) || h.seq != r.first+uint64(i) {
					t.Fatalf("run %d record %d at %d (expected at %d) is invalid (%v) or out of place", ri, i, o, off, err)
				}
				off += int64(n)
			}
			if off != r.end {
				t.Fatalf("run %d ends at %d, its records at %d", ri, r.end, off)
			}
			prevSeq = r.last()
			ri++
			lastWasRegion = false
		case bi < len(sc.bad) && sc.bad[bi].start == off:
			b := sc.bad[bi]
			if b.end <= b.start || b.reason == "" || lastWasRegion {
				t.Fatalf("region %+v is empty, unexplained or touches the previous one", b)
			}
			off = b.end
			bi++
			lastWasRegion = true
		default:
			t.Fatalf("nothing in the scan covers offset %d of %d (runs %d/%d, regions %d/%d)", off, len(data), ri, len(sc.runs), bi, len(sc.bad))
		}
	}
	if ri != len(sc.runs) || bi != len(sc.bad) {
		t.Fatalf("scan has runs or regions past the end of the data")
	}
}

// checkAckScan checks that the ack records an ack log scan kept are whole,
// valid ack records, in order, and that they and the damaged regions tile
// the data.
func checkAckScan(t *testing.T, data []byte, sc ackScan) {
	t.Helper()
	var off int64
	ri, bi := 0, 0
	for off < int64(len(data)) {
		switch {
		case ri < len(sc.offsets) && sc.offsets[ri] == off:
			h, p, n, err := decodeRecord(data[off:])
			if err != nil || h.kind != kindAcks || h.seq != sc.floors[ri] {
				t.Fatalf("ack record %d at %d is invalid (%v) or not an ack record", ri, off, err)
			}
			if _, err := decodeSpans(p); err != nil {
				t.Fatalf("ack record %d at %d kept with undecodable spans: %v", ri, off, err)
			}
			off += int64(n)
			ri++
		case bi < len(sc.bad) && sc.bad[bi].start == off && sc.bad[bi].end > off:
			off = sc.bad[bi].end
			bi++
		default:
			t.Fatalf("nothing in the ack scan covers offset %d of %d", off, len(data))
		}
	}
}

func TestSpanSetMatchesAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		var ss spanSet
		model := map[uint64]bool{}
		var floor uint64
		for op := 0; op < 60; op++ {
			lo := floor + 1 + rng.Uint64N(80)
			hi := lo + rng.Uint64N(4)
			ss.add(lo, hi)
			for q := lo; q <= hi; q++ {
				model[q] = true
			}
			if rng.IntN(10) == 0 {
				floor = ss.absorbFloor(floor)
				for model[floor+1] {
					floor++
				}
				for q := range model {
					if q <= floor {
						delete(model, q)
					}
				}
			}
			for i, sp := range ss.s {
				if sp.lo > sp.hi || (i > 0 && sp.lo <= ss.s[i-1].hi+1) || sp.lo <= floor {
					t.Fatalf("spans not sorted, disjoint and non-adjacent above floor %d: %v", floor, ss.s)
				}
			}
			for q := uint64(1); q < floor+90; q++ {
				if q > floor && ss.contains(q) != model[q] {
					t.Fatalf("contains(%d) = %v, model says %v; spans %v", q, ss.contains(q), model[q], ss.s)
				}
				want := q
				for model[want] {
					want++
				}
				if q > floor && ss.nextAbsent(q) != want {
					t.Fatalf("nextAbsent(%d) = %d, want %d", q, ss.nextAbsent(q), want)
				}
			}
		}
		// The ack log encoding round-trips whatever the set holds.
		got, err := decodeSpans(encodeSpans(nil, ss.s))
		if err != nil || !slices.Equal(got, ss.s) {
			t.Fatalf("span encoding round trip: %v, %v; want %v", got, err, ss.s)
		}
	}
}

func TestDecodeSpansRejectsNonsense(t *testing.T) {
	bad := [][]byte{
		{0x80}, // truncated varint
		binary.AppendUvarint(binary.AppendUvarint(nil, 0), 3),                                                       // span starting at 0
		append(encodeSpans(nil, []span{{5, 9}}), 0, 0),                                                              // overlaps the previous span
		append(encodeSpans(nil, []span{{5, 9}}), binary.AppendUvarint(binary.AppendUvarint(nil, 1), ^uint64(0))...), // overflows
	}
	for i, p := range bad {
		if spans, err := decodeSpans(p); err == nil {
			t.Fatalf("case %d: decodeSpans(%x) accepted %v", i, p, spans)
		}
	}
}
