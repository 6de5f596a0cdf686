package reading

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestULIDEncodingRoundTripsAndSortsLikeBytes(t *testing.T) {
	for i := range 2000 {
		var id [16]byte
		for k := range id {
			id[k] = byte((i*131 + k*29) ^ (i >> (k % 8)))
		}
		s := encodeULID(id)
		if len(s) != 26 || s[0] > '7' {
			t.Fatalf("encodeULID(%x) = %q: not a canonical 26-character ULID", id, s)
		}
		back, ok := decodeULID(s)
		if !ok || back != id {
			t.Fatalf("decodeULID(%q) = %x, %v; want %x", s, back, ok, id)
		}
	}
	lo, hi := [16]byte{}, [16]byte{}
	for k := range hi {
		hi[k] = 0xff
	}
	if encodeULID(lo) != "00000000000000000000000000" || encodeULID(hi) != "7ZZZZZZZZZZZZZZZZZZZZZZZZZ" {
		t.Errorf("extremes: %s %s", encodeULID(lo), encodeULID(hi))
	}
	// Text order is byte order, so ids sort by time.
	a := idFromParts(1000, 5, 9)
	b := idFromParts(1001, 0, 0)
	if !(encodeULID(a) < encodeULID(b)) {
		t.Errorf("%s does not sort before %s", encodeULID(a), encodeULID(b))
	}
}

func TestDecodeULIDAcceptsOnlyTheCanonicalSpelling(t *testing.T) {
	good := encodeULID(idFromParts(1732680000123, 0xa1b2c3d4e5f6, 7))
	for _, s := range []string{
		strings.ToLower(good),       // lower case would re-encode differently
		"8" + good[1:],              // 131 bits
		good[:25],                   // short
		good + "0",                  // long
		good[:10] + "I" + good[11:], // I is not in the alphabet
		good[:10] + "U" + good[11:], // nor U
		"client-1",
	} {
		if _, ok := decodeULID(s); ok {
			t.Errorf("decodeULID(%q) accepted a non-canonical id", s)
		}
	}
	if _, ok := decodeULID(good); !ok {
		t.Errorf("decodeULID(%q) refused a canonical id", good)
	}
}

func TestIDGeneratorCountsWithinARunAndSortsByTime(t *testing.T) {
	g := testIDs(t)
	t0 := time.UnixMilli(1732680000123)
	var ids []string
	for i := range 5 {
		ids = append(ids, g.Next(t0.Add(time.Duration(i/2)*time.Millisecond)))
	}
	for i, s := range ids {
		u, ok := decodeULID(s)
		if !ok {
			t.Fatalf("%q is not a ULID", s)
		}
		ms, run, ctr := idParts(u)
		if ms != uint64(1732680000123+i/2) || run != 0xa1b2c3d4e5f6 || ctr != uint32(i) {
			t.Errorf("id %d = %d/%x/%d", i, ms, run, ctr)
		}
	}
	if !slices.IsSorted(ids) {
		t.Errorf("ids from one generator do not sort in issue order: %v", ids)
	}
}

func TestIDGeneratorMovesToTheNextRunWhenTheCounterWraps(t *testing.T) {
	g := testIDs(t)
	g.ctr = 1<<32 - 1
	now := time.UnixMilli(1732680000123)
	a, _ := decodeULID(g.Next(now))
	b, _ := decodeULID(g.Next(now))
	_, runA, ctrA := idParts(a)
	_, runB, ctrB := idParts(b)
	if runA != 0xa1b2c3d4e5f6 || ctrA != 1<<32-1 || runB != 0xa1b2c3d4e5f7 || ctrB != 0 {
		t.Errorf("around the wrap: %x/%d then %x/%d", runA, ctrA, runB, ctrB)
	}
	if a == b {
		t.Error("the wrap repeated an id")
	}
}

func TestIDGeneratorClampsTimesItCannotCarry(t *testing.T) {
	g := testIDs(t)
	for _, tc := range []struct {
		t  time.Time
		ms uint64
	}{
		{time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), uint64(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())},
	} {
		u, _ := decodeULID(g.Next(tc.t))
		if ms, _, _ := idParts(u); ms != tc.ms {
			t.Errorf("Next(%v) carries %d ms, want %d", tc.t, ms, tc.ms)
		}
	}
}

func TestNewIDGeneratorFailsWhenRandomnessDoes(t *testing.T) {
	boom := errors.New("entropy source gone")
	if _, err := NewIDGenerator(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("NewIDGenerator with a failing reader: %v, want it wrapped", err)
	}
	if _, err := NewIDGenerator(bytes.NewReader([]byte{1, 2, 3})); err == nil {
		t.Error("NewIDGenerator with 3 random bytes succeeded; it needs 6")
	}
}

func TestUUIDBinaryFormIsExactlyTheCanonicalSpelling(t *testing.T) {
	good := "f47ac10b-58cc-4372-a567-0e02b2c3d479"
	u, ok := parseUUID(good)
	if !ok || formatUUID(u) != good {
		t.Fatalf("parseUUID(%q) = %x, %v; formats back as %q", good, u, ok, formatUUID(u))
	}
	for _, s := range []string{
		strings.ToUpper(good),                    // would not format back the same
		"f47ac10b58cc4372a5670e02b2c3d479",       // no hyphens
		"{f47ac10b-58cc-4372-a567-0e02b2c3d479}", // braces
		"f47ac10b-58cc-4372-a567-0e02b2c3d47",    // short
		"f4-ac10b-58cc-4372-a567-0e02b2c3d4790",  // hyphen out of place
		"g47ac10b-58cc-4372-a567-0e02b2c3d479",   // not hex
	} {
		if _, ok := parseUUID(s); ok {
			t.Errorf("parseUUID(%q) accepted a non-canonical UUID", s)
		}
	}
}
