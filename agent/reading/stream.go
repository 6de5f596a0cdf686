package reading

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// decoderWindow is the size of a Decoder's read buffer.
const decoderWindow = 16 << 10

// Decoder reads the body Parse takes (one JSON object, or an array of 1 to
// Limits.MaxReadings of them) from a stream, one reading at a time and under
// the same rules, so that a large body is never held whole: a Decoder holds
// a 16 KiB read buffer and the bytes of the reading being decoded, at most
// Limits.MaxReadingBytes. A reading that grows past that limit is refused as
// soon as it does, without reading the rest of it.
//
// Next returns the readings in order, then io.EOF once the body has ended
// well; a reading returned is good on its own, the body only once io.EOF
// came. Errors are a *ParseError for the body's content, with Index and
// Offset in the whole body as Parse gives them, or the reader's error,
// wrapped; once Next failed it returns the same error again.
//
// Parse and a Decoder accept the same bodies and give the same readings
// (FuzzDecoderMatchesParse checks it). Where a stream cannot look ahead,
// the error they name may differ: a reading over the size limit is refused
// for its size before its syntax is checked; invalid UTF-8 is found in
// document order, inside the reading that holds it (or as an invalid
// character between readings), not before everything else; and a body that
// is neither an object nor an array is refused by its first character.
type Decoder struct {
	r io.Reader
	p parser // now, limits and ids; its scanner is set for each reading

	win    []byte // read buffer; win[lo:hi] is not consumed yet
	lo, hi int
	off    int   // body offset of win[lo]
	eof    bool  // r said io.EOF
	rerr   error // r failed otherwise

	state decoderState
	n     int    // readings returned
	obj   []byte // the bytes of the reading being decoded
	err   error  // what Next returns from now on
}

type decoderState int

const (
	atStart      decoderState = iota // nothing read yet
	afterObject                      // the body's one object, or the array's ']', was read
	afterElement                     // an array element was read: ',' or ']' comes next
	atEnd                            // the body ended well
)

// NewDecoder returns a Decoder reading the body from r. now and lim play
// their Parse roles: absent timestamps become now, absent ids are assigned
// by the process's IDGenerator.
func NewDecoder(r io.Reader, now time.Time, lim Limits) *Decoder {
	d := &Decoder{p: parser{lim: lim.withDefaults(), ids: defaultIDs}}
	d.Reset(r, now)
	return d
}

// Reset makes d read a new body from r, keeping its buffers and limits.
func (d *Decoder) Reset(r io.Reader, now time.Time) {
	if d.win == nil {
		d.win = make([]byte, decoderWindow)
	}
	d.r = r
	d.p.now, d.p.s = canonicalTime(now), scanner{}
	d.lo, d.hi, d.off = 0, 0, 0
	d.eof, d.rerr = false, nil
	d.state, d.n, d.err = atStart, 0, nil
	d.obj = d.obj[:0]
}

// Next returns the body's next reading, or io.EOF after the last one of a
// good body, or the error that ends the body (see Decoder).
func (d *Decoder) Next() (Reading, error) {
	if d.err != nil {
		return Reading{}, d.err
	}
	r, err := d.next()
	if err != nil {
		d.err = err
	}
	return r, err
}

func (d *Decoder) next() (Reading, error) {
	switch d.state {
	case atStart:
		if !d.skipSpace() {
			return Reading{}, d.endOfInput(&ParseError{Index: -1, Problem: "empty (want a JSON object or an array of objects)", Offset: int64(d.off)})
		}
		switch d.win[d.lo] {
		case '{':
			d.state = afterObject
			return d.reading()
		case '[':
			d.advance(1)
			if d.skipSpace() && d.win[d.lo] == ']' {
				return Reading{}, &ParseError{Index: -1, Problem: "an empty array holds no readings", Offset: int64(d.off)}
			}
			d.state = afterElement
			return d.element()
		}
		s := d.here()
		if k := s.kind(); k != "an invalid value" {
			return Reading{}, &ParseError{Index: -1, Problem: "want a JSON object or an array of objects, got " + k, Offset: int64(d.off)}
		}
		return Reading{}, syntaxParseError(s.unexpected("looking for a value"))
	case afterElement:
		if !d.skipSpace() {
			return Reading{}, d.endOfInput(syntaxParseError(d.here().unexpected("after a reading (want ',' or ']')")))
		}
		switch d.win[d.lo] {
		case ',':
			d.advance(1)
			d.skipSpace()
			return d.element()
		case ']':
			d.advance(1)
			d.state = afterObject
			return d.next()
		}
		return Reading{}, syntaxParseError(d.here().unexpected("after a reading (want ',' or ']')"))
	case afterObject:
		if d.skipSpace() {
			return Reading{}, syntaxParseError(d.here().unexpected("after the readings"))
		}
		if d.rerr != nil {
			return Reading{}, d.readError()
		}
		d.state = atEnd
	}
	return Reading{}, io.EOF
}

// element decodes the array element at the current position (after any
// space), with Parse's checks on what may start one.
func (d *Decoder) element() (Reading, error) {
	if d.n == d.p.lim.MaxReadings {
		return Reading{}, &ParseError{Index: -1, Problem: "more than " + strconv.Itoa(d.p.lim.MaxReadings) + " readings in one body", Offset: int64(d.off)}
	}
	if d.lo < d.hi && d.win[d.lo] != '{' {
		switch c := d.win[d.lo]; c {
		case ']', ',', '}':
			return Reading{}, syntaxParseError(d.here().unexpected("looking for a value"))
		}
		return Reading{}, &ParseError{Index: d.n, Problem: "want a JSON object, got " + d.here().kind(), Offset: int64(d.off)}
	}
	return d.reading()
}

// reading collects the bytes of the object starting at the current position
// (up to its matching brace, counting braces and brackets outside strings;
// the parser then checks the syntax) and parses them as reading d.n. At the
// end of input it parses what there is, so that the parser names what is
// missing.
func (d *Decoder) reading() (Reading, error) {
	start := d.off
	limit := d.p.lim.MaxReadingBytes
	d.obj = d.obj[:0]
	depth, inString, escaped := 0, false, false
	for done := false; !done; {
		if d.lo == d.hi && !d.fill() {
			if d.rerr != nil {
				return Reading{}, d.readError()
			}
			break
		}
		b := d.win[d.lo:d.hi]
		i := 0
	scan:
		for ; i < len(b); i++ {
			c := b[i]
			if inString {
				switch {
				case escaped:
					escaped = false
				case c == '\\':
					escaped = true
				case c == '"':
					inString = false
				}
				continue
			}
			switch c {
			case '"':
				inString = true
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth <= 0 {
					i++
					done = true
					break scan
				}
			}
		}
		if len(d.obj)+i > limit {
			return Reading{}, &ParseError{Index: d.n, Problem: "more than " + strconv.Itoa(limit) + " bytes, the limit per reading", Offset: int64(start)}
		}
		d.obj = append(d.obj, b[:i]...)
		d.advance(i)
	}
	if off := firstInvalidUTF8(d.obj); off >= 0 {
		return Reading{}, &ParseError{Index: -1, Problem: "invalid UTF-8 at byte " + strconv.Itoa(start+off), Offset: int64(start + off)}
	}
	d.p.s = scanner{data: d.obj, base: start}
	r, err := d.p.reading(d.n)
	if err != nil {
		return Reading{}, err
	}
	if d.p.s.pos != len(d.obj) {
		// Braces and brackets matched differently than the parser read
		// them; the body is invalid there.
		return Reading{}, syntaxParseError(d.p.s.unexpected("after a reading"))
	}
	d.n++
	return r, nil
}

// advance consumes n buffered bytes.
func (d *Decoder) advance(n int) {
	d.lo += n
	d.off += n
}

// fill reads more input into an empty window and reports whether any
// arrived; false means the input ended (d.eof) or failed (d.rerr).
func (d *Decoder) fill() bool {
	d.lo, d.hi = 0, 0
	return d.readMore()
}

// readMore reads into the free end of the window.
func (d *Decoder) readMore() bool {
	for empty := 0; !d.eof && d.rerr == nil; {
		n, err := d.r.Read(d.win[d.hi:])
		d.hi += n
		switch {
		case errors.Is(err, io.EOF):
			d.eof = true
		case err != nil:
			d.rerr = err
		case n == 0:
			if empty++; empty == 100 {
				d.rerr = io.ErrNoProgress
			}
		}
		if n > 0 {
			return true
		}
	}
	return false
}

// skipSpace consumes whitespace and reports whether a byte follows (false
// at the end of input, or when the input failed).
func (d *Decoder) skipSpace() bool {
	for {
		if d.lo == d.hi && !d.fill() {
			return false
		}
		switch d.win[d.lo] {
		case ' ', '\t', '\n', '\r':
			d.advance(1)
		default:
			return true
		}
	}
}

// here returns a scanner over what is buffered at the current position,
// holding at least a whole character unless the input ends first, for the
// messages that describe it.
func (d *Decoder) here() *scanner {
	if d.hi-d.lo < utf8.UTFMax {
		copy(d.win, d.win[d.lo:d.hi])
		d.lo, d.hi = 0, d.hi-d.lo
		for d.hi < utf8.UTFMax && d.readMore() {
		}
	}
	return &scanner{data: d.win[d.lo:d.hi], base: d.off}
}

// endOfInput is perr when the input really ended, or the read error that
// cut it short.
func (d *Decoder) endOfInput(perr *ParseError) error {
	if d.rerr != nil {
		return d.readError()
	}
	return perr
}

func (d *Decoder) readError() error {
	return fmt.Errorf("body: reading at byte %d: %w", d.off, d.rerr)
}
