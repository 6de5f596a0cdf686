package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cellgate/cellgate/internal/duration"
)

// ByteSize is a size in bytes. In configuration it is written as plain bytes
// (1048576) or as a whole number with a binary unit: KiB, MiB, GiB or TiB
// (1MiB). Decimal units (MB) are refused rather than guessed at.
type ByteSize int64

// The binary size units.
const (
	KiB ByteSize = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
)

var sizeUnits = []struct {
	name string
	size ByteSize
}{{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}, {"B", 1}}

// ParseByteSize parses a size as written in configuration. It fails on an
// empty string, a fraction, a negative number, an unknown unit and a value
// beyond int64, naming what it wanted.
func ParseByteSize(s string) (ByteSize, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	digits, unit := s[:i], strings.TrimPrefix(s[i:], " ")
	if digits == "" {
		return 0, fmt.Errorf("%q is not a size (want bytes or a whole number with KiB, MiB, GiB or TiB, e.g. 256MiB)", s)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large for a size", s)
	}
	mult := ByteSize(0)
	for _, u := range sizeUnits {
		if unit == u.name {
			mult = u.size
		}
	}
	if unit == "" {
		mult = 1
	}
	if mult == 0 {
		if hint := binaryUnitHint(unit); hint != "" {
			return 0, fmt.Errorf("%q is not a size: unit %q is ambiguous or unknown (did you mean %s%s?)", s, unit, digits, hint)
		}
		return 0, fmt.Errorf("%q is not a size (want bytes or a whole number with KiB, MiB, GiB or TiB, e.g. 256MiB)", s)
	}
	if n > math.MaxInt64/int64(mult) {
		return 0, fmt.Errorf("%q is too large for a size", s)
	}
	return ByteSize(n) * mult, nil
}

// binaryUnitHint maps a unit people commonly write (MB, mb, M, Mi) to the
// binary unit cellgate accepts, or "".
func binaryUnitHint(unit string) string {
	u := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "b"))
	u = strings.TrimSuffix(u, "I")
	switch u {
	case "K":
		return "KiB"
	case "M":
		return "MiB"
	case "G":
		return "GiB"
	case "T":
		return "TiB"
	}
	return ""
}

// String renders b in the largest binary unit that divides it exactly, so
// that ParseByteSize(b.String()) == b.
func (b ByteSize) String() string {
	if b != 0 {
		for _, u := range sizeUnits[:4] {
			if b%u.size == 0 {
				return strconv.FormatInt(int64(b/u.size), 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
)

// formatDuration renders d in a form toDuration reads back: whole days as
// "30d", anything else as time.Duration.String does without zero minutes and
// seconds ("1h", "1m30s").
func formatDuration(d time.Duration) string { return duration.Format(d) }

// convert turns a value as a layer gives it (YAML types, JSON types from a
// remote overlay, or values already parsed from environment text) into the
// Go type of its key. It is strict: a string is not a number and a number
// is not a string, so `device_id: 0001` (which YAML reads as 1) fails
// instead of silently becoming "1". It is both the decode hook and the
// per-layer type check, so the two cannot disagree.
func convert(v any, to reflect.Type) (any, error) {
	switch to {
	case byteSizeType:
		return toByteSize(v)
	case durationType:
		return toDuration(v)
	}
	if st, ok := sectionType(to); ok {
		if _, ok := v.(map[string]any); ok {
			return v, nil
		}
		return nil, mismatch(v, "a section with keys such as "+strings.Join(firstN(sectionKeys(st), 3), ", "))
	}
	if isStringMap(to) {
		if _, ok := v.(map[string]any); ok {
			return v, nil
		}
		return nil, mismatch(v, "a section of names and values")
	}
	if isStringList(to) {
		return toStringList(v)
	}
	switch to.Kind() {
	case reflect.String:
		if s, ok := v.(string); ok {
			if !utf8.ValidString(s) {
				return nil, errors.New("is not valid UTF-8")
			}
			return s, nil
		}
		return nil, mismatch(v, "a string (put the value in quotes)")
	case reflect.Bool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, mismatch(v, "a boolean (true or false)")
	case reflect.Int:
		return toInt(v)
	case reflect.Float64:
		return toFloat(v)
	}
	// A schema field of another type would be a programming error here;
	// saying so beats a panic in an operator's face.
	return nil, fmt.Errorf("has a type (%s) the configuration loader cannot decode", to)
}

// toStringList converts a list of text values (YAML [a, b]) to []string.
func toStringList(v any) (any, error) {
	var items []any
	switch l := v.(type) {
	case []any:
		items = l
	case []string:
		return append([]string{}, l...), nil
	default:
		return nil, mismatch(v, "a list of text values, such as [a, b]")
	}
	out := make([]string, len(items))
	for i, item := range items {
		s, ok := item.(string)
		if !ok {
			return nil, fmt.Errorf("item %d: %w", i+1, mismatch(item, "text (put the value in quotes)"))
		}
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("item %d is not valid UTF-8", i+1)
		}
		out[i] = s
	}
	return out, nil
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func toInt(v any) (any, error) {
	switch n := v.(type) {
	case int:
		return n, nil
	case int64:
		return int(n), nil
	case uint64:
		if n > math.MaxInt64 {
			return nil, fmt.Errorf("%d is too large", n)
		}
		return int(n), nil
	case float64:
		if n != math.Trunc(n) || math.IsInf(n, 0) {
			return nil, fmt.Errorf("%s is not an integer", show(v))
		}
		if n > math.MaxInt64 || n < math.MinInt64 {
			return nil, fmt.Errorf("%s is too large", show(v))
		}
		return int(n), nil
	case string:
		if _, err := strconv.ParseInt(n, 10, 64); err == nil {
			return nil, fmt.Errorf("%q is a string, want an integer (remove the quotes)", n)
		}
	}
	return nil, mismatch(v, "an integer")
}

func toFloat(v any) (any, error) {
	var f float64
	switch n := v.(type) {
	case int:
		f = float64(n)
	case int64:
		f = float64(n)
	case uint64:
		f = float64(n)
	case float64:
		f = n
	default:
		return nil, mismatch(v, "a number")
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%s is not a finite number", show(v))
	}
	return f, nil
}

func toByteSize(v any) (any, error) {
	switch n := v.(type) {
	case string:
		return ParseByteSize(n)
	case int, int64, uint64, float64:
		i, err := toInt(v)
		if err != nil {
			return nil, err
		}
		if i.(int) < 0 {
			return nil, fmt.Errorf("%s is negative, want a size of 0 or more", show(v))
		}
		return ByteSize(i.(int)), nil
	}
	return nil, mismatch(v, "a size such as 256MiB")
}

func toDuration(v any) (any, error) {
	switch n := v.(type) {
	case string:
		return duration.Parse(n)
	case int, int64, uint64, float64:
		// Zero means the same in every unit; any other bare number does not.
		if i, err := toInt(v); err == nil && i.(int) == 0 {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("%s has no unit, want a duration such as 2s, 500ms, 1h or 30d", show(v))
	}
	return nil, mismatch(v, "a duration such as 2s or 30d")
}

// mismatch builds "<found> is <kind>, want <want>" for a value of the wrong
// type, or "<found> is not <want>" for a string that should have been
// something else.
func mismatch(v any, want string) error {
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(want, "a section") {
			return fmt.Errorf("%s is a string, want %s", show(x), want)
		}
		return fmt.Errorf("%s is not %s", show(x), want)
	case int, int64, uint64, float64:
		return fmt.Errorf("%s is a number, want %s", show(x), want)
	case bool:
		return fmt.Errorf("%t is a boolean, want %s", x, want)
	case []any:
		return fmt.Errorf("found a list, want %s", want)
	case map[string]any:
		return fmt.Errorf("found a section, want %s", want)
	case time.Time:
		return fmt.Errorf("%s is a date, want %s", x.Format(time.DateOnly), want)
	case nil:
		return fmt.Errorf("has no value, want %s", want)
	}
	return fmt.Errorf("found a %T, want %s", v, want)
}

// show renders a found value for a message: strings quoted and shortened,
// numbers as written.
func show(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 60 {
			x = x[:57] + "..."
		}
		return strconv.Quote(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}

// parseText turns the text of an environment variable or flag into the value
// a YAML file would have given for the key, so every layer is checked by the
// same convert. Text for strings, sizes, durations and unknown keys stays
// text.
func parseText(text string, to reflect.Type) (any, error) {
	if to == nil || to == byteSizeType || to == durationType {
		return text, nil
	}
	if isStringList(to) {
		// A list in one variable: comma-separated items.
		items := []any{}
		for _, item := range strings.Split(text, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		return items, nil
	}
	switch to.Kind() {
	case reflect.Int:
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return nil, fmt.Errorf("%s is too large", show(text))
			}
			return nil, fmt.Errorf("%s is not an integer", show(text))
		}
		return int(n), nil
	case reflect.Bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return nil, fmt.Errorf("%s is not a boolean (true or false)", show(text))
		}
		return b, nil
	case reflect.Float64:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, fmt.Errorf("%s is not a number", show(text))
		}
		return f, nil
	}
	return text, nil
}
