package reading

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMarshalJSONIsCanonical(t *testing.T) {
	r := Reading{
		ID:     "01JDQ4C8Y3ABCDEFGHJKMNPQRS",
		Sensor: "t1",
		TS:     time.Date(2024, 11, 27, 5, 0, 0, 123_999_999, time.FixedZone("CET", 3600)),
		Value:  map[string]any{"z": json.Number("1E+3"), "a": []any{true, nil, "<&>"}, "m": map[string]any{}},
		Unit:   "°C",
		Tags:   map[string]string{"site": "b\"x", "area": "n/1"},
	}
	got, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"01JDQ4C8Y3ABCDEFGHJKMNPQRS","sensor":"t1","ts":"2024-11-27T04:00:00.123Z",` +
		`"value":{"a":[true,null,"<&>"],"m":{},"z":1e3},"unit":"°C","tags":{"area":"n/1","site":"b\"x"}}`
	if string(got) != want {
		t.Errorf("MarshalJSON:\n got %s\nwant %s", got, want)
	}
	// The short form leaves out empty unit and tags.
	short := Reading{ID: "x", Sensor: "t1", TS: time.UnixMilli(0), Value: json.Number("21.5"), Tags: map[string]string{}}
	got, _ = short.MarshalJSON()
	if want := `{"id":"x","sensor":"t1","ts":"1970-01-01T00:00:00.000Z","value":21.5}`; string(got) != want {
		t.Errorf("MarshalJSON:\n got %s\nwant %s", got, want)
	}
	// And it is what encoding/json sees when a Reading is inside something.
	wrapped, err := json.Marshal(map[string]Reading{"r": short})
	if err != nil || string(wrapped) != `{"r":`+string(got)+`}` {
		t.Errorf("json.Marshal of a wrapped Reading = %s, %v", wrapped, err)
	}
}

func TestMarshalWritesGoNumbersCanonically(t *testing.T) {
	tenth := 0.1 // a variable, so 0.1 + 0.2 is float64 arithmetic
	for _, tc := range []struct {
		v    any
		want string
	}{
		{int(-3), "-3"}, {uint8(200), "200"}, {int64(math.MinInt64), "-9223372036854775808"}, {uint64(math.MaxUint64), "18446744073709551615"},
		{21.5, "21.5"}, {float32(0.25), "0.25"}, {1e21, "1e21"}, {1e-7, "1e-7"}, {tenth + 0.2, "0.30000000000000004"},
		{json.Number("0.0000001"), "1e-7"},
	} {
		r := Reading{ID: "x", Sensor: "s", TS: testNow, Value: tc.v}
		got, err := r.MarshalJSON()
		if err != nil {
			t.Errorf("%T %v: %v", tc.v, tc.v, err)
			continue
		}
		back, err := Unmarshal(got)
		if err != nil {
			t.Fatal(err)
		}
		if back.Value != json.Number(tc.want) {
			t.Errorf("%T %v stored as %v, want %s", tc.v, tc.v, back.Value, tc.want)
		}
	}
}

func TestMarshalRefusesWhatParseWouldRefuse(t *testing.T) {
	ok := Reading{ID: "x", Sensor: "s", TS: testNow, Value: 1}
	self := map[string]any{}
	self["me"] = self
	for _, tc := range []struct {
		name  string
		edit  func(r *Reading)
		field string
	}{
		{"empty id", func(r *Reading) { r.ID = "" }, "id"},
		{"id with newline", func(r *Reading) { r.ID = "a\nb" }, "id"},
		{"bad sensor", func(r *Reading) { r.Sensor = "t1 " }, "sensor"},
		{"zero ts", func(r *Reading) { r.TS = time.Time{} }, "ts"},
		{"year 10000", func(r *Reading) { r.TS = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "ts"},
		{"nil value", func(r *Reading) { r.Value = nil }, "value"},
		{"array value", func(r *Reading) { r.Value = []any{1} }, "value"},
		{"NaN", func(r *Reading) { r.Value = math.NaN() }, "value"},
		{"infinity inside an object", func(r *Reading) { r.Value = map[string]any{"x": math.Inf(1)} }, "value.x"},
		{"bad json.Number", func(r *Reading) { r.Value = json.Number("12abc") }, "value"},
		{"unsupported type", func(r *Reading) { r.Value = struct{}{} }, "value"},
		{"invalid UTF-8 string", func(r *Reading) { r.Value = "\xff" }, "value"},
		{"cycle", func(r *Reading) { r.Value = self }, "value" + strings.Repeat(".me", MaxValueDepth)},
		{"unit with control", func(r *Reading) { r.Unit = "\x00" }, "unit"},
		{"bad tag key", func(r *Reading) { r.Tags = map[string]string{"": "v"} }, "tags"},
		{"long tag value", func(r *Reading) { r.Tags = map[string]string{"k": strings.Repeat("v", 257)} }, "tags.k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.edit(&r)
			b, err := r.MarshalJSON()
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Field != tc.field || pe.Index != -1 {
				t.Fatalf("MarshalJSON = %s, %v; want a *ParseError for field %q", b, err, tc.field)
			}
			if verr := r.Validate(); verr == nil || verr.Error() != err.Error() {
				t.Errorf("Validate = %v, want the same error as MarshalJSON (%v)", verr, err)
			}
		})
	}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate of a good reading: %v", err)
	}
}

func TestUnmarshalReversesMarshal(t *testing.T) {
	rs := mustParse(t, `[
	  {"sensor":"t1","value":-21.50,"unit":"C","tags":{"site":"a"}},
	  {"id":"client:7","sensor":"x","ts":0,"value":{"deep":{"er":[1,{"x":null}]}}},
	  {"sensor":"s","value":"line\nbreak \u0001 \\ / é"}
	]`)
	for _, r := range rs {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Errorf("Unmarshal(Marshal(r)) = %#v, want %#v", back, r)
		}
		var viaStd Reading
		if err := json.Unmarshal(b, &viaStd); err != nil || !reflect.DeepEqual(viaStd, r) {
			t.Errorf("json.Unmarshal into *Reading = %#v, %v", viaStd, err)
		}
		// encoding/json reads the same document.
		var generic map[string]any
		if err := json.Unmarshal(b, &generic); err != nil {
			t.Errorf("encoding/json cannot read %s: %v", b, err)
		}
	}
}

func TestUnmarshalRequiresIDAndTS(t *testing.T) {
	for _, tc := range []struct{ in, msg string }{
		{`{"sensor":"t1","ts":"2024-11-27T04:00:00.123Z","value":1}`, `reading 0: field "id": missing`},
		{`{"id":"a","sensor":"t1","value":1}`, `reading 0: field "ts": missing`},
		{`{"id":"a","sensor":"t1","ts":0,"value":1} {}`, `body: invalid JSON at byte 42: invalid character '{' after the reading`},
		{`[{"id":"a","sensor":"t1","ts":0,"value":1}]`, `body: want a JSON object, got an array`},
		{"\xfe", `body: invalid UTF-8 at byte 0`},
	} {
		if _, err := Unmarshal([]byte(tc.in)); err == nil || err.Error() != tc.msg {
			t.Errorf("Unmarshal(%s) = %v, want %s", tc.in, err, tc.msg)
		}
	}
}

// appendString must produce JSON that reads back as the same string, for
// every byte that can appear in valid UTF-8 text.
func TestAppendStringRoundTripsEveryCharacterClass(t *testing.T) {
	var sb strings.Builder
	for c := rune(0); c < 0x80; c++ {
		sb.WriteRune(c)
	}
	sb.WriteString("é€😀\u2028\u2029\ufffd")
	s := sb.String()
	var back string
	if err := json.Unmarshal(appendString(nil, s), &back); err != nil || back != s {
		t.Fatalf("round trip through encoding/json: %q, %v", back, err)
	}
}
