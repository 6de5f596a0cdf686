package input

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/spool"
)

// udpWindow is how many datagrams the senders of BenchmarkDatagramIngest
// keep in flight (sent, not yet durable): far less than the socket buffer
// holds, so the kernel drops none, yet enough to fill every group commit.
const udpWindow = 2048

// BenchmarkDatagramIngest sends one reading per UDP datagram from 8
// senders into a real spool, durable and without fsync (the baseline), and
// reports readings/s made durable and readings per spool commit. The
// senders keep at most udpWindow datagrams in flight, as sensors sending
// at a steady rate do: unpaced senders on the same two cores would take
// the receiver's CPU and measure the kernel dropping datagrams instead.
// delivered/sent shows that none were dropped (datagrams the kernel drops
// are not counted as ingested: there is no reply channel to retry on).
func BenchmarkDatagramIngest(b *testing.B) {
	benchIntoSpools(b, func(b *testing.B, sp *spool.Spool) {
		d, err := NewDatagram("127.0.0.1:0", sp, quiet, nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- d.Serve(ctx) }()
		defer func() { cancel(); <-served }()
		line := []byte(`{"sensor":"t1","value":21.5,"unit":"C"}` + "\n")
		var sent atomic.Uint64
		before := sp.Stats()
		b.SetBytes(int64(len(line)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			c, err := net.Dial("udp", d.Addr().String())
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			for pb.Next() {
				for sent.Load() >= d.stats.accepted.Load()+udpWindow {
					time.Sleep(50 * time.Microsecond)
				}
				sent.Add(1)
				c.Write(line)
			}
		})
		// The last window becomes durable shortly after the senders stop
		// (bounded: a dropped datagram never does).
		for deadline := time.Now().Add(10 * time.Second); d.stats.accepted.Load() < sent.Load() && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		st := sp.Stats()
		b.ReportMetric(float64(st.Appended)/b.Elapsed().Seconds(), "readings/s")
		b.ReportMetric(float64(st.Appended)/float64(b.N), "delivered/sent")
		b.ReportMetric(float64(st.Appended-before.Appended)/float64(max(st.Commits-before.Commits, 1)), "readings/commit")
	})
}
