package input

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/spool"
)

// BenchmarkDatagramIngest sends one reading per UDP datagram from 8
// senders into a real spool, durable and without fsync (the baseline), and
// reports readings/s made durable. Datagrams the kernel drops under load
// are not counted as ingested (there is no reply channel to retry on).
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
				c.Write(line)
			}
		})
		// What the receiver took in becomes durable shortly after the
		// senders stop: wait until the spool stops growing (bounded).
		last, still := sp.Stats().Appended, 0
		for deadline := time.Now().Add(10 * time.Second); still < 5 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			if n := sp.Stats().Appended; n == last {
				still++
			} else {
				last, still = n, 0
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(sp.Stats().Appended)/b.Elapsed().Seconds(), "readings/s")
		b.ReportMetric(float64(sp.Stats().Appended)/float64(b.N), "delivered/sent")
	})
}
