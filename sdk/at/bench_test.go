package at

import (
	"fmt"
	"io"
	"testing"
)

// benchPayloadSize is the CCHSEND/CCHRECV frame size of a SIM7600.
const benchPayloadSize = 2048

// benchFrame is one auto-receive frame as the modem sends it.
func benchFrame() []byte {
	payload := make([]byte, benchPayloadSize)
	for i := range payload {
		payload[i] = byte(i * 7) // includes CR, LF, '>' and NUL
	}
	return append(fmt.Appendf(nil, "\r\n+CCHRECV: DATA,0,%d\r\n", benchPayloadSize), payload...)
}

// frameSource yields n copies of frame, then io.EOF. Its first Read waits
// for start, so the benchmark can register handlers and reset the timer.
type frameSource struct {
	frame []byte
	n     int
	off   int
	start chan struct{}
}

func (s *frameSource) Read(b []byte) (int, error) {
	if s.start != nil {
		<-s.start
		s.start = nil
	}
	total := 0
	for len(b) > 0 && s.n > 0 {
		k := copy(b, s.frame[s.off:])
		b = b[k:]
		total += k
		s.off += k
		if s.off == len(s.frame) {
			s.off = 0
			s.n--
		}
	}
	if total == 0 {
		return 0, io.EOF
	}
	return total, nil
}

func (s *frameSource) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkBinaryURC measures frames through the whole channel: read,
// header parse and routing, raw payload copy, and the handler call on the
// dispatcher. Compare its MB/s with BenchmarkRawCopy's (the same bytes
// copied with io.Copy, nothing parsed).
func BenchmarkBinaryURC(b *testing.B) {
	frame := benchFrame()
	src := &frameSource{frame: frame, n: b.N, start: make(chan struct{})}
	c := New(src)
	defer c.Close()
	got := 0
	done := make(chan struct{})
	c.HandleBinary("+CCHRECV: DATA,", CCHRecvLength, func(u URC) {
		if len(u.Payload) != benchPayloadSize {
			panic("short payload")
		}
		got++
		if got == b.N {
			close(done)
		}
	})
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	close(src.start)
	<-done
	b.StopTimer()
}

// BenchmarkRawCopy is the baseline for BenchmarkBinaryURC: the same byte
// stream copied to io.Discard.
func BenchmarkRawCopy(b *testing.B) {
	frame := benchFrame()
	src := &frameSource{frame: frame, n: b.N}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	n, err := io.Copy(io.Discard, struct{ io.Reader }{src})
	b.StopTimer()
	if err != nil || n != int64(b.N*len(frame)) {
		b.Fatalf("copied %d bytes, %v", n, err)
	}
}
