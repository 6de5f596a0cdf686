package at

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// URC is one unsolicited result code as delivered to a handler.
type URC struct {
	// Line is the line as the modem sent it, without terminator (for a
	// binary URC, the header line).
	Line string
	// Payload holds the raw bytes that followed a binary header; nil for
	// line URCs. The handler owns it.
	Payload []byte
	// At is when the reader finished reading Line.
	At time.Time
}

// handlerEntry is one registration of Handle or HandleBinary.
type handlerEntry struct {
	id      uint64
	prefix  string // normalized
	h       func(URC)
	length  func(line string) (int, bool) // nil for line URCs
	removed atomic.Bool
}

// Handle registers h for lines starting with prefix and returns a function
// that unregisters it (idempotent; after it returns, h is not called again,
// even for URCs already queued).
//
// Matching is case-sensitive and spacing-tolerant: spaces following ':' or
// ',' are ignored in both prefix and line, so prefix "+CCHRECV: DATA,"
// matches "+CCHRECV:DATA,", "+CCHRECV: DATA," and "+CCHRECV:  DATA,". The
// longest matching prefix wins; between equal prefixes the latest
// registration wins. Lines claimed by a waiter, by the in-flight command's
// WithResponsePrefix, or that are final result codes of the in-flight
// command never reach handlers.
//
// h runs on the dispatcher goroutine, in arrival order with all other
// handlers, never on the reader, so a slow handler does not stall parsing
// until the queue (WithQueueSize) is full; then the reader waits, rather
// than drop data. h must not call Close (Close waits for the dispatcher),
// and should not wait for a Command: if the queue fills meanwhile, the
// reader waits for h and cannot deliver the command's result. Start a
// goroutine for such work. Handle panics if prefix is empty or h is nil.
func (c *Channel) Handle(prefix string, h func(URC)) (unregister func()) {
	return c.register("Handle", prefix, nil, h)
}

// HandleBinary registers h for a URC whose header line announces a binary
// length. When a line matches prefix (as for Handle) and length(line)
// returns (n, true) with 0 <= n <= the cap (WithMaxBinary), exactly n raw
// bytes follow the header's line terminator; they are never scanned for
// lines or prompts, and are delivered to h in URC.Payload. If the header
// ends in CR, an LF right after it belongs to the terminator. A line for
// which length returns false, or a length over the cap (logged as a
// protocol error), is routed as an ordinary line. Binary headers are
// recognised before every other routing step: they are framing.
//
// length runs on the reader goroutine with internal locks held: it must be
// quick and must not call the Channel. CCHRecvLength is ready-made for
// "+CCHRECV: DATA,<id>,<len>". The returned function unregisters as for
// Handle. HandleBinary panics if prefix is empty or length or h is nil.
func (c *Channel) HandleBinary(prefix string, length func(line string) (int, bool), h func(URC)) (unregister func()) {
	if length == nil {
		panic("at: HandleBinary called with a nil length parser")
	}
	return c.register("HandleBinary", prefix, length, h)
}

func (c *Channel) register(who, prefix string, length func(string) (int, bool), h func(URC)) func() {
	np := normalize(prefix)
	if np == "" || h == nil {
		panic(fmt.Sprintf("at: %s needs a non-empty prefix and a handler (prefix %q)", who, prefix))
	}
	e := &handlerEntry{prefix: np, h: h, length: length}
	c.mu.Lock()
	c.nextID++
	e.id = c.nextID
	c.handlers = append(c.handlers, e)
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			e.removed.Store(true)
			c.mu.Lock()
			c.handlers = slices.DeleteFunc(c.handlers, func(x *handlerEntry) bool { return x == e })
			c.mu.Unlock()
		})
	}
}

// Waiter is a one-shot claim on the next line that satisfies a matcher; see
// Expect.
type Waiter struct {
	c        *Channel
	match    func(string) bool
	got      chan struct{} // closed once line is set
	line     string
	canceled chan struct{}
	once     sync.Once
}

// Expect registers a one-shot waiter, to be called BEFORE sending the
// command that causes the awaited line. The first line for which match
// returns true is consumed by the waiter and by nothing else, whether it
// arrives before the command's final result (where it would otherwise be an
// intermediate line), after it, or between other commands. This is how a
// deferred result such as "+CCHOPEN: 0,0" is awaited with the caller's own
// timeout; the modem may send it before or after OK.
//
// Waiters are checked in registration order, after the in-flight command's
// echo and final result and after binary headers, but before the command's
// claimed prefixes, URC handlers and intermediate lines.
//
// match runs on the reader goroutine with internal locks held: it must be
// quick and must not call the Channel. Expect panics if match is nil.
// Callers should defer Cancel, since a waiter stays registered until it
// matches or is canceled.
func (c *Channel) Expect(match func(line string) bool) *Waiter {
	if match == nil {
		panic("at: Expect called with a nil matcher")
	}
	w := &Waiter{c: c, match: match, got: make(chan struct{}), canceled: make(chan struct{})}
	c.mu.Lock()
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	return w
}

// deliver hands the line to the waiter; c.mu is held by the reader.
func (w *Waiter) deliver(line string) {
	w.line = line
	close(w.got)
}

// Wait returns the line the waiter consumed, waiting for it if necessary.
// It may be called again and returns the same line. It fails with an error
// wrapping ctx.Err() when ctx ends first (the waiter stays registered, so
// a later Wait may still succeed), with ErrWaiterCanceled after Cancel, and
// with an error matching ErrClosed when the channel stops first.
func (w *Waiter) Wait(ctx context.Context) (string, error) {
	select {
	case <-w.got:
		return w.line, nil
	default:
	}
	select {
	case <-w.got:
		return w.line, nil
	case <-w.canceled:
	case <-ctx.Done():
		return "", fmt.Errorf("at: waiting for an expected line: %w", ctx.Err())
	case <-w.c.done:
	}
	select {
	case <-w.got:
		return w.line, nil
	default:
	}
	select {
	case <-w.canceled:
		return "", ErrWaiterCanceled
	default:
		return "", w.c.stoppedErr("waiting for an expected line")
	}
}

// Cancel unregisters the waiter; a line not yet consumed will not be. It is
// safe to call more than once and after the waiter matched.
func (w *Waiter) Cancel() {
	w.once.Do(func() {
		close(w.canceled)
		w.c.mu.Lock()
		w.c.waiters = slices.DeleteFunc(w.c.waiters, func(x *Waiter) bool { return x == w })
		w.c.mu.Unlock()
	})
}
