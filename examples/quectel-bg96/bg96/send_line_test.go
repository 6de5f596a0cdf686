package bg96

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/modemsim"
)

// sendRig is the driver on the emulated BG96 (on a real pty) with a plain
// TCP socket open to a loopback server that reads and discards everything.
type sendRig struct {
	m *modemsim.Modem
	s sdk.Session
}

func newSendRig(tb testing.TB, ctx context.Context, baud int) *sendRig {
	tb.Helper()
	m, err := modemsim.Start(modemsim.Config{Model: "bg96", Baud: baud})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
	}()
	d := New(nil)
	tb.Cleanup(func() { d.Stop(context.Background()) })
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: m.Path(), Model: "bg96"}); err != nil {
		tb.Fatalf("Open: %v", err)
	}
	s, err := d.Dial(ctx, sdk.DialRequest{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, Mode: sdk.DialPlainTCP})
	if err != nil {
		tb.Fatalf("Dial: %v", err)
	}
	tb.Cleanup(func() { s.Close(context.Background()) })
	r := &sendRig{m: m, s: s}
	r.settle(tb, ctx)
	return r
}

// settle waits until the session's first read (AT+QIRD, started by Dial
// for data that came before the session was registered) is over, so the
// line carries nothing but sends from then on: the read has reached the
// modem once AT+QIRD is counted, and a send cannot start before the read's
// exchange has ended.
func (r *sendRig) settle(tb testing.TB, ctx context.Context) {
	tb.Helper()
	for r.m.Counters().Commands["AT+QIRD"] == 0 {
		select {
		case <-ctx.Done():
			tb.Fatalf("the session's first read never reached the modem: %v", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := r.s.Send(ctx, []byte("warm-up")); err != nil {
		tb.Fatalf("warm-up Send: %v", err)
	}
}

// TestSendWritesOnlyCommandAndPayload counts, on the emulated BG96's pty,
// the bytes one full 1460-byte piece puts on the serial line: the host
// writes the command and the payload and nothing else (no trailing "AT\r"),
// and the modem answers with the prompt and SEND OK only (no OK).
func TestSendWritesOnlyCommandAndPayload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := newSendRig(t, ctx, -1)
	payload := make([]byte, maxSend)
	rand.Read(payload)
	before := r.m.Counters()
	if err := r.s.Send(ctx, payload); err != nil {
		t.Fatalf("Send: %v", err)
	}
	// The modem counts what it read before it answers, so the host's side
	// is complete once Send has returned.
	after := r.m.Counters()
	cmd := fmt.Sprintf("AT+QISEND=0,%d\r", maxSend)
	if got, want := after.SerialHostToModemBytes-before.SerialHostToModemBytes, int64(len(cmd)+maxSend); got != want {
		t.Errorf("host wrote %d bytes for one %d-byte piece, want %d (%q and the payload)", got, maxSend, want, cmd)
	}
	// The modem counts what it wrote just after the write, so its side may
	// lag Send's return a little: wait for it. "\r\n> " and
	// "\r\nSEND OK\r\n" (echo is off).
	want := int64(len("\r\n> ") + len("\r\nSEND OK\r\n"))
	for after.SerialModemToHostBytes-before.SerialModemToHostBytes < want {
		select {
		case <-ctx.Done():
			t.Fatalf("modem sent %d bytes for one piece, want %d", after.SerialModemToHostBytes-before.SerialModemToHostBytes, want)
		case <-time.After(5 * time.Millisecond):
		}
		after = r.m.Counters()
	}
	if got := after.SerialModemToHostBytes - before.SerialModemToHostBytes; got != want {
		t.Errorf("modem sent %d bytes for one piece, want %d (prompt and SEND OK)", got, want)
	}
	if n := after.Commands["AT"] - before.Commands["AT"]; n != 0 {
		t.Errorf("%d AT commands during a send, want none", n)
	}
}

// BenchmarkSendAt115200 sends 64 KiB per iteration through the emulated
// BG96 with its line paced at 115200 baud (10 bits a byte), so the serial
// line, not the host, is the limit. It reports the application throughput
// (MB/s) and the serial bytes each way per 1460-byte piece.
func BenchmarkSendAt115200(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r := newSendRig(b, ctx, 115200)
	data := make([]byte, 64<<10)
	rand.Read(data)
	before := r.m.Counters()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if err := r.s.Send(ctx, data); err != nil {
			b.Fatalf("Send: %v", err)
		}
	}
	b.StopTimer()
	after := r.m.Counters()
	pieces := float64(after.Commands["AT+QISEND"] - before.Commands["AT+QISEND"])
	if pieces > 0 {
		b.ReportMetric(float64(after.SerialHostToModemBytes-before.SerialHostToModemBytes)/pieces, "host-bytes/piece")
		b.ReportMetric(float64(after.SerialModemToHostBytes-before.SerialModemToHostBytes)/pieces, "modem-bytes/piece")
	}
}
