package sdk_test

import (
	"io"
	"net"
	"testing"

	"github.com/cellgate/cellgate/sdk"
)

// BenchmarkSessionEcho measures session throughput through the plugin
// boundary (agent → gRPC stream → plugin's Session → back) against a
// baseline that does the same echo over an in-process net.Pipe, so the
// difference is the cost of the boundary. Each op sends and receives 16 KiB.
func BenchmarkSessionEcho(b *testing.B) {
	const size = 16 << 10
	payload := make([]byte, size)

	b.Run("plugin", func(b *testing.B) {
		p, _ := launch(b, sdk.LaunchConfig{})
		ctx := testCtx(b)
		s := dial(b, ctx, p, "echo")
		b.SetBytes(2 * size) // each way
		b.ResetTimer()
		for b.Loop() {
			errc := make(chan error, 1)
			go func() { errc <- s.Send(ctx, payload) }()
			if _, err := recvAll(ctx, s, size); err != nil {
				b.Fatal(err)
			}
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("net.Pipe baseline", func(b *testing.B) {
		host, plug := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 4<<10)
			for {
				n, err := plug.Read(buf)
				if err != nil {
					return
				}
				for i := range buf[:n] {
					buf[i] ^= 0xA5
				}
				if _, err := plug.Write(buf[:n]); err != nil {
					return
				}
			}
		}()
		b.Cleanup(func() {
			host.Close()
			plug.Close()
			<-done
		})
		got := make([]byte, size)
		b.SetBytes(2 * size)
		b.ResetTimer()
		for b.Loop() {
			errc := make(chan error, 1)
			go func() {
				_, err := host.Write(payload)
				errc <- err
			}()
			if _, err := io.ReadFull(host, got); err != nil {
				b.Fatal(err)
			}
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		}
	})
}
