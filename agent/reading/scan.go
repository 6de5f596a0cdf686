package reading

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner is a strict RFC 8259 reader over a byte slice that knows the
// exact byte offset of every problem, which encoding/json's Decoder does not
// report reliably. It expects valid UTF-8 (checked once up front by its
// callers) and refuses what encoding/json quietly repairs: lone surrogate
// escapes and duplicate object keys (the latter at the callers' level).
type scanner struct {
	data []byte
	pos  int
	// base is the body offset of data[0]: 0 when data is the whole body, the
	// reading's start when a Decoder scans one reading of a stream. Error
	// offsets are reported in the body.
	base int
}

// syntaxError is a JSON grammar error at a byte offset of the scanned data.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("invalid JSON at byte %d: %s", e.off, e.msg) }

func (s *scanner) errf(off int, format string, args ...any) *syntaxError {
	return &syntaxError{off: s.base + off, msg: fmt.Sprintf(format, args...)}
}

// ws skips insignificant whitespace.
func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next byte without consuming it; ok is false at the end.
func (s *scanner) peek() (byte, bool) {
	if s.pos >= len(s.data) {
		return 0, false
	}
	return s.data[s.pos], true
}

// unexpected describes the byte at the current position for an error
// message: the character, or the end of the input.
func (s *scanner) unexpected(context string) *syntaxError {
	if s.pos >= len(s.data) {
		return s.errf(s.pos, "unexpected end of input %s", context)
	}
	r, _ := utf8.DecodeRune(s.data[s.pos:])
	return s.errf(s.pos, "invalid character %q %s", r, context)
}

// expect consumes c or fails naming what was wanted.
func (s *scanner) expect(c byte, context string) error {
	if s.pos < len(s.data) && s.data[s.pos] == c {
		s.pos++
		return nil
	}
	return s.unexpected(context)
}

// next consumes whitespace and then one of the two delimiters that may
// follow an object member or array element, reporting which.
func (s *scanner) next(more, end byte, context string) (bool, error) {
	s.ws()
	if s.pos < len(s.data) {
		switch s.data[s.pos] {
		case more:
			s.pos++
			s.ws()
			return true, nil
		case end:
			s.pos++
			return false, nil
		}
	}
	return false, s.unexpected(context)
}

// str reads a string starting at the opening quote and returns its value.
func (s *scanner) str() (string, error) {
	if err := s.expect('"', "looking for a string"); err != nil {
		return "", err
	}
	start := s.pos
	// Fast path: most strings have no escapes and can be sliced directly.
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		if c == '"' {
			v := string(s.data[start:s.pos])
			s.pos++
			return v, nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
		s.pos++
	}
	buf := append([]byte(nil), s.data[start:s.pos]...)
	for {
		if s.pos >= len(s.data) {
			return "", s.errf(s.pos, "unexpected end of input in a string")
		}
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return string(buf), nil
		case c < 0x20:
			return "", s.errf(s.pos, "control character %q in a string (it must be escaped)", rune(c))
		case c != '\\':
			buf = append(buf, c)
			s.pos++
			continue
		}
		escAt := s.pos
		s.pos++
		if s.pos >= len(s.data) {
			return "", s.errf(s.pos, "unexpected end of input in a string escape")
		}
		e := s.data[s.pos]
		s.pos++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return "", s.errf(escAt, "invalid \\u escape in a string")
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
					s.pos += 2
					r2, ok = s.hex4()
					if !ok {
						return "", s.errf(s.pos-2, "invalid \\u escape in a string")
					}
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					return "", s.errf(escAt, "lone UTF-16 surrogate in a \\u escape")
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", s.errf(escAt, "invalid escape %q in a string", "\\"+string(rune(e)))
		}
	}
}

// hex4 reads the four hex digits of a \u escape.
func (s *scanner) hex4() (rune, bool) {
	if s.pos+4 > len(s.data) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(s.data[s.pos:s.pos+4]), 16, 16)
	if err != nil {
		return 0, false
	}
	s.pos += 4
	return rune(v), true
}

// number reads a number literal and returns it as written.
func (s *scanner) number() (string, error) {
	start := s.pos
	if s.pos < len(s.data) && s.data[s.pos] == '-' {
		s.pos++
	}
	switch c, ok := s.peek(); {
	case ok && c == '0':
		s.pos++
	case ok && c >= '1' && c <= '9':
		s.digits()
	default:
		return "", s.unexpected("in a number (want a digit)")
	}
	if c, ok := s.peek(); ok && c == '.' {
		s.pos++
		if s.digits() == 0 {
			return "", s.unexpected("after a decimal point (want a digit)")
		}
	}
	if c, ok := s.peek(); ok && (c == 'e' || c == 'E') {
		s.pos++
		if c, ok := s.peek(); ok && (c == '+' || c == '-') {
			s.pos++
		}
		if s.digits() == 0 {
			return "", s.unexpected("in an exponent (want a digit)")
		}
	}
	return string(s.data[start:s.pos]), nil
}

func (s *scanner) digits() int {
	n := 0
	for s.pos < len(s.data) && isDigit(s.data[s.pos]) {
		s.pos++
		n++
	}
	return n
}

// literal consumes one of true, false, null.
func (s *scanner) literal(word string) error {
	if len(s.data)-s.pos >= len(word) && string(s.data[s.pos:s.pos+len(word)]) == word {
		s.pos += len(word)
		return nil
	}
	return s.unexpected("looking for a value")
}

// kind names the JSON type of the value starting at the current position,
// for messages such as `want a string, got a number`.
func (s *scanner) kind() string {
	c, ok := s.peek()
	if !ok {
		return "nothing"
	}
	switch {
	case c == '"':
		return "a string"
	case c == '-' || isDigit(c):
		return "a number"
	case c == 't' || c == 'f':
		return "a bool"
	case c == 'n':
		return "null"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	}
	return "an invalid value"
}

// skip consumes one value of any kind, checking its syntax, without
// building it.
func (s *scanner) skip(depth int) error {
	if depth > maxSkipDepth {
		return s.errf(s.pos, "nested deeper than %d levels", maxSkipDepth)
	}
	c, ok := s.peek()
	if !ok {
		return s.unexpected("looking for a value")
	}
	switch {
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || isDigit(c):
		_, err := s.number()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '{':
		s.pos++
		s.ws()
		if c, ok := s.peek(); ok && c == '}' {
			s.pos++
			return nil
		}
		for {
			if _, err := s.str(); err != nil {
				return err
			}
			s.ws()
			if err := s.expect(':', "after an object key (want ':')"); err != nil {
				return err
			}
			s.ws()
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			more, err := s.next(',', '}', "after an object member (want ',' or '}')")
			if err != nil || !more {
				return err
			}
		}
	case c == '[':
		s.pos++
		s.ws()
		if c, ok := s.peek(); ok && c == ']' {
			s.pos++
			return nil
		}
		for {
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			more, err := s.next(',', ']', "after an array element (want ',' or ']')")
			if err != nil || !more {
				return err
			}
		}
	}
	return s.unexpected("looking for a value")
}

// maxSkipDepth bounds recursion when skipping values nobody will keep.
const maxSkipDepth = 64

// firstInvalidUTF8 returns the offset of the first byte that is not part of
// valid UTF-8, or -1.
func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}
