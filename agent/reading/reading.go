// Package reading defines cellgate's reading: the JSON a sensor sends, its
// strict parser, the canonical JSON the spool stores, and the batch payloads
// the uplink sends (JSON, compact CBOR, and CBOR compressed with deflate).
//
// A reading is {"id", "sensor", "ts", "value", "unit", "tags"}. Parse checks
// every field and names the reading and field of the first problem; it
// assigns an id and a timestamp when they are absent. MarshalJSON writes the
// canonical form that Unmarshal reads back to an equal Reading. README.md
// documents the rules, the id scheme and the CBOR schema.
package reading

import (
	"fmt"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// Reading is one measurement.
//
// Value is a json.Number (canonical spelling, every digit kept), a string, a
// bool, or a map[string]any object whose members may also be nil and []any
// arrays, objects and arrays nested at most MaxValueDepth deep. Readings built in Go may also hold Go integers and finite floats
// in Value; they are written as canonical JSON numbers and read back as
// json.Number.
type Reading struct {
	// ID identifies the reading upstream, which uses it to drop duplicates
	// (delivery is at-least-once). 1 to 64 printable ASCII characters, no
	// spaces. Parse assigns one when absent; see IDGenerator.
	ID string
	// Sensor names the source: 1 to 64 of A-Z a-z 0-9 . _ : / -.
	Sensor string
	// TS is when the value was measured, in UTC with millisecond precision,
	// from 1970 to the end of 9999. Parse assigns the time of receipt when
	// absent.
	TS time.Time
	// Value is the measurement (see the type's documentation).
	Value any
	// Unit is optional: up to 32 bytes of UTF-8 without control characters.
	Unit string
	// Tags are optional labels: at most MaxTags, keys as sensor names,
	// values up to 256 bytes of UTF-8 without control characters.
	Tags map[string]string
}

// Fixed limits of a reading's fields.
const (
	MaxIDLen        = 64
	MaxSensorLen    = 64
	MaxUnitLen      = 32
	MaxTags         = 32
	MaxTagKeyLen    = 64
	MaxTagValueLen  = 256
	MaxValueDepth   = 16              // nesting of objects and arrays inside value
	maxUnixMilli    = 253402300799999 // 9999-12-31T23:59:59.999Z
	tsLayout        = "2006-01-02T15:04:05.000Z07:00"
	fieldsWanted    = "id, sensor, ts, value, unit, tags"
	valueKindWanted = "a number, string, bool or object"
)

// Default limits applied by Parse for zero fields of Limits.
const (
	DefaultMaxReadings     = 10000
	DefaultMaxReadingBytes = 8 << 10
)

// Limits bounds what one Parse call accepts. Zero fields take the defaults.
type Limits struct {
	// MaxReadings is the most readings one body may hold.
	MaxReadings int
	// MaxReadingBytes is the most bytes one reading's JSON object may span in
	// the body, whitespace inside it included.
	MaxReadingBytes int
}

func (l Limits) withDefaults() Limits {
	if l.MaxReadings <= 0 {
		l.MaxReadings = DefaultMaxReadings
	}
	if l.MaxReadingBytes <= 0 {
		l.MaxReadingBytes = DefaultMaxReadingBytes
	}
	return l
}

// ParseError says what is wrong with a body and where. Error gives
// `reading 3: field "value": missing` or
// `body: invalid JSON at byte 17: invalid character 'x' looking for a value`.
type ParseError struct {
	// Index is the position of the bad reading in the body (0 for a body
	// that is a single object), or -1 when the problem is the body's:
	// invalid JSON, invalid UTF-8, not an object or array, too many
	// readings.
	Index int
	// Field is the path of the bad field: "value", "tags.site",
	// "value.gps.lat"; empty when the problem is the reading's as a whole.
	Field string
	// Problem says what is wrong, without the position.
	Problem string
	// Offset is the byte offset of the problem in the body when known: where
	// JSON syntax or UTF-8 fails, or where the bad reading starts; -1
	// otherwise.
	Offset int64
}

// Error implements error.
func (e *ParseError) Error() string {
	where := "body"
	if e.Index >= 0 {
		where = "reading " + strconv.Itoa(e.Index)
	}
	if e.Field != "" {
		return fmt.Sprintf("%s: field %q: %s", where, e.Field, e.Problem)
	}
	return where + ": " + e.Problem
}

// fieldError is a problem with one field, before the reading's index is
// known to the code that found it.
type fieldError struct {
	field   string
	problem string
}

func (e *fieldError) Error() string { return fmt.Sprintf("field %q: %s", e.field, e.problem) }

func fieldErrf(field, format string, args ...any) *fieldError {
	return &fieldError{field: field, problem: fmt.Sprintf(format, args...)}
}

// checkID enforces the id rules: 1 to MaxIDLen printable ASCII characters
// other than space, so an id survives "ack <id>" lines and log lines intact.
func checkID(id string) error {
	if id == "" {
		return fieldErrf("id", "empty (omit it to have one assigned)")
	}
	if len(id) > MaxIDLen {
		return fieldErrf("id", "%d bytes, more than %d", len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return fieldErrf("id", "character %q at byte %d is not allowed (printable ASCII without spaces)", rune(c), i)
		}
	}
	return nil
}

// checkName enforces the sensor and tag key rules.
func checkName(field, s string, max int) error {
	if s == "" {
		return fieldErrf(field, "empty")
	}
	if len(s) > max {
		return fieldErrf(field, "%d bytes, more than %d", len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			r, _ := utf8.DecodeRuneInString(s[i:])
			return fieldErrf(field, "character %q at byte %d is not allowed (A-Z a-z 0-9 . _ : / -)", r, i)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == ':' || c == '/' || c == '-'
}

// checkText enforces the unit and tag value rules.
func checkText(field, s string, max int) error {
	if len(s) > max {
		return fieldErrf(field, "%d bytes, more than %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return fieldErrf(field, "not valid UTF-8")
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return fieldErrf(field, "control character %q at byte %d", r, i)
		}
	}
	return nil
}

func checkTags(tags map[string]string) error {
	if len(tags) > MaxTags {
		return fieldErrf("tags", "%d tags, more than %d", len(tags), MaxTags)
	}
	for k, v := range tags {
		if err := checkTagKey(k); err != nil {
			return err
		}
		if err := checkText("tags."+k, v, MaxTagValueLen); err != nil {
			return err
		}
	}
	return nil
}

// checkTagKey applies the sensor-name rules to a tag key, reporting the
// problem on the field "tags" since the key itself is what is wrong.
func checkTagKey(k string) error {
	if err := checkName("tags", k, MaxTagKeyLen); err != nil {
		return fieldErrf("tags", "key %q: %s", k, err.(*fieldError).problem)
	}
	return nil
}

// checkTime enforces the range both ts forms can express: unix
// milliseconds from 0 (1970) to the end of year 9999, the last RFC 3339 can
// write.
func checkTime(ts time.Time) error {
	if ts.IsZero() {
		return fieldErrf("ts", "missing")
	}
	if ms := ts.UnixMilli(); ms < 0 || ms > maxUnixMilli {
		return fieldErrf("ts", "%s is outside 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z", ts.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// canonicalTime is ts as stored: UTC, truncated to the millisecond, without
// a monotonic clock reading.
func canonicalTime(ts time.Time) time.Time { return time.UnixMilli(ts.UnixMilli()).UTC() }

// Validate reports the first way r breaks the rules of the Reading fields,
// as a *ParseError with Index -1 naming the field, or nil. MarshalJSON
// refuses exactly what Validate refuses.
func (r Reading) Validate() error {
	_, err := r.AppendJSON(nil)
	return err
}
