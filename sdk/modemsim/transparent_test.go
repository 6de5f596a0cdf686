package modemsim

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// silence produces the guard time the escape sequence needs: it is part of
// the input the test feeds the modem, not a wait for a condition.
func silence() { time.Sleep(guardTime + 200*time.Millisecond) }

func TestTransparentModeDataEscapeResumeAndClose(t *testing.T) {
	_, h := newHostModem(t, Config{})
	h.ok("AT+CCHMODE=1")
	startService(t, h, "")
	echo := tcpServer(t, true)
	h.fails(fmt.Sprintf(`AT+CCHOPEN=1,"127.0.0.1",%d,1`, echo), "ERROR")
	if _, final := h.cmd(fmt.Sprintf(`AT+CCHOPEN=0,"127.0.0.1",%d,1`, echo)); final != "CONNECT 115200" {
		t.Fatalf("transparent open: final %q, want CONNECT 115200", final)
	}

	// Data mode: raw bytes both ways, "+" inside data is data.
	h.setRawOnly(true)
	off := h.rawLen()
	payload := []byte("raw bytes + more\r\nAT\r\n")
	h.write(payload)
	h.waitRaw("echoed data", off, func(b []byte) bool { return bytes.Equal(b, payload) })

	// "+++" between guard times returns to command mode with OK.
	silence()
	off = h.rawLen()
	h.write([]byte("+++"))
	h.waitRaw("OK after +++", off, func(b []byte) bool { return bytes.Equal(b, []byte("\r\nOK\r\n")) })
	h.setRawOnly(false)
	if got := h.ok("AT+CCHOPEN?"); got[0] != fmt.Sprintf(`+CCHOPEN: 0,"127.0.0.1",%d,1,`, echo) {
		t.Errorf("AT+CCHOPEN? in command mode = %q", got)
	}
	h.fails("AT+CCHSEND=0,1", "ERROR")

	// ATO resumes data mode.
	if _, final := h.cmd("ATO"); final != "CONNECT 115200" {
		t.Fatalf("ATO: %q", final)
	}
	h.setRawOnly(true)
	off = h.rawLen()
	h.write([]byte("again"))
	h.waitRaw("echo after ATO", off, func(b []byte) bool { return bytes.Equal(b, []byte("again")) })
	silence()
	off = h.rawLen()
	h.write([]byte("+++"))
	h.waitRaw("OK after +++", off, func(b []byte) bool { return bytes.Equal(b, []byte("\r\nOK\r\n")) })
	h.setRawOnly(false)

	h.ok("AT+CCHCLOSE=0")
	h.waitLine("CLOSED")
	h.fails("ATO", "ERROR")
}

func TestTransparentModePeerCloseAndConnectFail(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("bye"))
		c.Close()
	}()
	_, h := newHostModem(t, Config{})
	h.ok("AT+CCHMODE=1")
	startService(t, h, "")
	if _, final := h.cmd(fmt.Sprintf(`AT+CCHOPEN=0,"127.0.0.1",%d,1`, testutil.FreePort(t))); final != "CONNECT FAIL" {
		t.Fatalf("open to a closed port: %q, want CONNECT FAIL", final)
	}
	off := h.rawLen()
	h.write([]byte(fmt.Sprintf("AT+CCHOPEN=0,\"127.0.0.1\",%d,1\r", l.Addr().(*net.TCPAddr).Port)))
	want := "\r\nCONNECT 115200\r\nbye\r\nCLOSED\r\n"
	h.waitRaw("data then CLOSED", off, func(b []byte) bool { return bytes.HasSuffix(b, []byte("CLOSED\r\n")) })
	if got := string(h.rawFrom(off)); got != want {
		t.Fatalf("line carried %q, want %q", got, want)
	}
	// Back in command mode.
	h.drain()
	h.ok("AT")
}
