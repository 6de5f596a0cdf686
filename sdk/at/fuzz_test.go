package at

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fuzzPort plays arbitrary modem bytes to the channel. Its first Read waits
// until the host has written (so the bytes arrive while a command is in
// flight); it then serves the bytes in reads of at most chunk bytes, and
// io.EOF after the last.
type fuzzPort struct {
	data   []byte // touched only by the reader goroutine after wrote
	chunk  int
	wrote  chan struct{}
	wOnce  sync.Once
	closed chan struct{}
	cOnce  sync.Once
}

func (p *fuzzPort) Write(b []byte) (int, error) {
	p.wOnce.Do(func() { close(p.wrote) })
	return len(b), nil
}

func (p *fuzzPort) Read(b []byte) (int, error) {
	select {
	case <-p.wrote:
	case <-p.closed:
		return 0, net.ErrClosed
	}
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), p.chunk)], p.data)
	p.data = p.data[n:]
	return n, nil
}

func (p *fuzzPort) Close() error {
	p.cOnce.Do(func() { close(p.closed) })
	return nil
}

// rawLength is a second binary header format, "+RAW: <n>", so the fuzzer
// also meets two competing binary registrations.
func rawLength(line string) (int, bool) {
	i, ok := matchNormalized(line, "+RAW:")
	if !ok {
		return 0, false
	}
	s := strings.TrimSpace(line[i:])
	if !isDigits(s) || len(s) > 4 {
		return 0, false
	}
	n, _ := strconv.Atoi(s)
	return n, true
}

// FuzzChannel feeds arbitrary modem bytes to a channel while a command (or,
// by the first input byte, a payload command) is in flight. The first byte
// also picks the read size. The channel must not panic or hang (the command
// has to end with the line's EOF, not with its deadline), every delivered
// payload must have exactly the announced length, the payloads together
// can't exceed the input, and no line handed out may contain CR or LF.
func FuzzChannel(f *testing.F) {
	for _, s := range []string{
		"\x00\r\nOK\r\n",
		"\x01AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n",
		"\x02\r\n+CCHRECV: DATA,0,6\r\n\r\nOK\r\n\r\nOK\r\n",
		"\x03\r\n+CCHRECV:DATA,1,3\r\nabc+RAW: 2\r\n\r\n+CCHOPEN: 0,0\r\nERROR\r\n",
		"\x40\r\n> abc\r\nOK\r\n+CCHSEND: 0,0\r\n",
		"\x41\r\n>\r\n+CCH_PEER_CLOSED: 0\r\n+CME ERROR: 3\r\n",
		"\x87\r\n+CCHRECV: DATA,0,65536\r\n\r\n+CCHRECV: DATA,0,99999999999\r\n",
		"\x05+RAW: 3\rx\ny\r\n+CMS ERROR: 500\r\n",
		"\x06" + strings.Repeat("A", 100) + "\r\nOK\r\n",
		"\x07\r\n+CCHRECV: DATA,0,3\r\n+CCHRECV: DATA,0,2\r\nab\r\nNO CARRIER\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		if len(input) == 0 {
			return
		}
		mode, data := input[0], input[1:]
		chunk := int(mode&0x07) + 1
		if mode&0x80 != 0 {
			chunk = len(data) + 1
		}
		port := &fuzzPort{data: data, chunk: chunk, wrote: make(chan struct{}), closed: make(chan struct{})}

		audit := &urcAudit{}
		c := New(port, WithMaxLine(64), WithMaxBinary(4096), WithQueueSize(4), WithUnsolicited(audit.line))
		c.HandleBinary("+CCHRECV: DATA,", CCHRecvLength, audit.binary(CCHRecvLength))
		c.HandleBinary("+RAW:", rawLength, audit.binary(rawLength))
		c.Handle("+CCH", audit.line)
		w := c.Expect(Prefix("+CCHOPEN: 0,"))

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		runFuzzCommand(t, ctx, c, mode&0x40 != 0)
		if line, err := w.Wait(ctx); err == nil && !Prefix("+CCHOPEN: 0,")(line) {
			t.Errorf("waiter got %q", line)
		}
		w.Cancel()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		audit.check(t, len(data))
	})
}

// runFuzzCommand runs AT+CSQ on c, or with payload AT+CCHSEND=0,3 and its
// payload, and checks that it ended before its deadline (with the line's
// EOF) and that its intermediate lines are neither blank nor hold CR or LF.
func runFuzzCommand(t *testing.T, ctx context.Context, c *Channel, payload bool) {
	t.Helper()
	var resp *Response
	var err error
	if payload {
		resp, err = c.CommandPayload(ctx, "AT+CCHSEND=0,3", []byte("abc"))
	} else {
		resp, err = c.Command(ctx, "AT+CSQ")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("command hung until its deadline: %v", err)
	}
	if resp != nil {
		for _, l := range resp.Lines {
			if l == "" || strings.ContainsAny(l, "\r\n") {
				t.Errorf("intermediate line %q is blank or contains CR/LF", l)
			}
		}
	}
}

// urcAudit collects, from the channel's handlers, the payload bytes
// delivered and what was wrong with the URCs, for check once the channel
// is closed.
type urcAudit struct {
	mu    sync.Mutex
	total int
	bad   []string
}

// binary returns a binary URC handler that checks the payload has the
// length parse reads from the line, and that the line holds no CR or LF.
func (a *urcAudit) binary(parse func(string) (int, bool)) func(URC) {
	return func(u URC) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.total += len(u.Payload)
		if n, ok := parse(u.Line); !ok || n != len(u.Payload) {
			a.bad = append(a.bad, "payload of "+strconv.Quote(u.Line)+" has "+strconv.Itoa(len(u.Payload))+" bytes")
		}
		if strings.ContainsAny(u.Line, "\r\n") {
			a.bad = append(a.bad, "URC line with CR/LF: "+strconv.Quote(u.Line))
		}
	}
}

// line is a line URC handler: the line holds no CR or LF, and no payload.
func (a *urcAudit) line(u URC) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if strings.ContainsAny(u.Line, "\r\n") || u.Payload != nil {
		a.bad = append(a.bad, "line URC malformed: "+strconv.Quote(u.Line))
	}
}

// check fails t for every bad URC, and if the payloads delivered add up to
// more than the inputLen bytes of input.
func (a *urcAudit) check(t *testing.T, inputLen int) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.total > inputLen {
		t.Errorf("delivered %d payload bytes from %d input bytes", a.total, inputLen)
	}
	for _, b := range a.bad {
		t.Error(b)
	}
}
