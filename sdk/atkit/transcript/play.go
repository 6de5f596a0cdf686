package transcript

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// DefaultQuiet is how long "end" listens when Player.Quiet is zero.
const DefaultQuiet = 200 * time.Millisecond

// Player plays one side of a transcript against a line. The zero Player
// plays transcripts that have no actions. Hooks run on the goroutine that
// called the Play method, in transcript order; an error from a hook stops
// the play, and the Play method returns it with the step's position.
type Player struct {
	// Action runs each "@" step. A transcript with actions fails to play
	// without it.
	Action func(ctx context.Context, s Step) error
	// Before runs before each wire step: before the player writes its own
	// side's bytes, or before it waits for the other side's. A harness that
	// drives the other side makes it send here; an AT channel test starts
	// the command that a "> " step shows.
	Before func(ctx context.Context, s Step) error
	// After runs after each wire step: once its bytes were written (every
	// repeat), or read and found equal to the transcript's.
	After func(ctx context.Context, s Step) error
	// Quiet is how long "end" listens for bytes the transcript does not
	// have. Zero means DefaultQuiet.
	Quiet time.Duration
}

// PlayModem plays the modem's side of t on line: it writes the modem's
// steps and reads the host's, failing at the first byte the host sends that
// the transcript does not have. It returns nil when the transcript is
// played to its end, or an [*Error] naming the step that failed; a
// deviation wraps a [*MismatchError], a context that ended wraps ctx.Err().
//
// Reads and writes run on goroutines of their own so that ctx is honoured
// on any io.ReadWriter. When PlayModem returns early, or after "end", one
// Read or Write may still be pending on line; it ends when line is closed.
// PlayModem closes line only for "hangup". The caller owns line and closes
// it.
func (p *Player) PlayModem(ctx context.Context, line io.ReadWriter, t *Transcript) error {
	return p.play(ctx, line, t, Modem)
}

// PlayHost plays the host's side of t on line: it writes the host's steps
// and reads the modem's, failing at the first byte the modem sends that the
// transcript does not have. Results, errors and the line's ownership are as
// for PlayModem.
func (p *Player) PlayHost(ctx context.Context, line io.ReadWriter, t *Transcript) error {
	return p.play(ctx, line, t, Host)
}

func (p *Player) play(ctx context.Context, rw io.ReadWriter, t *Transcript, me Side) error {
	l := &wire{rw: rw, reads: make(chan readResult, 1)}
	for _, s := range t.Steps {
		if err := p.step(ctx, l, s, me); err != nil {
			return &Error{s.Pos, err}
		}
	}
	return nil
}

func (p *Player) step(ctx context.Context, l *wire, s Step, me Side) error {
	switch s.Kind {
	case Comment:
		return nil
	case Action:
		if p.Action == nil {
			return fmt.Errorf("@%s: the player has no Action hook", s.Name)
		}
		return p.Action(ctx, s)
	case Pause:
		t := time.NewTimer(s.Pause)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("pausing: %w", ctx.Err())
		}
	case Hangup:
		c, ok := l.rw.(io.Closer)
		if !ok {
			return fmt.Errorf("hangup: the line (%T) cannot be closed", l.rw)
		}
		if err := c.Close(); err != nil {
			return fmt.Errorf("hangup: %w", err)
		}
		return nil
	case End:
		quiet := p.Quiet
		if quiet <= 0 {
			quiet = DefaultQuiet
		}
		return l.quiet(ctx, quiet, me.other())
	}
	if p.Before != nil {
		if err := p.Before(ctx, s); err != nil {
			return err
		}
	}
	for i := range s.Repeat {
		var err error
		if s.Side() == me {
			err = l.write(ctx, s.Bytes)
		} else {
			err = l.expect(ctx, s.Bytes, me.other())
		}
		if err != nil {
			if s.Repeat > 1 {
				err = fmt.Errorf("repeat %d of %d: %w", i+1, s.Repeat, err)
			}
			return err
		}
	}
	if p.After != nil {
		return p.After(ctx, s)
	}
	return nil
}

// MismatchError says the other side sent bytes the transcript does not
// have at this step.
type MismatchError struct {
	// From is the side that sent Got.
	From Side
	// Got is what arrived, from the step's first byte to the first
	// difference and on to the end of that line as far as it had arrived.
	Got []byte
	// Want is what the step wants; nil after "end", where nothing is.
	Want []byte
}

func (e *MismatchError) Error() string {
	if e.Want == nil {
		return fmt.Sprintf("the transcript is over, but the %s sent %q", e.From, e.Got)
	}
	return fmt.Sprintf("%s sent %q, transcript wants %q", e.From, e.Got, e.Want)
}

// wire is the player's end of the line. Only the player's goroutine uses
// it; the goroutines it starts own nothing but their own buffer.
type wire struct {
	rw      io.ReadWriter
	buf     []byte // read, not yet matched
	reads   chan readResult
	reading bool  // a Read is pending and will report on reads
	err     error // the error that ended reading
}

type readResult struct {
	b   []byte
	err error
}

// errQuiet ends a fill whose quiet window passed.
var errQuiet = errors.New("quiet window passed")

// fill waits for the next bytes from the other side. It returns nil when
// buf grew or a Read returned nothing, the read error once reading has
// ended, ctx.Err(), or errQuiet when quiet fires first.
func (l *wire) fill(ctx context.Context, quiet <-chan time.Time) error {
	if l.err != nil {
		return l.err
	}
	if !l.reading {
		l.reading = true
		go func(r io.Reader, out chan<- readResult) {
			b := make([]byte, 4096)
			n, err := r.Read(b)
			out <- readResult{b[:n], err}
		}(l.rw, l.reads)
	}
	select {
	case r := <-l.reads:
		l.reading = false
		l.buf = append(l.buf, r.b...)
		if r.err != nil {
			l.err = r.err
			if len(r.b) == 0 {
				return r.err
			}
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-quiet:
		return errQuiet
	}
}

// expect consumes want from the other side, or reports how it differs.
func (l *wire) expect(ctx context.Context, want []byte, from Side) error {
	for {
		n := min(len(l.buf), len(want))
		if d := firstDiff(l.buf[:n], want[:n]); d >= 0 {
			return &MismatchError{From: from, Got: bytes.Clone(l.sample(d, len(want))), Want: want}
		}
		if n == len(want) {
			l.buf = l.buf[n:]
			return nil
		}
		if err := l.fill(ctx, nil); err != nil {
			return fmt.Errorf("waiting for the %s to send %q (got %q): %w", from, want, l.buf, err)
		}
	}
}

// sample is buf up to the end of the line that holds offset d, bounded.
func (l *wire) sample(d, want int) []byte {
	end := len(l.buf)
	if i := bytes.IndexByte(l.buf[d:], '\n'); i >= 0 {
		end = d + i + 1
	} else if i := bytes.IndexByte(l.buf[d:], '\r'); i >= 0 {
		end = d + i + 1
	}
	return l.buf[:min(end, want+256)]
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// write sends b to the other side.
func (l *wire) write(ctx context.Context, b []byte) error {
	done := make(chan error, 1)
	go func() {
		_, err := l.rw.Write(b)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("writing %q: %w", b, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("writing %q: %w", b, ctx.Err())
	}
}

// quiet checks that the other side sends nothing for d. A line that closes
// is quiet.
func (l *wire) quiet(ctx context.Context, d time.Duration, from Side) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		if len(l.buf) > 0 {
			return &MismatchError{From: from, Got: bytes.Clone(l.buf)}
		}
		err := l.fill(ctx, t.C)
		switch {
		case err == nil:
		case errors.Is(err, errQuiet):
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("listening after end: %w", err)
		default:
			return nil
		}
	}
}
