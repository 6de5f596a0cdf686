package simcom

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk/at"
)

// step is one exchange of a chat script: a command, how long one attempt may
// take, and, for steps that wait on the modem (SIM busy after boot, network
// registration), which answers mean "not yet" and how long to keep asking.
// Scripts are data so that the bring-up and session sequences read as the
// manual's flow charts do, and so every failure names its step.
type step struct {
	// op names what the step achieves ("sync", "check SIM"); errors say it.
	op  string
	cmd string
	// payload, when set, answers the command's ">" prompt.
	payload []byte
	// timeout bounds one attempt; zero means defaultStepTimeout.
	timeout time.Duration
	// prefix claims response lines that share a URC's prefix.
	prefix string

	// retry reports whether a failed attempt means "not yet" (for example
	// +CME ERROR: SIM busy). Nil means no failure is retried.
	retry func(err error) bool
	// check inspects a successful answer: done=false asks again later,
	// a non-nil error aborts the script.
	check func(r *at.Response) (done bool, err error)
	// within bounds the whole step including retries; every spaces them.
	within time.Duration
	every  time.Duration

	// optional steps log their failure and let the script go on: the
	// answer is informative (ICCID) and old firmware may lack the command.
	optional bool
	// secret steps carry key material (a key password, a private key):
	// errors and logs name the command without its parameters.
	secret bool
}

// shownCmd is the command as errors show it.
func (s step) shownCmd() string {
	if !s.secret {
		return s.cmd
	}
	if i := strings.IndexByte(s.cmd, '='); i >= 0 {
		return s.cmd[:i+1] + "<redacted>"
	}
	return s.cmd
}

const (
	defaultStepTimeout = 5 * time.Second
	defaultPollEvery   = time.Second
)

// stepError reports which step of a script failed and why; the cause keeps
// the modem's words (an *at.CMEError, say).
type stepError struct {
	Op    string
	Cmd   string
	Cause error
}

func (e *stepError) Error() string { return fmt.Sprintf("%s (%s): %v", e.Op, e.Cmd, e.Cause) }
func (e *stepError) Unwrap() error { return e.Cause }

// errNotYet is the cause of a poll step whose condition never came true.
var errNotYet = errors.New("condition not reached")

// runScript runs steps in order on ch. It stops at the first failing step
// that is not optional and returns a *stepError naming it.
func runScript(ctx context.Context, ch *at.Channel, steps []step, logf func(op string, err error)) error {
	for _, s := range steps {
		if err := runStep(ctx, ch, s); err != nil {
			if s.optional {
				if logf != nil {
					logf(s.op, err)
				}
				continue
			}
			return &stepError{Op: s.op, Cmd: s.shownCmd(), Cause: err}
		}
	}
	return nil
}

func runStep(ctx context.Context, ch *at.Channel, s step) error {
	timeout := s.timeout
	if timeout <= 0 {
		timeout = defaultStepTimeout
	}
	every := s.every
	if every <= 0 {
		every = defaultPollEvery
	}
	var deadline time.Time
	if s.within > 0 {
		deadline = time.Now().Add(s.within)
	}
	var opts []at.CommandOption
	if s.prefix != "" {
		opts = append(opts, at.WithResponsePrefix(s.prefix))
	}
	if s.secret {
		opts = append(opts, at.WithSecret())
	}
	for {
		actx, cancel := context.WithTimeout(ctx, timeout)
		var r *at.Response
		var err error
		if s.payload != nil {
			r, err = ch.CommandPayload(actx, s.cmd, s.payload, opts...)
		} else {
			r, err = ch.Command(actx, s.cmd, opts...)
		}
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = &noAnswerError{after: timeout, cause: err}
		}
		retryable := false
		if err == nil {
			if s.check == nil {
				return nil
			}
			done, cerr := s.check(r)
			if cerr != nil {
				return cerr
			}
			if done {
				return nil
			}
			err = errNotYet
			retryable = true
		} else if s.retry != nil && s.retry(err) {
			retryable = true
		}
		if !retryable || deadline.IsZero() || time.Now().Add(every).After(deadline) {
			if retryable && !deadline.IsZero() {
				return fmt.Errorf("gave up after %s: %w", s.within, err)
			}
			return err
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// noAnswerError is an attempt the modem did not answer in time.
type noAnswerError struct {
	after time.Duration
	cause error
}

func (e *noAnswerError) Error() string { return fmt.Sprintf("no answer within %s", e.after) }
func (e *noAnswerError) Unwrap() error { return e.cause }

// retryTimeouts treats an attempt that got no answer as "not yet"; used while
// syncing with a modem that may still be booting.
func retryTimeouts(err error) bool { return errors.Is(err, context.DeadlineExceeded) }
