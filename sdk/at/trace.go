package at

import (
	"io"
	"strconv"
	"sync"
	"time"
)

// traceTime is the timestamp layout of trace entries.
const traceTime = "2006-01-02T15:04:05.000000Z07:00"

// tracer writes the transcript of WithTrace. A nil *tracer does nothing, so
// the hot path pays one nil check when tracing is off.
type tracer struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func newTracer(w io.Writer) *tracer {
	if w == nil {
		return nil
	}
	return &tracer{w: w}
}

// entry writes "<time> <dir> <label><escaped text>\n".
func (t *tracer) entry(dir byte, label string, text []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := time.Now().UTC().AppendFormat(t.buf[:0], traceTime)
	b = append(b, ' ', dir, ' ')
	b = append(b, label...)
	b = appendEscaped(b, text)
	b = append(b, '\n')
	_, _ = t.w.Write(b) // a broken trace must not stop the channel
	t.buf = b[:0]
}

// appendEscaped appends text with Go escapes for anything not printable
// ASCII, without surrounding quotes.
func appendEscaped(b, text []byte) []byte {
	q := strconv.AppendQuoteToASCII(nil, string(text))
	return append(b, q[1:len(q)-1]...)
}

func (t *tracer) host(b []byte, payload bool) {
	if t == nil {
		return
	}
	if payload {
		t.entry('>', "[payload "+strconv.Itoa(len(b))+" bytes] ", b)
		return
	}
	t.entry('>', "", b)
}

// secret records a payload whose bytes must not be written down.
func (t *tracer) secret(n int) {
	if t == nil {
		return
	}
	t.entry('>', "[payload "+strconv.Itoa(n)+" bytes, redacted]", nil)
}

func (t *tracer) modem(line string) {
	if t == nil {
		return
	}
	t.entry('<', "", []byte(line))
}

func (t *tracer) prompt() {
	if t == nil {
		return
	}
	t.entry('<', "[prompt] >", nil)
}

func (t *tracer) payload(b []byte) {
	if t == nil {
		return
	}
	t.entry('<', "[payload "+strconv.Itoa(len(b))+" bytes] ", b)
}

func (t *tracer) dropped(n int) {
	if t == nil {
		return
	}
	t.entry('<', "[overlong line dropped, "+strconv.Itoa(n)+" bytes]", nil)
}
