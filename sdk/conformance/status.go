package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// statusDeadline bounds each Status call of the status check. The contract
// asks for a cheap answer that holds an open session up by at most one short
// query; a loaded test machine and a paced serial line get generous room.
const statusDeadline = 20 * time.Second

// statusPolls is how many Status calls the check makes while data moves.
const statusPolls = 3

// checkSignal is the signal the status check gives an emulated cell: a
// value neither the emulator's default nor "unknown", so a plugin that
// reports a remembered or made-up figure fails.
var checkSignal = struct{ rssi, ber int }{rssi: 9, ber: 3}

// RadioController is a modem under test whose radio a check can change,
// so that the status check can tell a Status that asks the modem from one
// that reports remembered values. The emulator is one; a real port is not,
// and the status check then checks only deadlines and the fields' ranges.
type RadioController interface {
	// SetSignal makes the modem report rssi (0-31, 99) and ber (0-7, 99)
	// while registered.
	SetSignal(rssi, ber int) error
	// DenyRegistration makes the network deny the modem's registration,
	// as a cell that refuses the SIM would; open sessions end.
	DenyRegistration() error
}

// statusOf asks the plugin for its modem's state under statusDeadline;
// opened says the modem is open, so PortOpen must be true. A plugin without
// Status is notApplicable.
func statusOf(ctx context.Context, f *fixture, when string, opened bool) (sdk.ModemStatus, error) {
	r, ok := f.tr.(sdk.StatusReporter)
	if !ok {
		return sdk.ModemStatus{}, notApplicable("the plugin host has no Status call")
	}
	sctx, cancel := context.WithTimeout(ctx, statusDeadline)
	defer cancel()
	st, err := r.Status(sctx)
	switch {
	case errors.Is(err, sdk.ErrStatusUnsupported):
		return st, notApplicable("the plugin does not implement the optional Status call (sdk.StatusReporter, contract 1.1): " + err.Error())
	case sctx.Err() != nil && ctx.Err() == nil:
		return st, fmt.Errorf("Status %s did not answer within %s: %v", when, statusDeadline, err)
	case err != nil:
		return st, fmt.Errorf("Status %s: %w", when, err)
	case opened && !st.PortOpen:
		return st, fmt.Errorf("Status %s: PortOpen false", when)
	}
	return st, nil
}

// checkStatus: Status answers within statusDeadline while a session is
// open and moving data, without disturbing it, and reports what the modem
// says: the signal the check gave the emulated cell, then the registration
// the network denied.
func checkStatus(ctx context.Context, f *fixture) (string, error) {
	// Before anything else, so a plugin without Status is n/a whatever
	// else it lacks; and a modem not open yet is no error, PortOpen false.
	if st, err := statusOf(ctx, f, "before Open", false); err != nil {
		return "", err
	} else if st.PortOpen {
		return "", errors.New("Status before Open: PortOpen true, want false (the port is not open yet)")
	}
	if _, err := f.open(ctx); err != nil {
		return "", err
	}
	if _, err := statusOf(ctx, f, "after Open", true); err != nil {
		return "", err
	}
	radio, _ := f.modem.(RadioController)
	if radio != nil {
		if err := radio.SetSignal(checkSignal.rssi, checkSignal.ber); err != nil {
			return "", fmt.Errorf("set the emulated signal: %w", err)
		}
	}
	if _, err := f.tr.Provision(ctx, f.bundle()); err != nil {
		return "", fmt.Errorf("Provision: %w", err)
	}
	host, port, _, err := f.goodServer()
	if err != nil {
		return "", err
	}
	sess, err := f.dial(ctx, host, port)
	if err != nil {
		return "", err
	}
	st, rounds, err := statusUnderLoad(ctx, f, sess)
	if err != nil {
		return "", err
	}
	if problems := statusProblems(st, f.modem != nil, radio != nil); problems != "" {
		return "", errors.New(problems)
	}
	detail := fmt.Sprintf("%d calls during %d echo rounds: registration %s, signal %d,%d", statusPolls, rounds, st.Registration, st.SignalRSSI, st.SignalBER)
	if radio == nil {
		if f.modem == nil {
			return detail + " (no modem: the values are the plugin's own)", nil
		}
		return detail + " (a real modem: its radio cannot be set, so the values are checked for range only)", nil
	}
	denied, err := statusAfterDenial(ctx, f, radio)
	if err != nil {
		return "", err
	}
	return detail + "; after the network denied registration: " + denied, nil
}

// statusUnderLoad echoes data through sess round after round while it asks
// for Status statusPolls times, and returns the last status and how many
// rounds completed. It fails when a Status call fails or misses its
// deadline, when the echo breaks, or when no round completes while Status
// is being polled (Status held the session up).
func statusUnderLoad(ctx context.Context, f *fixture, sess sdk.Session) (sdk.ModemStatus, int, error) {
	stop := make(chan struct{}) // closed: end after the round in progress
	roundDone := make(chan struct{}, 1)
	pumpErr := make(chan error, 1)
	rounds := 0 // the pump's until pumpErr is received
	go func() { pumpErr <- echoRounds(ctx, sess, stop, roundDone, &rounds) }()
	var pumpEnd error // set when waitRound saw the pump end
	pumpEnded := false
	finish := func() error {
		close(stop)
		if !pumpEnded {
			pumpEnd, pumpEnded = <-pumpErr, true
		}
		return pumpEnd
	}
	// waitRound waits for a round completed since the last wait.
	waitRound := func(what string) error {
		select {
		case <-roundDone:
			return nil
		case err := <-pumpErr:
			pumpEnd, pumpEnded = err, true
			if err == nil {
				err = errors.New("the echo ended")
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("no echo round completed %s: %w", what, ctx.Err())
		}
	}
	fail := func(err error) (sdk.ModemStatus, int, error) {
		finish()
		return sdk.ModemStatus{}, 0, err
	}
	if err := waitRound("before Status was polled"); err != nil {
		return fail(err)
	}
	select { // from here, a round must complete with Status being polled
	case <-roundDone:
	default:
	}
	var st sdk.ModemStatus
	for i := range statusPolls {
		var err error
		if st, err = statusOf(ctx, f, fmt.Sprintf("%d of %d, with a session moving data,", i+1, statusPolls), true); err != nil {
			return fail(err)
		}
	}
	if err := waitRound("while Status was polled (Status held the session up)"); err != nil {
		return fail(err)
	}
	if err := finish(); err != nil {
		return sdk.ModemStatus{}, 0, err
	}
	return st, rounds, nil
}

// echoRounds echoes 16 KiB of random bytes through sess, round after
// round, until stop is closed (after the round in progress), counting the
// rounds and signalling each on roundDone without blocking. It fails on a
// broken or changed echo.
func echoRounds(ctx context.Context, sess sdk.Session, stop <-chan struct{}, roundDone chan<- struct{}, rounds *int) error {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		data := make([]byte, 16<<10)
		rand.Read(data)
		got, err := exchange(ctx, sess, data, 5*time.Minute)
		switch {
		case err != nil:
			return fmt.Errorf("echo round %d while Status was polled: %w", *rounds+1, err)
		case !bytes.Equal(got, data):
			return fmt.Errorf("echo round %d while Status was polled: the data came back changed", *rounds+1)
		}
		*rounds++
		select {
		case roundDone <- struct{}{}:
		default:
		}
	}
}

// statusProblems lists what is wrong with a status taken with a session
// open: the contract's ranges always, and with a modem whose radio the
// check set, the signal it set and a registration that carries data.
func statusProblems(st sdk.ModemStatus, hasModem, radioSet bool) string {
	var bad []string
	if (st.SignalRSSI < 0 || st.SignalRSSI > 31) && st.SignalRSSI != 99 {
		bad = append(bad, fmt.Sprintf("SignalRSSI %d, want 0-31 or 99", st.SignalRSSI))
	}
	if (st.SignalBER < 0 || st.SignalBER > 7) && st.SignalBER != 99 {
		bad = append(bad, fmt.Sprintf("SignalBER %d, want 0-7 or 99", st.SignalBER))
	}
	if st.Registration != "home" && st.Registration != "roaming" {
		bad = append(bad, fmt.Sprintf("Registration %q with a session carrying data, want home or roaming", st.Registration))
	}
	if st.Time.IsZero() {
		bad = append(bad, "Time is not set")
	}
	if radioSet {
		if st.SignalRSSI != checkSignal.rssi || st.SignalBER != checkSignal.ber {
			bad = append(bad, fmt.Sprintf("signal %d,%d, but the emulated modem answers +CSQ: %d,%d", st.SignalRSSI, st.SignalBER, checkSignal.rssi, checkSignal.ber))
		}
		if st.SerialTxBytes == 0 || st.SerialRxBytes == 0 {
			bad = append(bad, fmt.Sprintf("serial counters tx %d rx %d after a session moved data, want both above 0", st.SerialTxBytes, st.SerialRxBytes))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	if !hasModem {
		return "Status (no modem): " + strings.Join(bad, "; ")
	}
	return "Status: " + strings.Join(bad, "; ")
}

// statusAfterDenial makes the network deny registration and expects Status
// to say so: it asks the modem rather than repeating what it knew.
func statusAfterDenial(ctx context.Context, f *fixture, radio RadioController) (string, error) {
	if err := radio.DenyRegistration(); err != nil {
		return "", fmt.Errorf("deny the emulated modem's registration: %w", err)
	}
	st, err := statusOf(ctx, f, "after the network denied registration", true)
	if err != nil {
		return "", err
	}
	if st.Registration != "denied" {
		return "", fmt.Errorf("Status after the network denied registration: Registration %q (CREG %q, CGREG %q, CEREG %q), want denied", st.Registration, st.CREG, st.CGREG, st.CEREG)
	}
	if st.SignalRSSI != 99 {
		return "", fmt.Errorf("Status after the network denied registration: SignalRSSI %d, but the unregistered modem answers +CSQ: 99,99", st.SignalRSSI)
	}
	return fmt.Sprintf("registration %s, signal %d", st.Registration, st.SignalRSSI), nil
}
