package modemsim

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden transcripts under testdata/golden")

// TestGolden runs every case folder under testdata/golden. A case is a
// script.txt of host actions and a transcript.txt of the exact bytes each
// way, step by step:
//
//	model sim7800          personality (default sim7600)
//	simbusy 1h             Config.SIMBusy
//	send AT+CMEE=2         write the line and <CR>, read up to the final result or prompt
//	payload "hello"        write Go-quoted bytes, read up to the final result
//	wait +CCHSTART: 0      read up to that line
//	waitdata 0             read up to the next data frame of session 0
//
// ${ECHO} is a loopback TCP echo server, ${SINK} one that swallows what it
// gets, ${CLOSED} a port nobody listens on; transcripts show the names,
// not the numbers. The RTC is frozen so AT+CCLK answers are stable.
// go test -run TestGolden -update rewrites the transcripts.
func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "golden", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases found: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) { runGoldenCase(t, dir) })
	}
}

func runGoldenCase(t *testing.T, dir string) {
	script, err := os.ReadFile(filepath.Join(dir, "script.txt"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"ECHO":   strconv.Itoa(tcpServer(t, true)),
		"SINK":   strconv.Itoa(tcpServer(t, false)),
		"CLOSED": strconv.Itoa(freePort(t)),
	}
	subst := func(s string) string {
		for k, v := range vars {
			s = strings.ReplaceAll(s, "${"+k+"}", v)
		}
		return s
	}
	// Whole numbers only: a port's digits may well occur inside the IMEI.
	unsubst := func(s string) string {
		for k, v := range vars {
			s = regexp.MustCompile(`\b`+v+`\b`).ReplaceAllLiteralString(s, "${"+k+"}")
		}
		return s
	}

	cfg := Config{Model: "sim7600", Clock: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }}
	var steps [][2]string
	sc := bufio.NewScanner(strings.NewReader(string(script)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch verb {
		case "model":
			cfg.Model = arg
		case "simbusy":
			d, err := time.ParseDuration(arg)
			if err != nil {
				t.Fatalf("script: %v", err)
			}
			cfg.SIMBusy = d
		default:
			steps = append(steps, [2]string{verb, arg})
		}
	}
	m := startModem(t, cfg)
	h := openHost(t, m.Path(), 115200)

	var out strings.Builder
	last := 0
	record := func(sent []byte, ev hostEvent) {
		if sent != nil {
			fmt.Fprintf(&out, "> %s\n", strconv.Quote(unsubst(string(sent))))
		}
		got := h.rawFrom(last)[:ev.end-last]
		last = ev.end
		fmt.Fprintf(&out, "< %s\n", strconv.Quote(unsubst(string(got))))
	}
	untilFinal := func(what string) hostEvent {
		return h.next(what, func(e hostEvent) bool {
			return e.kind == evPrompt || (e.kind == evLine && isFinal(e.text))
		})
	}
	for _, st := range steps {
		verb, arg := st[0], subst(st[1])
		switch verb {
		case "send":
			b := []byte(arg + "\r")
			h.write(b)
			record(b, untilFinal(arg))
		case "payload":
			s, err := strconv.Unquote(arg)
			if err != nil {
				t.Fatalf("script: payload %s: %v", arg, err)
			}
			h.write([]byte(s))
			record([]byte(s), untilFinal("payload"))
		case "wait":
			record(nil, h.next(strconv.Quote(arg), func(e hostEvent) bool { return e.kind == evLine && e.text == arg }))
		case "waitdata":
			id, _ := strconv.Atoi(arg)
			record(nil, h.next("data frame", func(e hostEvent) bool { return e.kind == evData && e.session == id }))
		default:
			t.Fatalf("script: unknown step %q", verb)
		}
		// Consume what the step waited for so the next step starts clean.
		h.mu.Lock()
		var keep []hostEvent
		for _, e := range h.events {
			if e.end > last {
				keep = append(keep, e)
			}
		}
		h.events = keep
		h.mu.Unlock()
	}

	path := filepath.Join(dir, "transcript.txt")
	if *update {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	if got := out.String(); got != string(want) {
		t.Errorf("transcript differs from %s:\n%s", path, lineDiff(string(want), got))
	}
}

// lineDiff shows the first differing lines of two transcripts.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n  want %s\n  got  %s", i+1, wl, gl)
		}
	}
	return "(identical lines)"
}

// tcpServer runs a loopback TCP server that echoes (or swallows) bytes,
// until the test ends.
func tcpServer(t testing.TB, echo bool) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if echo {
					io.Copy(c, c)
				} else {
					io.Copy(io.Discard, c)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().(*net.TCPAddr).Port
}
