package atkit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
)

// SyncConfig says how Sync probes the modem. The zero value probes with
// "AT" for up to 3 s and turns echo off.
type SyncConfig struct {
	// Probe is the command sent until the modem answers; zero means
	// Step{Op: "sync", Cmd: "AT"}. A probe whose answer carries a line
	// (AT+CGMM, with a Check that wants one) cannot be satisfied by a
	// stale OK the line still held. Its Timeout (zero: 1 s) bounds each
	// attempt, its Within (zero: 3 s) the whole probe, its Every (zero:
	// 200 ms) the pause between attempts. Unanswered attempts are always
	// retried.
	Probe Step
	// UnstickBytes, when positive, is the payload limit of the modem's
	// payload commands: after a probe that went unanswered throughout,
	// Sync writes that many filler bytes (at.Channel.Unstick) to complete
	// a payload a dead driver left the modem waiting for, then probes for
	// UnstickWithin (zero: 20 s) more.
	UnstickBytes  int
	UnstickWithin time.Duration
	// KeepEcho leaves echo as it is; by default Sync sends ATE0 once the
	// modem answers (the channel drops echoes, but payload commands need
	// echo off).
	KeepEcho bool
}

// SyncResult says what Sync had to do.
type SyncResult struct {
	// Unstuck says filler was written: whatever file the payload command
	// the filler completed wrote (a certificate) is garbage now, and the
	// driver must not trust it by its name.
	Unstuck bool
}

// Sync waits until the modem answers cfg.Probe: a modem still booting
// ignores commands until it is ready, so silence is retried for a while. It
// then turns echo off (ATE0). A modem that answers with an error result is
// not stuck: that error is returned at once, as a *StepError.
func Sync(ctx context.Context, ch *at.Channel, cfg SyncConfig) (SyncResult, error) {
	probe := cfg.Probe
	if probe.Cmd == "" {
		probe = Step{Op: "sync", Cmd: "AT"}
	}
	probe.Timeout = orDefault(probe.Timeout, time.Second)
	probe.Within = orDefault(probe.Within, 3*time.Second)
	probe.Every = orDefault(probe.Every, 200*time.Millisecond)
	retry := probe.Retry
	probe.Retry = func(err error) bool { return RetryNoAnswer(err) || (retry != nil && retry(err)) }
	probe.Optional = false
	var res SyncResult
	err := Run(ctx, ch, probe)
	if err != nil && ctx.Err() == nil && cfg.UnstickBytes > 0 && !answered(err) {
		if uerr := ch.Unstick(ctx, cfg.UnstickBytes); uerr != nil {
			return res, &StepError{Op: probe.Op, Cmd: probe.ShownCmd(), Err: uerr}
		}
		res.Unstuck = true
		probe.Within = orDefault(cfg.UnstickWithin, 20*time.Second)
		err = Run(ctx, ch, probe)
	}
	if err != nil || cfg.KeepEcho {
		return res, err
	}
	return res, Run(ctx, ch, Step{Op: "echo off", Cmd: "ATE0"})
}

// answered reports whether err is a result the modem gave.
func answered(err error) bool {
	var me *at.CMEError
	var ms *at.CMSError
	var ae *at.Error
	return errors.As(err, &me) || errors.As(err, &ms) || errors.As(err, &ae)
}

// CheckSIM returns the step that waits for the SIM: AT+CPIN? until it
// answers "+CPIN: READY". Right after boot a SIM answers "+CME ERROR: SIM
// busy" (code 14) or "+CPIN: NOT READY" for a few seconds: both are asked
// again until within has passed (SIMCom's checklist allows 20 s). Any other
// state (SIM PIN, SIM PUK, not inserted) fails at once with an
// *sdk.ModemError quoting the modem.
func CheckSIM(within time.Duration) Step {
	return Step{Op: "check SIM", Cmd: "AT+CPIN?", Retry: at.IsSIMBusy, Within: within,
		Check: func(r *at.Response) (bool, error) {
			v, ok := Field(r, "+CPIN:")
			if !ok {
				return false, fmt.Errorf("no +CPIN line in %q", r.Lines)
			}
			switch strings.ToUpper(v) {
			case "READY":
				return true, nil
			case "NOT READY":
				return false, nil
			}
			return false, &sdk.ModemError{Op: "check SIM", Code: -1, Text: "SIM not ready: +CPIN: " + v}
		}}
}

// Signal is the answer of AT+CSQ: RSSI 0-31 (99 unknown) and bit error rate
// 0-7 (99 unknown).
type Signal struct{ RSSI, BER int }

// WaitSignal returns the step that asks AT+CSQ until the RSSI is known (not
// 99, which is normal right after boot), up to within, and stores the last
// answer in into.
func WaitSignal(within time.Duration, into *Signal) Step {
	return Step{Op: "wait for signal", Cmd: "AT+CSQ", Within: within,
		Check: func(r *at.Response) (bool, error) {
			v, ok := Field(r, "+CSQ:")
			if !ok {
				return false, fmt.Errorf("no +CSQ line in %q", r.Lines)
			}
			rssi, ber, err := twoInts(v)
			if err != nil {
				return false, fmt.Errorf("+CSQ: %q: %w", v, err)
			}
			*into = Signal{RSSI: rssi, BER: ber}
			return rssi != 99, nil
		}}
}

// RegStat is a network registration state, the <stat> of +CREG, +CGREG
// and +CEREG (3GPP TS 27.007 §7.2).
type RegStat int

// The registration states. Home and Roaming are registered.
const (
	RegNotRegistered RegStat = 0
	RegHome          RegStat = 1
	RegSearching     RegStat = 2
	RegDenied        RegStat = 3
	RegUnknown       RegStat = 4
	RegRoaming       RegStat = 5
)

// Registered reports whether s is home (1) or roaming (5).
func (s RegStat) Registered() bool { return s == RegHome || s == RegRoaming }

// String names the state as ModemInfo.Registration reports it: "home",
// "roaming", "searching", "denied", ...
func (s RegStat) String() string {
	switch s {
	case RegNotRegistered:
		return "not registered"
	case RegHome:
		return "home"
	case RegSearching:
		return "searching"
	case RegDenied:
		return "denied"
	case RegRoaming:
		return "roaming"
	case 6, 7:
		return "sms only"
	case 8:
		return "emergency only"
	}
	return "unknown"
}

// WaitRegistered returns the step that asks cmd, one of "AT+CREG?",
// "AT+CGREG?" and "AT+CEREG?", until the modem is registered (stat 1 home
// or 5 roaming), up to within (zero: one attempt), and stores each state
// read in into. Registration denied (stat 3) fails at once with an
// *sdk.ModemError quoting the modem's line. Make the step Optional to read a
// state without requiring it.
func WaitRegistered(cmd string, within time.Duration, into *RegStat) Step {
	prefix := strings.TrimSuffix(strings.TrimPrefix(cmd, "AT"), "?") + ":"
	return Step{Op: "wait for registration (" + cmd + ")", Cmd: cmd, Within: within,
		Check: func(r *at.Response) (bool, error) {
			v, ok := Field(r, prefix)
			if !ok {
				return false, fmt.Errorf("no %s line in %q", prefix, r.Lines)
			}
			parts := Fields(v)
			if len(parts) < 2 {
				return false, fmt.Errorf("%s %q: want <n>,<stat>", prefix, v)
			}
			stat, err := strconv.Atoi(parts[1])
			if err != nil {
				return false, fmt.Errorf("%s %q: stat is not a number", prefix, v)
			}
			*into = RegStat(stat)
			if RegStat(stat) == RegDenied {
				return false, &sdk.ModemError{Op: "registration", Code: -1, Text: "registration denied (" + prefix + " " + v + ")"}
			}
			return RegStat(stat).Registered(), nil
		}}
}

func twoInts(v string) (int, int, error) {
	parts := Fields(v)
	if len(parts) < 2 {
		return 0, 0, errors.New("want two numbers")
	}
	a, err := strconv.Atoi(parts[0])
	if err != nil {
		return 0, 0, err
	}
	b, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, 0, err
	}
	return a, b, nil
}
