package reading

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// MarshalJSON returns r's canonical JSON, the form the spool stores:
//
//	{"id":"…","sensor":"…","ts":"2024-11-27T04:00:00.123Z","value":…,"unit":"…","tags":{…}}
//
// Members come in that order; unit and tags are left out when empty; ts is
// UTC RFC 3339 with exactly three fraction digits (finer digits are cut);
// numbers are canonical (see README.md), object members sorted by key,
// strings written as UTF-8 with only the escapes JSON requires. It fails,
// with a *ParseError naming the field, for a Reading that Validate refuses.
func (r Reading) MarshalJSON() ([]byte, error) {
	return r.AppendJSON(make([]byte, 0, 128))
}

// AppendJSON appends r's canonical JSON (see MarshalJSON) to dst. On error
// it returns dst unchanged and a *ParseError naming the field.
func (r Reading) AppendJSON(dst []byte) ([]byte, error) {
	out, err := r.appendJSON(dst)
	if err != nil {
		fe := err.(*fieldError)
		return dst, &ParseError{Index: -1, Field: fe.field, Problem: fe.problem, Offset: -1}
	}
	return out, nil
}

func (r Reading) appendJSON(dst []byte) ([]byte, error) {
	if err := checkID(r.ID); err != nil {
		return dst, err
	}
	if err := checkName("sensor", r.Sensor, MaxSensorLen); err != nil {
		return dst, err
	}
	if err := checkTime(r.TS); err != nil {
		return dst, err
	}
	if err := checkText("unit", r.Unit, MaxUnitLen); err != nil {
		return dst, err
	}
	if err := checkTags(r.Tags); err != nil {
		return dst, err
	}
	if r.Value == nil {
		return dst, fieldErrf("value", "missing")
	}
	start := len(dst)
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, r.ID)
	dst = append(dst, `,"sensor":`...)
	dst = appendString(dst, r.Sensor)
	dst = append(dst, `,"ts":"`...)
	dst = canonicalTime(r.TS).AppendFormat(dst, tsLayout)
	dst = append(dst, `","value":`...)
	var err error
	if dst, err = appendValue(dst, r.Value, "value", 0); err != nil {
		return dst[:start], err
	}
	if r.Unit != "" {
		dst = append(dst, `,"unit":`...)
		dst = appendString(dst, r.Unit)
	}
	if len(r.Tags) > 0 {
		dst = append(dst, `,"tags":{`...)
		for i, k := range sortedKeys(r.Tags) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendString(dst, r.Tags[k])
		}
		dst = append(dst, '}')
	}
	return append(dst, '}'), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendValue appends the canonical JSON of a value; depth 0 is the
// reading's value itself, where null and arrays are not allowed.
func appendValue(dst []byte, v any, path string, depth int) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		if depth == 0 {
			return dst, fieldErrf(path, "missing")
		}
		return append(dst, "null"...), nil
	case string:
		if !utf8.ValidString(v) {
			return dst, fieldErrf(path, "string is not valid UTF-8")
		}
		return appendString(dst, v), nil
	case bool:
		return strconv.AppendBool(dst, v), nil
	case json.Number:
		s, err := canonicalNumber(string(v))
		if err != nil {
			return dst, fieldErrf(path, "json.Number %q: %v", string(v), err)
		}
		return append(dst, s...), nil
	case float64:
		return appendFloat(dst, v, path)
	case float32:
		return appendFloat(dst, float64(v), path)
	case int:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int8:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int16:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int32:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(dst, v, 10), nil
	case uint:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case uint8:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case uint16:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case uint32:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case uint64:
		return strconv.AppendUint(dst, v, 10), nil
	case map[string]any:
		return appendObject(dst, v, path, depth)
	case []any:
		return appendArray(dst, v, path, depth)
	}
	return dst, fieldErrf(path, "Go type %T is not a JSON number, string, bool or object", v)
}

// appendObject appends the canonical JSON of an object found at path and
// depth inside a reading's value: keys sorted, each valid UTF-8.
func appendObject(dst []byte, obj map[string]any, path string, depth int) ([]byte, error) {
	if depth >= MaxValueDepth {
		return dst, fieldErrf(path, "nested deeper than %d levels", MaxValueDepth)
	}
	dst = append(dst, '{')
	for i, k := range sortedKeys(obj) {
		if !utf8.ValidString(k) {
			return dst, fieldErrf(path, "key %q is not valid UTF-8", k)
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		var err error
		if dst, err = appendValue(dst, obj[k], path+"."+k, depth+1); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

// appendArray appends the canonical JSON of an array found at path and
// depth inside a reading's value, which may not itself be an array.
func appendArray(dst []byte, arr []any, path string, depth int) ([]byte, error) {
	if depth >= MaxValueDepth {
		return dst, fieldErrf(path, "nested deeper than %d levels", MaxValueDepth)
	}
	if depth == 0 {
		return dst, fieldErrf(path, "an array is not allowed (want %s)", valueKindWanted)
	}
	dst = append(dst, '[')
	for i, e := range arr {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = appendValue(dst, e, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
			return dst, err
		}
	}
	return append(dst, ']'), nil
}

func appendFloat(dst []byte, f float64, path string) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, fieldErrf(path, "%v is not a JSON number", f)
	}
	s, err := canonicalNumber(strconv.FormatFloat(f, 'g', -1, 64))
	if err != nil {
		return dst, fieldErrf(path, "%v: %v", f, err)
	}
	return append(dst, s...), nil
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string with only the escapes RFC 8259
// requires: quote, backslash and control characters. Unlike encoding/json it
// leaves <, > and & alone, so the stored bytes are the bytes sent upstream.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Unmarshal parses one stored reading, the canonical JSON that MarshalJSON
// writes. It applies Parse's rules with two differences: id and ts are
// required (nothing is assigned), and there is no size limit. Errors are
// *ParseError with Index 0.
func Unmarshal(data []byte) (Reading, error) {
	if off := firstInvalidUTF8(data); off >= 0 {
		return Reading{}, &ParseError{Index: -1, Problem: "invalid UTF-8 at byte " + strconv.Itoa(off), Offset: int64(off)}
	}
	p := parser{s: scanner{data: data}, stored: true, lim: Limits{MaxReadingBytes: math.MaxInt}.withDefaults()}
	p.s.ws()
	if c, ok := p.s.peek(); !ok || c != '{' {
		return Reading{}, &ParseError{Index: -1, Problem: "want a JSON object, got " + p.s.kind(), Offset: int64(p.s.pos)}
	}
	r, err := p.reading(0)
	if err != nil {
		return Reading{}, err
	}
	p.s.ws()
	if p.s.pos != len(data) {
		return Reading{}, syntaxParseError(p.s.unexpected("after the reading"))
	}
	return r, nil
}

// UnmarshalJSON implements json.Unmarshaler with Unmarshal.
func (r *Reading) UnmarshalJSON(data []byte) error {
	v, err := Unmarshal(data)
	if err != nil {
		return err
	}
	*r = v
	return nil
}
