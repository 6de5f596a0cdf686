package modemsim

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkUplinkPayloadPerLineRate measures how much of a 115200-baud
// line carries payload when a host streams 2048-byte AT+CCHSEND commands
// with send reports on, waiting only for each prompt and OK (not for the
// reports). The design target for the whole stack is >= 0.95; this is the
// emulator's own share of it.
func BenchmarkUplinkPayloadPerLineRate(b *testing.B) {
	_, h := newHostModem(b, Config{Baud: 115200})
	h.ok("AT+CCHSET=1")
	h.ok("AT+CCHSTART")
	h.waitLine("+CCHSTART: 0")
	port := tcpServer(b, false)
	h.ok("AT+CCHOPEN=0,\"127.0.0.1\"," + strconv.Itoa(port) + ",1")
	h.waitLine("+CCHOPEN: 0,0")
	chunk := pattern(2048)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		h.send(0, chunk)
	}
	el := time.Since(start)
	b.StopTimer()
	lineBytesPerSec := 115200.0 / 10
	b.ReportMetric(float64(b.N*len(chunk))/el.Seconds()/lineBytesPerSec, "payload/line")
}
