package at

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the expected.txt of every golden transcript case")

// readSizes are the read splits every transcript is replayed with: whole
// writes, one byte per Read, and an odd size that cuts lines and headers at
// varying places. All must produce the same events.
var readSizes = []int{0, 1, 3}

// TestTranscripts replays every folder under testdata/transcripts (see the
// README.md there for the format) and compares the events the channel
// produced with expected.txt.
func TestTranscripts(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "transcripts", "*", "transcript.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 15 {
		t.Fatalf("found %d transcript cases, want at least 15", len(dirs))
	}
	for _, file := range dirs {
		dir := filepath.Dir(file)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			script, err := parseTranscript(file)
			if err != nil {
				t.Fatal(err)
			}
			wantFile := filepath.Join(dir, "expected.txt")
			for _, size := range readSizes {
				got := replay(t, script, size)
				if *update && size == 0 {
					if err := os.WriteFile(wantFile, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(wantFile)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if got != string(want) {
					t.Fatalf("reads of %s: events differ from %s\n--- got\n%s--- want\n%s",
						sizeName(size), wantFile, got, want)
				}
			}
		})
	}
}

func sizeName(n int) string {
	if n == 0 {
		return "any size"
	}
	return strconv.Itoa(n) + " byte(s)"
}

// step is one transcript line.
type step struct {
	lineNo int
	op     string
	arg    string // text, command, prefix or name
	arg2   string // prefix of expect; payload of >payload (unquoted)
	data   []byte // bytes to send or to expect
}

// transcript is a parsed transcript.txt.
type transcript struct {
	file  string
	opts  []Option
	steps []step
}

func parseTranscript(file string) (*transcript, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := &transcript{file: file}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		if strings.TrimSpace(raw) == "" || strings.HasPrefix(raw, "#") {
			continue
		}
		op, rest, _ := strings.Cut(raw, " ")
		st := step{lineNo: n, op: op}
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%s:%d: %q: %s", file, n, raw, fmt.Sprintf(format, a...))
		}
		switch op {
		case "option":
			name, val, _ := strings.Cut(rest, " ")
			v, err := strconv.Atoi(val)
			if err != nil {
				return nil, bad("option value: %v", err)
			}
			switch name {
			case "maxline":
				tr.opts = append(tr.opts, WithMaxLine(v))
			case "maxbinary":
				tr.opts = append(tr.opts, WithMaxBinary(v))
			default:
				return nil, bad("unknown option %q", name)
			}
			continue
		case "handle", "binary", "claim", ">", "=wait":
			if rest == "" {
				return nil, bad("needs an argument")
			}
			st.arg = rest
		case "expect":
			name, prefix, ok := strings.Cut(rest, " ")
			if !ok || prefix == "" {
				return nil, bad("want: expect <name> <prefix>")
			}
			st.arg, st.arg2 = name, prefix
		case ">payload":
			cmd, q, ok := strings.Cut(rest, " ")
			if !ok {
				return nil, bad("want: >payload <cmd> <quoted payload>")
			}
			s, err := strconv.Unquote(q)
			if err != nil {
				return nil, bad("payload: %v", err)
			}
			st.arg, st.data = cmd, []byte(s)
		case ">>", "<raw":
			s, err := strconv.Unquote(rest)
			if err != nil {
				return nil, bad("quoted bytes: %v", err)
			}
			st.data = []byte(s)
		case "<":
			st.data = []byte(rest + "\r\n")
		case "<frame":
			id, q, ok := strings.Cut(rest, " ")
			if !ok {
				return nil, bad("want: <frame <id> <quoted payload>")
			}
			s, err := strconv.Unquote(q)
			if err != nil {
				return nil, bad("payload: %v", err)
			}
			st.data = fmt.Appendf(nil, "\r\n+CCHRECV: DATA,%s,%d\r\n%s", id, len(s), s)
		case "=result", "=close":
			if rest != "" {
				return nil, bad("takes no argument")
			}
		default:
			return nil, bad("unknown directive %q", op)
		}
		if op == "<" && rest == "" {
			st.data = []byte("\r\n")
		}
		tr.steps = append(tr.steps, st)
	}
	return tr, sc.Err()
}

// eventLog is the ordered, textual record a replay produces.
type eventLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *eventLog) add(format string, a ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, a...))
	l.mu.Unlock()
}

func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n") + "\n"
}

// replay runs tr with the channel on one end of a net.Pipe and the script as
// the modem on the other. The script is a scripted peer, not a modem
// emulator: it sends exactly the bytes written in the transcript and checks
// that the host sends exactly the bytes the transcript expects. After every
// modem write the replay waits until the channel has parsed those bytes and
// run the handlers they triggered, so the log's order is deterministic.
// readSize > 0 limits every Read of the channel to that many bytes.
func replay(t *testing.T, tr *transcript, readSize int) string {
	t.Helper()
	hostEnd, modemEnd := net.Pipe()
	var host net.Conn = hostEnd
	if readSize > 0 {
		host = &chunkedConn{Conn: hostEnd, n: readSize}
	}
	log := &eventLog{}
	var parsed atomic.Int64
	progress := make(chan struct{}, 1)
	opts := append([]Option{
		WithUnsolicited(func(u URC) { log.add("unsolicited %q", u.Line) }),
		withParsedHook(func(n int) {
			parsed.Add(int64(n))
			select {
			case progress <- struct{}{}:
			default:
			}
		}),
	}, tr.opts...)
	c := New(host, opts...)
	t.Cleanup(func() {
		_ = c.Close()
		_ = modemEnd.Close()
	})

	var written int64
	closed := false
	at := func(st step) string { return fmt.Sprintf("%s:%d", tr.file, st.lineNo) }
	settle := func(st step) {
		t.Helper()
		deadline := time.After(failAfter)
		for parsed.Load() < written {
			select {
			case <-progress:
			case <-c.Done():
				if parsed.Load() < written {
					t.Fatalf("%s: channel stopped with %d of %d bytes parsed", at(st), parsed.Load(), written)
				}
			case <-deadline:
				t.Fatalf("%s: channel parsed %d of %d bytes", at(st), parsed.Load(), written)
			}
		}
		c.flushDispatch()
	}
	readHost := func(st step, want []byte) {
		t.Helper()
		_ = modemEnd.SetReadDeadline(time.Now().Add(failAfter))
		got := make([]byte, len(want))
		if _, err := io.ReadFull(modemEnd, got); err != nil {
			t.Fatalf("%s: modem reading %q: %v (got %q)", at(st), want, err, got)
		}
		if string(got) != string(want) {
			t.Fatalf("%s: host sent %q, want %q", at(st), got, want)
		}
	}

	waiters := map[string]*Waiter{}
	var inflight chan string // the formatted result of the command in flight
	var claims []CommandOption
	start := func(st step, run func(ctx context.Context) (*Response, error)) {
		if inflight != nil {
			t.Fatalf("%s: a command is still in flight (missing =result)", at(st))
		}
		ch := make(chan string, 1)
		inflight = ch
		cmd := st.arg
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), failAfter)
			defer cancel()
			resp, err := run(ctx)
			ch <- formatResult(cmd, resp, err)
		}()
	}

	for _, st := range tr.steps {
		switch st.op {
		case "handle":
			prefix := st.arg
			c.Handle(prefix, func(u URC) { log.add("urc %q", u.Line) })
		case "binary":
			c.HandleBinary(st.arg, CCHRecvLength, func(u URC) {
				log.add("urc %q payload %d %q", u.Line, len(u.Payload), u.Payload)
			})
		case "expect":
			waiters[st.arg] = c.Expect(Prefix(st.arg2))
		case "claim":
			claims = append(claims, WithResponsePrefix(st.arg))
		case ">":
			opts := claims
			claims = nil
			start(st, func(ctx context.Context) (*Response, error) { return c.Command(ctx, st.arg, opts...) })
			readHost(st, []byte(st.arg+"\r"))
		case ">payload":
			opts := claims
			claims = nil
			payload := st.data
			start(st, func(ctx context.Context) (*Response, error) {
				return c.CommandPayload(ctx, st.arg, payload, opts...)
			})
			readHost(st, []byte(st.arg+"\r"))
		case ">>":
			readHost(st, st.data)
		case "<", "<raw", "<frame":
			if closed {
				t.Fatalf("%s: the modem already closed the line", at(st))
			}
			_ = modemEnd.SetWriteDeadline(time.Now().Add(failAfter))
			if _, err := modemEnd.Write(st.data); err != nil {
				t.Fatalf("%s: modem write: %v", at(st), err)
			}
			written += int64(len(st.data))
			settle(st)
		case "=result":
			if inflight == nil {
				t.Fatalf("%s: no command in flight", at(st))
			}
			select {
			case r := <-inflight:
				log.add("%s", r)
			case <-time.After(failAfter):
				t.Fatalf("%s: command did not return", at(st))
			}
			inflight = nil
		case "=wait":
			w := waiters[st.arg]
			if w == nil {
				t.Fatalf("%s: no waiter named %q", at(st), st.arg)
			}
			ctx, cancel := context.WithTimeout(context.Background(), failAfter)
			line, err := w.Wait(ctx)
			cancel()
			if err != nil {
				log.add("waiter %s error %q", st.arg, err)
			} else {
				log.add("waiter %s %q", st.arg, line)
			}
		case "=close":
			_ = modemEnd.Close()
			closed = true
			select {
			case <-c.Done():
			case <-time.After(failAfter):
				t.Fatalf("%s: channel did not stop after the modem closed the line", at(st))
			}
			_ = c.Close() // waits for the dispatcher to drain
			log.add("stopped err=%q", fmt.Sprint(c.Err()))
		}
	}
	if inflight != nil {
		t.Fatalf("%s: transcript ends with a command in flight (missing =result)", tr.file)
	}
	for _, w := range waiters {
		w.Cancel()
	}
	if !closed {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return log.String()
}

// formatResult renders a command's outcome in the stable form of
// expected.txt.
func formatResult(cmd string, resp *Response, err error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "result %q", cmd)
	if resp != nil {
		fmt.Fprintf(&b, " lines [")
		for i, l := range resp.Lines {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%q", l)
		}
		fmt.Fprintf(&b, "] final %q", resp.Final)
	}
	if err == nil {
		return b.String()
	}
	fmt.Fprintf(&b, " err %q", err.Error())
	var (
		plain *Error
		cme   *CMEError
		cms   *CMSError
	)
	switch {
	case errors.As(err, &cme):
		fmt.Fprintf(&b, " cme code=%d text=%q", cme.Code, cme.Text)
	case errors.As(err, &cms):
		fmt.Fprintf(&b, " cms code=%d text=%q", cms.Code, cms.Text)
	case errors.As(err, &plain):
		fmt.Fprintf(&b, " error final=%q", plain.Final)
	}
	if errors.Is(err, ErrError) {
		b.WriteString(" is=ErrError")
	}
	if errors.Is(err, ErrNoPrompt) {
		b.WriteString(" is=ErrNoPrompt")
	}
	if errors.Is(err, ErrClosed) {
		b.WriteString(" is=ErrClosed")
	}
	if IsSIMBusy(err) {
		b.WriteString(" simbusy")
	}
	return b.String()
}
