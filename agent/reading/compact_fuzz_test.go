package reading

import (
	"reflect"
	"testing"
)

// FuzzCompactDecode feeds arbitrary payloads to the compact decoder, which a
// consumer runs on bytes from the network: it must not panic, array counts
// are bounded by the bytes left (arrayHead) and inflation by maxInflated,
// and whatever it accepts must encode back to a payload that decodes to the
// same batch.
func FuzzCompactDecode(f *testing.F) {
	enc := mustEncoder(f, EncodingCompact)
	for _, records := range [][][]byte{
		marshalAll(f, everyFieldReadings(f)),
		realisticRecords(f, 6, 3),
		realisticRecords(f, 60, 4),
		nil,
	} {
		good, err := enc.Encode("gw-0001", records)
		if err != nil {
			f.Fatal(err)
		}
		raw, err := encodeCompact("gw-0001", records)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(good)
		f.Add(raw)
		f.Add(raw[:len(raw)/2])
	}
	f.Add([]byte{0x8a, 0x01, 0x62, 'g', 'w', 0x80, 0x00, 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
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
