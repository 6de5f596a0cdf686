//go:build linux

package atkit_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
	"github.com/cellgate/cellgate/sdk/atkit"
)

func TestSIMBusyAndNotReadyAreWaitedOut(t *testing.T) {
	ch, wait := scripted(t, `
> AT+CPIN?
<
< +CME ERROR: SIM busy
> AT+CPIN?
<
< +CPIN: NOT READY
<
< OK
> AT+CPIN?
<
< +CPIN: READY
<
< OK
end
`)
	sim := atkit.CheckSIM(time.Minute)
	sim.Every = 10 * time.Millisecond
	if err := atkit.Run(testCtx(t), ch, sim); err != nil {
		t.Fatalf("CheckSIM through SIM busy and NOT READY: %v", err)
	}
	wait()
}

// TestSIMStillBusyAtTheDeadlineNamesTheStepAndTheModemsWords: a SIM that
// stays busy fails the step once its Within has passed, with the modem's
// last answer as the cause.
func TestSIMStillBusyAtTheDeadlineNamesTheStepAndTheModemsWords(t *testing.T) {
	ch, line := openChannel(t)
	var mu sync.Mutex
	asked := 0
	responder(t, line, 0, func(cmd string) string {
		if cmd != "AT+CPIN?" {
			return okResponses(cmd)
		}
		mu.Lock()
		asked++
		mu.Unlock()
		return "\r\n+CME ERROR: SIM busy\r\n"
	})
	sim := atkit.CheckSIM(2 * time.Second)
	sim.Every = 20 * time.Millisecond
	err := atkit.Run(testCtx(t), ch, sim)
	var se *atkit.StepError
	var cme *at.CMEError
	if !errors.As(err, &se) || se.Op != "check SIM" || se.Cmd != "AT+CPIN?" || !errors.As(err, &cme) || !strings.Contains(err.Error(), "gave up after 2s") {
		t.Fatalf("CheckSIM on a SIM that stays busy = %v, want a StepError naming check SIM, AT+CPIN? and the +CME ERROR", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if asked < 2 {
		t.Fatalf("the SIM was asked %d times; a busy SIM must be asked again", asked)
	}
	me := atkit.SDKError("open", err, ch, "/dev/ttyUSB2")
	if want := "open: check SIM: +CME ERROR: SIM busy"; me.Error() != want {
		t.Fatalf("SDKError = %q, want %q", me, want)
	}
}

func TestSIMNotInsertedFailsAtOnce(t *testing.T) {
	ch, wait := scripted(t, `
> AT+CPIN?
<
< +CME ERROR: SIM not inserted
end
`)
	err := atkit.Run(testCtx(t), ch, atkit.CheckSIM(time.Minute))
	wait()
	var me *sdk.ModemError
	if err = atkit.SDKError("open", err, ch, "/dev/ttyUSB2"); !errors.As(err, &me) || me.Op != "open: check SIM" || me.Text != "+CME ERROR: SIM not inserted" {
		t.Fatalf("SDKError = %#v, want a ModemError naming the step and quoting the modem", err)
	}
}

func TestSIMLockedFailsAtOnceQuotingTheState(t *testing.T) {
	ch, wait := scripted(t, `
> AT+CPIN?
<
< +CPIN: SIM PIN
<
< OK
end
`)
	err := atkit.Run(testCtx(t), ch, atkit.CheckSIM(time.Minute))
	wait()
	var me *sdk.ModemError
	if !errors.As(err, &me) || !strings.Contains(me.Text, "+CPIN: SIM PIN") {
		t.Fatalf("CheckSIM on a locked SIM = %v, want a ModemError quoting +CPIN: SIM PIN", err)
	}
}

func TestRegistrationWaitsThroughSearchingAndAcceptsRoaming(t *testing.T) {
	ch, wait := scripted(t, `
> AT+CEREG?
<
< +CEREG: 2,2
<
< OK
> AT+CEREG?
<
< +CEREG: 2,5,"1A2B","01C2D3E4",7
<
< OK
end
`)
	var stat atkit.RegStat
	step := atkit.WaitRegistered("AT+CEREG?", time.Minute, &stat)
	step.Every = 10 * time.Millisecond
	if err := atkit.Run(testCtx(t), ch, step); err != nil {
		t.Fatalf("WaitRegistered: %v", err)
	}
	wait()
	if stat != atkit.RegRoaming || stat.String() != "roaming" || !stat.Registered() {
		t.Fatalf("state %d (%s), want roaming", stat, stat)
	}
}

func TestRegistrationDeniedFailsAtOnce(t *testing.T) {
	ch, wait := scripted(t, `
> AT+CREG?
<
< +CREG: 0,2
<
< OK
> AT+CREG?
<
< +CREG: 0,3
<
< OK
end
`)
	var stat atkit.RegStat
	step := atkit.WaitRegistered("AT+CREG?", time.Minute, &stat)
	step.Every = 10 * time.Millisecond
	err := atkit.Run(testCtx(t), ch, step)
	wait()
	var se *atkit.StepError
	var me *sdk.ModemError
	if !errors.As(err, &se) || se.Cmd != "AT+CREG?" || !errors.As(err, &me) || me.Text != "registration denied (+CREG: 0,3)" {
		t.Fatalf("WaitRegistered on a denied registration = %v, want a StepError with the modem's line", err)
	}
	if stat != atkit.RegDenied {
		t.Fatalf("state %s, want denied", stat)
	}
}

// TestOptionalRegistrationReadDoesNotWait: a registration read without a
// Within asks once; optional, its "searching" only reaches OnSkip.
func TestOptionalRegistrationReadDoesNotWait(t *testing.T) {
	ch, wait := scripted(t, `
> AT+CGREG?
<
< +CGREG: 0,2
<
< OK
> AT+CSQ
<
< +CSQ: 17,99
<
< OK
end
`)
	var stat atkit.RegStat
	var sig atkit.Signal
	reg := atkit.WaitRegistered("AT+CGREG?", 0, &stat)
	reg.Optional = true
	var skipped []string
	err := atkit.Script{
		Steps:  []atkit.Step{reg, atkit.WaitSignal(time.Minute, &sig)},
		OnSkip: func(s atkit.Step, err error) { skipped = append(skipped, s.Cmd+": "+err.Error()) },
	}.Run(testCtx(t), ch)
	wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0], "AT+CGREG?: condition not reached") {
		t.Fatalf("skipped %q, want the searching CGREG read", skipped)
	}
	if stat != atkit.RegSearching || sig != (atkit.Signal{RSSI: 17, BER: 99}) {
		t.Fatalf("state %s, signal %+v", stat, sig)
	}
}

// TestUnansweredStepIsATimeout: a modem that does not answer within the
// step's Timeout fails the step with a NoAnswerError, which the contract
// sees as a TimeoutError naming the step; later commands still work.
func TestUnansweredStepIsATimeout(t *testing.T) {
	ch, wait := scripted(t, `
> AT+CGACT=1,1
~ 2s
<
< OK
> AT+CMEE?
<
< +CMEE: 2
<
< OK
> AT+CGMM
<
< BG96
<
< OK
end
`)
	ctx := testCtx(t)
	err := atkit.Run(ctx, ch, atkit.Step{Op: "activate PDP context", Cmd: "AT+CGACT=1,1", Timeout: 200 * time.Millisecond})
	var na *atkit.NoAnswerError
	if !errors.As(err, &na) || na.After != 200*time.Millisecond {
		t.Fatalf("unanswered step = %v, want a NoAnswerError after 200ms", err)
	}
	var te *sdk.TimeoutError
	if err := atkit.SDKError("open", err, ch, "/dev/ttyUSB2"); !errors.As(err, &te) || te.Op != "open: activate PDP context" {
		t.Fatalf("SDKError = %#v, want a TimeoutError naming the step", err)
	}
	var model string
	if err := atkit.Run(ctx, ch, atkit.Step{Op: "identify", Cmd: "AT+CGMM", Check: func(r *at.Response) (bool, error) {
		model = atkit.FirstLine(r)
		return true, nil
	}}); err != nil || model != "BG96" {
		t.Fatalf("next step = %q, %v; want the channel back in sync", model, err)
	}
	wait()
}

// TestSecretStepKeepsItsParametersOutOfErrors: a key password must not
// reach an error (or a log line made from it).
func TestSecretStepKeepsItsParametersOutOfErrors(t *testing.T) {
	const pw = "hunter2-key-password"
	ch, wait := scripted(t, `
> AT+QSSLCFG="keypwd",1,"hunter2-key-password"
<
< ERROR
end
`)
	err := atkit.Run(testCtx(t), ch, atkit.Step{Op: "set key password", Cmd: `AT+QSSLCFG="keypwd",1,"` + pw + `"`, Secret: true})
	wait()
	if err == nil || strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), `set key password (AT+QSSLCFG=<redacted>)`) {
		t.Fatalf("error %v: want the step and the command without its parameters", err)
	}
}

// TestAwaitTakesADeferredResultBeforeOrAfterOK: the result line of a
// command such as AT+QSSLOPEN may come before its OK or after it.
func TestAwaitTakesADeferredResultBeforeOrAfterOK(t *testing.T) {
	ch, wait := scripted(t, `
> AT+QSSLOPEN=1,1,4,"10.0.0.1",8883,0
<
< OK
~ 50ms
<
< +QSSLOPEN: 4,0
> AT+QSSLOPEN=1,1,5,"10.0.0.1",8883,0
<
< +QSSLOPEN: 5,-1
<
< OK
> AT+QSSLCLOSE=1,6
<
< OK
end
`)
	ctx := testCtx(t)
	for _, tc := range []struct{ id, want string }{{"4", "+QSSLOPEN: 4,0"}, {"5", "+QSSLOPEN: 5,-1"}} {
		open := atkit.Step{Op: "open session " + tc.id, Cmd: `AT+QSSLOPEN=1,1,` + tc.id + `,"10.0.0.1",8883,0`}
		line, err := atkit.Await(ctx, ch, open, at.Prefix("+QSSLOPEN: "+tc.id+","), 10*time.Second)
		if err != nil || line != tc.want {
			t.Fatalf("Await = %q, %v; want %q", line, err, tc.want)
		}
	}
	_, err := atkit.Await(ctx, ch, atkit.Step{Op: "close session 6", Cmd: "AT+QSSLCLOSE=1,6"}, at.Prefix("+QSSLCLOSE: 6,"), 100*time.Millisecond)
	var na *atkit.NoAnswerError
	var se *atkit.StepError
	if !errors.As(err, &se) || se.Op != "close session 6" || !errors.As(err, &na) {
		t.Fatalf("Await of a result that never comes = %v, want a StepError with a NoAnswerError", err)
	}
	wait()
}
