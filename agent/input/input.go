// Package input holds cellgate's local sources of readings: the HTTP ingest
// (POST /v1/readings), the UDP and Unix datagram ingest (JSON lines), and
// the demo generator. Each parses readings with package reading and hands
// their canonical JSON to a Sink, normally the spool, whose Append returns
// only once they are durable. README.md states each input's guarantees.
package input

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/agent/spool"
)

// Sink is where accepted readings go. *spool.Spool satisfies it: Append
// stores the payloads as one all-or-nothing batch and returns only once they
// are durable, or fails (spool.ErrFull, spool.ErrTooLarge, spool.ErrClosed,
// a context error, an I/O error) having stored none of them, except that
// after a context error the batch may still become durable. Once Append
// has returned without a context error, the sink keeps neither ctx nor
// payloads: the HTTP input reuses the context for a later request.
type Sink interface {
	Append(ctx context.Context, payloads ...[]byte) ([]uint64, error)
}

// Stats counts what an input did since it was made, for metrics. Every
// count is of readings; a refusal whose readings were not all read counts
// those read, including the one refused, and at least one.
type Stats struct {
	// Accepted counts readings the sink made durable.
	Accepted uint64
	// Rejected counts readings refused for what the client sent, or how:
	// ReasonBadReading, ReasonTooLarge, ReasonUnsupported, ReasonSlowBody.
	Rejected uint64
	// Failed counts readings not stored for the gateway's reasons:
	// ReasonBusy and the sink's (ReasonSpoolFull, ReasonSpoolTooLarge,
	// ReasonUnavailable). HTTP answered them 503, 507 or 413; datagram and
	// demo readings are then lost.
	Failed uint64
	// ByReason splits Rejected and Failed by reason, every Reason present.
	ByReason map[Reason]uint64
}

// Add returns the sum of s and o, reason by reason.
func (s Stats) Add(o Stats) Stats {
	sum := Stats{Accepted: s.Accepted + o.Accepted, Rejected: s.Rejected + o.Rejected, Failed: s.Failed + o.Failed, ByReason: make(map[Reason]uint64, len(reasons))}
	for _, why := range reasons {
		sum.ByReason[why] = s.ByReason[why] + o.ByReason[why]
	}
	return sum
}

// Reason says why readings were refused or lost; it is the reason label of
// cellgate_input_rejected_readings_total.
type Reason string

// Reasons, with the HTTP answer each comes with.
const (
	// ReasonBadReading: a reading or body that does not parse (400), a bad
	// datagram line.
	ReasonBadReading Reason = "bad_reading"
	// ReasonTooLarge: a body over max_body (413), a datagram over 64 KiB.
	ReasonTooLarge Reason = "too_large"
	// ReasonUnsupported: a Content-Type other than JSON or a
	// Content-Encoding (415).
	ReasonUnsupported Reason = "unsupported"
	// ReasonSlowBody: a body arriving slower than the minimum rate (408).
	ReasonSlowBody Reason = "slow_body"
	// ReasonBusy: no memory for a large body within 10 s (503).
	ReasonBusy Reason = "busy"
	// ReasonSpoolFull: the spool is full under when_full: reject (507).
	ReasonSpoolFull Reason = "spool_full"
	// ReasonSpoolTooLarge: a reading or batch over the spool's limits (413).
	ReasonSpoolTooLarge Reason = "spool_too_large"
	// ReasonUnavailable: any other sink failure: closed, I/O error, no
	// durability within 30 s (503).
	ReasonUnavailable Reason = "unavailable"
)

// reasons lists every Reason, in the order counters keeps them; the first
// clientReasons are the client's (Stats.Rejected), the rest the gateway's
// (Stats.Failed).
var reasons = [...]Reason{ReasonBadReading, ReasonTooLarge, ReasonUnsupported, ReasonSlowBody, ReasonBusy, ReasonSpoolFull, ReasonSpoolTooLarge, ReasonUnavailable}

const clientReasons = 4

// sinkReason is the Reason for readings a Sink's Append refused with err.
func sinkReason(err error) Reason {
	switch {
	case errors.Is(err, spool.ErrFull):
		return ReasonSpoolFull
	case errors.Is(err, spool.ErrTooLarge):
		return ReasonSpoolTooLarge
	}
	return ReasonUnavailable
}

// readingsRefused is how many readings a refusal for err counts when read
// readings had been parsed before it: those, and the one err names.
func readingsRefused(err error, read int) int {
	var pe *reading.ParseError
	if errors.As(err, &pe) && pe.Index >= read {
		return pe.Index + 1
	}
	return read
}

// counters is the lock-free form of Stats.
type counters struct {
	accepted atomic.Uint64
	rejected [len(reasons)]atomic.Uint64
}

func (c *counters) reject(why Reason, readings int) {
	i := slices.Index(reasons[:], why)
	if i < 0 {
		panic("input: unknown reason " + string(why))
	}
	c.rejected[i].Add(uint64(max(readings, 1)))
}

func (c *counters) snapshot() Stats {
	st := Stats{Accepted: c.accepted.Load(), ByReason: make(map[Reason]uint64, len(reasons))}
	for i, why := range reasons {
		n := c.rejected[i].Load()
		st.ByReason[why] = n
		if i < clientReasons {
			st.Rejected += n
		} else {
			st.Failed += n
		}
	}
	return st
}

// marshalReadings writes the readings' canonical JSON into one buffer and
// returns a payload per reading sliced from it: one allocation per call
// rather than per reading. Parse has validated the readings, so an error
// here is a bug in package reading, and is reported as such.
func marshalReadings(rs []reading.Reading) ([][]byte, error) {
	buf := make([]byte, 0, len(rs)*128)
	ends := make([]int, len(rs))
	for i, r := range rs {
		var err error
		if buf, err = r.AppendJSON(buf); err != nil {
			return nil, err
		}
		ends[i] = len(buf)
	}
	payloads := make([][]byte, len(rs))
	start := 0
	for i, end := range ends {
		payloads[i] = buf[start:end:end]
		start = end
	}
	return payloads, nil
}

// logLimiter lets through at most burst log lines of one kind per window and
// counts the rest, so a sender spraying garbage or a full spool cannot flood
// the log; the next line let through says how many were suppressed.
type logLimiter struct {
	mu         sync.Mutex
	window     time.Duration
	burst      int
	start      time.Time
	n          int
	suppressed int
}

func newLogLimiter() *logLimiter { return &logLimiter{window: 10 * time.Second, burst: 10} }

// allow reports whether to log now, and how many lines were suppressed
// since the last one logged.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= l.window {
		l.start, l.n = now, 0
	}
	if l.n >= l.burst {
		l.suppressed++
		return false, 0
	}
	l.n++
	s := l.suppressed
	l.suppressed = 0
	return true, s
}

// log emits a record if allow lets it through, noting how many were
// suppressed before it.
func (l *logLimiter) log(ctx context.Context, log *slog.Logger, level slog.Level, msg string, args ...any) {
	ok, suppressed := l.allow(time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	log.Log(ctx, level, msg, args...)
}
