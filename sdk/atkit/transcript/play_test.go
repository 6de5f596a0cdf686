package transcript

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// failAfter bounds every wait; it only turns a hang into a failure.
const failAfter = 10 * time.Second

// conversation exercises every kind of wire step.
const conversation = `# a send with a prompt, a frame in both directions of the count
> AT+CSQ
<
< +CSQ: 20,99
<
< OK
> AT+CCHSEND=0,5
<< "\r\n>"
>> "hello"
<
< OK
<data +CCHRECV: DATA,0,{len} "ab\r\nOK\r\n"
<*2 +CCH_PEER_CLOSED: 0
>*2 AT
~ 1ms
`

func mustParse(t *testing.T, name, src string) *Transcript {
	t.Helper()
	tr, err := Parse(name, []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// pipe returns the host's and the modem's end of a net.Pipe, closed at
// cleanup.
func pipe(t *testing.T) (host, modem net.Conn) {
	t.Helper()
	host, modem = net.Pipe()
	t.Cleanup(func() {
		host.Close()
		modem.Close()
	})
	return host, modem
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), failAfter)
	t.Cleanup(cancel)
	return ctx
}

// playBoth plays modemTr's modem side on one end of line and hostTr's host
// side on the other. When one side fails it closes both ends, so the other
// side's play returns too.
func playBoth(t *testing.T, host, modem net.Conn, hostTr, modemTr *Transcript) (hostErr, modemErr error) {
	t.Helper()
	ctx := testCtx(t)
	modemDone := make(chan error, 1)
	go func() {
		var p Player
		err := p.PlayModem(ctx, modem, modemTr)
		if err != nil {
			modem.Close()
		}
		modemDone <- err
	}()
	var p Player
	if hostErr = p.PlayHost(ctx, host, hostTr); hostErr != nil {
		host.Close()
	}
	return hostErr, <-modemDone
}

func TestOneTranscriptPlaysFromBothEnds(t *testing.T) {
	tr := mustParse(t, "conversation.txt", conversation)
	host, modem := pipe(t)
	hostErr, modemErr := playBoth(t, host, modem, tr, tr)
	if hostErr != nil || modemErr != nil {
		t.Fatalf("host: %v; modem: %v", hostErr, modemErr)
	}
}

func TestOneTranscriptPlaysOverLoopbackTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	host, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	modem, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer modem.Close()
	tr := mustParse(t, "conversation.txt", conversation)
	hostErr, modemErr := playBoth(t, host, modem, tr, tr)
	if hostErr != nil || modemErr != nil {
		t.Fatalf("host: %v; modem: %v", hostErr, modemErr)
	}
}

func TestDeviationsNameTheLineAndBothTexts(t *testing.T) {
	for _, tc := range []struct {
		name         string
		host, modem  string
		hostFails    string // the host's error, when it is the one to notice
		modemFails   string // the modem's error, when it is the one to notice
		mismatchFrom Side
	}{
		{
			name:       "host sends another command",
			host:       "> AT+CSQ\n",
			modem:      "# probe\n> AT+CREG?\n< OK\n",
			modemFails: `modem.txt:2: host sent "AT+CSQ\r", transcript wants "AT+CREG?\r"`,
		},
		{
			name:       "host sends another payload",
			host:       "> AT+CCHSEND=0,5\n<< \"\\r\\n>\"\n>> \"hellO\"\n",
			modem:      "> AT+CCHSEND=0,5\n<< \"\\r\\n>\"\n>> \"hello\"\n",
			modemFails: `modem.txt:3: host sent "hellO", transcript wants "hello"`,
		},
		{
			name:      "modem answers something else",
			host:      "> AT+CPIN?\n<\n< OK\n",
			modem:     "> AT+CPIN?\n<\n< +CME ERROR: SIM not inserted\n",
			hostFails: `host.txt:3: modem sent "+CME ERROR: SIM not inserted\r\n", transcript wants "OK\r\n"`,
		},
		{
			name:      "modem frame counts differently",
			host:      "<data +CCHRECV: DATA,0,{len} \"abc\"\n",
			modem:     "<< \"\\r\\n+CCHRECV: DATA,0,4\\r\\nabc\"\n",
			hostFails: `host.txt:1: modem sent "\r\n+CCHRECV: DATA,0,4\r\n", transcript wants "\r\n+CCHRECV: DATA,0,3\r\nabc"`,
		},
		{
			// One write, so that "end" has the extra bytes at once.
			name:       "host sends more than the transcript has",
			host:       ">> \"AT\\rAT+CSQ\\r\"\n",
			modem:      "> AT\nend\n",
			modemFails: `modem.txt:2: the transcript is over, but the host sent "AT+CSQ\r"`,
		},
		{
			name:       "repeat falls short",
			host:       "> AT\n> ATI\n",
			modem:      ">*2 AT\n",
			modemFails: `modem.txt:1: repeat 2 of 2: host sent "ATI\r", transcript wants "AT\r"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, modem := pipe(t)
			hostTr := mustParse(t, "host.txt", tc.host)
			modemTr := mustParse(t, "modem.txt", tc.modem)
			hostErr, modemErr := playBoth(t, host, modem, hostTr, modemTr)
			check := func(side string, err error, want string) {
				t.Helper()
				if want == "" {
					return
				}
				var e *Error
				var m *MismatchError
				if !errors.As(err, &e) || !errors.As(err, &m) || err.Error() != want {
					t.Errorf("%s error = %v (%T), want *Error wrapping *MismatchError: %s", side, err, err, want)
				}
			}
			check("host", hostErr, tc.hostFails)
			check("modem", modemErr, tc.modemFails)
		})
	}
}

func TestHooksRunInTranscriptOrder(t *testing.T) {
	tr := mustParse(t, "t.txt", "@setup x y\n> AT\n# comment\n<*2 OK\n~ 1ms\n@result\n")
	host, modem := pipe(t)
	var calls []string
	record := func(what string) func(context.Context, Step) error {
		return func(_ context.Context, s Step) error {
			calls = append(calls, fmt.Sprintf("%s %s %d", what, s.String(), s.Pos.Line))
			return nil
		}
	}
	p := Player{Action: record("action"), Before: record("before"), After: record("after")}
	hostDone := make(chan error, 1)
	go func() {
		if _, err := host.Write([]byte("AT\r")); err != nil {
			hostDone <- err
			return
		}
		b := make([]byte, len("OK\r\nOK\r\n"))
		_, err := io.ReadFull(host, b)
		if err == nil && string(b) != "OK\r\nOK\r\n" {
			err = fmt.Errorf("host read %q", b)
		}
		hostDone <- err
	}()
	if err := p.PlayModem(testCtx(t), modem, tr); err != nil {
		t.Fatal(err)
	}
	if err := <-hostDone; err != nil {
		t.Fatal(err)
	}
	want := []string{
		"action @setup x y 1",
		"before > AT 2",
		"after > AT 2",
		"before <*2 OK 4",
		"after <*2 OK 4",
		"action @result 6",
	}
	if strings.Join(calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
}

func TestActionsNeedAHookAndHookErrorsStopThePlay(t *testing.T) {
	tr := mustParse(t, "t.txt", "# setup\n@setup\n< never sent\n")
	_, modem := pipe(t)
	var p Player
	err := p.PlayModem(testCtx(t), modem, tr)
	if err == nil || err.Error() != "t.txt:2: @setup: the player has no Action hook" {
		t.Errorf("without an Action hook: %v", err)
	}
	boom := errors.New("boom")
	p.Action = func(context.Context, Step) error { return boom }
	err = p.PlayModem(testCtx(t), modem, tr)
	if !errors.Is(err, boom) || err.Error() != "t.txt:2: boom" {
		t.Errorf("failing Action hook: %v", err)
	}
	p = Player{Before: func(context.Context, Step) error { return boom }, Action: func(context.Context, Step) error { return nil }}
	err = p.PlayModem(testCtx(t), modem, tr)
	if !errors.Is(err, boom) || err.Error() != "t.txt:3: boom" {
		t.Errorf("failing Before hook: %v", err)
	}
}

func TestEndAcceptsAQuietOrClosedLine(t *testing.T) {
	tr := mustParse(t, "t.txt", "> AT\nend\n")
	t.Run("quiet", func(t *testing.T) {
		host, modem := pipe(t)
		go host.Write([]byte("AT\r"))
		p := Player{Quiet: time.Millisecond}
		if err := p.PlayModem(testCtx(t), modem, tr); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		host, modem := pipe(t)
		go func() {
			host.Write([]byte("AT\r"))
			host.Close()
		}()
		p := Player{Quiet: time.Hour} // the closed line ends the window
		if err := p.PlayModem(testCtx(t), modem, tr); err != nil {
			t.Fatal(err)
		}
	})
}

func TestHangupClosesTheLine(t *testing.T) {
	tr := mustParse(t, "t.txt", "< RDY\nhangup\n@after\n")
	host, modem := pipe(t)
	read := make(chan error, 1)
	go func() {
		b, err := io.ReadAll(host)
		if err == nil && string(b) != "RDY\r\n" {
			err = fmt.Errorf("host read %q before EOF", b)
		}
		read <- err
	}()
	acted := false
	p := Player{Action: func(context.Context, Step) error { acted = true; return nil }}
	if err := p.PlayModem(testCtx(t), modem, tr); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if !acted {
		t.Error("the action after hangup did not run")
	}

	// A line that cannot be closed cannot hang up.
	var only struct{ io.ReadWriter }
	only.ReadWriter = modem
	err := p.PlayModem(testCtx(t), only, mustParse(t, "t.txt", "hangup\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "t.txt:1: hangup: the line") {
		t.Errorf("hangup on a line without Close: %v", err)
	}
}

func TestContextEndsWaitsAndPauses(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct{ name, src, want string }{
		{"read", "# the host never sends\n> AT\n", `t.txt:2: waiting for the host to send "AT\r" (got ""): context canceled`},
		{"pause", "~ 1h\n", "t.txt:1: pausing: context canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, modem := pipe(t)
			var p Player
			err := p.PlayModem(ctx, modem, mustParse(t, "t.txt", tc.src))
			if !errors.Is(err, context.Canceled) || err.Error() != tc.want {
				t.Errorf("error = %v, want %s", err, tc.want)
			}
		})
	}
}

func TestEOFBeforeTheStepEnds(t *testing.T) {
	host, modem := pipe(t)
	go func() {
		host.Write([]byte("AT+C"))
		host.Close()
	}()
	var p Player
	err := p.PlayModem(testCtx(t), modem, mustParse(t, "t.txt", "> AT+CSQ\n"))
	if !errors.Is(err, io.EOF) || err.Error() != `t.txt:1: waiting for the host to send "AT+CSQ\r" (got "AT+C"): EOF` {
		t.Errorf("error = %v", err)
	}
}
