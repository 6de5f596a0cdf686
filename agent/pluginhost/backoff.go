package pluginhost

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/cellgate/cellgate/internal/backoff"
)

// Defaults for Backoff's zero fields.
const (
	DefaultBackoffInitial = 500 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
	DefaultBackoffFactor  = 2.0
	DefaultBackoffJitter  = 0.2
)

// Backoff is the capped exponential backoff between attempts to bring a
// plugin up: the wait before retry n (counting from 0) is
// Initial·Factorⁿ, capped at Max, then shortened by a random fraction of up
// to Jitter so that a fleet of gateways that lost their modems together does
// not retry in lockstep. A delay therefore never exceeds Max.
//
// The zero value means the defaults: 500 ms, 30 s, factor 2, jitter 0.2.
type Backoff struct {
	// Initial is the first wait; 0 means DefaultBackoffInitial.
	Initial time.Duration
	// Max caps every wait; 0 means DefaultBackoffMax. A plugin that stayed
	// ready for at least Max starts the sequence again from Initial after
	// it fails.
	Max time.Duration
	// Factor multiplies the wait after each consecutive failure; 0 means
	// DefaultBackoffFactor. It must be at least 1.
	Factor float64
	// Jitter is the largest fraction of a wait that is randomly removed;
	// 0 means DefaultBackoffJitter, a negative value turns jitter off, and
	// more than 1 is refused.
	Jitter float64
	// Wait waits for d or until ctx ends (the host is closing). Nil means
	// a real timer. Tests inject it to observe each delay and release it
	// without waiting in wall-clock time; its error is ignored, since the
	// host checks ctx itself.
	Wait func(ctx context.Context, d time.Duration) error
}

// withDefaults fills the zero fields.
func (b Backoff) withDefaults() Backoff {
	if b.Initial == 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max == 0 {
		b.Max = max(DefaultBackoffMax, b.Initial)
	}
	if b.Factor == 0 {
		b.Factor = DefaultBackoffFactor
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = DefaultBackoffJitter
	case b.Jitter < 0:
		b.Jitter = 0
	}
	if b.Wait == nil {
		b.Wait = backoff.Sleep
	}
	return b
}

// validate reports the first field that makes no sense, after defaults.
func (b Backoff) validate() error {
	switch {
	case b.Initial < 0:
		return fmt.Errorf("Backoff.Initial %s is negative", b.Initial)
	case b.Max < b.Initial:
		return fmt.Errorf("Backoff.Max %s is below Backoff.Initial %s", b.Max, b.Initial)
	case b.Factor < 1 || math.IsNaN(b.Factor) || math.IsInf(b.Factor, 0):
		return fmt.Errorf("Backoff.Factor %v: want a finite number of at least 1", b.Factor)
	case b.Jitter > 1 || math.IsNaN(b.Jitter):
		return fmt.Errorf("Backoff.Jitter %v: want a fraction between 0 and 1", b.Jitter)
	}
	return nil
}

// policy is b, after defaults, as the project's backoff policy.
func (b Backoff) policy() backoff.Policy {
	return backoff.Policy{Initial: b.Initial, Max: b.Max, Multiplier: b.Factor, Jitter: b.Jitter}
}

// next is the wait before retry n (0-based) with fresh jitter.
func (b Backoff) next(n int) time.Duration { return b.policy().Delay(n) }
