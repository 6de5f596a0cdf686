package modemsim

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.bug.st/serial"
)

// The test side of the line: go.bug.st/serial opened on the pty exactly as
// the production driver opens /dev/ttyUSB2, and a small reader of its own
// (it shares nothing with sdk/at on purpose).

// waitTimeout bounds every wait for the modem. It is generous because the
// machine is small and noisy; it only matters when something is broken.
const waitTimeout = 20 * time.Second

type eventKind int

const (
	evLine   eventKind = iota // a text line, CR/LF stripped
	evPrompt                  // the '>' prompt
	evData                    // a +CCHRECV: DATA frame, payload in data
)

type hostEvent struct {
	kind    eventKind
	text    string
	session int
	data    []byte
	end     int // offset in the raw log just after this event
}

func (e hostEvent) String() string {
	switch e.kind {
	case evPrompt:
		return "prompt"
	case evData:
		return fmt.Sprintf("data[%d]%q", e.session, e.data)
	}
	return strconv.Quote(e.text)
}

// host is one client of the modem.
type host struct {
	t    testing.TB
	port serial.Port
	done chan struct{}

	mu      sync.Mutex
	raw     []byte
	events  []hostEvent
	notify  chan struct{}
	cur     []byte
	dataN   int
	dataID  int
	dataBuf []byte
	rawOnly bool // transparent data: no parsing
}

var dataHeader = regexp.MustCompile(`^\+CCHRECV: ?DATA, ?(\d+), ?(\d+)$`)

// Quectel's counted frames: a read's answer (no id) and a pushed URC.
var (
	qReadHeader = regexp.MustCompile(`^\+(?:QSSLRECV|QIRD): (\d+)$`)
	qPushHeader = regexp.MustCompile(`^\+(?:QSSLURC|QIURC): "recv",(\d+),(\d+)$`)
)

// parseDataHeader recognises the header line of a counted binary frame and
// returns its session (-1 when the header names none) and length.
func parseDataHeader(line string) (id, n int, ok bool) {
	if m := dataHeader.FindStringSubmatch(line); m != nil {
		id, _ = strconv.Atoi(m[1])
		n, _ = strconv.Atoi(m[2])
		return id, n, true
	}
	if m := qPushHeader.FindStringSubmatch(line); m != nil {
		id, _ = strconv.Atoi(m[1])
		n, _ = strconv.Atoi(m[2])
		return id, n, true
	}
	if m := qReadHeader.FindStringSubmatch(line); m != nil {
		n, _ = strconv.Atoi(m[1])
		return -1, n, true
	}
	return 0, 0, false
}

// openHost opens the modem's path with go.bug.st/serial at baud.
func openHost(t testing.TB, path string, baud int) *host {
	t.Helper()
	port, err := serial.Open(path, &serial.Mode{BaudRate: baud})
	if err != nil {
		t.Fatalf("open %s with go.bug.st/serial: %v", path, err)
	}
	h := &host{t: t, port: port, done: make(chan struct{}), notify: make(chan struct{}, 1)}
	go h.readLoop()
	t.Cleanup(func() {
		port.Close()
		<-h.done
	})
	return h
}

func (h *host) readLoop() {
	defer close(h.done)
	buf := make([]byte, 4096)
	for {
		n, err := h.port.Read(buf)
		if n > 0 {
			h.mu.Lock()
			for _, b := range buf[:n] {
				h.feed(b)
			}
			h.mu.Unlock()
			select {
			case h.notify <- struct{}{}:
			default:
			}
		}
		if err != nil {
			return
		}
	}
}

// feed parses one byte; called with mu held.
func (h *host) feed(b byte) {
	h.raw = append(h.raw, b)
	if h.rawOnly {
		return
	}
	if h.dataN > 0 {
		h.dataBuf = append(h.dataBuf, b)
		h.dataN--
		if h.dataN == 0 {
			h.events = append(h.events, hostEvent{kind: evData, session: h.dataID, data: h.dataBuf, end: len(h.raw)})
			h.dataBuf = nil
		}
		return
	}
	if n := len(h.events); b == ' ' && len(h.cur) == 0 && n > 0 && h.events[n-1].kind == evPrompt && h.events[n-1].end == len(h.raw)-1 {
		// Quectel's prompt is "> ": the space belongs to it.
		h.events[n-1].end++
		return
	}
	h.cur = append(h.cur, b)
	if b == '\n' {
		line := strings.Trim(string(h.cur), "\r\n")
		h.cur = h.cur[:0]
		if line == "" {
			return
		}
		if id, n, ok := parseDataHeader(line); ok && n > 0 {
			h.dataID, h.dataN = id, n
			h.dataBuf = make([]byte, 0, h.dataN)
			return
		}
		h.events = append(h.events, hostEvent{kind: evLine, text: line, end: len(h.raw)})
		return
	}
	if string(bytes.TrimLeft(h.cur, "\r\n")) == ">" {
		h.cur = h.cur[:0]
		h.events = append(h.events, hostEvent{kind: evPrompt, end: len(h.raw)})
	}
}

func (h *host) write(b []byte) {
	h.t.Helper()
	if _, err := h.port.Write(b); err != nil {
		h.t.Fatalf("write to modem: %v", err)
	}
}

// next removes and returns the first pending event matching pred, waiting
// up to waitTimeout.
func (h *host) next(what string, pred func(hostEvent) bool) hostEvent {
	h.t.Helper()
	ev, ok := h.tryNext(waitTimeout, pred)
	if !ok {
		h.mu.Lock()
		pending := fmt.Sprint(h.events)
		tail := h.raw[max(0, len(h.raw)-400):]
		h.mu.Unlock()
		h.t.Fatalf("timed out waiting for %s; pending events %s; last bytes %q", what, pending, tail)
	}
	return ev
}

func (h *host) tryNext(timeout time.Duration, pred func(hostEvent) bool) (hostEvent, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		for i, ev := range h.events {
			if pred(ev) {
				h.events = append(h.events[:i:i], h.events[i+1:]...)
				h.mu.Unlock()
				return ev, true
			}
		}
		h.mu.Unlock()
		select {
		case <-h.notify:
		case <-deadline.C:
			return hostEvent{}, false
		}
	}
}

// isFinal says whether a line ends a command's response.
func isFinal(s string) bool {
	return s == "OK" || s == "ERROR" || strings.HasPrefix(s, "+CME ERROR:") ||
		s == "NO CARRIER" || strings.HasPrefix(s, "CONNECT") || s == "SEND OK" || s == "SEND FAIL"
}

// cmd sends a command line and returns the lines up to and including the
// final result code (or the prompt, as ">").
func (h *host) cmd(line string) ([]string, string) {
	h.t.Helper()
	h.write([]byte(line + "\r"))
	return h.response(line)
}

// response collects lines in order until a final result or a prompt. It
// consumes only line and prompt events.
func (h *host) response(what string) ([]string, string) {
	h.t.Helper()
	var lines []string
	for {
		ev := h.next("response to "+what, func(e hostEvent) bool { return e.kind != evData })
		if ev.kind == evPrompt {
			return lines, ">"
		}
		if isFinal(ev.text) {
			return lines, ev.text
		}
		lines = append(lines, ev.text)
	}
}

// ok sends a command that must succeed and returns its information lines
// (echo lines excluded).
func (h *host) ok(line string) []string {
	h.t.Helper()
	lines, final := h.cmd(line)
	if final != "OK" {
		h.t.Fatalf("%s: got %q %s, want OK", line, lines, final)
	}
	var out []string
	for _, l := range lines {
		if l != line {
			out = append(out, l)
		}
	}
	return out
}

// fails sends a command and checks its final result code.
func (h *host) fails(line, want string) {
	h.t.Helper()
	lines, final := h.cmd(line)
	if final != want {
		h.t.Fatalf("%s: got %q %s, want %s", line, lines, final, want)
	}
}

// waitLine waits for a line equal to want (URCs).
func (h *host) waitLine(want string) {
	h.t.Helper()
	h.next(strconv.Quote(want), func(e hostEvent) bool { return e.kind == evLine && e.text == want })
}

// waitPrefix waits for a line starting with prefix and returns it.
func (h *host) waitPrefix(prefix string) string {
	h.t.Helper()
	return h.next("line "+strconv.Quote(prefix+"…"), func(e hostEvent) bool {
		return e.kind == evLine && strings.HasPrefix(e.text, prefix)
	}).text
}

// readData collects n payload bytes of session id from data frames.
func (h *host) readData(id, n int) []byte {
	h.t.Helper()
	var got []byte
	for len(got) < n {
		ev := h.next(fmt.Sprintf("%d more data bytes of session %d", n-len(got), id), func(e hostEvent) bool {
			return e.kind == evData && e.session == id
		})
		got = append(got, ev.data...)
	}
	return got
}

// send runs AT+CCHSEND with payload and waits for OK.
func (h *host) send(id int, payload []byte) {
	h.t.Helper()
	lines, final := h.cmd(fmt.Sprintf("AT+CCHSEND=%d,%d", id, len(payload)))
	if final != ">" {
		h.t.Fatalf("AT+CCHSEND: got %q %s, want prompt", lines, final)
	}
	h.write(payload)
	if _, final := h.response("AT+CCHSEND payload"); final != "OK" {
		h.t.Fatalf("AT+CCHSEND payload: got %s, want OK", final)
	}
}

// download runs AT+CCERTDOWN with content.
func (h *host) download(name string, content []byte) {
	h.t.Helper()
	lines, final := h.cmd(fmt.Sprintf("AT+CCERTDOWN=%q,%d", name, len(content)))
	if final != ">" {
		h.t.Fatalf("AT+CCERTDOWN %s: got %q %s, want prompt", name, lines, final)
	}
	h.write(content)
	if _, final := h.response("AT+CCERTDOWN payload"); final != "OK" {
		h.t.Fatalf("AT+CCERTDOWN %s payload: got %s, want OK", name, final)
	}
}

// rawLen is the number of bytes received so far.
func (h *host) rawLen() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.raw)
}

// rawFrom returns the bytes received from offset on.
func (h *host) rawFrom(off int) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return bytes.Clone(h.raw[off:])
}

// waitRaw waits until the raw log from off on satisfies pred.
func (h *host) waitRaw(what string, off int, pred func([]byte) bool) []byte {
	h.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		b := h.rawFrom(off)
		if pred(b) {
			return b
		}
		select {
		case <-h.notify:
		case <-deadline.C:
			h.t.Fatalf("timed out waiting for %s; got %q", what, b)
		}
	}
}

// drain forgets pending events (after checking the raw bytes instead).
func (h *host) drain() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = nil
}

// setRawOnly switches the parser off (transparent data) or back on.
func (h *host) setRawOnly(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rawOnly = on
	h.cur = h.cur[:0]
}

// startModem starts a modem for a test and closes it at cleanup.
func startModem(t testing.TB, cfg Config) *Modem {
	t.Helper()
	if cfg.Model == "" {
		cfg.Model = "sim7600"
	}
	m, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// newHostModem starts a modem and opens a host on it with echo off.
func newHostModem(t testing.TB, cfg Config) (*Modem, *host) {
	t.Helper()
	m := startModem(t, cfg)
	h := openHost(t, m.Path(), 115200)
	h.ok("ATE0")
	return m, h
}
