package simcom

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/modemsim"
)

// benchBaud is the line rate of the serial-efficiency benchmarks: the
// SIM7600's default UART rate.
const benchBaud = 115200

// lineBytesPerSecond is what 8N1 framing leaves of the baud rate.
const lineBytesPerSecond = benchBaud / 10

// BenchmarkUploadEfficiency measures payload bytes per second of a bulk
// upload through the driver (AT+CCHSEND framing, prompts, send reports) on
// an emulated modem throttled to 115200 baud, reported as a ratio of the
// line's byte rate ("payload/line"; the design target is ≥ 0.95).
func BenchmarkUploadEfficiency(b *testing.B) {
	const size = 64 << 10
	m, d, sess, sink := benchSession(b)
	defer m.Close()
	defer d.Stop(context.Background())
	data := make([]byte, size)
	b.SetBytes(size)
	b.ResetTimer()
	var elapsed time.Duration
	for b.Loop() {
		start := time.Now()
		if err := sess.Send(context.Background(), data); err != nil {
			b.Fatal(err)
		}
		sink.await(b, size)
		elapsed += time.Since(start)
	}
	payloadRate := float64(size) * float64(b.N) / elapsed.Seconds()
	b.ReportMetric(payloadRate/lineBytesPerSecond, "payload/line")
}

// BenchmarkRawLineBaseline measures the same emulated line carrying one
// AT+CCERTDOWN of 10240 bytes: the cheapest framing the command set has
// (one command, one prompt, one OK per 10 KiB), as the in-run baseline for
// BenchmarkUploadEfficiency.
func BenchmarkRawLineBaseline(b *testing.B) {
	const size = 10240
	m, d, sess, _ := benchSession(b)
	defer m.Close()
	defer d.Stop(context.Background())
	sess.Close(context.Background())
	data := make([]byte, size)
	b.SetBytes(size)
	b.ResetTimer()
	var elapsed time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		cmd := fmt.Sprintf(`AT+CCERTDOWN="bench%d.der",%d`, i%8, size)
		if _, err := d.ch.CommandPayload(context.Background(), cmd, data); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
	}
	b.ReportMetric(float64(size)*float64(b.N)/elapsed.Seconds()/lineBytesPerSecond, "payload/line")
}

type countingSink struct{ got chan int }

func (s *countingSink) await(b *testing.B, n int) {
	total := 0
	timeout := time.After(time.Minute)
	for total < n {
		select {
		case k := <-s.got:
			total += k
		case <-timeout:
			b.Fatalf("sink got %d of %d bytes", total, n)
		}
	}
}

func benchSession(b *testing.B) (*modemsim.Modem, *Driver, sdk.Session, *countingSink) {
	b.Helper()
	m, err := modemsim.Start(modemsim.Config{Model: "sim7600", Baud: benchBaud})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	sink := &countingSink{got: make(chan int, 1024)}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				sink.got <- n
			}
			if err == io.EOF || err != nil {
				return
			}
		}
	}()
	d := New(SIM7600, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: m.Path(), Baud: benchBaud}); err != nil {
		b.Fatal(err)
	}
	port, _ := strconv.Atoi(fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
	sess, err := d.Dial(ctx, sdk.DialRequest{Host: "127.0.0.1", Port: port, Mode: sdk.DialPlainTCP})
	if err != nil {
		b.Fatal(err)
	}
	return m, d, sess, sink
}
