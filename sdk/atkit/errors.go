package atkit

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
)

// SDKError turns an error from sdk/at or the step runner into the
// contract's typed errors, so that it crosses the plugin boundary intact
// and the agent can tell a refusal from a silence from a dead port:
//
//   - errors that are already the contract's (*sdk.ModemError, NetError,
//     SerialError, TimeoutError, BundleError, OptionError,
//     ModelMismatchError) pass through unchanged;
//   - a *StepError adds its step to op ("open: check SIM");
//   - an unanswered attempt (*NoAnswerError, a deadline) becomes an
//     *sdk.TimeoutError;
//   - +CME ERROR, +CMS ERROR and bare error results become an
//     *sdk.ModemError with the modem's words as it printed them, e.g.
//     "+CME ERROR: SIM not inserted";
//   - a closed channel, or any error once ch's reader stopped (the port
//     vanished), becomes an *sdk.SerialError for port;
//   - a canceled context and anything else are wrapped with op.
//
// ch may be nil.
func SDKError(op string, err error, ch *at.Channel, port string) error {
	if err == nil {
		return nil
	}
	if isContractError(err) {
		return err
	}
	cause := err
	var st *StepError
	if errors.As(err, &st) {
		op = op + ": " + st.Op
		cause = st.Err
	}
	var (
		na  *NoAnswerError
		cme *at.CMEError
		cms *at.CMSError
		ae  *at.Error
	)
	switch {
	case errors.As(err, &na):
		return &sdk.TimeoutError{Op: op, After: na.After}
	case errors.As(err, &cme):
		return &sdk.ModemError{Op: op, Code: cme.Code, Text: codedText("+CME ERROR: ", cme.Code, cme.Text)}
	case errors.As(err, &cms):
		return &sdk.ModemError{Op: op, Code: cms.Code, Text: codedText("+CMS ERROR: ", cms.Code, cms.Text)}
	case errors.As(err, &ae):
		return &sdk.ModemError{Op: op, Code: -1, Text: ae.Final}
	case errors.Is(err, context.DeadlineExceeded):
		return &sdk.TimeoutError{Op: op}
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", op, err)
	case errors.Is(err, at.ErrClosed):
		return &sdk.SerialError{Op: op, Port: port, Err: cause.Error()}
	}
	if ch != nil {
		select {
		case <-ch.Done():
			return &sdk.SerialError{Op: op, Port: port, Err: cause.Error()}
		default:
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isContractError(err error) bool {
	var (
		me *sdk.ModemError
		ne *sdk.NetError
		se *sdk.SerialError
		te *sdk.TimeoutError
		be *sdk.BundleError
		oe *sdk.OptionError
		mm *sdk.ModelMismatchError
	)
	return errors.As(err, &me) || errors.As(err, &ne) || errors.As(err, &se) || errors.As(err, &te) ||
		errors.As(err, &be) || errors.As(err, &oe) || errors.As(err, &mm)
}

// codedText is a +CME/+CMS ERROR final result as the modem's words: the
// tag, then its text, or its number when it gave no text. sdk.ModemError
// adds the code when the words do not end with it.
func codedText(tag string, code int, text string) string {
	if text == "" && code >= 0 {
		return tag + strconv.Itoa(code)
	}
	return tag + text
}
