package spool

import (
	"fmt"
)

// Limits are the bounds of a spool that may change while it is open: how
// much it holds and what Append does when full. Open takes them from
// Options; SetLimits changes them.
type Limits struct {
	// MaxBytes is Options.MaxBytes, already defaulted (never 0 here).
	MaxBytes int64
	// WhenFull is Options.WhenFull.
	WhenFull Policy
}

// limits are the Limits in force with what they imply, read by Append and
// the committer at each use and replaced whole by SetLimits.
type limits struct {
	Limits
	// maxRecordBytes is Options.MaxRecordBytes as Open chose it, lowered
	// when needed so that one record fits in MaxBytes.
	maxRecordBytes int
	// segmentBytes is the size at which the log rolls, at most MaxBytes/8
	// so that space is reclaimed (and dropped) in steps of an eighth.
	segmentBytes int64
}

// limitsFor derives the limits l implies for a spool opened with opts
// (normalized): the record and segment sizes Open chose are ceilings, lowered
// to fit a smaller MaxBytes, never raised.
func limitsFor(opts Options, l Limits) (*limits, error) {
	if l.MaxBytes <= headerSize {
		return nil, fmt.Errorf("spool: limits: MaxBytes %d cannot hold a single record (%d-byte header)", l.MaxBytes, headerSize)
	}
	if l.WhenFull != PolicyReject && l.WhenFull != PolicyDropOldest {
		return nil, fmt.Errorf("spool: limits: WhenFull %d is not a policy", int(l.WhenFull))
	}
	return &limits{
		Limits:         l,
		maxRecordBytes: int(min(int64(opts.MaxRecordBytes), l.MaxBytes-headerSize)),
		segmentBytes:   max(min(opts.SegmentBytes, l.MaxBytes/8), 1),
	}, nil
}

// Limits returns the bounds in force.
func (s *Spool) Limits() Limits { return s.lim.Load().Limits }

// SetLimits changes the spool's bounds while it is open; the next Append
// is measured against them. Nothing stored is touched: a MaxBytes below
// what the spool holds refuses new readings (PolicyReject) or drops the
// oldest ones at the next Append (PolicyDropOldest), exactly as if the
// spool had filled up. The largest record Append accepts is lowered with a
// smaller MaxBytes so that one record still fits, and never raised above
// what Open chose. SetLimits fails, changing nothing, for a MaxBytes that
// cannot hold one record or an unknown policy.
func (s *Spool) SetLimits(l Limits) error {
	next, err := limitsFor(s.opts, l)
	if err != nil {
		return err
	}
	prev := s.lim.Swap(next)
	if prev.Limits != l {
		s.log.Info("spool: limits changed", "max_bytes", l.MaxBytes, "when_full", l.WhenFull.String(),
			"was_max_bytes", prev.MaxBytes, "was_when_full", prev.WhenFull.String())
	}
	return nil
}
