package at

import (
	"context"
	"errors"
	"io"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

func TestCommandReturnsIntermediateLinesWithoutEcho(t *testing.T) {
	for _, echo := range []bool{false, true} {
		t.Run(map[bool]string{false: "echo off", true: "echo on"}[echo], func(t *testing.T) {
			c, p := newPair(t)
			res := goCommand(testCtx(t), c, "AT+CCERTLIST")
			p.expect("AT+CCERTLIST\r")
			if echo {
				p.send("AT+CCERTLIST\r")
			}
			p.send("\r\n+CCERTLIST: \"ca.pem\"\r\n+CCERTLIST:\"cert.pem\"\r\n\r\nOK\r\n")
			awaitOK(t, res, "Command", `+CCERTLIST: "ca.pem"`, `+CCERTLIST:"cert.pem"`)
		})
	}
}

func TestFinalResultErrorsCarryTheModemsWords(t *testing.T) {
	tests := []struct {
		name    string
		final   string
		wantMsg string
		want    error // the typed error, field for field
	}{
		{"plain ERROR", "ERROR", "AT+X: ERROR", &Error{Cmd: "AT+X", Final: "ERROR"}},
		{"CME numeric", "+CME ERROR: 10", "AT+X: +CME ERROR: 10 (SIM not inserted)", &CMEError{Cmd: "AT+X", Code: 10, Text: "SIM not inserted"}},
		{"CME text", "+CME ERROR: SIM busy", "AT+X: +CME ERROR: SIM busy", &CMEError{Cmd: "AT+X", Code: -1, Text: "SIM busy"}},
		{"CME unknown code", "+CME ERROR:9999", "AT+X: +CME ERROR: 9999", &CMEError{Cmd: "AT+X", Code: 9999}},
		{"CMS numeric", "+CMS ERROR: 302", "AT+X: +CMS ERROR: 302 (operation not allowed)", &CMSError{Cmd: "AT+X", Code: 302, Text: "operation not allowed"}},
		{"NO CARRIER", "NO CARRIER", "AT+X: NO CARRIER", &Error{Cmd: "AT+X", Final: "NO CARRIER"}},
		{"CONNECT FAIL", "CONNECT FAIL", "AT+X: CONNECT FAIL", &Error{Cmd: "AT+X", Final: "CONNECT FAIL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, p := newPair(t)
			res := goCommand(testCtx(t), c, "AT+X")
			p.expect("AT+X\r")
			p.send("\r\n+X: 1\r\n\r\n" + tt.final + "\r\n")
			o := await(t, res)
			if !errors.Is(o.err, ErrError) {
				t.Fatalf("errors.Is(err, ErrError) = false for %v", o.err)
			}
			if o.err.Error() != tt.wantMsg {
				t.Fatalf("message %q, want %q", o.err.Error(), tt.wantMsg)
			}
			if o.resp == nil || o.resp.Final != tt.final || !slices.Equal(o.resp.Lines, []string{"+X: 1"}) {
				t.Fatalf("response %#v, want lines [+X: 1] and final %q", o.resp, tt.final)
			}
			if !reflect.DeepEqual(o.err, tt.want) {
				t.Fatalf("error %#v, want %#v", o.err, tt.want)
			}
		})
	}
}

func TestIsSIMBusy(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&CMEError{Cmd: "AT+CPIN?", Code: 14, Text: "SIM busy"}, true},
		{&CMEError{Cmd: "AT+CPIN?", Code: -1, Text: "sim BUSY"}, true},
		{&CMSError{Cmd: "AT+CMGS", Code: 314}, true},
		{errors.Join(errors.New("open"), &CMEError{Code: 14}), true},
		{&CMEError{Code: 10, Text: "SIM not inserted"}, false},
		{&Error{Cmd: "AT", Final: "ERROR"}, false},
		{errors.New("SIM busy"), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := IsSIMBusy(tt.err); got != tt.want {
			t.Errorf("IsSIMBusy(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestCommandRejectsTerminatorsInTheCommand(t *testing.T) {
	c, _ := newPair(t)
	for _, cmd := range []string{"", "AT\r", "AT\nAT"} {
		if _, err := c.Command(testCtx(t), cmd); err == nil {
			t.Errorf("Command(%q) succeeded, want an error", cmd)
		}
	}
}

func TestQueuedCommandsRunInTurnAndHonourTheirContext(t *testing.T) {
	c, p := newPair(t)
	first := goCommand(testCtx(t), c, "AT+FIRST")
	p.expect("AT+FIRST\r")

	// While AT+FIRST is in flight, a second caller queues with a context
	// that ends; it must give up without anything reaching the modem.
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Millisecond)
	defer cancel()
	_, err := c.Command(ctx, "AT+IMPATIENT")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "AT+IMPATIENT") {
		t.Fatalf("queued command: %v, want deadline exceeded naming the command", err)
	}
	third := goCommand(testCtx(t), c, "AT+THIRD")

	p.send("\r\nOK\r\n")
	if o := await(t, first); o.err != nil {
		t.Fatalf("first: %v", o.err)
	}
	// The next bytes on the line must be the third command: the impatient
	// one was never sent and no resync was needed.
	p.expect("AT+THIRD\r")
	p.send("\r\n+THIRD: 3\r\n\r\nOK\r\n")
	awaitOK(t, third, "third", "+THIRD: 3")
}

// awaitOK waits for a command that must answer exactly the lines want and
// OK; what names the command in the failure.
func awaitOK(t *testing.T, res <-chan outcome, what string, want ...string) {
	t.Helper()
	o := await(t, res)
	if o.err != nil || !slices.Equal(o.resp.Lines, want) || o.resp.Final != "OK" {
		t.Fatalf("%s: %v %#v, want lines %q and OK", what, o.err, o.resp, want)
	}
}

// timeOut runs cmd against a peer that reads it and never answers, lets the
// caller's deadline pass, and checks the error names the command.
func timeOut(t *testing.T, c *Channel, p *peer, cmd string) {
	t.Helper()
	ctx := newManualDeadline()
	res := goCommand(ctx, c, cmd)
	p.expect(cmd + "\r")
	ctx.expire()
	o := await(t, res)
	if !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("%s: err = %v, want context.DeadlineExceeded", cmd, o.err)
	}
	if !strings.Contains(o.err.Error(), cmd) {
		t.Fatalf("%s: error %q does not name the command", cmd, o.err)
	}
}

// answerCGMM plays the modem answering the AT+CGMM that res waits for, and
// checks that the command gets exactly that answer: the line is in sync.
func answerCGMM(t *testing.T, p *peer, res <-chan outcome) {
	t.Helper()
	p.expect("AT+CGMM\r")
	p.send("\r\nSIMCOM_SIM7600G-H\r\n\r\nOK\r\n")
	awaitOK(t, res, "AT+CGMM", "SIMCOM_SIM7600G-H")
}

func TestTimeoutLateResultBeforeNextCommand(t *testing.T) {
	unsolicited := newSink()
	c, p := newPair(t, WithUnsolicited(unsolicited.handle))
	timeOut(t, c, p, "AT+CSQ")

	p.send("\r\n+CSQ: 21,99\r\n\r\nOK\r\n")
	if u := unsolicited.next(t); u.Line != "+CSQ: 21,99" {
		t.Fatalf("unsolicited %q, want the late +CSQ line", u.Line)
	}
	if u := unsolicited.next(t); u.Line != "OK" {
		t.Fatalf("unsolicited %q, want the late OK", u.Line)
	}
	// The late final settled the account: no probe is needed, the next
	// command goes straight out and gets only its own answer.
	res := goCommand(testCtx(t), c, "AT+CGMM")
	answerCGMM(t, p, res)
}

func TestTimeoutLateResultDuringNextCommand(t *testing.T) {
	unsolicited := newSink()
	c, p := newPair(t, WithUnsolicited(unsolicited.handle))
	timeOut(t, c, p, "AT+CSQ")

	res := goCommand(testCtx(t), c, "AT+CGMM")
	p.expect("AT+CMEE?\r")
	// The modem finishes the abandoned command only now (an error, to show
	// that stale errors are discarded too), then answers the probe.
	p.send("AT+CSQ\r\r\n+CSQ: 21,99\r\n\r\n+CME ERROR: 100\r\n")
	p.send("\r\n+CMEE: 2\r\n\r\nOK\r\n")
	answerCGMM(t, p, res)
	if u := unsolicited.next(t); u.Line != "+CSQ: 21,99" {
		t.Fatalf("unsolicited %q, want the late +CSQ line", u.Line)
	}
}

func TestTimeoutLateResultNever(t *testing.T) {
	c, p := newPair(t)
	timeOut(t, c, p, "AT+COPS=?")

	res := goCommand(testCtx(t), c, "AT+CGMM")
	p.expect("AT+CMEE?\r")
	p.send("\r\n+CMEE: 2\r\n\r\nOK\r\n")
	answerCGMM(t, p, res)
	// Back in sync: the command after that is sent without a probe.
	res = goCommand(testCtx(t), c, "AT")
	p.expect("AT\r")
	p.send("\r\nOK\r\n")
	awaitOK(t, res, "AT")
}

func TestProbeThatTimesOutIsReplacedByTheOtherProbe(t *testing.T) {
	c, p := newPair(t)
	timeOut(t, c, p, "AT+CSQ")

	ctx := newManualDeadline()
	res := goCommand(ctx, c, "AT+CGMM")
	p.expect("AT+CMEE?\r")
	ctx.expire()
	o := await(t, res)
	if !errors.Is(o.err, context.DeadlineExceeded) || !strings.Contains(o.err.Error(), "resynchronising") {
		t.Fatalf("command during a silent probe: %v, want a resync deadline error", o.err)
	}

	// The next probe must not be AT+CMEE? again: the first probe's late
	// "+CMEE:" answer would otherwise pass for the new one.
	res = goCommand(testCtx(t), c, "AT+CGMM")
	p.expect("AT+CSCS?\r")
	p.send("\r\n+CSQ: 21,99\r\n\r\nOK\r\n")    // late answer of AT+CSQ
	p.send("\r\n+CMEE: 2\r\n\r\nOK\r\n")       // late answer of the first probe
	p.send("\r\n+CSCS: \"IRA\"\r\n\r\nOK\r\n") // the second probe
	answerCGMM(t, p, res)
}

func TestAbandonedCMEEQueryIsNotUsedAsItsOwnProbe(t *testing.T) {
	c, p := newPair(t)
	timeOut(t, c, p, "AT+CMEE?")
	res := goCommand(testCtx(t), c, "AT")
	p.expect("AT+CSCS?\r")
	p.send("\r\n+CMEE: 2\r\n\r\nOK\r\n\r\n+CSCS: \"IRA\"\r\n\r\nOK\r\n")
	p.expect("AT\r")
	p.send("\r\nOK\r\n")
	awaitOK(t, res, "AT")
}

func TestCommandPayloadPromptForms(t *testing.T) {
	for _, tt := range []struct{ name, prompt string }{
		{"CRLF > space", "\r\n> "},
		{"CRLF >", "\r\n>"},
		{"bare >", ">"},
		{"echo then >", "AT+CCHSEND=0,9\r\r\n> "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, p := newPair(t)
			payload := []byte("a\r\nOK\r\n>")
			res := goPayload(testCtx(t), c, "AT+CCHSEND=0,9", payload)
			p.expect("AT+CCHSEND=0,9\r")
			p.send(tt.prompt)
			p.expect(string(payload))
			p.send("\r\nOK\r\n")
			o := await(t, res)
			if o.err != nil || o.resp.Final != "OK" || len(o.resp.Lines) != 0 {
				t.Fatalf("CommandPayload: %v %#v", o.err, o.resp)
			}
		})
	}
}

func TestCommandPayloadRefusedDoesNotWritePayload(t *testing.T) {
	c, p := newPair(t)
	res := goPayload(testCtx(t), c, "AT+CCHSEND=1,5", []byte("hello"))
	p.expect("AT+CCHSEND=1,5\r")
	p.send("\r\nERROR\r\n")
	o := await(t, res)
	var e *Error
	if !errors.As(o.err, &e) || e.Cmd != "AT+CCHSEND=1,5" {
		t.Fatalf("err = %v, want *Error for the send", o.err)
	}
	// If the payload had been written, the peer would read "hello" here.
	res = goCommand(testCtx(t), c, "AT")
	p.expect("AT\r")
	p.send("\r\nOK\r\n")
	if o := await(t, res); o.err != nil {
		t.Fatalf("AT: %v", o.err)
	}

	res = goPayload(testCtx(t), c, "AT+CCERTDOWN=\"a.pem\",5", []byte("hello"))
	p.expect("AT+CCERTDOWN=\"a.pem\",5\r")
	p.send("\r\nOK\r\n")
	if o := await(t, res); !errors.Is(o.err, ErrNoPrompt) {
		t.Fatalf("OK without prompt: %v, want ErrNoPrompt", o.err)
	}
}

func TestPayloadIsCopied(t *testing.T) {
	c, p := newPair(t)
	payload := []byte("hello")
	ctx, cancel := context.WithCancel(testCtx(t))
	res := goPayload(ctx, c, "AT+CCHSEND=0,5", payload)
	p.expect("AT+CCHSEND=0,5\r")
	p.send("\r\n> ")
	// Reading one byte proves the payload write has started; the host is
	// now blocked writing the rest. Give up and scribble over the caller's
	// buffer: the bytes still to go must not change.
	p.expect("h")
	cancel()
	if o := await(t, res); !errors.Is(o.err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", o.err)
	}
	copy(payload, "XXXXX")
	p.expect("ello")
}

// zeroReadPort answers (0, nil) between its chunks, like a serial port with a
// read timeout, and records what was written.
type zeroReadPort struct {
	mu      sync.Mutex
	chunks  []string
	written chan string
	reads   atomic.Int64
}

func (z *zeroReadPort) Read(b []byte) (int, error) {
	z.reads.Add(1)
	z.mu.Lock()
	defer z.mu.Unlock()
	if len(z.chunks) == 0 {
		return 0, nil
	}
	s := z.chunks[0]
	z.chunks = z.chunks[1:]
	if s == "" {
		return 0, nil
	}
	return copy(b, s), nil
}

func (z *zeroReadPort) Write(b []byte) (int, error) {
	z.written <- string(b)
	return len(b), nil
}

func (z *zeroReadPort) push(s ...string) {
	z.mu.Lock()
	z.chunks = append(z.chunks, s...)
	z.mu.Unlock()
}

func TestZeroLengthReadsAreNotEOF(t *testing.T) {
	port := &zeroReadPort{written: make(chan string, 4)}
	c := New(port) // not an io.Closer: Close relies on the reader noticing
	res := goCommand(testCtx(t), c, "AT+CSQ")
	select {
	case w := <-port.written:
		if w != "AT+CSQ\r" {
			t.Fatalf("wrote %q", w)
		}
	case <-time.After(failAfter):
		t.Fatal("command not written")
	}
	port.push("", "\r\n+CSQ:", "", "", " 20,99\r\n", "", "\r\nOK\r\n")
	awaitOK(t, res, "Command", "+CSQ: 20,99")
	if c.Err() != nil {
		t.Fatalf("Err() = %v after (0, nil) reads", c.Err())
	}
	// A port that only ever answers (0, nil) must not keep Close waiting.
	closeWithin(t, c, "Close did not return while the port kept answering (0, nil)")
}

// closeWithin closes c and fails the test with stuck if Close has not
// returned within failAfter.
func closeWithin(t *testing.T, c *Channel, stuck string) {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(failAfter):
		t.Fatal(stuck)
	}
}

func TestZeroLengthReadsBackOff(t *testing.T) {
	// A port that answers (0, nil) instantly, forever. Without a backoff the
	// reader would call Read millions of times in the window below; with it
	// the count stays small. The window only bounds the count, it is not a
	// performance assertion.
	port := &zeroReadPort{written: make(chan string, 1)}
	c := New(port)
	<-time.After(200 * time.Millisecond) // an observation window, not a wait for a condition
	n := port.reads.Load()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// 200 ms at >= 1 ms per read after the first few is well under 1000.
	if n > 1000 {
		t.Fatalf("%d reads in 200 ms: the reader spins on (0, nil)", n)
	}
}

func TestEOFStopsTheChannelAndFailsWaiters(t *testing.T) {
	c, p := newPair(t)
	w := c.Expect(Prefix("+CCHOPEN: 0,"))
	defer w.Cancel()
	res := goCommand(testCtx(t), c, "AT+CSQ")
	p.expect("AT+CSQ\r")
	p.send("\r\n+CSQ: 1,")
	_ = p.conn.Close()

	o := await(t, res)
	if !errors.Is(o.err, ErrClosed) || !errors.Is(o.err, io.EOF) || !strings.Contains(o.err.Error(), "AT+CSQ") {
		t.Fatalf("pending command: %v, want ErrClosed wrapping io.EOF naming AT+CSQ", o.err)
	}
	select {
	case <-c.Done():
	case <-time.After(failAfter):
		t.Fatal("Done not closed after EOF")
	}
	if !errors.Is(c.Err(), io.EOF) {
		t.Fatalf("Err() = %v, want io.EOF", c.Err())
	}
	if _, err := w.Wait(testCtx(t)); !errors.Is(err, ErrClosed) || !errors.Is(err, io.EOF) {
		t.Fatalf("Wait: %v, want ErrClosed wrapping io.EOF", err)
	}
	if _, err := c.Command(testCtx(t), "AT"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Command after EOF: %v, want ErrClosed", err)
	}
}

func TestCloseFailsPendingCommandWithErrClosed(t *testing.T) {
	c, p := newPair(t)
	res := goCommand(testCtx(t), c, "AT+CSQ")
	p.expect("AT+CSQ\r")
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if o := await(t, res); !errors.Is(o.err, ErrClosed) {
		t.Fatalf("pending command: %v, want ErrClosed", o.err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c.Err() != nil {
		t.Fatalf("Err() after Close = %v, want nil", c.Err())
	}
	if _, err := c.Command(testCtx(t), "AT"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Command after Close: %v", err)
	}
}

// stuckPort blocks reads and writes until closed; failWrite makes Write
// fail at once instead.
type stuckPort struct {
	closed    chan struct{}
	once      sync.Once
	failWrite error
}

func newStuckPort() *stuckPort { return &stuckPort{closed: make(chan struct{})} }

func (s *stuckPort) Read([]byte) (int, error) {
	<-s.closed
	return 0, net.ErrClosed
}

func (s *stuckPort) Write(b []byte) (int, error) {
	if s.failWrite != nil {
		return 0, s.failWrite
	}
	<-s.closed
	return 0, net.ErrClosed
}

func (s *stuckPort) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

func TestWriteErrorFailsTheCommand(t *testing.T) {
	port := newStuckPort()
	port.failWrite = errors.New("input/output error")
	c := New(port)
	defer c.Close()
	_, err := c.Command(testCtx(t), "AT+CSQ")
	if err == nil || !errors.Is(err, port.failWrite) || !strings.Contains(err.Error(), "AT+CSQ") || !strings.Contains(err.Error(), "write") {
		t.Fatalf("err = %v, want the write error wrapped with the command", err)
	}
}

func TestStuckWriteHonoursContextAndClose(t *testing.T) {
	port := newStuckPort()
	c := New(port)
	ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel()
	_, err := c.Command(ctx, "AT+CSQ")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	closeWithin(t, c, "Close did not unblock the stuck write")
}

func TestTraceShowsBothDirections(t *testing.T) {
	trace := &testutil.SyncBuffer{}
	bin := newSink()
	c, p := newPair(t, WithTrace(trace))
	c.HandleBinary("+CCHRECV: DATA,", CCHRecvLength, bin.handle)
	res := goPayload(testCtx(t), c, "AT+CCHSEND=0,3", []byte("a\x00b"))
	p.expect("AT+CCHSEND=0,3\r")
	p.send("\r\n> ")
	p.expect("a\x00b")
	p.send("\r\nOK\r\n\r\n+CCHRECV: DATA,0,2\r\n\x01\n")
	if o := await(t, res); o.err != nil {
		t.Fatal(o.err)
	}
	bin.next(t)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got := trace.String()
	for _, want := range []string{
		` > AT+CCHSEND=0,3\r` + "\n",
		` < [prompt] >` + "\n",
		` > [payload 3 bytes] a\x00b` + "\n",
		` < OK` + "\n",
		` < +CCHRECV: DATA,0,2` + "\n",
		` < [payload 2 bytes] \x01\n` + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("trace lacks %q; trace:\n%s", want, got)
		}
	}
	first, _, _ := strings.Cut(got, " ")
	if _, err := time.Parse(traceTime, first); err != nil {
		t.Errorf("trace entry does not start with a timestamp: %v", err)
	}
}

func TestHandlersLongestPrefixLatestRegistrationAndUnregister(t *testing.T) {
	got := make(chan string, 16)
	record := func(tag string) func(URC) {
		return func(u URC) { got <- tag + " " + u.Line }
	}
	next := func() string {
		t.Helper()
		select {
		case s := <-got:
			return s
		case <-time.After(failAfter):
			t.Fatal("no delivery")
			return ""
		}
	}
	unsolicited := newSink()
	c, p := newPair(t, WithUnsolicited(unsolicited.handle))
	c.Handle("+CCH", record("short"))
	offEvent := c.Handle("+CCHEVENT:", record("event-1"))
	c.Handle("+CCHEVENT: ", record("event-2")) // same normalized prefix, later
	offPeer := c.Handle("+CCH_PEER_CLOSED:", record("peer"))

	p.send("\r\n+CCHEVENT: 0,RECV EVENT\r\n+CCH_PEER_CLOSED: 1\r\n+CCHSTOP: 0\r\n")
	for _, want := range []string{
		"event-2 +CCHEVENT: 0,RECV EVENT",
		"peer +CCH_PEER_CLOSED: 1",
		"short +CCHSTOP: 0",
	} {
		if s := next(); s != want {
			t.Fatalf("delivered %q, want %q", s, want)
		}
	}
	offPeer()
	offPeer() // idempotent
	offEvent()
	p.send("\r\n+CCH_PEER_CLOSED: 0\r\n+CCHEVENT:1, RECV EVENT\r\nRDY\r\n")
	for _, want := range []string{
		"short +CCH_PEER_CLOSED: 0",
		"event-2 +CCHEVENT:1, RECV EVENT",
	} {
		if s := next(); s != want {
			t.Fatalf("delivered %q, want %q", s, want)
		}
	}
	if u := unsolicited.next(t); u.Line != "RDY" {
		t.Fatalf("unsolicited %q", u.Line)
	}
}

func TestUnregisteredHandlerIsNotCalledForQueuedURCs(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	var late atomic.Int64
	c, p := newPair(t)
	c.Handle("+BLOCK:", func(URC) {
		close(entered)
		<-release
	})
	off := c.Handle("+LATE:", func(URC) { late.Add(1) })
	p.send("\r\n+BLOCK: 1\r\n")
	<-entered
	p.send("\r\n+LATE: 1\r\n+LATE: 2\r\n")
	// The +LATE: URCs may or may not be queued yet; either way, once off
	// returns the handler must not run.
	off()
	close(release)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := late.Load(); n != 0 {
		t.Fatalf("unregistered handler ran %d times", n)
	}
}

func TestSlowHandlerDoesNotStallCommands(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	c, p := newPair(t)
	c.Handle("+CCHSEND:", func(URC) {
		entered <- struct{}{}
		<-release
	})
	defer close(release)
	p.send("\r\n+CCHSEND: 0,0\r\n")
	select {
	case <-entered:
	case <-time.After(failAfter):
		t.Fatal("handler not called")
	}
	res := goCommand(testCtx(t), c, "AT+CSQ")
	p.expect("AT+CSQ\r")
	p.send("\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
	awaitOK(t, res, "command while a handler is blocked", "+CSQ: 20,99")
}

func TestFullQueueBlocksTheReaderButDropsNothing(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var got []string
	c, p := newPair(t, WithQueueSize(1))
	c.Handle("+N:", func(u URC) {
		<-release
		mu.Lock()
		got = append(got, u.Line)
		mu.Unlock()
	})
	res := goCommand(testCtx(t), c, "AT")
	p.expect("AT\r")
	var want []string
	var sb strings.Builder
	for i := range 20 {
		line := "+N: " + string(rune('a'+i))
		want = append(want, line)
		sb.WriteString("\r\n" + line + "\r\n")
	}
	sb.WriteString("\r\nOK\r\n")
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		_ = p.conn.SetWriteDeadline(time.Now().Add(failAfter))
		_, _ = p.conn.Write([]byte(sb.String()))
	}()
	// Wait until the one-slot queue is full while the handler is blocked:
	// from here on the reader can only wait.
	testutil.Eventually(t, failAfter, "the queue to fill", func() bool { return len(c.queue) == cap(c.queue) })
	close(release)
	<-sent
	if o := await(t, res); o.err != nil {
		t.Fatal(o.err)
	}
	if err := c.Close(); err != nil { // drains the queue
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %q, want all 20 in order", got)
	}
}

func TestWaiterSemantics(t *testing.T) {
	unsolicited := newSink()
	c, p := newPair(t, WithUnsolicited(unsolicited.handle))
	first := c.Expect(Prefix("+CCHOPEN: 0,"))
	second := c.Expect(Prefix("+CCHOPEN:0,"))
	canceled := c.Expect(Prefix("+CCHCLOSE:"))
	canceled.Cancel()
	canceled.Cancel()
	if _, err := canceled.Wait(testCtx(t)); !errors.Is(err, ErrWaiterCanceled) {
		t.Fatalf("Wait after Cancel: %v", err)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Millisecond)
	defer cancel()
	if _, err := first.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a short deadline: %v", err)
	}

	p.send("\r\n+CCHCLOSE: 0,0\r\n+CCHOPEN: 0,0\r\n+CCHOPEN:  0, 15\r\n")
	// The canceled waiter took nothing: its line is unsolicited.
	if u := unsolicited.next(t); u.Line != "+CCHCLOSE: 0,0" {
		t.Fatalf("unsolicited %q", u.Line)
	}
	for _, tt := range []struct {
		w    *Waiter
		want string
	}{{first, "+CCHOPEN: 0,0"}, {second, "+CCHOPEN:  0, 15"}} {
		for range 2 { // Wait is repeatable
			got, err := tt.w.Wait(testCtx(t))
			if err != nil || got != tt.want {
				t.Fatalf("Wait = %q, %v; want %q", got, err, tt.want)
			}
		}
	}
	first.Cancel() // after a match: harmless
	if got, _ := first.Wait(testCtx(t)); got != "+CCHOPEN: 0,0" {
		t.Fatalf("Wait after Cancel of a matched waiter = %q", got)
	}
}

func TestPrefixMatchingIgnoresSpacesAfterColonAndComma(t *testing.T) {
	tests := []struct {
		prefix, line string
		want         bool
	}{
		{"+CCHRECV: DATA,", "+CCHRECV: DATA,0,5", true},
		{"+CCHRECV: DATA,", "+CCHRECV:DATA,0,5", true},
		{"+CCHRECV: DATA,", "+CCHRECV:  DATA,0,5", true},
		{"+CCHRECV:DATA,", "+CCHRECV: DATA, 0,5", true},
		{"+CCHEVENT: 0,RECV EVENT", "+CCHEVENT: 0, RECV EVENT", true},
		{"+CCHEVENT: 0, RECV EVENT", "+CCHEVENT:0,RECV EVENT", true},
		{"+CCHOPEN: 0,", "+CCHOPEN: 1,0", false},
		{"+CCHRECV: DATA,", "+CCHRECV: 1,0", false},
		{"+CCHRECV: DATA,", "+CCHRECV", false},
		{"+CSQ:", "+csq: 1,2", false},
		{"RDY", "RDY", true},
		{"+CCHRECV: DATA", "+CCHRECV: DA TA", false},
	}
	for _, tt := range tests {
		if got := Prefix(tt.prefix)(tt.line); got != tt.want {
			t.Errorf("Prefix(%q)(%q) = %v, want %v", tt.prefix, tt.line, got, tt.want)
		}
	}
}

func TestCCHRecvLength(t *testing.T) {
	tests := []struct {
		line string
		n    int
		ok   bool
	}{
		{"+CCHRECV: DATA,0,5", 5, true},
		{"+CCHRECV:DATA,1,2048", 2048, true},
		{"+CCHRECV: DATA, 1, 17 ", 17, true},
		{"+CCHRECV: DATA,0,0", 0, true},
		{"+CCHRECV: DATA,0,", 0, false},
		{"+CCHRECV: DATA,0,-1", 0, false},
		{"+CCHRECV: DATA,0,5x", 0, false},
		{"+CCHRECV: DATA,x,5", 0, false},
		{"+CCHRECV: DATA,0,1234567890", 0, false},
		{"+CCHRECV: 1,0", 0, false},
		{"+CCHRECV: LEN,10,0", 0, false},
	}
	for _, tt := range tests {
		n, ok := CCHRecvLength(tt.line)
		if n != tt.n || ok != tt.ok {
			t.Errorf("CCHRecvLength(%q) = %d, %v; want %d, %v", tt.line, n, ok, tt.n, tt.ok)
		}
	}
}

func TestBinaryLengthOverTheCapIsALine(t *testing.T) {
	bin := newSink()
	unsolicited := newSink()
	c, p := newPair(t, WithMaxBinary(4), WithUnsolicited(unsolicited.handle))
	c.HandleBinary("+CCHRECV: DATA,", CCHRecvLength, bin.handle)
	p.send("\r\n+CCHRECV: DATA,0,5\r\nhello\r\n+CCHRECV: DATA,0,4\r\nabcd\r\n")
	if u := unsolicited.next(t); u.Line != "+CCHRECV: DATA,0,5" {
		t.Fatalf("unsolicited %q, want the over-cap header", u.Line)
	}
	if u := unsolicited.next(t); u.Line != "hello" {
		t.Fatalf("unsolicited %q, want hello", u.Line)
	}
	if u := bin.next(t); string(u.Payload) != "abcd" {
		t.Fatalf("payload %q, want abcd", u.Payload)
	}
}

func TestClaimedPrefixBeatsHandlerOnlyWhileInFlight(t *testing.T) {
	reports := newSink()
	c, p := newPair(t)
	c.Handle("+CCHSEND:", reports.handle)
	res := goCommand(testCtx(t), c, "AT+CCHSEND?", WithResponsePrefix("+CCHSEND: "))
	p.expect("AT+CCHSEND?\r")
	p.send("\r\n+CCHSEND: 0,0,1,0\r\n\r\nOK\r\n\r\n+CCHSEND: 0,0\r\n")
	o := await(t, res)
	if o.err != nil || !reflect.DeepEqual(o.resp.Lines, []string{"+CCHSEND: 0,0,1,0"}) {
		t.Fatalf("claimed response: %v %#v", o.err, o.resp)
	}
	if u := reports.next(t); u.Line != "+CCHSEND: 0,0" {
		t.Fatalf("handler got %q, want the send report", u.Line)
	}
}

func TestConcurrentUseIsRaceFree(t *testing.T) {
	c, p := newPair(t)
	sink := newSink()
	var wg sync.WaitGroup
	const n = 8
	for i := range n {
		wg.Go(func() {
			off := c.Handle("+R"+string(rune('A'+i))+":", sink.handle)
			w := c.Expect(Prefix("+W" + string(rune('A'+i)) + ":"))
			w.Cancel()
			off()
			_, _ = c.Command(testCtx(t), "AT")
		})
	}
	for range n {
		p.expect("AT\r")
		p.send("\r\nOK\r\n")
	}
	wg.Wait()
}
