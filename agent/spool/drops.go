package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Cause says why a reading that Append reported stored will never be
// delivered.
type Cause string

const (
	// CauseDamaged: its bytes went bad on disk and recovery could not keep
	// it (counted by the spool), or it could not be used as a reading
	// (counted by its consumer with CountDropped).
	CauseDamaged Cause = "damaged"
	// CauseDropOldest: Append dropped it to make room under PolicyDropOldest
	// (counted by the spool).
	CauseDropOldest Cause = "drop_oldest"
	// CauseRefusedUpstream: the upstream refused it for good (counted by the
	// consumer with CountDropped when it sets the reading aside).
	CauseRefusedUpstream Cause = "refused_upstream"
)

// Causes lists every Cause, in the order reports show them.
var Causes = []Cause{CauseDamaged, CauseDropOldest, CauseRefusedUpstream}

// Drops counts the readings that Append reported stored and that will never
// be delivered, by cause, over the life of the spool directory: the counts
// are kept in DIR/dropped.json and survive restarts and reopens.
type Drops struct {
	Damaged         uint64 `json:"damaged"`
	DropOldest      uint64 `json:"drop_oldest"`
	RefusedUpstream uint64 `json:"refused_upstream"`
	// DamagedUncounted counts the damaged regions whose readings could not
	// all be counted (a header was gone at the end of the newest segment):
	// Damaged holds only the readings that could be seen in them.
	DamagedUncounted uint64 `json:"damaged_uncounted_regions"`
}

// Total is the number of readings dropped, whatever the cause.
func (d Drops) Total() uint64 { return d.Damaged + d.DropOldest + d.RefusedUpstream }

// Of returns the count for one cause (0 for an unknown one).
func (d Drops) Of(c Cause) uint64 {
	switch c {
	case CauseDamaged:
		return d.Damaged
	case CauseDropOldest:
		return d.DropOldest
	case CauseRefusedUpstream:
		return d.RefusedUpstream
	}
	return 0
}

func (d Drops) plus(e Drops) Drops {
	return Drops{
		Damaged:          d.Damaged + e.Damaged,
		DropOldest:       d.DropOldest + e.DropOldest,
		RefusedUpstream:  d.RefusedUpstream + e.RefusedUpstream,
		DamagedUncounted: d.DamagedUncounted + e.DamagedUncounted,
	}
}

const (
	dropsName = "dropped.json"
	dropsTemp = "dropped.json.tmp"
)

// loadDrops reads the drop counts kept in the directory. A missing file is
// zero counts; an unreadable one is logged and replaced at the next drop.
func (s *Spool) loadDrops() error {
	if err := os.Remove(s.path(dropsTemp)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: remove stale %s: %w", s.path(dropsTemp), err)
	}
	b, err := os.ReadFile(s.path(dropsName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("spool: read drop counts: %w", err)
	}
	var d Drops
	if err := json.Unmarshal(b, &d); err != nil {
		s.log.Warn("spool: drop counts unreadable; counting from zero", "file", s.path(dropsName), "err", err)
		return nil
	}
	s.drops = d
	return nil
}

// addDrops adds d to the drop counts and writes them to the directory
// (temporary file, sync, rename, directory sync). The counts in memory
// move even when writing fails, which is returned.
func (s *Spool) addDrops(d Drops) error {
	if d == (Drops{}) {
		return nil
	}
	s.dropsMu.Lock()
	defer s.dropsMu.Unlock()
	s.drops = s.drops.plus(d)
	b, err := json.Marshal(s.drops)
	if err != nil {
		return fmt.Errorf("spool: encode drop counts: %w", err)
	}
	tmp := s.path(dropsTemp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("spool: write drop counts: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil && !s.opts.NoSync {
		err = fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path(dropsName))
	}
	if err == nil && !s.opts.NoSync {
		err = syncDir(s.opts.Dir)
	}
	if err != nil {
		return fmt.Errorf("spool: write drop counts to %s: %w", s.path(dropsName), err)
	}
	return nil
}

// CountDropped adds n readings that its consumer gave up for cause to the
// spool's drop counts (Stats().Drops), which are kept on disk. The consumer
// calls it for readings it read from the spool and acknowledged without
// delivering them: CauseRefusedUpstream for a batch the upstream refused
// for good, CauseDamaged for a record that is not a usable reading. It does
// not log: the caller says what happened.
func (s *Spool) CountDropped(cause Cause, n uint64) error {
	var d Drops
	switch cause {
	case CauseDamaged:
		d.Damaged = n
	case CauseDropOldest:
		d.DropOldest = n
	case CauseRefusedUpstream:
		d.RefusedUpstream = n
	default:
		return fmt.Errorf("spool: count dropped: unknown cause %q", cause)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return s.addDrops(d)
}
