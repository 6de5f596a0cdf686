package at

import (
	"context"
	"errors"
	"testing"
)

// TestLinePromptPayloadIsWrittenAfterTheCallerLeft: an upload whose caller
// leaves before CONNECT still gets its bytes written when CONNECT comes,
// and its report and OK are taken before the next command goes out.
func TestLinePromptPayloadIsWrittenAfterTheCallerLeft(t *testing.T) {
	c, p := newPair(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	res := goPayload(ctx, c, `AT+QFUPL="a.pem",3,10`, []byte("abc"), WithPromptLine("CONNECT"))
	p.expect("AT+QFUPL=\"a.pem\",3,10\r")
	cancel()
	o := await(t, res)
	if !errors.Is(o.err, context.Canceled) {
		t.Fatalf("CommandPayload = %v, want context.Canceled", o.err)
	}
	p.send("\r\nCONNECT\r\n")
	p.expect("abc")
	p.send("\r\n+QFUPL: 3,6163\r\n\r\nOK\r\n")
	next := goCommand(testCtx(t), c, "AT+CSQ")
	p.expect("AT+CSQ\r") // in sync: no probe
	p.send("\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
	if o := await(t, next); o.err != nil || len(o.resp.Lines) != 1 || o.resp.Lines[0] != "+CSQ: 20,99" {
		t.Fatalf("next command = %+v, %v", o.resp, o.err)
	}
}

// TestLinePromptComesOnce: a second CONNECT after the prompt (a
// modem's report that happens to read so) is an ordinary final result.
func TestLinePromptComesOnce(t *testing.T) {
	c, p := newPair(t)
	res := goPayload(testCtx(t), c, `AT+QFUPL="a.pem",1,10`, []byte("x"), WithPromptLine("CONNECT"))
	p.expect("AT+QFUPL=\"a.pem\",1,10\r")
	p.send("\r\nCONNECT\r\n")
	p.expect("x")
	p.send("\r\nCONNECT\r\n")
	o := await(t, res)
	if o.err != nil || o.resp.Final != "CONNECT" || len(o.resp.Lines) != 0 {
		t.Fatalf("CommandPayload = %+v, %v; want final CONNECT and no lines", o.resp, o.err)
	}
}

// TestDeclaredFinalOfAnAbandonedSendDoesNotEndLaterCommands: a send given
// up on after its payload went out answers SEND OK late. That line is
// final only for the send: it must neither end the resynchronisation
// probe nor the next command, and the channel probes because the send's
// final was not seen as one.
func TestDeclaredFinalOfAnAbandonedSendDoesNotEndLaterCommands(t *testing.T) {
	var unsolicited []string
	c, p := newPair(t, WithUnsolicited(func(u URC) { unsolicited = append(unsolicited, u.Line) }))
	ctx, cancel := context.WithCancel(testCtx(t))
	res := goPayload(ctx, c, "AT+QSSLSEND=0,5", []byte("hello"), WithFinalOK("SEND OK"), WithFinalError("SEND FAIL"))
	p.expect("AT+QSSLSEND=0,5\r")
	p.send("\r\n> ")
	p.expect("hello")
	cancel() // the caller leaves before SEND OK
	if o := await(t, res); !errors.Is(o.err, context.Canceled) {
		t.Fatalf("CommandPayload = %v, want context.Canceled", o.err)
	}
	next := goCommand(testCtx(t), c, "AT+CSQ")
	p.expect("AT+CMEE?\r")
	p.send("\r\nSEND OK\r\n\r\n+CMEE: 1\r\n\r\nOK\r\n")
	p.expect("AT+CSQ\r")
	p.send("\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
	o := await(t, next)
	if o.err != nil || o.resp.Final != "OK" || len(o.resp.Lines) != 1 || o.resp.Lines[0] != "+CSQ: 20,99" {
		t.Fatalf("next command = %+v, %v", o.resp, o.err)
	}
	if !c.flushDispatch() || len(unsolicited) != 1 || unsolicited[0] != "SEND OK" {
		t.Fatalf("unsolicited lines %q, want the late SEND OK", unsolicited)
	}
}

// TestDeclaredFinalsOptions: declared finals are trimmed, blank ones are
// ignored, and a line declared both ways is a failure.
func TestDeclaredFinalsOptions(t *testing.T) {
	c, p := newPair(t)
	res := goCommand(testCtx(t), c, "AT+X", WithFinalOK(" DONE ", "", "BOTH"), WithFinalError("BOTH"))
	p.expect("AT+X\r")
	p.send("\r\n\r\nDONE\r\n")
	if o := await(t, res); o.err != nil || o.resp.Final != "DONE" {
		t.Fatalf("AT+X = %+v, %v; want final DONE", o.resp, o.err)
	}
	res = goCommand(testCtx(t), c, "AT+X", WithFinalOK("BOTH"), WithFinalError("BOTH"))
	p.expect("AT+X\r")
	p.send("\r\nBOTH\r\n")
	var e *Error
	if o := await(t, res); !errors.As(o.err, &e) || e.Final != "BOTH" || !errors.Is(o.err, ErrError) {
		t.Fatalf("AT+X = %v; want *Error with Final BOTH", o.err)
	}
}
