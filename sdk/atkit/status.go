package atkit

import (
	"io"
	"strings"
	"sync/atomic"
)

// Helpers for a driver's sdk.StatusReporter.

// SIMState names a +CPIN answer, or a +CME ERROR's text, in
// sdk.ModemStatus.SIM's words: ready, absent, locked, busy, or the text
// itself in lower case.
func SIMState(v string) string {
	u := strings.ToUpper(strings.TrimSpace(v))
	switch {
	case u == "READY":
		return "ready"
	case strings.Contains(u, "NOT INSERTED"):
		return "absent"
	case strings.Contains(u, "PIN"), strings.Contains(u, "PUK"):
		return "locked"
	case strings.Contains(u, "BUSY"):
		return "busy"
	}
	return strings.ToLower(strings.TrimSpace(v))
}

// registrationRank orders registration states from most to least useful,
// in RegStat's words.
var registrationRank = []string{"home", "roaming", "searching", "denied", "sms only", "emergency only", "not registered", "unknown"}

// BestRegistration is the most useful of the registrations given (RegStat's
// words, e.g. of +CREG, +CGREG and +CEREG), "unknown" when none is.
func BestRegistration(regs ...string) string {
	best := len(registrationRank) - 1
	for _, r := range regs {
		for i, name := range registrationRank {
			if r == name && i < best {
				best = i
			}
		}
	}
	return registrationRank[best]
}

// SerialCounters count the bytes a driver writes to and reads from the
// modem's line, for sdk.ModemStatus's SerialTxBytes and SerialRxBytes. The
// zero value is ready; it is safe for concurrent use.
type SerialCounters struct {
	tx, rx atomic.Uint64
}

// Counts returns the bytes written and read so far.
func (c *SerialCounters) Counts() (tx, rx uint64) { return c.tx.Load(), c.rx.Load() }

// Reset sets both counts to zero.
func (c *SerialCounters) Reset() {
	c.tx.Store(0)
	c.rx.Store(0)
}

// Wrap returns line with its reads and writes counted into c.
func (c *SerialCounters) Wrap(line io.ReadWriteCloser) io.ReadWriteCloser {
	return &countingLine{line: line, c: c}
}

// countingLine is a line whose reads and writes are counted.
type countingLine struct {
	line io.ReadWriteCloser
	c    *SerialCounters
}

func (l *countingLine) Read(b []byte) (int, error) {
	n, err := l.line.Read(b)
	l.c.rx.Add(uint64(n))
	return n, err
}

func (l *countingLine) Write(b []byte) (int, error) {
	n, err := l.line.Write(b)
	l.c.tx.Add(uint64(n))
	return n, err
}

func (l *countingLine) Close() error { return l.line.Close() }
