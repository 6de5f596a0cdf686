package at

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/internal/testutil"
)

// TestSecretCommandNeverReachesErrorsLogsOrTrace: a key password or a
// private key must not be written down by the channel, whatever happens to
// the command: a modem error, a timeout (logged as abandoned, its late echo
// dropped), a payload exchange, a stopped channel.
func TestSecretCommandNeverReachesErrorsLogsOrTrace(t *testing.T) {
	const pw = "hunter2-key-password"
	const key = "-----BEGIN PRIVATE KEY-----secretkeybytes"
	log, logs := testutil.Logger(t)
	trace := &testutil.SyncBuffer{}
	unsolicited := newSink()
	c, p := newPair(t, WithUnsolicited(unsolicited.handle), WithLogger(log), WithTrace(trace))
	cmd := `AT+CSSLCFG="keypwd",0,"` + pw + `"`
	var errs []error

	// Refused.
	res := goCommand(testCtx(t), c, cmd, WithSecret())
	p.expect(cmd + "\r")
	p.send(cmd + "\r\r\n+CME ERROR: operation not allowed\r\n")
	o := await(t, res)
	var cme *CMEError
	if !errors.As(o.err, &cme) || cme.Cmd != `AT+CSSLCFG=<redacted>` {
		t.Fatalf("refused secret command: %#v, want a CMEError naming AT+CSSLCFG=<redacted>", o.err)
	}
	errs = append(errs, o.err)

	// Timed out, then its late echo and answer arrive.
	dl := newManualDeadline()
	res = goCommand(dl, c, cmd, WithSecret())
	p.expect(cmd + "\r")
	dl.expire()
	o = await(t, res)
	if !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("timed-out secret command: %v", o.err)
	}
	errs = append(errs, o.err)
	p.send(cmd + "\r\r\nOK\r\n")
	if u := unsolicited.next(t); u.Line != "OK" { // routed: back in sync
		t.Fatalf("unsolicited %q, want the late OK", u.Line)
	}

	// A secret payload.
	pres := make(chan outcome, 1)
	go func() {
		r, err := c.CommandPayload(testCtx(t), `AT+CCERTDOWN="k.pem",41`, []byte(key), WithSecret())
		pres <- outcome{r, err}
	}()
	p.expect(`AT+CCERTDOWN="k.pem",41` + "\r")
	p.send("\r\n>")
	p.expect(key)
	p.send("\r\nOK\r\n")
	if o := await(t, pres); o.err != nil {
		t.Fatal(o.err)
	}

	// The port goes away under a secret command.
	res = goCommand(testCtx(t), c, cmd, WithSecret())
	p.expect(cmd + "\r")
	p.conn.Close()
	o = await(t, res)
	if !errors.Is(o.err, ErrClosed) {
		t.Fatalf("secret command on a stopped channel: %v", o.err)
	}
	errs = append(errs, o.err)
	c.Close()

	for _, err := range errs {
		if strings.Contains(err.Error(), pw) {
			t.Errorf("error %q shows the secret", err)
		}
	}
	for name, text := range map[string]string{"log": logs.String(), "trace": trace.String()} {
		if strings.Contains(text, pw) || strings.Contains(text, "secretkeybytes") {
			t.Errorf("%s shows the secret:\n%s", name, text)
		}
	}
	if !strings.Contains(trace.String(), "AT+CSSLCFG=<redacted>") || !strings.Contains(trace.String(), "[payload 41 bytes, redacted]") {
		t.Errorf("trace should still show the exchange in redacted form:\n%s", trace.String())
	}
}
