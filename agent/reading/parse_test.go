package reading

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var testNow = time.Date(2024, 11, 27, 4, 0, 0, 123_456_789, time.UTC)

// testIDs returns a generator with a fixed run, so ids are reproducible.
func testIDs(t testing.TB) *IDGenerator {
	t.Helper()
	g, err := NewIDGenerator(bytes.NewReader([]byte{0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6}))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func mustParse(t *testing.T, body string) []Reading {
	t.Helper()
	rs, err := ParseWithIDs([]byte(body), testNow, Limits{}, testIDs(t))
	if err != nil {
		t.Fatalf("Parse(%s): %v", body, err)
	}
	return rs
}

func TestParseSingleObjectGetsIDAndTimeAssigned(t *testing.T) {
	rs := mustParse(t, `{"sensor":"t1","value":21.5,"unit":"C"}`)
	if len(rs) != 1 {
		t.Fatalf("got %d readings, want 1", len(rs))
	}
	r := rs[0]
	wantTS := time.Date(2024, 11, 27, 4, 0, 0, 123_000_000, time.UTC)
	if !r.TS.Equal(wantTS) || r.TS.Location() != time.UTC {
		t.Errorf("TS = %v, want %v in UTC (now cut to the millisecond)", r.TS, wantTS)
	}
	u, ok := decodeULID(r.ID)
	if !ok {
		t.Fatalf("assigned id %q is not a canonical ULID", r.ID)
	}
	ms, run, ctr := idParts(u)
	if ms != uint64(wantTS.UnixMilli()) || run != 0xa1b2c3d4e5f6 || ctr != 0 {
		t.Errorf("id parts = %d, %x, %d; want %d, a1b2c3d4e5f6, 0", ms, run, ctr, wantTS.UnixMilli())
	}
	want := Reading{ID: r.ID, Sensor: "t1", TS: wantTS, Value: json.Number("21.5"), Unit: "C"}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got %#v\nwant %#v", r, want)
	}
}

func TestParseArrayKeepsOrderAndGivenFields(t *testing.T) {
	body := ` [
	  {"id":"client-1","sensor":"t1","ts":"2024-11-27T05:00:00.5+01:00","value":1},
	  {"sensor":"door/front","ts":1732680000999,"value":true,"id":null,"unit":null,"tags":null},
	  {"sensor":"gps","ts":"2024-11-27T04:00:00.123456789Z","value":{"lat":52.52,"lon":13.405,"fix":{"sats":[7,8],"ok":null}},
	   "tags":{"site":"berlin","rack":"r2"}},
	  {"sensor":"status","value":"ok \"quoted\" \u00e9\ud83d\ude00","tags":{}}
	] `
	rs := mustParse(t, body)
	want := []Reading{
		{ID: "client-1", Sensor: "t1", TS: time.Date(2024, 11, 27, 4, 0, 0, 500e6, time.UTC), Value: json.Number("1")},
		{ID: rs[1].ID, Sensor: "door/front", TS: time.UnixMilli(1732680000999).UTC(), Value: true},
		{ID: rs[2].ID, Sensor: "gps", TS: time.Date(2024, 11, 27, 4, 0, 0, 123e6, time.UTC),
			Value: map[string]any{"lat": json.Number("52.52"), "lon": json.Number("13.405"),
				"fix": map[string]any{"sats": []any{json.Number("7"), json.Number("8")}, "ok": nil}},
			Tags: map[string]string{"site": "berlin", "rack": "r2"}},
		{ID: rs[3].ID, Sensor: "status", TS: time.Date(2024, 11, 27, 4, 0, 0, 123e6, time.UTC), Value: "ok \"quoted\" é😀"},
	}
	if !reflect.DeepEqual(rs, want) {
		t.Fatalf("got  %#v\nwant %#v", rs, want)
	}
	// Assigned ids follow each other in the run, in body order.
	for i, idx := range []int{1, 2, 3} {
		u, _ := decodeULID(rs[idx].ID)
		if _, _, ctr := idParts(u); ctr != uint32(i) {
			t.Errorf("reading %d: counter %d, want %d", idx, ctr, i)
		}
	}
}

func TestParseNumbersAreCanonicalAndKeepPrecision(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"21.5", "21.5"},
		{"21.50", "21.50"},
		{"-0.05", "-0.05"},
		{"0", "0"},
		{"-0", "0"},
		{"-0.0", "0.0"},
		{"1E+3", "1e3"},
		{"2.5e3", "25e2"},
		{"0.0000001", "1e-7"},
		{"1.5e-7", "15e-8"},
		{"123456789012345678901234567890.123456789", "123456789012345678901234567890.123456789"},
		{"9007199254740993", "9007199254740993"}, // not representable as float64
	} {
		rs := mustParse(t, `{"sensor":"n","value":`+tc.in+`}`)
		if got := rs[0].Value; got != json.Number(tc.want) {
			t.Errorf("value %s parsed as %v, want %s", tc.in, got, tc.want)
		}
	}
}

// Kept whole: one table of malformed bodies and the exact error each gets; the rows are the test.
func TestParseErrorsNameReadingFieldAndOffset(t *testing.T) {
	big := `{"sensor":"t1","value":"` + strings.Repeat("x", DefaultMaxReadingBytes) + `"}`
	manyTags := `{"sensor":"t1","value":1,"tags":{`
	for i := range MaxTags + 1 {
		if i > 0 {
			manyTags += ","
		}
		manyTags += fmt.Sprintf(`"k%d":"v"`, i)
	}
	manyTags += `}}`
	deep := `{"sensor":"t1","value":` + strings.Repeat(`{"a":`, MaxValueDepth+1) + `1` + strings.Repeat(`}`, MaxValueDepth+1) + `}`
	for _, tc := range []struct {
		name, body string
		msg        string
		index      int
		field      string
		offset     int64
	}{
		{"missing value", `[{"sensor":"t1","value":1},{"sensor":"t2"}]`, `reading 1: field "value": missing`, 1, "value", 27},
		{"missing sensor", `{"value":1}`, `reading 0: field "sensor": missing`, 0, "sensor", 0},
		{"unknown field", `{"sensor":"t1","vlaue":1}`, `reading 0: field "vlaue": unknown field (want id, sensor, ts, value, unit, tags)`, 0, "vlaue", 0},
		{"duplicate field", `{"sensor":"t1","value":1,"sensor":"t2"}`, `reading 0: field "sensor": duplicate field`, 0, "sensor", 0},
		{"null sensor", `{"sensor":null,"value":1}`, `reading 0: field "sensor": null (want a string)`, 0, "sensor", 0},
		{"number sensor", `{"sensor":5,"value":1}`, `reading 0: field "sensor": want a string, got a number`, 0, "sensor", 0},
		{"bad sensor character", `{"sensor":"t 1","value":1}`, `reading 0: field "sensor": character ' ' at byte 1 is not allowed (A-Z a-z 0-9 . _ : / -)`, 0, "sensor", 0},
		{"long sensor", `{"sensor":"` + strings.Repeat("s", 65) + `","value":1}`, `reading 0: field "sensor": 65 bytes, more than 64`, 0, "sensor", 0},
		{"empty sensor", `{"sensor":"","value":1}`, `reading 0: field "sensor": empty`, 0, "sensor", 0},
		{"null value", `{"sensor":"t1","value":null}`, `reading 0: field "value": null is not a value (want a number, string, bool or object)`, 0, "value", 0},
		{"array value", `{"sensor":"t1","value":[1,2]}`, `reading 0: field "value": an array is not allowed (want a number, string, bool or object)`, 0, "value", 0},
		{"empty id", `{"id":"","sensor":"t1","value":1}`, `reading 0: field "id": empty (omit it to have one assigned)`, 0, "id", 0},
		{"id with space", `{"id":"a b","sensor":"t1","value":1}`, `reading 0: field "id": character ' ' at byte 1 is not allowed (printable ASCII without spaces)`, 0, "id", 0},
		{"long id", `{"id":"` + strings.Repeat("i", 65) + `","sensor":"t1","value":1}`, `reading 0: field "id": 65 bytes, more than 64`, 0, "id", 0},
		{"number id", `{"id":7,"sensor":"t1","value":1}`, `reading 0: field "id": want a string, got a number`, 0, "id", 0},
		{"bad ts string", `{"sensor":"t1","value":1,"ts":"2024-13-01T00:00:00Z"}`, `reading 0: field "ts": "2024-13-01T00:00:00Z" is not an RFC 3339 time such as 2024-11-27T04:00:00.123Z`, 0, "ts", 0},
		{"fractional ts", `{"sensor":"t1","value":1,"ts":1732680000123.5}`, `reading 0: field "ts": 1732680000123.5 is not a whole number of unix milliseconds between 0 and 253402300799999`, 0, "ts", 0},
		{"negative ts", `{"sensor":"t1","value":1,"ts":-1}`, `reading 0: field "ts": -1 is not a whole number of unix milliseconds between 0 and 253402300799999`, 0, "ts", 0},
		{"bool ts", `{"sensor":"t1","value":1,"ts":true}`, `reading 0: field "ts": want an RFC 3339 string or unix milliseconds, got a bool`, 0, "ts", 0},
		{"long unit", `{"sensor":"t1","value":1,"unit":"` + strings.Repeat("u", 33) + `"}`, `reading 0: field "unit": 33 bytes, more than 32`, 0, "unit", 0},
		{"control in unit", `{"sensor":"t1","value":1,"unit":"a\u0007"}`, `reading 0: field "unit": control character '\a' at byte 1`, 0, "unit", 0},
		{"tags not object", `{"sensor":"t1","value":1,"tags":["a"]}`, `reading 0: field "tags": want an object of strings, got an array`, 0, "tags", 0},
		{"tag value number", `{"sensor":"t1","value":1,"tags":{"site":3}}`, `reading 0: field "tags.site": want a string, got a number`, 0, "tags.site", 0},
		{"bad tag key", `{"sensor":"t1","value":1,"tags":{"a b":"x"}}`, `reading 0: field "tags": key "a b": character ' ' at byte 1 is not allowed (A-Z a-z 0-9 . _ : / -)`, 0, "tags", 0},
		{"duplicate tag", `{"sensor":"t1","value":1,"tags":{"a":"x","a":"y"}}`, `reading 0: field "tags.a": duplicate key`, 0, "tags.a", 0},
		{"too many tags", manyTags, `reading 0: field "tags": more than 32 tags`, 0, "tags", 0},
		{"duplicate key in value", `{"sensor":"t1","value":{"a":{"b":1,"b":2}}}`, `reading 0: field "value.a.b": duplicate key`, 0, "value.a.b", 0},
		{"value too deep", deep, `reading 0: field "value.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a": nested deeper than 16 levels`, 0, "value.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a", 0},
		{"too many digits", `{"sensor":"t1","value":` + strings.Repeat("9", 65) + `}`, `reading 0: field "value": number has 65 significant digits, more than 64`, 0, "value", 0},
		{"exponent out of range", `{"sensor":"t1","value":1e10000}`, `reading 0: field "value": number's exponent is out of range (at most ±9999)`, 0, "value", 0},
		{"reading too large", `[{"sensor":"t1","value":1}, ` + big + `]`, `reading 1: 8218 bytes, more than the limit of 8192 per reading`, 1, "", 28},
		{"not an object in array", `[{"sensor":"t1","value":1}, 42]`, `reading 1: want a JSON object, got a number`, 1, "", 28},
		{"scalar body", `"hello"`, `body: want a JSON object or an array of objects, got a string`, -1, "", 0},
		{"empty body", " \n", `body: empty (want a JSON object or an array of objects)`, -1, "", 2},
		{"empty array", `[ ]`, `body: an empty array holds no readings`, -1, "", 2},
		{"syntax: bad value", `{"sensor":"t1","value":x}`, `body: invalid JSON at byte 23: invalid character 'x' looking for a value`, -1, "", 23},
		{"syntax: missing comma", `[{"sensor":"t1","value":1} {"sensor":"t2","value":2}]`, `body: invalid JSON at byte 27: invalid character '{' after a reading (want ',' or ']')`, -1, "", 27},
		{"syntax: double comma", `[{"sensor":"t1","value":1},,{}]`, `body: invalid JSON at byte 27: invalid character ',' looking for a value`, -1, "", 27},
		{"syntax: trailing comma", `{"sensor":"t1","value":1,}`, `body: invalid JSON at byte 25: invalid character '}' looking for a string`, -1, "", 25},
		{"syntax: truncated", `[{"sensor":"t1","value":1`, `body: invalid JSON at byte 25: unexpected end of input after an object member (want ',' or '}')`, -1, "", 25},
		{"syntax: trailing data", `{"sensor":"t1","value":1} x`, `body: invalid JSON at byte 26: invalid character 'x' after the readings`, -1, "", 26},
		{"syntax: control char in string", "{\"sensor\":\"t1\",\"value\":\"a\tb\"}", `body: invalid JSON at byte 25: control character '\t' in a string (it must be escaped)`, -1, "", 25},
		{"syntax: lone surrogate", `{"sensor":"t1","value":"\ud800x"}`, `body: invalid JSON at byte 24: lone UTF-16 surrogate in a \u escape`, -1, "", 24},
		{"syntax: bad escape", `{"sensor":"t1","value":"\x"}`, `body: invalid JSON at byte 24: invalid escape "\\x" in a string`, -1, "", 24},
		{"syntax: leading zero", `{"sensor":"t1","value":01}`, `body: invalid JSON at byte 24: invalid character '1' after an object member (want ',' or '}')`, -1, "", 24},
		{"syntax: bare decimal point", `{"sensor":"t1","value":1.}`, `body: invalid JSON at byte 25: invalid character '}' after a decimal point (want a digit)`, -1, "", 25},
		{"invalid UTF-8", "{\"sensor\":\"t1\",\"value\":\"\xff\"}", `body: invalid UTF-8 at byte 24`, -1, "", 24},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := ParseWithIDs([]byte(tc.body), testNow, Limits{}, testIDs(t))
			if rs != nil {
				t.Errorf("got %d readings along with the error; want none (all-or-nothing)", len(rs))
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error = %v (%T), want *ParseError", err, err)
			}
			if pe.Error() != tc.msg {
				t.Errorf("message:\n got %s\nwant %s", pe.Error(), tc.msg)
			}
			if pe.Index != tc.index || pe.Field != tc.field || pe.Offset != tc.offset {
				t.Errorf("Index, Field, Offset = %d, %q, %d; want %d, %q, %d", pe.Index, pe.Field, pe.Offset, tc.index, tc.field, tc.offset)
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	body := `[{"sensor":"t1","value":1},{"sensor":"t1","value":2},{"sensor":"t1","value":3}]`
	if _, err := ParseWithIDs([]byte(body), testNow, Limits{MaxReadings: 3}, testIDs(t)); err != nil {
		t.Fatalf("3 readings with MaxReadings 3: %v", err)
	}
	_, err := ParseWithIDs([]byte(body), testNow, Limits{MaxReadings: 2}, testIDs(t))
	if err == nil || err.Error() != "body: more than 2 readings in one body" {
		t.Errorf("3 readings with MaxReadings 2: error %v", err)
	}
	one := `{"sensor":"t1","value":1}`
	if _, err := ParseWithIDs([]byte(one), testNow, Limits{MaxReadingBytes: len(one)}, testIDs(t)); err != nil {
		t.Errorf("reading of exactly MaxReadingBytes: %v", err)
	}
	_, err = ParseWithIDs([]byte(one), testNow, Limits{MaxReadingBytes: len(one) - 1}, testIDs(t))
	if err == nil || err.Error() != "reading 0: 25 bytes, more than the limit of 24 per reading" {
		t.Errorf("reading one byte over MaxReadingBytes: error %v", err)
	}
}

// Every syntax error Parse reports is one encoding/json also refuses, at a
// body encoding/json thinks invalid; and what Parse accepts is valid JSON.
func TestParseSyntaxAgreesWithEncodingJSON(t *testing.T) {
	bodies := []string{
		`{"sensor":"t1","value":1e5}`, `{"sensor":"t1","value":-0.0e-0}`, `{"sensor":"t1","value":"\/\b\f\n\r\t\u0041"}`,
		`{"sensor":"t1","value":1.e5}`, `{"sensor":"t1","value":.5}`, `{"sensor":"t1","value":+1}`, `{"sensor":"t1","value":tru}`,
		`{"sensor":"t1","value":"\u12"}`, `{"sensor":"t1" "value":1}`, `{"sensor":"t1","value":1}}`, `[{"sensor":"t1","value":1}]]`,
		`{"sensor":"t1","value":{"a":[1,,2]}}`, `{"sensor":"t1","value":{"a" 1}}`, `{"sensor":"t1","value":{1:2}}`,
	}
	for _, b := range bodies {
		_, err := ParseWithIDs([]byte(b), testNow, Limits{}, testIDs(t))
		var pe *ParseError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("%s: %T", b, err)
		}
		syntaxBad := err != nil && strings.Contains(pe.Problem, "invalid JSON")
		if syntaxBad == json.Valid([]byte(b)) {
			t.Errorf("%s: Parse error %v, but json.Valid = %v", b, err, json.Valid([]byte(b)))
		}
	}
}

func TestParseAssignsUniqueIDsConcurrently(t *testing.T) {
	const goroutines, per = 8, 500
	ids := make(chan string, goroutines*per)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per / 100 {
				body := "[" + strings.TrimSuffix(strings.Repeat(`{"sensor":"t1","value":1},`, 100), ",") + "]"
				rs, err := Parse([]byte(body), time.Now(), Limits{})
				if err != nil {
					t.Error(err)
					return
				}
				for _, r := range rs {
					ids <- r.ID
				}
			}
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] {
			t.Fatalf("id %s assigned twice", id)
		}
		seen[id] = true
	}
	if len(seen) != goroutines*per {
		t.Fatalf("got %d ids, want %d", len(seen), goroutines*per)
	}
}
