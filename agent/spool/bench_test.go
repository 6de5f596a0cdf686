package spool

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
)

// A reading as the HTTP input stores it: about 73 bytes of canonical JSON.
var benchReading = []byte(`{"id":"01JDQ4C8Y3","sensor":"t1","ts":1732680000123,"value":21.5,"unit":"C"}`)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// benchAppend measures Append from appenders goroutines, as concurrent HTTP
// requests produce it, each appending batch readings per call.
func benchAppend(b *testing.B, noSync bool, appenders, batch int) {
	benchAppendOpts(b, Options{NoSync: noSync}, appenders, batch)
}

func benchAppendOpts(b *testing.B, opts Options, appenders, batch int) {
	opts.Dir, opts.MaxBytes, opts.Logger = b.TempDir(), 4<<30, discardLogger()
	var writes atomic.Int64
	opts.hook = func(point string) error {
		if point == hookSegmentWrite {
			writes.Add(1)
		}
		return nil
	}
	s, err := Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	payloads := make([][]byte, batch)
	for i := range payloads {
		payloads[i] = benchReading
	}
	b.SetBytes(int64(len(benchReading) * batch))
	b.SetParallelism(max(appenders/runtime.GOMAXPROCS(0), 1))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := s.Append(ctx, payloads...); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(st.Appended)/b.Elapsed().Seconds(), "readings/s")
	b.ReportMetric(float64(st.Appended)/float64(max(st.Commits, 1)), "readings/commit")
	b.ReportMetric(float64(writes.Load())/float64(max(st.Commits, 1)), "writes/commit")
}

// BenchmarkAppendDurable is the production path: one reading per Append,
// group commit with fdatasync, at several numbers of concurrent appenders.
func BenchmarkAppendDurable(b *testing.B) {
	for _, n := range []int{8, 64, 256} {
		b.Run(fmt.Sprintf("appenders=%d", n), func(b *testing.B) { benchAppend(b, false, n, 1) })
	}
}

// BenchmarkAppendHold compares, in one run, the committer's two policies
// with 64 appenders of one reading: "hold" (the default: appends that
// arrive while a sync runs wait for it, and then for the appenders it
// answered, and go out in one write) and "nohold" (a write per committer
// wake-up, the policy before).
func BenchmarkAppendHold(b *testing.B) {
	for range 2 {
		for _, c := range []struct {
			name string
			opts Options
		}{{"hold", Options{}}, {"nohold", Options{noHold: true}}} {
			b.Run(c.name, func(b *testing.B) { benchAppendOpts(b, c.opts, 64, 1) })
		}
	}
}

// BenchmarkAppendDurableBatch100 is an HTTP POST of an array of 100 readings.
func BenchmarkAppendDurableBatch100(b *testing.B) { benchAppend(b, false, 64, 100) }

// BenchmarkAppendNoSync is the same path without fdatasync: the ceiling the
// group commit works against.
func BenchmarkAppendNoSync(b *testing.B) { benchAppend(b, true, 64, 1) }

// BenchmarkRawWriteFsyncEach is the naive baseline: one writer, one write
// and one fdatasync per reading.
func BenchmarkRawWriteFsyncEach(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "raw.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(int64(len(benchReading)))
	b.ReportAllocs()
	var buf []byte
	seq := uint64(0)
	for b.Loop() {
		seq++
		buf = appendRecord(buf[:0], kindDataEnd, seq, benchReading)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := fdatasync(f); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "readings/s")
}

// BenchmarkNextAck measures the uplink side: read 100 records, ack them.
func BenchmarkNextAck(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir(), MaxBytes: 4 << 30, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	batch := make([][]byte, 100)
	for i := range batch {
		batch[i] = benchReading
	}
	for i := 0; i < b.N; i++ {
		if _, err := s.Append(context.Background(), batch...); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	var after uint64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		recs, err := s.Next(ctx, after, 100, 0)
		if err != nil {
			b.Fatal(err)
		}
		seqs := make([]uint64, len(recs))
		for k, r := range recs {
			seqs[k] = r.Seq
		}
		if err := s.Ack(seqs...); err != nil {
			b.Fatal(err)
		}
		after = recs[len(recs)-1].Seq
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "readings/s")
}
