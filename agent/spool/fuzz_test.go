package spool

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the record decoder, the segment and
// ack log scanners and the ack span decoder. None may panic or read past the
// input; whatever the decoder accepts must re-encode to the same bytes; the
// scanner must accept exactly a prefix of whole, valid, in-sequence records.
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
		sc, serr := scanSegment(bytes.NewReader(data), int64(len(data)), first)
		if serr != nil {
			t.Fatalf("scanning in-memory bytes failed: %v", serr)
		}
		checkScan(t, data, sc, func(i int, h header) bool {
			return h.seq == first+uint64(i) && isDataKind(h.kind)
		})
		if len(sc.offsets) > 0 {
			last, _, _, _ := decodeRecord(data[sc.offsets[len(sc.offsets)-1]:])
			if last.kind != kindDataEnd {
				t.Fatalf("segment scan kept a batch without its end record")
			}
		}
		ac, serr := scanAckLog(bytes.NewReader(data), int64(len(data)))
		if serr != nil {
			t.Fatalf("scanning in-memory bytes failed: %v", serr)
		}
		checkScan(t, data, ac, func(_ int, h header) bool { return h.kind == kindAcks })
	})
}

func checkScan(t *testing.T, data []byte, sc scanned, ok func(int, header) bool) {
	t.Helper()
	var off int64
	for i, o := range sc.offsets {
		if o != off {
			t.Fatalf("record %d at offset %d, expected %d", i, o, off)
		}
		h, _, n, err := decodeRecord(data[o:])
		if err != nil || !ok(i, h) {
			t.Fatalf("scanner accepted record %d at %d that is invalid (%v) or out of place", i, o, err)
		}
		off += int64(n)
	}
	if sc.end != off {
		t.Fatalf("scan end %d, records end at %d", sc.end, off)
	}
	switch {
	case sc.bad == nil && sc.end != int64(len(data)):
		t.Fatalf("scan stopped at %d of %d bytes without reporting damage", sc.end, len(data))
	case sc.bad != nil && (sc.bad.offset != sc.end || sc.bad.offset >= int64(len(data)) || sc.bad.reason == ""):
		t.Fatalf("damage %+v does not start where the accepted records end (%d of %d bytes)", sc.bad, sc.end, len(data))
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
