package reading

import (
	"strings"
	"testing"
	"time"
)

// BenchmarkEncode encodes batches of 100 typical readings (the issue's
// 73-byte example shape, id and ts assigned by the agent) from their stored
// form, as the uplink does, and reports the payload bytes per reading.
func BenchmarkEncode(b *testing.B) {
	records := typicalRecords(b, scenarios[0], costBatchSize)
	for _, name := range allEncodings {
		b.Run(name, func(b *testing.B) {
			e := mustEncoder(b, name)
			var size int
			b.ReportAllocs()
			for b.Loop() {
				p, err := e.Encode("gw-0001", records)
				if err != nil {
					b.Fatal(err)
				}
				size = len(p)
			}
			b.ReportMetric(float64(size)/costBatchSize, "bytes/reading")
			b.ReportMetric(float64(b.N*costBatchSize)/b.Elapsed().Seconds(), "readings/s")
		})
	}
}

// BenchmarkDecode is the upstream consumer's side of BenchmarkEncode.
func BenchmarkDecode(b *testing.B) {
	records := typicalRecords(b, scenarios[0], costBatchSize)
	for _, name := range allEncodings {
		b.Run(name, func(b *testing.B) {
			e := mustEncoder(b, name)
			p, err := e.Encode("gw-0001", records)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Decode(p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*costBatchSize)/b.Elapsed().Seconds(), "readings/s")
		})
	}
}

// BenchmarkParseAndMarshal is the HTTP input's CPU work per request: parse
// an array of 100 readings and write each as canonical JSON.
func BenchmarkParseAndMarshal(b *testing.B) {
	body := []byte("[" + strings.TrimSuffix(strings.Repeat(`{"sensor":"t1","value":21.5,"unit":"C"},`, 100), ",") + "]")
	now := time.Now()
	var buf []byte
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rs, err := Parse(body, now, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		buf = buf[:0]
		for _, r := range rs {
			if buf, err = r.AppendJSON(buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "readings/s")
}
