package spool

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cellgate/cellgate/internal/backoff"
)

// Defaults applied by Open to zero-valued Options fields.
const (
	DefaultMaxBytes       int64 = 256 << 20
	DefaultSegmentBytes   int64 = 8 << 20
	DefaultMaxRecordBytes       = 256 << 10
)

// Policy says what Append does when a batch does not fit under MaxBytes.
type Policy int

const (
	// PolicyReject makes Append fail with ErrFull; nothing already in the
	// spool is touched. It is the zero value, so a spool never drops data
	// unless asked to.
	PolicyReject Policy = iota
	// PolicyDropOldest drops the oldest segments, acknowledged or not, until
	// the batch fits. Every unacknowledged record dropped is counted in
	// Stats.Dropped and logged.
	PolicyDropOldest
)

// String returns the configuration spelling of p: "reject" or "drop_oldest".
func (p Policy) String() string {
	switch p {
	case PolicyReject:
		return "reject"
	case PolicyDropOldest:
		return "drop_oldest"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// ParsePolicy parses the configuration spelling of a Policy. Anything other
// than "reject" or "drop_oldest" is an error that quotes the input.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "reject":
		return PolicyReject, nil
	case "drop_oldest":
		return PolicyDropOldest, nil
	}
	return 0, fmt.Errorf("spool: when_full %q is not a policy: want \"reject\" or \"drop_oldest\"", s)
}

// MarshalText implements encoding.TextMarshaler; it fails for an unknown Policy.
func (p Policy) MarshalText() ([]byte, error) {
	if p != PolicyReject && p != PolicyDropOldest {
		return nil, fmt.Errorf("spool: unknown policy %d", int(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParsePolicy.
func (p *Policy) UnmarshalText(b []byte) error {
	v, err := ParsePolicy(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Options configures Open. Only Dir is required.
type Options struct {
	// Dir holds the spool's files. Open creates it (mode 0750) if needed.
	Dir string
	// MaxBytes bounds the total size of the segment files, that is the
	// unacknowledged records plus acknowledged ones that still share a
	// segment with an unacknowledged one. 0 means DefaultMaxBytes.
	MaxBytes int64
	// WhenFull is what Append does when a batch would exceed MaxBytes.
	WhenFull Policy
	// SegmentBytes is the size at which the log rolls to a new segment file.
	// 0 means DefaultSegmentBytes. Open lowers it to MaxBytes/8 so that space
	// is reclaimed (and, under PolicyDropOldest, dropped) in steps of at most
	// an eighth of the spool.
	SegmentBytes int64
	// MaxRecordBytes is the largest payload Append accepts. 0 means
	// DefaultMaxRecordBytes, lowered if needed so that one record fits in
	// MaxBytes. An explicit value that cannot fit is an error.
	MaxRecordBytes int
	// Logger receives recovery reports and drop warnings. nil means
	// slog.Default().
	Logger *slog.Logger
	// NoSync skips fdatasync and directory syncs. Records then survive a
	// process crash but not a power loss. It exists for tests and as the
	// baseline of the benchmarks; production configurations never set it.
	NoSync bool

	// hook is a fault hook for this package's tests only (it is unexported,
	// so nothing outside the package can set it). When set, the spool calls
	// it at the named points of its write and recovery paths (the hook*
	// constants) and treats an error it returns as an I/O error there. The
	// crash tests use it to kill the process at an exact instant, such as
	// between a segment write and its fdatasync, or to stop a recovery
	// half-way through a salvage.
	hook func(point string) error
	// retry replaces recoveryRetry, for this package's tests only.
	retry backoff.Policy
	// noHold turns holdWhileSyncing off (a write per committer wake-up,
	// the policy before it), for this package's benchmarks' in-run
	// baseline only.
	noHold bool
}

// The points at which Options.hook is called.
const (
	// hookSegmentWritten: a group commit's records were written to the
	// segment file and not yet fdatasynced.
	hookSegmentWritten = "segment written"
	// hookAckWritten: an ack record was written and not yet fdatasynced.
	hookAckWritten = "ack written"
	// hookSegmentWrite, hookSegmentSync, hookAckWrite and hookAckSync come
	// just before a group commit's write to its segment, a segment's
	// fdatasync, an ack record's write and the ack log's fdatasync. An
	// error there fails the write or sync as a full disk does: a write
	// takes the first half of its bytes and then fails, a sync does not
	// happen and fails. The disk-full tests inject ENOSPC with them.
	hookSegmentWrite = "segment write"
	hookSegmentSync  = "segment sync"
	hookAckWrite     = "ack write"
	hookAckSync      = "ack sync"
	// hookAckCompact: the ack log is about to be compacted (an error fails
	// the compaction before it touches a file).
	hookAckCompact = "ack compact"
	// hookSalvageKept: recovery copied one damaged region of a segment to
	// its .corrupt or .torn file.
	hookSalvageKept = "salvage kept damage aside"
	// hookSalvagePiece: recovery installed one run of records salvaged from a
	// damaged segment as a segment file of its own.
	hookSalvagePiece = "salvage wrote a piece"
	// hookSalvageCut: recovery cut, replaced or removed the damaged segment
	// itself, before syncing the directory.
	hookSalvageCut = "salvage cut the segment"
)

// recoveryRetry spaces the committer's attempts to recover after a failed
// write or sync (the first is at once): a full disk is probed every 5 s at
// most, so appends resume within seconds of space coming back.
var recoveryRetry = backoff.Policy{Initial: 50 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.2}

// fault calls the fault hook, if any, at point.
func (o *Options) fault(point string) error {
	if o.hook == nil {
		return nil
	}
	if err := o.hook(point); err != nil {
		return fmt.Errorf("fault hook at %q: %w", point, err)
	}
	return nil
}

// normalize validates o and fills in defaults.
func (o Options) normalize() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("spool: options: Dir is empty")
	}
	if o.MaxBytes < 0 {
		return o, fmt.Errorf("spool: options: MaxBytes %d is negative", o.MaxBytes)
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.WhenFull != PolicyReject && o.WhenFull != PolicyDropOldest {
		return o, fmt.Errorf("spool: options: WhenFull %d is not a policy", int(o.WhenFull))
	}
	if o.SegmentBytes < 0 {
		return o, fmt.Errorf("spool: options: SegmentBytes %d is negative", o.SegmentBytes)
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	o.SegmentBytes = max(min(o.SegmentBytes, o.MaxBytes/8), 1)
	if o.MaxRecordBytes < 0 {
		return o, fmt.Errorf("spool: options: MaxRecordBytes %d is negative", o.MaxRecordBytes)
	}
	if o.MaxBytes <= headerSize {
		return o, fmt.Errorf("spool: options: MaxBytes %d cannot hold a single record (%d-byte header)", o.MaxBytes, headerSize)
	}
	fit := min(o.MaxBytes-headerSize, maxRecordLimit)
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = int(min(DefaultMaxRecordBytes, fit))
	}
	if int64(o.MaxRecordBytes) > fit {
		return o, fmt.Errorf("spool: options: MaxRecordBytes %d does not fit: at most %d with MaxBytes %d (record limit %d)",
			o.MaxRecordBytes, fit, o.MaxBytes, maxRecordLimit)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}
