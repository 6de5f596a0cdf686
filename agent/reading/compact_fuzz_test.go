package reading

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

// fuzzContexts encodes seed batches by reference and returns the payloads
// (compressed or not, as the encoder chose) and the contexts they need.
func fuzzContexts(tb testing.TB) ([][]byte, map[uint32]*CompactContext) {
	tb.Helper()
	clock := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	e := NewContextEncoder(ContextOptions{MinRebuild: time.Minute, Now: func() time.Time { return clock }})
	contexts := map[uint32]*CompactContext{}
	var payloads [][]byte
	edge := edgeCaseRecords(tb)
	for i, records := range [][][]byte{edge, edge, append(edge, misfitRecords(tb, clock)...), realisticRecords(tb, 6, 3), nil} {
		clock = clock.Add(time.Duration(i) * time.Hour)
		p, c, err := e.Encode("gw-0001", records)
		if err != nil {
			tb.Fatal(err)
		}
		contexts[c.ID()] = c
		payloads = append(payloads, p)
	}
	// Learned contexts (phases, a cycle) and the batch forms they allow:
	// the cycle as one entry, ts0 in intervals, predicted ids.
	four := newFourSensorGen(tb, 11)
	e4 := NewContextEncoder(ContextOptions{Now: four.now})
	for i := range 80 {
		p, c, err := e4.Encode("gw-0001", four.next(tb, 5))
		if err != nil {
			tb.Fatal(err)
		}
		contexts[c.ID()] = c
		if i%10 == 9 {
			payloads = append(payloads, p)
		}
	}
	return payloads, contexts
}

// FuzzCompactDecode feeds arbitrary payloads to the compact decoder, which a
// consumer runs on bytes from the network: version 1, version 2 inline and
// version 2 referencing the seed contexts. It must not panic, array counts
// are bounded by the bytes left (arrayHead) and inflation by maxInflated,
// and whatever it accepts must encode back (version 2 inline) to a payload
// that decodes to the same batch.
func FuzzCompactDecode(f *testing.F) {
	enc := mustEncoder(f, EncodingCompact)
	for _, records := range [][][]byte{
		marshalAll(f, everyFieldReadings(f)),
		edgeCaseRecords(f),
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
		w := newContextWindow()
		rs, _ := unmarshalRecords(records)
		w.observe(rs)
		ctx, err := w.build("gw-0001", rs, nil)
		if err != nil {
			f.Fatal(err)
		}
		raw2, err := encodeCompactV2(ctx, true, rs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(good)
		f.Add(raw)
		f.Add(raw[:len(raw)/2])
		f.Add(raw2)
	}
	refs, contexts := fuzzContexts(f)
	for _, p := range refs {
		f.Add(p)
	}
	lookup := func(id uint32) (*CompactContext, bool) { c, ok := contexts[id]; return c, ok }
	f.Add([]byte{0x8a, 0x01, 0x62, 'g', 'w', 0x80, 0x00, 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, payload []byte) {
		b, err := DecodeCompact(payload, lookup)
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

// FuzzCompactContext: whatever ParseCompactContext accepts is canonical
// (Bytes gives the input back) and its ID is the SHA-256 prefix of it.
func FuzzCompactContext(f *testing.F) {
	_, contexts := fuzzContexts(f)
	for _, c := range contexts {
		f.Add(c.Bytes())
	}
	f.Add([]byte{0x87, 0x01, 0x62, 'g', 'w', 0x46, 1, 2, 3, 4, 5, 6, 0x00, 0x00, 0x80, 0x80})
	// Two sensors with phases and a cycle of both.
	f.Add([]byte{0x88, 0x01, 0x62, 'g', 'w', 0x46, 1, 2, 3, 4, 5, 6, 0x00, 0x00, 0x82, 0x61, 'a', 0x61, 'b',
		0x82, 0x86, 0x00, 0xf6, 0xf6, 0x0a, 0x00, 0x03, 0x86, 0x01, 0xf6, 0xf6, 0x0a, 0x00, 0x05, 0x82, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCompactContext(b)
		if err != nil {
			return
		}
		if !bytes.Equal(c.Bytes(), b) || c.ID() != contextID(b) {
			t.Fatalf("accepted context %x is not canonical", b)
		}
	})
}
