package reading

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzParse checks, for any body: Parse never panics and always fails with
// a *ParseError; it never accepts what encoding/json calls invalid, and
// reports a syntax error only for what encoding/json also refuses (lone
// surrogate escapes aside, which encoding/json silently replaces); and
// whatever it accepts survives the canonical JSON and every batch encoding
// unchanged.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"sensor":"t1","value":21.5,"unit":"C"}`,
		`[{"id":"a","sensor":"t1","ts":"2024-11-27T04:00:00.123+02:00","value":{"a":[1,null,"x"]},"tags":{"k":"v"}},{"sensor":"b","ts":0,"value":true}]`,
		`{"sensor":"n","value":-12345678901234567890.12345e-30}`,
		`{"sensor":"s","value":"\ud83d\ude00\u0000\n"}`,
		`{"sensor":"s","value":1,"id":"f47ac10b-58cc-4372-a567-0e02b2c3d479"}`,
		`{"sensor":"s","value":1,"id":"01JDQ4C8Y3ABCDEFGHJKMNPQRS","ts":253402300799999}`,
		`[{"sensor":"t1","value":1},,]`,
		`{"sensor":"t1","value":1e99999}`,
		"\xff",
		``,
	} {
		f.Add([]byte(seed))
	}
	encoders := make([]Encoder, len(allEncodings))
	for i, name := range allEncodings {
		encoders[i] = mustEncoder(f, name)
	}
	now := time.Date(2024, 11, 27, 4, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		rs, err := ParseWithIDs(body, now, Limits{}, testIDs(t))
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is %T, not *ParseError", err, err)
			}
			// The one deliberate difference: encoding/json turns a lone
			// surrogate escape into U+FFFD, Parse refuses it.
			if strings.HasPrefix(pe.Problem, "invalid JSON") && !strings.Contains(pe.Problem, "lone UTF-16 surrogate") && json.Valid(body) {
				t.Fatalf("Parse reports %v for a body encoding/json accepts", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("Parse accepted a body encoding/json refuses: %q", body)
		}
		records := make([][]byte, len(rs))
		for i, r := range rs {
			b, err := r.MarshalJSON()
			if err != nil {
				t.Fatalf("reading %d parsed but does not marshal: %v", i, err)
			}
			back, err := Unmarshal(b)
			if err != nil || !reflect.DeepEqual(back, r) {
				t.Fatalf("reading %d: Unmarshal(%s) = %#v, %v; want %#v", i, b, back, err, r)
			}
			if again, _ := back.MarshalJSON(); !bytes.Equal(again, b) {
				t.Fatalf("reading %d: canonical JSON is not a fixed point: %s then %s", i, b, again)
			}
			records[i] = b
		}
		for _, e := range encoders {
			p, err := e.Encode("gw-0001", records)
			if err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			batch, err := e.Decode(p)
			if err != nil {
				t.Fatalf("%s: decoding its own payload: %v", e.Name(), err)
			}
			if !reflect.DeepEqual(batch.Readings, rs) {
				t.Fatalf("%s: round trip changed the readings:\n got %#v\nwant %#v", e.Name(), batch.Readings, rs)
			}
		}
	})
}

// FuzzDecodeCBOR feeds arbitrary payloads to the CBOR decoder, which a
// consumer runs on bytes from the network: it must not panic, and whatever
// it accepts must encode back to a payload that decodes the same.
func FuzzDecodeCBOR(f *testing.F) {
	rs := everyFieldReadings(f)
	records := marshalAll(f, rs)
	good, err := mustEncoder(f, EncodingCBOR).Encode("gw-0001", records)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{0x84, 0x01, 0x62, 'g', 'w', 0x80, 0x80})
	enc := mustEncoder(f, EncodingCBOR)
	f.Fuzz(func(t *testing.T, payload []byte) {
		b, err := enc.Decode(payload)
		if err != nil {
			return
		}
		again, err := enc.Encode(b.DeviceID, marshalAll(t, b.Readings))
		if err != nil {
			t.Fatalf("decoded readings do not encode: %v", err)
		}
		b2, err := enc.Decode(again)
		if err != nil || !reflect.DeepEqual(b2, b) {
			t.Fatalf("re-encoded batch decodes differently: %v", err)
		}
	})
}
