package at

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestPayloadIsWrittenAfterTheCallerLeft: a caller whose context ends while
// the modem has the command but has not prompted yet must not leave the
// modem collecting the next command's bytes as payload.
func TestPayloadIsWrittenAfterTheCallerLeft(t *testing.T) {
	c, p := newPair(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	res := goPayload(ctx, c, "AT+CCHSEND=0,5", []byte("hello"))
	p.expect("AT+CCHSEND=0,5\r")
	cancel() // the caller leaves before the prompt
	o := await(t, res)
	if !errors.Is(o.err, context.Canceled) {
		t.Fatalf("CommandPayload = %v, want context.Canceled", o.err)
	}
	p.send("\r\n>")
	p.expect("hello") // the channel paid the payload itself
	p.send("\r\nOK\r\n")
	// The exchange was completed, so the channel is in sync: the next
	// command goes out directly, with no resynchronisation probe.
	next := goCommand(testCtx(t), c, "AT+CSQ")
	p.expect("AT+CSQ\r")
	p.send("\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
	if o := await(t, next); o.err != nil || len(o.resp.Lines) != 1 {
		t.Fatalf("next command = %+v, %v", o.resp, o.err)
	}
}

// TestCloseWaitsForAnOwedPayload: closing the channel (a plugin shutting
// down) first lets an owed payload reach the modem.
func TestCloseWaitsForAnOwedPayload(t *testing.T) {
	c, p := newPair(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	res := goPayload(ctx, c, "AT+CCERTDOWN=\"a.pem\",3", []byte("abc"))
	p.expect("AT+CCERTDOWN=\"a.pem\",3\r")
	cancel()
	await(t, res)
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a payload was still owed to the modem")
	case <-time.After(100 * time.Millisecond): // Close must still be waiting
	}
	p.send("\r\n>")
	p.expect("abc")
	p.send("\r\nOK\r\n")
	select {
	case <-closed:
	case <-time.After(failAfter):
		t.Fatal("Close did not return after the payload was settled")
	}
}

// TestUnstickCompletesAPayloadAnotherOwnerLeft: the modem is collecting
// payload bytes nobody will send (its previous owner died); Unstick's
// filler completes it and the channel resynchronises before the next
// command.
func TestUnstickCompletesAPayloadAnotherOwnerLeft(t *testing.T) {
	c, p := newPair(t)
	done := make(chan error, 1)
	go func() { done <- c.Unstick(testCtx(t), 16) }()
	p.expect(strings.Repeat("\r", 16))
	if err := <-done; err != nil {
		t.Fatalf("Unstick: %v", err)
	}
	// The completed payload's late OK arrives, then the next command
	// goes out behind a probe whose answer proves sync.
	p.send("\r\nOK\r\n")
	next := goCommand(testCtx(t), c, "AT+CGMM")
	p.expect("AT+CMEE?\r")
	p.send("\r\n+CMEE: 2\r\n\r\nOK\r\n")
	p.expect("AT+CGMM\r")
	p.send("\r\nSIMCOM_SIM7600G-H\r\n\r\nOK\r\n")
	if o := await(t, next); o.err != nil || o.resp.Lines[0] != "SIMCOM_SIM7600G-H" {
		t.Fatalf("next command = %+v, %v", o.resp, o.err)
	}
}
