package spool

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// SetLimits takes effect at the next Append, while the spool is open, and
// leaves what is stored alone: lowering MaxBytes under reject refuses new
// readings and drops none; switching to drop_oldest makes room by dropping
// the oldest; raising it again takes readings again.
func TestSetLimitsWhileOpen(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir(), MaxBytes: 64 << 10, SegmentBytes: 1 << 10})
	_, seqs := appendEach(t, s, "before", 200, nil) // about 14 KiB
	held := s.Stats().DiskBytes

	if err := s.SetLimits(Limits{MaxBytes: 8 << 10, WhenFull: PolicyReject}); err != nil {
		t.Fatal(err)
	}
	if got := s.Limits(); got != (Limits{MaxBytes: 8 << 10, WhenFull: PolicyReject}) {
		t.Fatalf("Limits() = %+v after SetLimits", got)
	}
	if _, err := s.Append(context.Background(), payloadOf("over", 0)); !errors.Is(err, ErrFull) {
		t.Fatalf("append over the lowered limit under reject: %v, want ErrFull", err)
	}
	if st := s.Stats(); st.Pending != uint64(len(seqs)) || st.Dropped != 0 || st.DiskBytes != held {
		t.Fatalf("lowering the limit changed what is stored: %+v", st)
	}

	if err := s.SetLimits(Limits{MaxBytes: 8 << 10, WhenFull: PolicyDropOldest}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, payloadOf("dropping", 0))
	st := s.Stats()
	if st.Dropped == 0 || st.DiskBytes > 8<<10 {
		t.Fatalf("drop_oldest under the lowered limit: %+v", st)
	}

	if err := s.SetLimits(Limits{MaxBytes: 64 << 10, WhenFull: PolicyReject}); err != nil {
		t.Fatal(err)
	}
	appendEach(t, s, "after", 100, nil)
	checkDiskStats(t, s)
}

// A lowered MaxBytes lowers the largest record to what still fits; it is
// never raised above what Open chose.
func TestSetLimitsRecordSize(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir(), MaxBytes: 64 << 10, MaxRecordBytes: 4000})
	if err := s.SetLimits(Limits{MaxBytes: 2048}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(context.Background(), make([]byte, 2048)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a record larger than the lowered MaxBytes: %v, want ErrTooLarge", err)
	}
	if err := s.SetLimits(Limits{MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(context.Background(), make([]byte, 4001)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a record over Open's MaxRecordBytes after raising MaxBytes: %v, want ErrTooLarge", err)
	}
	mustAppend(t, s, make([]byte, 4000))
}

func TestSetLimitsRefusesNonsense(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir()})
	before := s.Limits()
	for _, l := range []Limits{{MaxBytes: 0}, {MaxBytes: headerSize}, {MaxBytes: 1 << 20, WhenFull: Policy(7)}} {
		if err := s.SetLimits(l); err == nil {
			t.Errorf("SetLimits(%+v) accepted", l)
		}
	}
	if got := s.Limits(); got != before {
		t.Fatalf("refused SetLimits changed the limits: %+v, was %+v", got, before)
	}
}

// SetLimits races with nothing: appends keep going while it runs (the race
// detector watches).
func TestSetLimitsConcurrentWithAppends(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir(), MaxBytes: 1 << 20, NoSync: true})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				if _, err := s.Append(context.Background(), payloadOf("w", w*1000+i)); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		})
	}
	for i := range 50 {
		policy := PolicyReject
		if i%2 == 1 {
			policy = PolicyDropOldest
		}
		if err := s.SetLimits(Limits{MaxBytes: int64(512+i) << 10, WhenFull: policy}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}
