package atkit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk/at"
)

// Defaults of a Step whose fields are zero.
const (
	// DefaultStepTimeout bounds one attempt of a step.
	DefaultStepTimeout = 5 * time.Second
	// DefaultPollEvery spaces the attempts of a step that keeps asking.
	DefaultPollEvery = time.Second
)

// Step is one exchange of a chat script: a command, how long one attempt may
// take, what its answer must say and, for a step that waits on the modem
// (SIM busy after boot, network registration), which answers mean "not yet"
// and how long to keep asking. Scripts are data, so a bring-up reads as the
// manual's flow chart does and every failure names its step.
type Step struct {
	// Op names what the step achieves ("check SIM"); errors say it.
	Op string
	// Cmd is the command line without its terminator, e.g. "AT+CPIN?".
	Cmd string
	// Payload, when not nil, answers the command's ">" prompt
	// (at.Channel.CommandPayload).
	Payload []byte
	// Timeout bounds one attempt; zero means DefaultStepTimeout.
	Timeout time.Duration
	// ResponsePrefix claims response lines that share a URC's prefix
	// (at.WithResponsePrefix).
	ResponsePrefix string

	// Retry reports whether a failed attempt means "not yet" (for example
	// at.IsSIMBusy). Nil means no failure is retried.
	Retry func(err error) bool
	// Check inspects a successful answer: done=false asks again later
	// (within Within), a non-nil error fails the step at once. Nil accepts
	// any successful answer.
	Check func(r *at.Response) (done bool, err error)
	// Within bounds the whole step, retries included; zero means one
	// attempt. Every spaces the attempts (zero means DefaultPollEvery).
	Within time.Duration
	Every  time.Duration

	// Optional steps report their failure to Script.OnSkip and let the
	// script go on: the answer is informative (an ICCID) and old firmware
	// may lack the command.
	Optional bool
	// Secret steps carry key material (a key password, a private key):
	// errors, logs and traces show the command without its parameters.
	Secret bool
}

// ShownCmd is the command as errors and logs show it: for a Secret step,
// only up to its '=' followed by "<redacted>".
func (s Step) ShownCmd() string {
	if !s.Secret {
		return s.Cmd
	}
	if i := strings.IndexByte(s.Cmd, '='); i >= 0 {
		return s.Cmd[:i+1] + "<redacted>"
	}
	return s.Cmd
}

// Script is a sequence of steps run in order on one channel.
type Script struct {
	Steps []Step
	// OnSkip, when set, is told of each Optional step that failed (to log
	// it); the script goes on either way.
	OnSkip func(s Step, err error)
}

// Run runs the steps in order on ch. It stops at the first step that fails
// and is not Optional, and returns a *StepError naming it, whose cause keeps
// the modem's words (an *at.CMEError, say), a *NoAnswerError for an attempt
// the modem did not answer in time, or ctx's error.
func (sc Script) Run(ctx context.Context, ch *at.Channel) error {
	for _, s := range sc.Steps {
		err := s.Run(ctx, ch)
		if err == nil {
			continue
		}
		if s.Optional && ctx.Err() == nil {
			if sc.OnSkip != nil {
				sc.OnSkip(s, err)
			}
			continue
		}
		return &StepError{Op: s.Op, Cmd: s.ShownCmd(), Err: err}
	}
	return nil
}

// Run runs steps in order on ch; see Script.Run. Optional steps that fail
// are skipped silently.
func Run(ctx context.Context, ch *at.Channel, steps ...Step) error {
	return Script{Steps: steps}.Run(ctx, ch)
}

// StepError reports which step of a script failed and why.
type StepError struct {
	// Op is the step's Op, Cmd its command as shown (ShownCmd).
	Op, Cmd string
	// Err is the cause: the modem's error result, a *NoAnswerError, an
	// error from Check, or a context error.
	Err error
}

func (e *StepError) Error() string { return fmt.Sprintf("%s (%s): %v", e.Op, e.Cmd, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// ErrNotYet is the cause of a step whose Check never said done within its
// Within bound.
var ErrNotYet = errors.New("condition not reached")

// NoAnswerError is an attempt the modem did not answer within its timeout.
// It matches context.DeadlineExceeded.
type NoAnswerError struct {
	After time.Duration
	Err   error
}

func (e *NoAnswerError) Error() string { return fmt.Sprintf("no answer within %s", e.After) }
func (e *NoAnswerError) Unwrap() error { return e.Err }

// RetryNoAnswer is a Step.Retry that treats an unanswered attempt as "not
// yet": for probing a modem that may still be booting.
func RetryNoAnswer(err error) bool {
	var na *NoAnswerError
	return errors.As(err, &na)
}

// Run runs the step alone on ch, retrying as the step says, and returns the
// cause of its failure (not wrapped in a StepError).
func (s Step) Run(ctx context.Context, ch *at.Channel) error {
	timeout := orDefault(s.Timeout, DefaultStepTimeout)
	every := orDefault(s.Every, DefaultPollEvery)
	var deadline time.Time
	if s.Within > 0 {
		deadline = time.Now().Add(s.Within)
	}
	for {
		err, retryable := s.attempt(ctx, ch, timeout)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if !retryable || deadline.IsZero() || time.Now().Add(every).After(deadline) {
			if retryable && !deadline.IsZero() {
				return fmt.Errorf("gave up after %s: %w", s.Within, err)
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

// attempt sends the command once and judges the answer: err is nil when
// the step is done, retryable says whether asking again may help.
func (s Step) attempt(ctx context.Context, ch *at.Channel, timeout time.Duration) (err error, retryable bool) {
	var opts []at.CommandOption
	if s.ResponsePrefix != "" {
		opts = append(opts, at.WithResponsePrefix(s.ResponsePrefix))
	}
	if s.Secret {
		opts = append(opts, at.WithSecret())
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	var r *at.Response
	if s.Payload != nil {
		r, err = ch.CommandPayload(actx, s.Cmd, s.Payload, opts...)
	} else {
		r, err = ch.Command(actx, s.Cmd, opts...)
	}
	cancel()
	if ctx.Err() != nil {
		return ctx.Err(), false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = &NoAnswerError{After: timeout, Err: err}
	}
	if err != nil {
		return err, s.Retry != nil && s.Retry(err)
	}
	if s.Check == nil {
		return nil, false
	}
	done, cerr := s.Check(r)
	switch {
	case cerr != nil:
		return cerr, false
	case done:
		return nil, false
	}
	return ErrNotYet, true
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Await runs s and then waits, up to wait, for the first line that match
// accepts, and returns it: for a command whose real result is a deferred
// line such as "+CCHOPEN: 0,0" or "+QSSLOPEN: 1,0", which the modem may send
// before or after the command's OK. The waiter is registered before the
// command is sent, so a quick result is not missed, and the line is taken by
// nothing else. A failure is a *StepError naming s; a result that does not
// come in time has a *NoAnswerError as its cause. match runs on the
// channel's reader (see at.Channel.Expect): it must be quick.
func Await(ctx context.Context, ch *at.Channel, s Step, match func(line string) bool, wait time.Duration) (string, error) {
	w := ch.Expect(match)
	defer w.Cancel()
	if err := s.Run(ctx, ch); err != nil {
		return "", &StepError{Op: s.Op, Cmd: s.ShownCmd(), Err: err}
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	line, err := w.Wait(wctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = &NoAnswerError{After: wait, Err: err}
		}
		return "", &StepError{Op: s.Op, Cmd: s.ShownCmd(), Err: fmt.Errorf("waiting for its result: %w", err)}
	}
	return line, nil
}
