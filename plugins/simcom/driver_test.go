package simcom

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
	"github.com/cellgate/cellgate/sdk/atkit"
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
	d, m, ctx := openScripted(t, "dial-late-open")
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
	d, m, ctx := openScripted(t, "dial-handshake-error")
	_, err := d.Dial(ctx, sdk.DialRequest{Host: "broker.example", Port: 8883, Mode: sdk.DialModemTLS, ServerName: "broker.example"})
	var ne *sdk.NetError
	if !errors.As(err, &ne) || ne.Kind != sdk.NetHandshake || ne.Session != 0 || ne.Vendor != "simcom" || ne.Code != 15 {
		t.Fatalf("Dial = %v, want a handshake NetError with SIMCom's code 15 on session 0", err)
	}
	if want := "open session 0: +CCHOPEN: 0,15 (handshake error)"; err.Error() != want {
		t.Errorf("error %q, want the modem's words: %q", err, want)
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

func TestCloseIsNotBlockedByDataNobodyReads(t *testing.T) {
	d, m, ctx := openScripted(t, "close-with-unread-data")
	s, err := d.Dial(ctx, sdk.DialRequest{Host: "10.0.0.1", Port: 8883, Mode: sdk.DialModemTLS})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	// Nobody calls Recv: the frames pile up.
	start := time.Now()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close with unread frames waiting: %v (after %s)", err, time.Since(start))
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Close took %s; it should not wait for a reader", took)
	}
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	m.finish(t)
}

func TestRebootDuringOpenFailsDialAtOnce(t *testing.T) {
	d, m, ctx := openScripted(t, "dial-reboot-during-open")
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := d.Dial(dctx, sdk.DialRequest{Host: "10.0.0.1", Port: 8883, Mode: sdk.DialModemTLS})
	if err == nil {
		t.Fatal("Dial succeeded although the modem rebooted during the handshake")
	}
	if errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Fatalf("Dial = %v after %s; want a prompt failure naming the reboot", err, time.Since(start))
	}
	var me *sdk.ModemError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "reboot") {
		t.Fatalf("Dial = %v (%T), want a ModemError that names the reboot", err, err)
	}
	m.finish(t)
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestKeyPasswordStaysOutOfErrorsAndLogs(t *testing.T) {
	const pw = "hunter2-key-password"
	d, m := startScripted(t, "keypwd-hangup")
	var logs *testutil.SyncBuffer
	d.log, logs = testutil.Logger(t)
	ctx := testCtx(t)
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: "scripted"}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	p := provisioned{
		Credentials: atkit.Credentials{
			Bundle: sdk.Bundle{Profile: 0, KeyPassword: pw},
			CA:     atkit.File{Kind: atkit.KindCA, Name: "cgca-000000000000.pem"},
			Cert:   atkit.File{Kind: atkit.KindCert, Name: "cgcrt-000000000000.pem"},
			Key:    atkit.File{Kind: atkit.KindKey, Name: "cgkey-000000000000.pem"},
		},
		auth:       2,
		sslVersion: 3,
	}
	err := d.modemErr("provision", d.configureContext(ctx, d.channel(), p, false))
	m.finish(t)
	if err == nil {
		t.Fatal("configureContext succeeded on a modem that hung up")
	}
	var se *sdk.SerialError
	if !errors.As(err, &se) {
		t.Errorf("error %v (%T), want a SerialError", err, err)
	}
	if strings.Contains(err.Error(), pw) {
		t.Errorf("error shows the key password: %v", err)
	}
	d.Stop(ctx)
	if strings.Contains(logs.String(), pw) {
		t.Errorf("logs show the key password:\n%s", logs.String())
	}
}

// TestModemErrorsQuoteTheModemOnce: sdk.ModemError.Text holds the modem's
// words as it printed them, tag included (the sdk knows no vendor's tags),
// and ModemError.Error adds the code once, only when the words lack it.
func TestModemErrorsQuoteTheModemOnce(t *testing.T) {
	d := New(SIM7600, nil)
	tests := []struct {
		err  error
		want string
	}{
		{&at.CMEError{Cmd: "AT+CPIN?", Code: -1, Text: "SIM not inserted"}, "check SIM: +CME ERROR: SIM not inserted"},
		{&at.CMEError{Cmd: "AT+CPIN?", Code: 10, Text: "SIM not inserted"}, "check SIM: +CME ERROR: SIM not inserted (code 10)"},
		{&at.CMEError{Cmd: "AT+CPIN?", Code: 777}, "check SIM: +CME ERROR: 777"},
		{&at.CMSError{Cmd: "AT+CMGS=5", Code: 302, Text: "operation not allowed"}, "check SIM: +CMS ERROR: operation not allowed (code 302)"},
		{&at.Error{Cmd: "AT+CPIN?", Final: "ERROR"}, "check SIM: ERROR"},
	}
	for _, tt := range tests {
		err := d.modemErr("check SIM", tt.err)
		var me *sdk.ModemError
		if !errors.As(err, &me) || err.Error() != tt.want {
			t.Errorf("modemErr(%v) = %q, want ModemError %q", tt.err, err, tt.want)
		}
	}
}

func TestDialRecoversASlotTheModemStillHolds(t *testing.T) {
	d, m, ctx := openScripted(t, "dial-stale-slot")
	s, err := d.Dial(ctx, sdk.DialRequest{Host: "10.0.0.1", Port: 8883, Mode: sdk.DialModemTLS})
	if err != nil {
		t.Fatalf("Dial after a refused open: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	m.finish(t)
}

func TestSendWithoutReportsFallsBackToTheUnsentCount(t *testing.T) {
	d, m, ctx := openScripted(t, "send-without-reports")
	d.profile.MaxSend = 4
	d.reportTimeout = 300 * time.Millisecond
	s, err := d.Dial(ctx, sdk.DialRequest{Host: "10.0.0.1", Port: 8883, Mode: sdk.DialModemTLS})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if err := s.Send(ctx, []byte("abcdefghijklmnopqrst")); err != nil {
		t.Fatalf("Send without reports: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	m.finish(t)
}

// openScripted plays transcript name and opens the driver on it; the
// transcript's bring-up must succeed.
func openScripted(t *testing.T, name string) (*Driver, *scriptedModem, context.Context) {
	t.Helper()
	d, m := startScripted(t, name)
	ctx := testCtx(t)
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: "scripted"}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	return d, m, ctx
}
