package simcom

import (
	"errors"
	"io"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/cellgate/cellgate/sdk"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBringUpThroughBootSIMBusyAndSearching(t *testing.T) {
	d, m := startScripted(t, "bringup-booting")
	ctx := testCtx(t)
	info, err := d.Open(ctx, sdk.ModemConfig{Port: "scripted", APN: "iot.example", Model: "sim7600"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	m.finish(t)
	want := sdk.ModemInfo{
		Model: "SIMCOM_SIM7600G-H", Manufacturer: "SIMCOM INCORPORATED", Revision: "SIM7600M22_V2.0",
		IMEI: "862636050000001", ICCID: "89860000000000000001", SignalRSSI: 21, SignalBER: 99,
		Registration: "roaming", ClockSynced: false,
	}
	if info != want {
		t.Fatalf("ModemInfo\n got %+v\nwant %+v", info, want)
	}
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDialWithLateOpenResultSendReceivePeerClose(t *testing.T) {
	d, m := startScripted(t, "dial-late-open")
	ctx := testCtx(t)
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: "scripted"}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	s, err := d.Dial(ctx, sdk.DialRequest{Host: "10.0.0.1", Port: 8883, Mode: sdk.DialModemTLS})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if err := s.Send(ctx, []byte("hello")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	f, err := s.Recv(ctx)
	if err != nil || string(f.Data) != "OK\r\n+X:\r\n" {
		t.Fatalf("Recv = %q, %v; want the 9 payload bytes read by length", f.Data, err)
	}
	f, err = s.Recv(ctx)
	if err != nil || f.Event == nil || f.Event.Kind != sdk.EventPeerClosed {
		t.Fatalf("Recv = %+v, %v; want a peer-closed event", f, err)
	}
	if _, err := s.Recv(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after the event = %v, want io.EOF", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close of a peer-closed session: %v", err)
	}
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	m.finish(t)
}

func TestHandshakeErrorIsTypedAndFreesTheSlot(t *testing.T) {
	d, m := startScripted(t, "dial-handshake-error")
	ctx := testCtx(t)
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: "scripted"}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	_, err := d.Dial(ctx, sdk.DialRequest{Host: "broker.example", Port: 8883, Mode: sdk.DialModemTLS, ServerName: "broker.example"})
	var ce *sdk.CCHError
	if !errors.As(err, &ce) || ce.Code != 15 || ce.Session != 0 {
		t.Fatalf("Dial = %v, want CCHError code 15 on session 0", err)
	}
	if !strings.Contains(err.Error(), "handshake") {
		t.Errorf("error %q does not say handshake", err)
	}
	s, err := d.Dial(ctx, sdk.DialRequest{Host: "broker.example", Port: 8883, Mode: sdk.DialPlainTCP})
	if err != nil {
		t.Fatalf("second Dial: %v", err)
	}
	if s.ID() != 0 {
		t.Fatalf("second session id %d, want 0 (the failed slot is free again)", s.ID())
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	m.finish(t)
}

func TestSIMNotInsertedNamesTheStepAndTheModemsWords(t *testing.T) {
	d, m := startScripted(t, "sim-not-inserted")
	ctx := testCtx(t)
	_, err := d.Open(ctx, sdk.ModemConfig{Port: "scripted"})
	var me *sdk.ModemError
	if !errors.As(err, &me) {
		t.Fatalf("Open = %v, want a ModemError", err)
	}
	if !strings.Contains(me.Op, "check SIM") || !strings.Contains(me.Text, "SIM not inserted") {
		t.Fatalf("ModemError %+v should name the step (check SIM) and the modem's words", me)
	}
	m.finish(t)
	d.Stop(ctx)
}

func TestOtherModelIsRefused(t *testing.T) {
	d, m := startScripted(t, "wrong-model")
	ctx := testCtx(t)
	_, err := d.Open(ctx, sdk.ModemConfig{Port: "scripted"})
	var mm *sdk.ModelMismatchError
	if !errors.As(err, &mm) || mm.Want != "sim7600" || mm.Got != "SIMCOM_SIM7800E" {
		t.Fatalf("Open = %v, want ModelMismatchError{sim7600, SIMCOM_SIM7800E}", err)
	}
	m.finish(t)
	d.Stop(ctx)
}
