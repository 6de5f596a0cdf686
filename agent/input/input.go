// Package input holds cellgate's local sources of readings: the HTTP ingest
// (POST /v1/readings), the UDP and Unix datagram ingest (JSON lines), and
// the demo generator. Each parses readings with package reading and hands
// their canonical JSON to a Sink, normally the spool, whose Append returns
// only once they are durable. README.md states each input's guarantees.
package input

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cellgate/cellgate/agent/reading"
)

// Sink is where accepted readings go. *spool.Spool satisfies it: Append
// stores the payloads as one all-or-nothing batch and returns only once they
// are durable, or fails (spool.ErrFull, spool.ErrTooLarge, spool.ErrClosed,
// a context error, an I/O error) having stored none of them, except that
// after a context error the batch may still become durable.
type Sink interface {
	Append(ctx context.Context, payloads ...[]byte) ([]uint64, error)
}

// Stats counts what an input did since it was made, for metrics.
type Stats struct {
	// Accepted counts readings the sink made durable.
	Accepted uint64
	// Rejected counts what was refused for its content: HTTP requests
	// answered 4xx, bad datagram lines and oversized datagrams.
	Rejected uint64
	// Failed counts what the sink refused: HTTP requests answered 503 or
	// 507 (or 413 for the spool's record limit); datagram and demo
	// readings, which are then lost.
	Failed uint64
}

// counters is the lock-free form of Stats.
type counters struct {
	accepted, rejected, failed atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{Accepted: c.accepted.Load(), Rejected: c.rejected.Load(), Failed: c.failed.Load()}
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
