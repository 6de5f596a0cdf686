package simcom

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scriptedModem is the other end of the serial line in host-side driver
// tests: it is not a modem emulator but a transcript player. It reads the
// driver's commands, checks each against the next "> " line of the
// transcript, and plays the "< " lines that follow. A command that differs
// from the transcript fails the test with both texts.
//
// Transcript syntax (one directive per line; blank lines and # comments are
// ignored):
//
//	> AT+CSQ            the driver must send exactly this command (CR-terminated)
//	>> "hello"          the driver must send these raw bytes (Go-quoted), e.g. after a > prompt
//	< "\r\nOK\r\n"      the modem sends these bytes (Go-quoted)
//	<*200 "..."         the modem sends these bytes 200 times in a row
//	hangup              the modem hangs up the line (the driver reads EOF)
//	~ 300ms             the modem pauses before its next bytes
//	end                 the transcript is over; later commands fail the test
//	include FILE        the directives of FILE (same folder) go here
type scriptedModem struct {
	t     *testing.T
	conn  net.Conn
	steps []directive
	done  chan struct{}
	err   error
}

type directive struct {
	kind   string // ">", ">>", "<", "~", "hangup", "end"
	text   string
	repeat int // for "<": how many times text is sent
	wait   time.Duration
	line   int
}

func parseTranscript(t *testing.T, path string) []directive {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []directive
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		l := strings.TrimRight(sc.Text(), " \t")
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		kind, rest, _ := strings.Cut(l, " ")
		d := directive{kind: kind, line: n, repeat: 1}
		if times, ok := strings.CutPrefix(kind, "<*"); ok {
			d.kind, kind = "<", "<"
			if d.repeat, err = strconv.Atoi(times); err != nil || d.repeat < 1 {
				t.Fatalf("%s:%d: bad repeat count in %q", path, n, l)
			}
		}
		switch kind {
		case "include":
			out = append(out, parseTranscript(t, filepath.Join(filepath.Dir(path), rest))...)
			continue
		case ">":
			d.text = rest
		case ">>", "<":
			s, err := strconv.Unquote(rest)
			if err != nil {
				t.Fatalf("%s:%d: %q is not a Go-quoted string: %v", path, n, rest, err)
			}
			d.text = s
		case "~":
			d.wait, err = time.ParseDuration(rest)
			if err != nil {
				t.Fatalf("%s:%d: %v", path, n, err)
			}
		case "end", "hangup":
		default:
			t.Fatalf("%s:%d: unknown directive %q", path, n, kind)
		}
		out = append(out, d)
	}
	return out
}

// play runs the transcript until it ends or the line closes.
func (m *scriptedModem) play() {
	defer close(m.done)
	defer func() {
		if m.err != nil {
			m.conn.Close() // fail the driver fast instead of letting it time out
		}
	}()
	r := bufio.NewReader(m.conn)
	for i := 0; i < len(m.steps); i++ {
		d := m.steps[i]
		switch d.kind {
		case ">":
			got, err := r.ReadString('\r')
			if err != nil {
				m.err = fmt.Errorf("line %d: want command %q, line closed: %v", d.line, d.text, err)
				return
			}
			got = strings.TrimSuffix(got, "\r")
			if got != d.text {
				m.err = fmt.Errorf("line %d: driver sent %q, transcript wants %q", d.line, got, d.text)
				return
			}
		case ">>":
			buf := make([]byte, len(d.text))
			if _, err := io.ReadFull(r, buf); err != nil {
				m.err = fmt.Errorf("line %d: want %d payload bytes: %v", d.line, len(d.text), err)
				return
			}
			if string(buf) != d.text {
				m.err = fmt.Errorf("line %d: payload %q, want %q", d.line, buf, d.text)
				return
			}
		case "<":
			for range d.repeat {
				if _, err := m.conn.Write([]byte(d.text)); err != nil {
					m.err = fmt.Errorf("line %d: write: %v", d.line, err)
					return
				}
			}
		case "hangup":
			m.conn.Close()
			return
		case "~":
			time.Sleep(d.wait) // the modem's own pace, part of the transcript
		case "end":
			// Anything more from the driver is a deviation.
			m.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			extra, _ := r.ReadString('\r')
			if extra != "" {
				m.err = fmt.Errorf("line %d: transcript ended, driver sent %q", d.line, extra)
			}
			return
		}
	}
}

// startScripted returns a Driver whose serial port is the transcript in
// testdata/transcripts/<name>.txt.
func startScripted(t *testing.T, name string) (*Driver, *scriptedModem) {
	t.Helper()
	host, modem := net.Pipe()
	m := &scriptedModem{t: t, conn: modem, steps: parseTranscript(t, filepath.Join("testdata", "transcripts", name+".txt")), done: make(chan struct{})}
	go m.play()
	d := New(SIM7600, nil)
	d.openPort = func(context.Context, string, int) (io.ReadWriteCloser, error) { return host, nil }
	t.Cleanup(func() {
		host.Close()
		modem.Close()
		<-m.done
		if m.err != nil {
			t.Errorf("transcript %s: %v", name, m.err)
		}
	})
	return d, m
}

// finish waits for the transcript to be played to its end.
func (m *scriptedModem) finish(t *testing.T) {
	t.Helper()
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		t.Fatal("transcript not finished within 10 s")
	}
	if m.err != nil {
		t.Fatal(m.err)
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
