package spool

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDropsAreCountedAndKept: drop_oldest drops and what the consumer
// reports with CountDropped add up by cause in Stats().Drops, and the
// counts are the directory's: a reopen keeps them.
func TestDropsAreCountedAndKept(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, MaxBytes: 8 << 10, WhenFull: PolicyDropOldest, Logger: discardLogger()})
	appendEach(t, s, "drop", 400, nil)
	st := s.Stats()
	if st.Dropped == 0 || st.Drops.DropOldest != st.Dropped {
		t.Fatalf("after overrunning the spool: dropped %d, drops %+v", st.Dropped, st.Drops)
	}
	if err := s.CountDropped(CauseRefusedUpstream, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.CountDropped(CauseDamaged, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.CountDropped("lost_in_space", 1); err == nil || !strings.Contains(err.Error(), "lost_in_space") {
		t.Fatalf("CountDropped with an unknown cause: %v", err)
	}
	want := Drops{Damaged: 2, DropOldest: st.Dropped, RefusedUpstream: 3}
	if got := s.Stats().Drops; got != want || got.Total() != st.Dropped+5 {
		t.Fatalf("drops %+v, want %+v", got, want)
	}
	if d := s.Stats().Drops; d.Of(CauseDamaged) != 2 || d.Of(CauseDropOldest) != st.Dropped || d.Of(CauseRefusedUpstream) != 3 || len(Causes) != 3 {
		t.Errorf("Of by cause: %d, %d, %d", d.Of(CauseDamaged), d.Of(CauseDropOldest), d.Of(CauseRefusedUpstream))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.CountDropped(CauseDamaged, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("CountDropped after Close: %v, want ErrClosed", err)
	}

	s = openT(t, Options{Dir: dir, MaxBytes: 8 << 10, WhenFull: PolicyDropOldest, Logger: discardLogger()})
	if got := s.Stats(); got.Drops != want || got.Dropped != 0 {
		t.Fatalf("after a reopen: drops %+v (want %+v), dropped since open %d", got.Drops, want, got.Dropped)
	}
	s.Close()

	// Unreadable counts start again from zero, and are replaced at the
	// next drop.
	if err := os.WriteFile(filepath.Join(dir, dropsName), []byte("{not json"), 0o640); err != nil {
		t.Fatal(err)
	}
	s = openT(t, Options{Dir: dir, Logger: discardLogger()})
	if got := s.Stats().Drops; got != (Drops{}) {
		t.Fatalf("drops from an unreadable file: %+v", got)
	}
	if err := s.CountDropped(CauseRefusedUpstream, 7); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, Options{Dir: dir, Logger: discardLogger()})
	if got := s.Stats().Drops; got != (Drops{RefusedUpstream: 7}) {
		t.Fatalf("drops after replacing an unreadable file: %+v", got)
	}
}
