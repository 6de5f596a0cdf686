package spool

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
)

// span is the closed range of sequence numbers [lo, hi].
type span struct{ lo, hi uint64 }

// spanSet is a set of sequence numbers kept as sorted, disjoint, non-adjacent
// spans. Acks arrive almost in order, so the set stays a handful of spans
// however many records were acknowledged: its size is the number of holes.
type spanSet struct{ s []span }

// index returns the position of the first span whose hi is >= seq.
func (ss *spanSet) index(seq uint64) int {
	return sort.Search(len(ss.s), func(i int) bool { return ss.s[i].hi >= seq })
}

func (ss *spanSet) contains(seq uint64) bool {
	i := ss.index(seq)
	return i < len(ss.s) && ss.s[i].lo <= seq
}

// add inserts [lo, hi] and merges it with overlapping or adjacent spans.
func (ss *spanSet) add(lo, hi uint64) {
	if lo > hi {
		return
	}
	// Every span that overlaps or touches [lo, hi] is in s[i:j].
	i := ss.index(lo)
	if lo > 0 && i > 0 && ss.s[i-1].hi == lo-1 {
		i--
	}
	j := i
	for j < len(ss.s) && (ss.s[j].lo <= hi || (hi < ^uint64(0) && ss.s[j].lo == hi+1)) {
		j++
	}
	if i < j {
		lo = min(lo, ss.s[i].lo)
		hi = max(hi, ss.s[j-1].hi)
	}
	ss.s = slices.Replace(ss.s, i, j, span{lo, hi})
}

// nextAbsent returns the smallest sequence number >= seq not in the set.
func (ss *spanSet) nextAbsent(seq uint64) uint64 {
	i := ss.index(seq)
	if i < len(ss.s) && ss.s[i].lo <= seq {
		return ss.s[i].hi + 1
	}
	return seq
}

// nextPresent returns the smallest member >= seq, or false if there is none.
func (ss *spanSet) nextPresent(seq uint64) (uint64, bool) {
	i := ss.index(seq)
	if i == len(ss.s) {
		return 0, false
	}
	return max(seq, ss.s[i].lo), true
}

// absorbFloor removes everything <= floor and, while the lowest span starts
// right after the floor, raises the floor through it. It returns the new floor.
func (ss *spanSet) absorbFloor(floor uint64) uint64 {
	k := 0
	for k < len(ss.s) && ss.s[k].lo <= floor+1 {
		floor = max(floor, ss.s[k].hi)
		k++
	}
	ss.s = slices.Delete(ss.s, 0, k)
	return floor
}

// maxMember returns the largest member, or 0 for an empty set.
func (ss *spanSet) maxMember() uint64 {
	if len(ss.s) == 0 {
		return 0
	}
	return ss.s[len(ss.s)-1].hi
}

// encodeSpans appends spans as uvarint pairs (gap from the previous span's
// end, length - 1). Spans must be sorted and disjoint.
func encodeSpans(dst []byte, spans []span) []byte {
	var prev uint64
	for _, sp := range spans {
		dst = binary.AppendUvarint(dst, sp.lo-prev)
		dst = binary.AppendUvarint(dst, sp.hi-sp.lo)
		prev = sp.hi
	}
	return dst
}

// decodeSpans is the inverse of encodeSpans. It refuses payloads whose spans
// overlap, run backwards or overflow, because a well-formed ack record can
// never hold them: such a payload means corruption that the checksum missed
// or a bug, and must not be trusted.
func decodeSpans(p []byte) ([]span, error) {
	var out []span
	var prev uint64
	for off := 0; off < len(p); {
		gap, n := binary.Uvarint(p[off:])
		if n <= 0 {
			return nil, fmt.Errorf("ack spans: bad varint at byte %d", off)
		}
		off += n
		length, n := binary.Uvarint(p[off:])
		if n <= 0 {
			return nil, fmt.Errorf("ack spans: bad varint at byte %d", off)
		}
		off += n
		lo := prev + gap
		hi := lo + length
		if lo < prev || hi < lo || (len(out) > 0 && gap == 0) || lo == 0 {
			return nil, fmt.Errorf("ack spans: span %d (gap %d, length %d) overlaps, overflows or starts at 0", len(out), gap, length+1)
		}
		out = append(out, span{lo, hi})
		prev = hi
	}
	return out, nil
}

// spansOf turns a list of sequence numbers (any order, duplicates allowed)
// into sorted disjoint spans.
func spansOf(seqs []uint64) []span {
	sorted := slices.Clone(seqs)
	slices.Sort(sorted)
	var out []span
	for _, q := range sorted {
		if n := len(out); n > 0 && q <= out[n-1].hi+1 {
			out[n-1].hi = max(out[n-1].hi, q)
			continue
		}
		out = append(out, span{q, q})
	}
	return out
}
