package input

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/spool"
)

// BenchmarkHTTPIngest posts arrays of 100 readings from 8 concurrent
// clients over loopback HTTP into a real spool: durable (group-commit
// fdatasync, the production path) and NoSync (the same without syncs, the
// baseline). Clients and server share the machine's cores. It reports
// readings/s made durable and readings per spool commit.
func BenchmarkHTTPIngest(b *testing.B) {
	benchIntoSpools(b, func(b *testing.B, sp *spool.Spool) { benchIngest(b, sp, 8, 100) })
}

// BenchmarkHTTPIngestOnePerRequest is sensors that POST one reading each,
// 64 at a time: group commit must still batch their fsyncs.
func BenchmarkHTTPIngestOnePerRequest(b *testing.B) {
	benchIntoSpools(b, func(b *testing.B, sp *spool.Spool) { benchIngest(b, sp, 64, 1) })
}

// benchIntoSpools runs bench twice: "durable", into a spool that syncs as
// in production, and "nosync", into one that does not, the baseline.
func benchIntoSpools(b *testing.B, bench func(b *testing.B, sp *spool.Spool)) {
	for _, mode := range []struct {
		name   string
		noSync bool
	}{{"durable", false}, {"nosync", true}} {
		b.Run(mode.name, func(b *testing.B) {
			bench(b, openSpool(b, spool.Options{NoSync: mode.noSync, MaxBytes: 4 << 30}))
		})
	}
}

func benchIngest(b *testing.B, sp *spool.Spool, clients, per int) {
	srv := startHTTP(b, NewHTTP(config.HTTPInput{MaxBody: config.MiB}, sp, quiet, nil))
	var body strings.Builder
	body.WriteByte('[')
	sensors := []string{`"t1","value":21.5,"unit":"C"`, `"t2","value":18.7,"unit":"C"`, `"h1","value":45.2,"unit":"%"`, `"p1","value":1013.2,"unit":"hPa"`}
	for i := range per {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"sensor":%s}`, sensors[i%len(sensors)])
	}
	body.WriteByte(']')
	payload := []byte(body.String())
	url := srv.url + "/v1/readings"
	b.SetBytes(int64(len(payload)))
	b.SetParallelism(max(clients/runtime.GOMAXPROCS(0), 1))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := srv.client.Post(url, "application/json", bytes.NewReader(payload))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	st := sp.Stats()
	b.ReportMetric(float64(srv.h.Stats().Accepted)/b.Elapsed().Seconds(), "readings/s")
	b.ReportMetric(float64(st.Appended)/float64(max(st.Commits, 1)), "readings/commit")
}
