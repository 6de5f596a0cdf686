package reading

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

var allEncodings = []string{EncodingJSON, EncodingCBOR, EncodingCBORDeflate, EncodingCompact}

func mustEncoder(t testing.TB, name string) Encoder {
	t.Helper()
	e, err := NewEncoder(name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func marshalAll(t testing.TB, rs []Reading) [][]byte {
	t.Helper()
	out := make([][]byte, len(rs))
	for i, r := range rs {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("reading %d: %v", i, err)
		}
		out[i] = b
	}
	return out
}

// everyFieldReadings exercises every id form, value kind, number form,
// timestamp move and optional field the CBOR schema has a rule for.
func everyFieldReadings(t testing.TB) []Reading {
	g := testIDs(t)
	other, err := NewIDGenerator(bytes.NewReader([]byte{9, 9, 9, 9, 9, 9}))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2024, 11, 27, 4, 0, 0, 123e6, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	obj := map[string]any{
		"lat": json.Number("52.520008"), "n": json.Number("-7"), "ok": true, "none": nil,
		"list": []any{json.Number("1e3"), "x", false, nil, []any{}, map[string]any{}},
		"deep": map[string]any{"er": map[string]any{"est": json.Number("0.000001")}},
	}
	return []Reading{
		{ID: g.Next(t0), Sensor: "t1", TS: t0, Value: json.Number("21.5"), Unit: "C"},                                        // first ULID: binary
		{ID: g.Next(at(250)), Sensor: "t1", TS: at(250), Value: json.Number("21.6"), Unit: "C"},                              // counter delta
		{ID: g.Next(at(900)), Sensor: "h1", TS: at(-5000), Value: json.Number("-40"), Unit: "%"},                             // ts goes back; id time differs
		{ID: "client-7", Sensor: "t2", TS: at(1000), Value: json.Number("18446744073709551616000")},                          // text id; bignum
		{ID: other.Next(at(1000)), Sensor: "t2", TS: at(1000), Value: json.Number("-12345678901234567890.5")},                // new run; big negative mantissa
		{ID: g.Next(at(1001)), Sensor: "t3", TS: at(1001), Value: json.Number("1e-7"), Tags: map[string]string{"site": "b"}}, // back to the first run; tags without unit
		{ID: g.Next(at(1002)), Sensor: "t3", TS: at(1002), Value: json.Number("602e21"), Unit: "1/mol", Tags: map[string]string{"site": "b", "rack": "r2"}},
		{ID: g.Next(at(1003)), Sensor: "door", TS: at(1003), Value: true},
		{ID: g.Next(at(1004)), Sensor: "door", TS: at(1004), Value: false},
		{ID: g.Next(at(1005)), Sensor: "status", TS: at(1005), Value: "ok, \"quoted\" é 😀 \n"},
		{ID: g.Next(at(1006)), Sensor: "gps", TS: at(1006), Value: obj},
		{ID: "f47ac10b-58cc-4372-a567-0e02b2c3d479", Sensor: "uuid", TS: at(1006), Value: json.Number("1")}, // binary UUID
		{ID: "F47AC10B-58CC-4372-A567-0E02B2C3D479", Sensor: "uuid", TS: at(1006), Value: json.Number("2")}, // upper case stays text
		{ID: g.Next(at(1007)), Sensor: "zero", TS: at(1007), Value: json.Number("0.00")},
		{ID: g.Next(at(1008)), Sensor: "zero", TS: at(1008), Value: json.Number("0e5")},
		{ID: "00000000000000000000000000", Sensor: "edge", TS: time.UnixMilli(0).UTC(), Value: json.Number("9223372036854775807")},
		{ID: "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", Sensor: "edge", TS: time.UnixMilli(maxUnixMilli).UTC(), Value: json.Number("-9223372036854775808")},
	}
}

func TestEncodersRoundTripEveryField(t *testing.T) {
	rs := everyFieldReadings(t)
	records := marshalAll(t, rs)
	for _, name := range allEncodings {
		t.Run(name, func(t *testing.T) {
			e := mustEncoder(t, name)
			if e.Name() != name {
				t.Errorf("Name() = %q", e.Name())
			}
			payload, err := e.Encode("gw-0001", records)
			if err != nil {
				t.Fatal(err)
			}
			b, err := e.Decode(payload)
			if err != nil {
				t.Fatal(err)
			}
			if b.DeviceID != "gw-0001" || len(b.Readings) != len(rs) {
				t.Fatalf("decoded device %q with %d readings", b.DeviceID, len(b.Readings))
			}
			for i, got := range b.Readings {
				if !reflect.DeepEqual(got, rs[i]) {
					t.Errorf("reading %d:\n got %#v\nwant %#v", i, got, rs[i])
				}
				if j, _ := got.MarshalJSON(); !bytes.Equal(j, records[i]) {
					t.Errorf("reading %d stored as\n %s\ndecoded to\n %s", i, records[i], j)
				}
			}
			// The consumer's entry point picks the same decoder.
			viaCT, err := DecodeBatch(e.ContentType(), e.ContentEncoding(), payload)
			if err != nil || !reflect.DeepEqual(viaCT, b) {
				t.Errorf("DecodeBatch(%q, %q) = %v", e.ContentType(), e.ContentEncoding(), err)
			}
		})
	}
}

func TestEncodersAreDeterministic(t *testing.T) {
	records := marshalAll(t, everyFieldReadings(t))
	for _, name := range allEncodings {
		e := mustEncoder(t, name)
		first, err := e.Encode("gw-0001", records)
		if err != nil {
			t.Fatal(err)
		}
		for range 20 {
			again, _ := e.Encode("gw-0001", records)
			if !bytes.Equal(first, again) {
				t.Fatalf("%s: two encodings of the same batch differ", name)
			}
		}
	}
}

func TestEncodersHandleAnEmptyBatch(t *testing.T) {
	for _, name := range allEncodings {
		e := mustEncoder(t, name)
		p, err := e.Encode("gw-0001", nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := e.Decode(p)
		if err != nil || b.DeviceID != "gw-0001" || len(b.Readings) != 0 {
			t.Errorf("%s: decoded %+v, %v", name, b, err)
		}
	}
}

// The CBOR layout is a contract with upstream consumers: this pins it, in
// RFC 8949 diagnostic notation, for the example in README.md.
func TestCBORSchemaGolden(t *testing.T) {
	g := testIDs(t)
	t0 := time.Date(2024, 11, 27, 4, 0, 0, 123e6, time.UTC)
	rs := []Reading{
		{ID: g.Next(t0), Sensor: "t1", TS: t0, Value: json.Number("21.5"), Unit: "C"},
		{ID: g.Next(t0.Add(1000 * time.Millisecond)), Sensor: "t1", TS: t0.Add(1000 * time.Millisecond), Value: json.Number("21.6"), Unit: "C"},
		{ID: g.Next(t0.Add(1500 * time.Millisecond)), Sensor: "door", TS: t0.Add(1200 * time.Millisecond), Value: true, Tags: map[string]string{"site": "b"}},
		{ID: "client-7", Sensor: "t1", TS: t0.Add(2000 * time.Millisecond), Value: json.Number("22"), Unit: "C"},
	}
	payload, err := mustEncoder(t, EncodingCBOR).Encode("gw-0001", marshalAll(t, rs))
	if err != nil {
		t.Fatal(err)
	}
	diag, err := cbor.Diagnose(payload)
	if err != nil {
		t.Fatal(err)
	}
	want := `[1, "gw-0001", ["t1", "C", "door", "site", "b"], [` +
		`[0, 1732680000123, 4([-1, 215]), h'01936bc6a27ba1b2c3d4e5f600000000', 1], ` +
		`[0, 1000, 4([-1, 216]), 1, 1], ` +
		`[2, 200, true, [300, 1], null, {3: 4}], ` +
		`[0, 800, 22, "client-7", 1]]]`
	if diag != want {
		t.Errorf("CBOR batch in diagnostic notation:\n got %s\nwant %s", diag, want)
	}
	t.Logf("%d bytes of CBOR for 4 readings: %x", len(payload), payload)
}

func TestEncodeRefusesBadRecordsNamingThem(t *testing.T) {
	good, _ := Reading{ID: "a", Sensor: "t1", TS: testNow, Value: 1}.MarshalJSON()
	for _, name := range allEncodings {
		e := mustEncoder(t, name)
		for _, bad := range [][]byte{
			[]byte(`{"sensor":"t1","value":1}`), // not stored: no id, no ts
			[]byte(`not json`),
			nil,
		} {
			_, err := e.Encode("gw-0001", [][]byte{good, good, bad})
			var re *RecordError
			var pe *ParseError
			if !errors.As(err, &re) || re.Index != 2 || !errors.As(err, &pe) {
				t.Errorf("%s: Encode with a bad record 2 = %v; want a *RecordError for index 2 wrapping a *ParseError", name, err)
			}
		}
		for _, dev := range []string{"", strings.Repeat("d", MaxDeviceIDLen+1), "gw\n1", "\xff"} {
			if _, err := e.Encode(dev, [][]byte{good}); err == nil || !strings.Contains(err.Error(), "device id") {
				t.Errorf("%s: Encode with device id %q = %v; want a device id error", name, dev, err)
			}
		}
	}
}

func TestDecodeRefusesPayloadsOffTheSchema(t *testing.T) {
	enc := func(v any) []byte {
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ulid := idFromParts(1732680000123, 1, 1)
	reading := func(id any) []any { return []any{0, 1732680000123, 1, id} }
	cborCases := map[string][]byte{
		"not an array":               enc(map[string]int{"a": 1}),
		"three elements":             enc([]any{1, "gw", []any{}}),
		"schema version 2":           enc([]any{2, "gw", []any{}, []any{}}),
		"empty device id":            enc([]any{1, "", []any{}, []any{}}),
		"string table holds an int":  enc([]any{1, "gw", []any{7}, []any{}}),
		"sensor index out of range":  enc([]any{1, "gw", []any{"t1"}, []any{[]any{1, 0, 1, "id"}}}),
		"delta id before binary":     enc([]any{1, "gw", []any{"t1"}, []any{reading(1)}}),
		"binary id of 15 bytes":      enc([]any{1, "gw", []any{"t1"}, []any{reading(make([]byte, 15))}}),
		"counter below zero":         enc([]any{1, "gw", []any{"t1"}, []any{reading(ulid[:]), reading(-2)}}),
		"float value":                enc([]any{1, "gw", []any{"t1"}, []any{[]any{0, 0, 1.5, "id"}}}),
		"array value":                enc([]any{1, "gw", []any{"t1"}, []any{[]any{0, 0, []any{1}, "id"}}}),
		"null value":                 enc([]any{1, "gw", []any{"t1"}, []any{[]any{0, 0, nil, "id"}}}),
		"unknown tag":                enc([]any{1, "gw", []any{"t1"}, []any{[]any{0, 0, cbor.Tag{Number: 5, Content: []any{1, 2}}, "id"}}}),
		"ts before 1970":             enc([]any{1, "gw", []any{"t1"}, []any{[]any{0, -1, 1, "id"}}}),
		"bad sensor in table":        enc([]any{1, "gw", []any{"t 1"}, []any{[]any{0, 0, 1, "id"}}}),
		"object with int keys":       enc([]any{1, "gw", []any{"t1"}, []any{[]any{0, 0, map[int]int{1: 2}, "id"}}}),
		"empty tags map":             enc([]any{1, "gw", []any{"t1"}, []any{[]any{0, 0, 1, "id", nil, map[int]int{}}}}),
		"seven elements in reading":  enc([]any{1, "gw", []any{"t1"}, []any{[]any{0, 0, 1, "id", nil, nil, nil}}}),
		"truncated":                  enc([]any{1, "gw", []any{"t1"}, []any{}})[:5],
		"trailing bytes":             append(enc([]any{1, "gw", []any{}, []any{}}), 0),
		"duplicate key in an object": {0x84, 0x01, 0x62, 'g', 'w', 0x81, 0x62, 't', '1', 0x81, 0x84, 0x00, 0x00, 0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02, 0x62, 'i', 'd'},
	}
	for name, payload := range cborCases {
		for _, e := range []Encoder{mustEncoder(t, EncodingCBOR), mustEncoder(t, EncodingCBORDeflate)} {
			if e.Name() == EncodingCBORDeflate {
				var buf bytes.Buffer
				zw := zlib.NewWriter(&buf)
				zw.Write(payload)
				zw.Close()
				payload = buf.Bytes()
			}
			b, err := e.Decode(payload)
			if err == nil {
				t.Errorf("%s: %s: Decode accepted it: %+v", e.Name(), name, b)
			}
			t.Logf("%s: %s: %v", e.Name(), name, err)
		}
	}
	jsonCases := []string{
		`{"device_id":"gw","readings":[],"extra":1}`,
		`{"device_id":"gw"}`,
		`{"readings":[]}`,
		`{"device_id":"gw","device_id":"gw","readings":[]}`,
		`{"device_id":"gw","readings":[{"sensor":"t1","value":1}]}`,
		`{"device_id":7,"readings":[]}`,
		`{"device_id":"gw","readings":[]} x`,
		`[]`,
	}
	for _, p := range jsonCases {
		if b, err := mustEncoder(t, EncodingJSON).Decode([]byte(p)); err == nil {
			t.Errorf("json: Decode(%s) accepted it: %+v", p, b)
		}
	}
	if _, err := mustEncoder(t, EncodingCBORDeflate).Decode([]byte{0x84, 0x01}); err == nil || !strings.Contains(err.Error(), "not zlib") {
		t.Errorf("cbor+deflate: Decode of plain CBOR = %v, want a not-zlib error", err)
	}
}

func TestDecodeRefusesADeflateBomb(t *testing.T) {
	// The real limit is 64 MiB; compressing that much under -race takes
	// seconds, so the test lowers it.
	maxInflated = 1 << 20
	t.Cleanup(func() { maxInflated = MaxInflatedBytes })
	var buf bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&buf, zlib.BestSpeed)
	zw.Write(make([]byte, maxInflated+1))
	zw.Close()
	_, err := mustEncoder(t, EncodingCBORDeflate).Decode(buf.Bytes())
	if err == nil || !strings.Contains(err.Error(), "inflates to more than 1048576 bytes") {
		t.Errorf("Decode of %d bytes inflating to %d = %v; want the inflate limit error", buf.Len(), maxInflated+1, err)
	}
	// Exactly at the limit, the bytes are inflated and judged as CBOR.
	buf.Reset()
	zw.Reset(&buf)
	zw.Write(make([]byte, maxInflated))
	zw.Close()
	if _, err := mustEncoder(t, EncodingCBORDeflate).Decode(buf.Bytes()); err == nil || strings.Contains(err.Error(), "inflates") {
		t.Errorf("Decode of a payload inflating to exactly the limit = %v; want a CBOR error, not the limit", err)
	}
}

func TestDecodeBatchChoosesByContentTypeAndSniffsDeflate(t *testing.T) {
	records := marshalAll(t, everyFieldReadings(t)[:3])
	plain, _ := mustEncoder(t, EncodingCBOR).Encode("gw", records)
	packed, _ := mustEncoder(t, EncodingCBORDeflate).Encode("gw", records)
	js, _ := mustEncoder(t, EncodingJSON).Encode("gw", records)
	if plain[0] != 0x84 || !looksZlib(packed) || looksZlib(plain) {
		t.Fatalf("first bytes: cbor %x, cbor+deflate %x", plain[:2], packed[:2])
	}
	for _, tc := range []struct {
		ct, ce  string
		payload []byte
		ok      bool
	}{
		{"application/cbor", "", plain, true},
		{"application/cbor", "", packed, true}, // MQTT: no content-encoding property
		{"application/cbor", "deflate", packed, true},
		{"application/json; charset=utf-8", "", js, true},
		{"application/json", "gzip", js, false},
		{"text/plain", "", js, false},
		{"application/cbor", "deflate", plain, false},
		{"", "", js, false},
	} {
		b, err := DecodeBatch(tc.ct, tc.ce, tc.payload)
		if tc.ok && (err != nil || len(b.Readings) != 3) {
			t.Errorf("DecodeBatch(%q, %q): %v", tc.ct, tc.ce, err)
		}
		if !tc.ok && err == nil {
			t.Errorf("DecodeBatch(%q, %q) accepted a payload it should refuse", tc.ct, tc.ce)
		}
	}
}

func TestNewEncoderRefusesUnknownNames(t *testing.T) {
	_, err := NewEncoder("protobuf")
	if err == nil || err.Error() != `reading: unknown batch encoding "protobuf" (want "json", "cbor", "cbor+deflate" or "compact")` {
		t.Errorf("NewEncoder(protobuf) = %v", err)
	}
	for _, tc := range []struct{ name, ct, ce string }{
		{EncodingJSON, "application/json", ""},
		{EncodingCBOR, "application/cbor", ""},
		{EncodingCBORDeflate, "application/cbor", "deflate"},
		{EncodingCompact, "application/vnd.cellgate.compact+cbor", ""},
	} {
		e := mustEncoder(t, tc.name)
		if e.ContentType() != tc.ct || e.ContentEncoding() != tc.ce {
			t.Errorf("%s: content type %q, encoding %q", tc.name, e.ContentType(), e.ContentEncoding())
		}
	}
}

// The deepest value Parse accepts survives Marshal and every encoding; one
// level more is refused by both Parse and Marshal.
func TestDeepestValueRoundTripsAndOneMoreIsRefused(t *testing.T) {
	nest := func(levels int) any { // levels containers, alternating, an object outermost
		var v any = json.Number("-1.25")
		for i := levels - 1; i >= 0; i-- {
			if i%2 == 0 {
				v = map[string]any{"a": v}
			} else {
				v = []any{v}
			}
		}
		return v
	}
	deepest := Reading{ID: "x", Sensor: "deep", TS: testNow, Value: nest(MaxValueDepth)}
	stored, err := deepest.MarshalJSON()
	if err != nil {
		t.Fatalf("MarshalJSON of %d levels: %v", MaxValueDepth, err)
	}
	back, err := Unmarshal(stored)
	if err != nil {
		t.Fatalf("Unmarshal of %d levels: %v", MaxValueDepth, err)
	}
	for _, name := range allEncodings {
		e := mustEncoder(t, name)
		p, err := e.Encode("gw", [][]byte{stored})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := e.Decode(p)
		if err != nil || !reflect.DeepEqual(b.Readings[0], back) {
			t.Errorf("%s: %d levels do not round-trip: %v", name, MaxValueDepth, err)
		}
	}

	tooDeep := Reading{ID: "x", Sensor: "deep", TS: testNow, Value: nest(MaxValueDepth + 1)}
	if _, err := tooDeep.MarshalJSON(); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("MarshalJSON of %d levels = %v", MaxValueDepth+1, err)
	}
	text, err := json.Marshal(map[string]any{"sensor": "deep", "value": nest(MaxValueDepth + 1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(text, testNow, Limits{}); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("Parse of %d levels = %v", MaxValueDepth+1, err)
	}
}
