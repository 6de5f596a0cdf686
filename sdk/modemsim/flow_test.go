package modemsim

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// pattern is a recognisable byte stream: position i holds byte i%251.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// pushServer accepts one connection and writes total bytes of pattern; done
// receives the result when the writing finished or failed.
func pushServer(t *testing.T, total int) (port int, done chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done = make(chan error, 1)
	conns := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		conns <- c
		// 251*64 bytes keep the pattern's phase from one write to the next.
		block := pattern(251 * 64)
		for sent := 0; sent < total; sent += len(block) {
			if _, err := c.Write(block[:min(len(block), total-sent)]); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	t.Cleanup(func() {
		l.Close()
		select {
		case c := <-conns:
			c.Close()
		default:
		}
	})
	return l.Addr().(*net.TCPAddr).Port, done
}

// TestAutoReceiveBackpressure: the server pushes far more than the host
// takes; the modem reads the socket only as fast as the serial line
// drains, so what it has read but not yet delivered stays bounded, and no
// byte is lost.
func TestAutoReceiveBackpressure(t *testing.T) {
	// Far more than any socket buffers on loopback can absorb.
	const total = 1 << 30
	port, done := pushServer(t, total)
	m, h := newHostModem(t, Config{Baud: 1_000_000})
	startService(t, h, "")
	openTCP(t, h, 0, port)

	const want = 200 << 10
	got := h.readData(0, want)
	if !bytes.Equal(got, pattern(len(got))) {
		t.Fatal("received bytes differ from what the server sent")
	}
	c := m.Counters()
	if ahead := c.NetRxBytes - c.CCHPayloadRxBytes; ahead > 128<<10 {
		t.Fatalf("modem read %d bytes more than it delivered; receive memory is not bounded", ahead)
	}
	select {
	case err := <-done:
		t.Fatalf("server finished writing %d bytes (err %v) while the host had taken %d: no backpressure", total, err, len(got))
	default:
	}
}

// TestManualReceiveCacheIsBounded: in manual mode nothing is read from the
// socket beyond the receive cache until the host pulls.
func TestManualReceiveCacheIsBounded(t *testing.T) {
	port, _ := pushServer(t, 1<<20)
	m, h := newHostModem(t, Config{})
	startService(t, h, "AT+CCHSET=0,1")
	openTCP(t, h, 0, port)
	h.waitLine("+CCHEVENT: 0,RECV EVENT")
	var cached int
	for cached < recvCacheLimit {
		line := h.ok("AT+CCHRECV?")[0]
		var b int
		if _, err := fmt.Sscanf(line, "+CCHRECV: LEN,%d,%d", &cached, &b); err != nil {
			t.Fatalf("AT+CCHRECV? = %q: %v", line, err)
		}
	}
	if cached > recvCacheLimit+4*frameMax {
		t.Fatalf("cache holds %d bytes, bound is %d", cached, recvCacheLimit+4*frameMax)
	}
	if rx := m.Counters().NetRxBytes; rx != int64(cached) {
		t.Fatalf("read %d bytes from the socket with %d cached and none delivered", rx, cached)
	}
	// Pulling frees the cache and reading resumes; the bytes are intact.
	var got []byte
	for len(got) < 3*recvCacheLimit/2 {
		h.ok("AT+CCHRECV=0,2048")
		for {
			ev := h.next("frames", func(e hostEvent) bool {
				return e.kind == evData || (e.kind == evLine && strings.HasPrefix(e.text, "+CCHRECV: 0,"))
			})
			if ev.kind == evLine {
				break
			}
			got = append(got, ev.data...)
		}
	}
	if !bytes.Equal(got, pattern(len(got))) {
		t.Fatal("manual receive corrupted or lost bytes")
	}
}

// TestSendPipelineWaitsForBufferRoom: with a slow network a host can queue
// four 2048-byte sends without waiting for reports; the fifth prompt comes
// only after the first send left the buffer, never by dropping data.
func TestSendPipelineWaitsForBufferRoom(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	received := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			received <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(io.LimitReader(c, 5*2048))
		received <- b
	}()
	// A fast line and a slow network: the four sends cross the line in a
	// small fraction of one network write.
	_, h := newHostModem(t, Config{Baud: 4_000_000, NetworkLatency: 500 * time.Millisecond})
	startService(t, h, "AT+CCHSET=1")
	openTCP(t, h, 0, l.Addr().(*net.TCPAddr).Port)
	data := pattern(5 * 2048)
	for i := 0; i < 4; i++ {
		h.send(0, data[i*2048:(i+1)*2048])
	}
	if got := h.ok("AT+CCHSEND?"); got[0] == "+CCHSEND: 0,0,1,0" {
		t.Fatalf("AT+CCHSEND? = %q, want unsent bytes while the network is slow", got)
	}
	h.write([]byte("AT+CCHSEND=0,2048\r"))
	first := h.next("report or prompt", func(e hostEvent) bool {
		return e.kind == evPrompt || (e.kind == evLine && strings.HasPrefix(e.text, "+CCHSEND: 0,"))
	})
	if first.kind == evPrompt {
		t.Fatal("fifth prompt came while the send buffer was full")
	}
	if first.text != "+CCHSEND: 0,0" {
		t.Fatalf("report %q, want +CCHSEND: 0,0", first.text)
	}
	h.next("prompt", func(e hostEvent) bool { return e.kind == evPrompt })
	h.write(data[4*2048:])
	for i := 0; i < 4; i++ {
		h.waitLine("+CCHSEND: 0,0")
	}
	if _, ok := h.tryNext(0, func(e hostEvent) bool { return e.kind == evLine && strings.HasPrefix(e.text, "+CCHSEND:") }); ok {
		t.Fatal("more than five send reports")
	}
	if got := <-received; !bytes.Equal(got, data) {
		t.Fatalf("server received %d bytes, want the %d sent, in order", len(got), len(data))
	}
}

// TestLineRateFollowsTheClientBaud: at 57600 baud 2880 bytes take at least
// half a second on the line (a lower bound, not a performance assertion).
func TestLineRateFollowsTheClientBaud(t *testing.T) {
	m := startModem(t, Config{})
	h := openHost(t, m.Path(), 57600)
	h.ok("ATE0")
	content := bytes.Repeat([]byte("x"), 2880)
	start := time.Now()
	h.download("big.pem", content)
	if el := time.Since(start); el < 450*time.Millisecond {
		t.Fatalf("2880 bytes crossed in %v at 57600 baud; the line is not throttled", el)
	}
}

func TestCertificatesSurviveRestartInStateDir(t *testing.T) {
	dir := t.TempDir()
	m, err := Start(Config{Model: "sim7600", StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	h := openHost(t, m.Path(), 115200)
	h.ok("ATE0")
	h.download("ca.pem", []byte("persisted"))
	// Replacing a file overwrites it.
	h.download("ca.pem", []byte("persisted twice"))
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ca.pem")); err != nil || string(b) != "persisted twice" {
		t.Fatalf("state file = %q, %v", b, err)
	}
	_, h2 := newHostModem(t, Config{StateDir: dir})
	if got := h2.ok("AT+CCERTLIST"); len(got) != 1 || got[0] != `+CCERTLIST: "ca.pem"` {
		t.Fatalf("after restart AT+CCERTLIST = %q", got)
	}
}

func TestTemporaryStateDirAndLinkAreRemovedOnClose(t *testing.T) {
	link := filepath.Join(t.TempDir(), "ttyUSB2")
	m, err := Start(Config{Model: "sim7800", Link: link})
	if err != nil {
		t.Fatal(err)
	}
	if m.Path() != link {
		t.Fatalf("Path() = %q, want the link %q", m.Path(), link)
	}
	h := openHost(t, link, 115200)
	h.ok("ATE0")
	state := m.StateDir()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Errorf("link still there after Close: %v", err)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("temporary state dir still there after Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// A regular file at the link path is never replaced.
	if err := os.WriteFile(link, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(Config{Model: "sim7600", Link: link}); err == nil || !strings.Contains(err.Error(), "is not a symlink") {
		t.Fatalf("Start over a regular file: %v", err)
	}
}

func TestTraceRecordsBothDirectionsWithoutSecrets(t *testing.T) {
	var trace testutil.SyncBuffer
	_, h := newHostModem(t, Config{Trace: &trace})
	h.download("key.pem", []byte("-----BEGIN PRIVATE KEY-----TOPSECRET"))
	h.ok(`AT+CSSLCFG="keypwd",0,"hunter2"`)
	h.ok("AT+CSSLCFG=0")
	out := trace.String()
	for _, want := range []string{`host>modem "ATE0\r"`, `modem>host "ATE0\r"`, `modem>host "\r\nOK\r\n"`, "<36 bytes of certificate file>", `\"keypwd\",<redacted>`} {
		if !strings.Contains(out, want) {
			t.Errorf("trace lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"TOPSECRET", "hunter2"} {
		if strings.Contains(out, secret) {
			t.Errorf("trace contains the secret %q:\n%s", secret, out)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		fields := strings.SplitN(line, " ", 3)
		if _, err := time.Parse("2006-01-02T15:04:05.000000Z", fields[0]); err != nil || len(fields) != 3 {
			t.Fatalf("trace line %q is not '<timestamp> <direction> <quoted bytes>'", line)
		}
		if _, err := strconv.Unquote(fields[2]); err != nil {
			t.Fatalf("trace line %q: bytes are not a quoted string", line)
		}
	}
}

func TestStartRejectsBadSettings(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Model: "sim7600", IMEI: "123"}, "not 15 digits"},
		{Config{Model: "sim7600", Hosts: map[string]string{"a": "not-an-ip"}}, "not an IP address"},
		{Config{Model: "sim7600", CommandLatency: -1}, "negative"},
		{Config{Model: ""}, "unknown model"},
	} {
		if _, err := Start(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start(%+v) error = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
