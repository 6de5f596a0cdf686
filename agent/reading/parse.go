package reading

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// Parse parses a body of readings, as the HTTP and datagram inputs receive
// it: one JSON object or an array of them, in UTF-8.
//
// It is strict: unknown and duplicate fields are refused, sensor and value
// are required, every field is checked against the rules of Reading, and
// the body must hold between 1 and lim.MaxReadings readings, each at most
// lim.MaxReadingBytes long. id, ts, unit and tags may be absent or null. An
// absent ts becomes now (UTC, millisecond precision); an absent id is
// assigned by the process's IDGenerator and carries the reading's ts. ts may be an RFC 3339 string (any
// offset; converted to UTC, digits below the millisecond cut) or an integer
// number of unix milliseconds.
//
// Nothing is returned unless every reading is good. The error is a
// *ParseError naming the reading (Index) and field of the first problem in
// document order.
func Parse(body []byte, now time.Time, lim Limits) ([]Reading, error) {
	return ParseWithIDs(body, now, lim, defaultIDs)
}

// ParseWithIDs is Parse with the id generator given: tests use it for
// reproducible ids. ids must not be nil.
func ParseWithIDs(body []byte, now time.Time, lim Limits, ids *IDGenerator) ([]Reading, error) {
	if off := firstInvalidUTF8(body); off >= 0 {
		return nil, &ParseError{Index: -1, Problem: "invalid UTF-8 at byte " + strconv.Itoa(off), Offset: int64(off)}
	}
	p := parser{s: scanner{data: body}, now: canonicalTime(now), lim: lim.withDefaults(), ids: ids}
	p.s.ws()
	c, ok := p.s.peek()
	if !ok {
		return nil, &ParseError{Index: -1, Problem: "empty (want a JSON object or an array of objects)", Offset: int64(p.s.pos)}
	}
	var out []Reading
	switch c {
	case '{':
		r, err := p.reading(0)
		if err != nil {
			return nil, err
		}
		out = []Reading{r}
	case '[':
		p.s.pos++
		p.s.ws()
		if c, ok := p.s.peek(); ok && c == ']' {
			return nil, &ParseError{Index: -1, Problem: "an empty array holds no readings", Offset: int64(p.s.pos)}
		}
		for i := 0; ; i++ {
			if i == p.lim.MaxReadings {
				return nil, &ParseError{Index: -1, Problem: "more than " + strconv.Itoa(p.lim.MaxReadings) + " readings in one body", Offset: int64(p.s.pos)}
			}
			if c, ok := p.s.peek(); ok && c != '{' {
				if c == ']' || c == ',' || c == '}' {
					return nil, syntaxParseError(p.s.unexpected("looking for a value"))
				}
				return nil, &ParseError{Index: i, Problem: "want a JSON object, got " + p.s.kind(), Offset: int64(p.s.pos)}
			}
			r, err := p.reading(i)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
			more, err := p.s.next(',', ']', "after a reading (want ',' or ']')")
			if err != nil {
				return nil, syntaxParseError(err)
			}
			if !more {
				break
			}
		}
	default:
		if err := p.s.skip(0); err != nil {
			return nil, syntaxParseError(err)
		}
		return nil, &ParseError{Index: -1, Problem: "want a JSON object or an array of objects, got " + kindOf(c), Offset: 0}
	}
	p.s.ws()
	if p.s.pos != len(body) {
		return nil, syntaxParseError(p.s.unexpected("after the readings"))
	}
	return out, nil
}

func kindOf(c byte) string {
	s := scanner{data: []byte{c}}
	return s.kind()
}

func syntaxParseError(err error) *ParseError {
	var se *syntaxError
	if errors.As(err, &se) {
		return &ParseError{Index: -1, Problem: se.Error(), Offset: int64(se.off)}
	}
	return &ParseError{Index: -1, Problem: err.Error(), Offset: -1}
}

// parser holds the state of one Parse or Unmarshal call.
type parser struct {
	s   scanner
	now time.Time
	lim Limits
	ids *IDGenerator
	// stored is set by Unmarshal: id and ts are required, nothing assigned.
	stored bool
}

// Bits of parser.reading's seen set, in canonical field order.
const (
	seenID = 1 << iota
	seenSensor
	seenTS
	seenValue
	seenUnit
	seenTags
)

func fieldBit(name string) int {
	switch name {
	case "id":
		return seenID
	case "sensor":
		return seenSensor
	case "ts":
		return seenTS
	case "value":
		return seenValue
	case "unit":
		return seenUnit
	case "tags":
		return seenTags
	}
	return 0
}

// reading parses the object at the current position as reading index.
func (p *parser) reading(index int) (Reading, error) {
	start := p.s.pos
	r, err := p.readingFields()
	if err == nil && p.s.pos-start > p.lim.MaxReadingBytes {
		err = &fieldError{problem: strconv.Itoa(p.s.pos-start) + " bytes, more than the limit of " + strconv.Itoa(p.lim.MaxReadingBytes) + " per reading"}
	}
	if err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			return Reading{}, &ParseError{Index: index, Field: fe.field, Problem: fe.problem, Offset: int64(p.s.base + start)}
		}
		return Reading{}, syntaxParseError(err)
	}
	return r, nil
}

func (p *parser) readingFields() (Reading, error) {
	var r Reading
	if err := p.s.expect('{', "looking for a reading object"); err != nil {
		return r, err
	}
	p.s.ws()
	seen := 0
	if c, ok := p.s.peek(); !ok || c != '}' {
		for {
			key, err := p.memberKey()
			if err != nil {
				return r, err
			}
			bit := fieldBit(key)
			if bit == 0 {
				return r, fieldErrf(key, "unknown field (want %s)", fieldsWanted)
			}
			if seen&bit != 0 {
				return r, fieldErrf(key, "duplicate field")
			}
			seen |= bit
			if err := p.field(&r, key); err != nil {
				return r, err
			}
			more, err := p.s.next(',', '}', "after an object member (want ',' or '}')")
			if err != nil {
				return r, err
			}
			if !more {
				break
			}
		}
	} else {
		p.s.pos++
	}
	if r.Sensor == "" {
		return r, fieldErrf("sensor", "missing")
	}
	if r.Value == nil {
		return r, fieldErrf("value", "missing")
	}
	if p.stored {
		if r.ID == "" {
			return r, fieldErrf("id", "missing")
		}
		if r.TS.IsZero() {
			return r, fieldErrf("ts", "missing")
		}
	}
	if r.TS.IsZero() {
		r.TS = p.now
	}
	if r.ID == "" {
		// The id carries the reading's ts, not the arrival time, so the
		// compact encodings write it as a counter step alone.
		r.ID = p.ids.Next(r.TS)
	}
	return r, nil
}

// memberKey reads an object member's key and the ':' after it, leaving the
// position at the member's value.
func (p *parser) memberKey() (string, error) {
	key, err := p.s.str()
	if err != nil {
		return "", err
	}
	p.s.ws()
	if err := p.s.expect(':', "after an object key (want ':')"); err != nil {
		return "", err
	}
	p.s.ws()
	return key, nil
}

// isNull consumes a null and reports whether there was one.
func (p *parser) isNull() (bool, error) {
	if c, ok := p.s.peek(); ok && c == 'n' {
		return true, p.s.literal("null")
	}
	return false, nil
}

// stringField reads a field that must be a string.
func (p *parser) stringField(name string) (string, error) {
	if c, ok := p.s.peek(); !ok || c != '"' {
		if k := p.s.kind(); k != "an invalid value" && k != "nothing" {
			return "", fieldErrf(name, "want a string, got %s", k)
		}
	}
	return p.s.str()
}

// field reads the value of the member key into r. On error r may hold
// part of it; the caller drops the whole reading.
func (p *parser) field(r *Reading, key string) error {
	switch key {
	case "sensor":
		if c, ok := p.s.peek(); ok && c == 'n' {
			return fieldErrf("sensor", "null (want a string)")
		}
	case "value":
		// value explains a null itself.
	default:
		// id, ts, unit and tags may be null, which is the same as absent.
		if null, err := p.isNull(); null || err != nil {
			return err
		}
	}
	var err error
	switch key {
	case "id":
		if r.ID, err = p.stringField("id"); err == nil {
			err = checkID(r.ID)
		}
	case "sensor":
		if r.Sensor, err = p.stringField("sensor"); err == nil {
			err = checkName("sensor", r.Sensor, MaxSensorLen)
		}
	case "ts":
		r.TS, err = p.timestamp()
	case "value":
		r.Value, err = p.value("value", 0)
	case "unit":
		if r.Unit, err = p.stringField("unit"); err == nil {
			err = checkText("unit", r.Unit, MaxUnitLen)
		}
	case "tags":
		r.Tags, err = p.tags()
	}
	return err
}

// timestamp reads ts: an RFC 3339 string or integer unix milliseconds.
func (p *parser) timestamp() (time.Time, error) {
	c, _ := p.s.peek()
	switch {
	case c == '"':
		s, err := p.s.str()
		if err != nil {
			return time.Time{}, err
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fieldErrf("ts", "%q is not an RFC 3339 time such as 2024-11-27T04:00:00.123Z", s)
		}
		if err := checkTime(t); err != nil {
			return time.Time{}, err
		}
		return canonicalTime(t), nil
	case c == '-' || isDigit(c):
		lit, err := p.s.number()
		if err != nil {
			return time.Time{}, err
		}
		ms, err := strconv.ParseInt(lit, 10, 64)
		if err != nil || ms < 0 || ms > maxUnixMilli {
			return time.Time{}, fieldErrf("ts", "%s is not a whole number of unix milliseconds between 0 and %d", lit, int64(maxUnixMilli))
		}
		return time.UnixMilli(ms).UTC(), nil
	}
	return time.Time{}, fieldErrf("ts", "want an RFC 3339 string or unix milliseconds, got %s", p.s.kind())
}

// value reads a reading's value (depth 0) or something nested in it.
func (p *parser) value(path string, depth int) (any, error) {
	c, ok := p.s.peek()
	if !ok {
		return nil, p.s.unexpected("looking for a value")
	}
	switch {
	case c == '"':
		return p.s.str()
	case c == '-' || isDigit(c):
		lit, err := p.s.number()
		if err != nil {
			return nil, err
		}
		s, err := canonicalNumber(lit)
		if err != nil {
			return nil, fieldErrf(path, "%v", err)
		}
		return json.Number(s), nil
	case c == 't':
		return true, p.s.literal("true")
	case c == 'f':
		return false, p.s.literal("false")
	case c == 'n':
		if depth == 0 {
			return nil, fieldErrf(path, "null is not a value (want %s)", valueKindWanted)
		}
		return nil, p.s.literal("null")
	case c == '[':
		if depth == 0 {
			return nil, fieldErrf(path, "an array is not allowed (want %s)", valueKindWanted)
		}
		return p.arrayValue(path, depth)
	case c == '{':
		return p.objectValue(path, depth)
	}
	return nil, p.s.unexpected("looking for a value")
}

// arrayValue reads the array at the current position, found at path and
// depth inside a reading's value.
func (p *parser) arrayValue(path string, depth int) (any, error) {
	if depth >= MaxValueDepth {
		return nil, fieldErrf(path, "nested deeper than %d levels", MaxValueDepth)
	}
	p.s.pos++
	p.s.ws()
	arr := []any{}
	if c, ok := p.s.peek(); ok && c == ']' {
		p.s.pos++
		return arr, nil
	}
	for {
		v, err := p.value(path+"["+strconv.Itoa(len(arr))+"]", depth+1)
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
		more, err := p.s.next(',', ']', "after an array element (want ',' or ']')")
		if err != nil {
			return nil, err
		}
		if !more {
			return arr, nil
		}
	}
}

// objectValue reads the object at the current position, found at path and
// depth inside a reading's value; a duplicate key is an error.
func (p *parser) objectValue(path string, depth int) (any, error) {
	if depth >= MaxValueDepth {
		return nil, fieldErrf(path, "nested deeper than %d levels", MaxValueDepth)
	}
	p.s.pos++
	p.s.ws()
	obj := map[string]any{}
	if c, ok := p.s.peek(); ok && c == '}' {
		p.s.pos++
		return obj, nil
	}
	for {
		key, err := p.memberKey()
		if err != nil {
			return nil, err
		}
		sub := path + "." + key
		if _, dup := obj[key]; dup {
			return nil, fieldErrf(sub, "duplicate key")
		}
		v, err := p.value(sub, depth+1)
		if err != nil {
			return nil, err
		}
		obj[key] = v
		more, err := p.s.next(',', '}', "after an object member (want ',' or '}')")
		if err != nil {
			return nil, err
		}
		if !more {
			return obj, nil
		}
	}
}

// tags reads the tags object: string keys (sensor-name rules) to strings.
func (p *parser) tags() (map[string]string, error) {
	if c, ok := p.s.peek(); !ok || c != '{' {
		return nil, fieldErrf("tags", "want an object of strings, got %s", p.s.kind())
	}
	p.s.pos++
	p.s.ws()
	if c, ok := p.s.peek(); ok && c == '}' {
		p.s.pos++
		return nil, nil
	}
	tags := map[string]string{}
	for {
		key, err := p.memberKey()
		if err != nil {
			return nil, err
		}
		sub := "tags." + key
		if _, dup := tags[key]; dup {
			return nil, fieldErrf(sub, "duplicate key")
		}
		if len(tags) == MaxTags {
			return nil, fieldErrf("tags", "more than %d tags", MaxTags)
		}
		if err := checkTagKey(key); err != nil {
			return nil, err
		}
		v, err := p.stringField(sub)
		if err != nil {
			return nil, err
		}
		if err := checkText(sub, v, MaxTagValueLen); err != nil {
			return nil, err
		}
		tags[key] = v
		more, err := p.s.next(',', '}', "after an object member (want ',' or '}')")
		if err != nil {
			return nil, err
		}
		if !more {
			return tags, nil
		}
	}
}
