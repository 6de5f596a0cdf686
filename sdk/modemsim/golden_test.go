package modemsim

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/atkit/transcript"
)

var update = flag.Bool("update", false, "re-record the modem's steps of the golden transcripts under testdata/golden")

// TestGolden plays every case folder under testdata/golden. A case is one
// transcript.txt in the transcript format of sdk/atkit/transcript: the
// exact bytes each way, which the test plays from the host's side
// (transcript.Player.PlayHost) over go.bug.st/serial on the modem's pty.
// Two actions, before the first wire step, configure the modem:
//
//	@model sim7800     personality (default sim7600)
//	@simbusy 1h        Config.SIMBusy
//	@file ca.pem ca    a file in the Quectel UFS before the module starts
//	                   (ca, cert, key: the case's PKI, see goldenPKI)
//
// ${ECHO} is a loopback TCP echo server, ${SINK} one that swallows what it
// gets, ${CLOSED} a port nobody listens on; ${TLS}, ${TLSONCE} and
// ${ROGUE} are TLS servers of the case's PKI (see goldenPKI). Transcripts
// show the names, not the numbers. The RTC is frozen so AT+CCLK answers
// are stable.
//
// go test -run TestGolden -update re-records the modem's steps: after each
// host step, the modem's answer up to its final result or prompt, and on
// to the last line or data frame the transcript shows for that answer (a
// URC such as +CCHSTART: 0 the case waits for). To add a case, write the
// host steps and the URC lines to wait for (a "<data" step with any
// non-empty payload waits for a frame of that session), then run -update
// and read the result.
func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "golden", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases found: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) { runGoldenCase(t, dir) })
	}
}

// cchDataHeader is the header of a counted receive frame, for re-recording:
// SIMCom's +CCHRECV: DATA, Quectel's read answers and pushed "recv" URCs.
var cchDataHeader = regexp.MustCompile(`^(?:\+CCHRECV: ?DATA, ?\d+, ?|\+QSSLRECV: |\+QIRD: |\+Q(?:SSL|I)URC: "recv",\d+,)(?P<len>\d+)$`)

func runGoldenCase(t *testing.T, dir string) {
	vars := map[string]string{
		"ECHO":   strconv.Itoa(tcpServer(t, true)),
		"SINK":   strconv.Itoa(tcpServer(t, false)),
		"CLOSED": strconv.Itoa(testutil.FreePort(t)),
	}
	pki := newGoldenPKI(t)
	maps.Copy(vars, pki.vars)
	path := filepath.Join(dir, "transcript.txt")
	tr, err := transcript.ParseFile(path, vars)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Model: "sim7600", Clock: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }}
	for _, s := range tr.Steps {
		if s.Side() != 0 {
			break
		}
		if s.Kind != transcript.Action {
			continue
		}
		switch s.Name {
		case "model":
			cfg.Model = s.Text
		case "simbusy":
			if cfg.SIMBusy, err = time.ParseDuration(s.Text); err != nil {
				t.Fatalf("%s: @simbusy: %v", s.Pos, err)
			}
		case "file":
			if cfg.StateDir == "" {
				cfg.StateDir = t.TempDir()
			}
			if err := pki.seed(cfg.StateDir, s.Text); err != nil {
				t.Fatalf("%s: @file: %v", s.Pos, err)
			}
		}
	}
	m := startModem(t, cfg)
	if *update {
		rerecord(t, m, tr, path, vars)
		return
	}

	port, err := serial.Open(m.Path(), &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatalf("open %s with go.bug.st/serial: %v", m.Path(), err)
	}
	t.Cleanup(func() { port.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 3*waitTimeout)
	defer cancel()
	wired := false
	p := transcript.Player{
		Before: func(context.Context, transcript.Step) error { wired = true; return nil },
		Action: func(_ context.Context, s transcript.Step) error {
			switch {
			case wired:
				return fmt.Errorf("@%s after the first wire step: the modem is already running", s.Name)
			case s.Name == "model" || s.Name == "simbusy" || s.Name == "file":
				return nil // applied when the modem was started
			}
			return fmt.Errorf("unknown action @%s (want @model, @simbusy or @file)", s.Name)
		},
	}
	if err := p.PlayHost(ctx, port, tr); err != nil {
		t.Fatalf("%v\n(if the modem's new answer is right, run go test -run TestGolden -update)", err)
	}
}

// rerecord plays the host steps of tr against m and rewrites path with the
// modem's steps as they are now answered (see TestGolden).
func rerecord(t *testing.T, m *Modem, tr *transcript.Transcript, path string, vars map[string]string) {
	h := openHost(t, m.Path(), 115200)
	// Whole numbers only: a port's digits may well occur inside the IMEI.
	unsubst := func(b []byte) []byte {
		s := string(b)
		for k, v := range vars {
			s = regexp.MustCompile(`\b`+v+`\b`).ReplaceAllLiteralString(s, "${"+k+"}")
		}
		return []byte(s)
	}
	var out []transcript.Step
	last := 0
	// record reads the answer that the run of modem steps at steps[i:]
	// stood for, and returns the index after the run.
	record := func(steps []transcript.Step, i int, afterHost bool) int {
		j := i
		for j < len(steps) && steps[j].Side() == transcript.Modem {
			j++
		}
		got := h.answer(&last, steps[i:j], afterHost)
		out = append(out, transcript.Split(transcript.Modem, unsubst(got), cchDataHeader)...)
		return j
	}
	for i := 0; i < len(tr.Steps); {
		switch s := tr.Steps[i]; s.Side() {
		case transcript.Host:
			for range s.Repeat {
				h.write(s.Bytes)
			}
			sent := transcript.Split(transcript.Host, unsubst(s.Bytes), nil)
			sent[0].Repeat = s.Repeat
			out = append(out, sent...)
			i = record(tr.Steps, i+1, true)
		case transcript.Modem:
			i = record(tr.Steps, i, false)
		default:
			out = append(out, s)
			i++
		}
	}
	if err := os.WriteFile(path, []byte((&transcript.Transcript{Steps: out}).String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// answer reads the modem's answer that the run of modem steps old stood
// for and returns its bytes: up to the final result or prompt when it
// answers a host step, then on to the last line or data frame old shows.
func (h *host) answer(last *int, old []transcript.Step, afterHost bool) []byte {
	h.t.Helper()
	var shown host
	for _, s := range old {
		for range s.Repeat {
			for _, b := range s.Bytes {
				shown.feed(b)
			}
		}
	}
	start := *last
	take := func(ev hostEvent) { *last = max(*last, ev.end) }
	if afterHost {
		take(h.next("final result or prompt", func(e hostEvent) bool {
			return e.kind == evPrompt || (e.kind == evLine && isFinal(e.text))
		}))
	}
	if n := len(shown.events); n > 0 && !(afterHost && endsAnswer(shown.events)) {
		want := shown.events[n-1]
		take(h.next(want.String(), func(e hostEvent) bool {
			return e.kind == want.kind && e.text == want.text && (e.kind != evData || e.session == want.session)
		}))
	}
	// Forget what the answer consumed so the next one starts clean.
	h.mu.Lock()
	var keep []hostEvent
	for _, e := range h.events {
		if e.end > *last {
			keep = append(keep, e)
		}
	}
	h.events = keep
	h.mu.Unlock()
	return h.rawFrom(start)[:*last-start]
}

// endsAnswer says whether the first final result or prompt in events is its
// last event.
func endsAnswer(events []hostEvent) bool {
	for i, e := range events {
		if e.kind == evPrompt || (e.kind == evLine && isFinal(e.text)) {
			return i == len(events)-1
		}
	}
	return false
}

// tcpServer runs a loopback TCP server that echoes (or swallows) bytes,
// until the test ends.
func tcpServer(t testing.TB, echo bool) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveConns(t, l, func(c net.Conn) {
		if echo {
			io.Copy(c, c)
		} else {
			io.Copy(io.Discard, c)
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

// serveConns is the accept loop of the tests' loopback servers: it runs
// handle on each connection l accepts, in a goroutine of its own, until
// the test ends; then it closes l and every connection and waits for the
// handlers.
func serveConns(t testing.TB, l net.Listener, handle func(net.Conn)) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}
