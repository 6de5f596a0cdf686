package at

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cellgate/cellgate/sdk/atkit/transcript"
)

var update = flag.Bool("update", false, "rewrite the expected.txt of every golden transcript case")

// readSizes are the read splits every transcript is replayed with: whole
// writes, one byte per Read, and an odd size that cuts lines and headers at
// varying places. All must produce the same events.
var readSizes = []int{0, 1, 3}

// TestTranscripts replays every folder under testdata/transcripts (see the
// README.md there) and compares the events the channel produced with
// expected.txt.
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "transcripts", "*", "transcript.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("found %d transcript cases, want at least 15", len(files))
	}
	for _, file := range files {
		dir := filepath.Dir(file)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			tr, err := transcript.ParseFile(file, nil)
			if err != nil {
				t.Fatal(err)
			}
			wantFile := filepath.Join(dir, "expected.txt")
			for _, size := range readSizes {
				got := replay(t, tr, size)
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

// replay plays tr's modem side on one end of a net.Pipe, with the channel
// on the other end as the host. The player is a scripted peer, not a modem
// emulator: it sends exactly the bytes written in the transcript and checks
// that the host sends exactly the bytes the transcript expects. The
// harness's actions drive the channel (see testdata/transcripts/README.md);
// a "> " step starts the command it shows before the player reads it.
// After every modem step the replay waits until the channel has parsed
// those bytes and run the handlers they triggered, so the log's order is
// deterministic. readSize > 0 limits every Read of the channel to that many
// bytes.
func replay(t *testing.T, tr *transcript.Transcript, readSize int) string {
	t.Helper()
	hostEnd, modemEnd := net.Pipe()
	var host net.Conn = hostEnd
	if readSize > 0 {
		host = &chunkedConn{Conn: hostEnd, n: readSize}
	}
	h := &harness{log: &eventLog{}, progress: make(chan struct{}, 1), waiters: map[string]*Waiter{}}
	opts, err := channelOptions(tr)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]Option{
		WithUnsolicited(func(u URC) { h.log.add("unsolicited %q", u.Line) }),
		withParsedHook(func(n int) {
			h.parsed.Add(int64(n))
			select {
			case h.progress <- struct{}{}:
			default:
			}
		}),
	}, opts...)
	h.c = New(host, opts...)
	t.Cleanup(func() {
		_ = h.c.Close()
		_ = modemEnd.Close()
	})

	ctx, cancel := context.WithTimeout(context.Background(), failAfter)
	defer cancel()
	p := transcript.Player{Action: h.action, Before: h.before, After: h.after}
	if err := p.PlayModem(ctx, modemEnd, tr); err != nil {
		t.Fatal(err)
	}
	if h.inflight != nil {
		t.Fatal("transcript ends with a command in flight (missing @result)")
	}
	for _, w := range h.waiters {
		w.Cancel()
	}
	if !h.stopped {
		if err := h.c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return h.log.String()
}

// channelOptions reads the @maxline and @maxbinary actions, which configure
// the channel before anything else happens, wherever they are written.
func channelOptions(tr *transcript.Transcript) ([]Option, error) {
	var opts []Option
	for _, s := range tr.Steps {
		if s.Kind != transcript.Action || (s.Name != "maxline" && s.Name != "maxbinary") {
			continue
		}
		v, err := strconv.Atoi(s.Text)
		if err != nil {
			return nil, fmt.Errorf("%s: @%s wants a number: %v", s.Pos, s.Name, err)
		}
		if s.Name == "maxline" {
			opts = append(opts, WithMaxLine(v))
		} else {
			opts = append(opts, WithMaxBinary(v))
		}
	}
	return opts, nil
}

// harness is the host side of a replay: the channel and what the
// transcript's actions set up. Its fields are used only by the player's
// hooks, on the test goroutine; parsed and log are also written by the
// channel's goroutines.
type harness struct {
	c        *Channel
	log      *eventLog
	parsed   atomic.Int64
	progress chan struct{}
	written  int64

	waiters  map[string]*Waiter
	claims   []CommandOption // the next command's options (@claim, @finalok, @finalerror, @promptline)
	payload  []byte          // the next command's payload, from @payload
	inflight chan string     // the formatted outcome of the command in flight
	stopped  bool
}

func (h *harness) action(ctx context.Context, s transcript.Step) error {
	switch s.Name {
	case "maxline", "maxbinary":
		// Applied when the channel was made.
	case "handle":
		h.c.Handle(s.Text, func(u URC) { h.log.add("urc %q", u.Line) })
	case "binary":
		h.c.HandleBinary(s.Text, CCHRecvLength, func(u URC) {
			h.log.add("urc %q payload %d %q", u.Line, len(u.Payload), u.Payload)
		})
	case "expect":
		name, prefix, ok := strings.Cut(s.Text, " ")
		if !ok || prefix == "" {
			return errors.New("want: @expect <name> <prefix>")
		}
		h.waiters[name] = h.c.Expect(Prefix(prefix))
	case "claim":
		h.claims = append(h.claims, WithResponsePrefix(s.Text))
	case "finalok":
		h.claims = append(h.claims, WithFinalOK(s.Text))
	case "finalerror":
		h.claims = append(h.claims, WithFinalError(s.Text))
	case "promptline":
		h.claims = append(h.claims, WithPromptLine(s.Text))
	case "payload":
		p, err := strconv.Unquote(s.Text)
		if err != nil {
			return fmt.Errorf("@payload wants a Go-quoted string: %v", err)
		}
		h.payload = []byte(p)
	case "result":
		if h.inflight == nil {
			return errors.New("no command in flight")
		}
		select {
		case r := <-h.inflight:
			h.log.add("%s", r)
		case <-ctx.Done():
			return fmt.Errorf("command did not return: %w", ctx.Err())
		}
		h.inflight = nil
	case "wait":
		w := h.waiters[s.Text]
		if w == nil {
			return fmt.Errorf("no waiter named %q", s.Text)
		}
		line, err := w.Wait(ctx)
		if err != nil {
			h.log.add("waiter %s error %q", s.Text, err)
		} else {
			h.log.add("waiter %s %q", s.Text, line)
		}
	case "stopped":
		select {
		case <-h.c.Done():
		case <-ctx.Done():
			return errors.New("channel did not stop after the modem closed the line")
		}
		_ = h.c.Close() // waits for the dispatcher to drain
		h.stopped = true
		h.log.add("stopped err=%q", fmt.Sprint(h.c.Err()))
	default:
		return fmt.Errorf("unknown action @%s", s.Name)
	}
	return nil
}

// before starts the command a "> " step shows, so that the host sends it.
func (h *harness) before(ctx context.Context, s transcript.Step) error {
	if s.Kind != transcript.HostLine {
		return nil
	}
	if h.inflight != nil {
		return errors.New("a command is still in flight (missing @result)")
	}
	ch := make(chan string, 1)
	h.inflight = ch
	cmd, payload, opts := s.Text, h.payload, h.claims
	h.payload, h.claims = nil, nil
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), failAfter)
		defer cancel()
		var resp *Response
		var err error
		if payload != nil {
			resp, err = h.c.CommandPayload(ctx, cmd, payload, opts...)
		} else {
			resp, err = h.c.Command(ctx, cmd, opts...)
		}
		ch <- formatResult(cmd, resp, err)
	}()
	return nil
}

// after waits, after each modem step, until the channel has parsed every
// byte written so far and run the handlers they triggered.
func (h *harness) after(ctx context.Context, s transcript.Step) error {
	if s.Side() != transcript.Modem {
		return nil
	}
	h.written += int64(len(s.Bytes) * s.Repeat)
	for h.parsed.Load() < h.written {
		select {
		case <-h.progress:
		case <-h.c.Done():
			if h.parsed.Load() < h.written {
				return fmt.Errorf("channel stopped with %d of %d bytes parsed", h.parsed.Load(), h.written)
			}
		case <-ctx.Done():
			return fmt.Errorf("channel parsed %d of %d bytes", h.parsed.Load(), h.written)
		}
	}
	h.c.flushDispatch()
	return nil
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
