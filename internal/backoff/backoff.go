// Package backoff is the project's one capped exponential backoff and its
// one context-aware sleep. The growth of the waits is
// github.com/cenkalti/backoff/v5's ExponentialBackOff; the jitter is ours,
// because cenkalti spreads a wait both ways around its interval, which
// would let a wait exceed Max and would take the random source out of the
// caller's hands.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"

	cenkalti "github.com/cenkalti/backoff/v5"
)

// Policy is a capped exponential backoff: the wait before retry n (counting
// from 0) is Initial·Multiplierⁿ, capped at Max, then shortened by a random
// fraction of up to Jitter, so that a fleet of gateways that failed together
// does not retry in lockstep. A wait therefore never exceeds Max.
//
// Policy does not check its fields; its callers validate their own
// configuration, naming their own keys. It assumes 0 ≤ Initial ≤ Max,
// Multiplier ≥ 1 and 0 ≤ Jitter ≤ 1; Jitter 0 means no jitter. The zero
// Policy always waits 0.
//
// Next and Reset keep a position in the sequence, so a Policy used through
// them belongs to one goroutine. Delay keeps none.
type Policy struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	Jitter     float64
	// Rand returns a number in [0, 1) for the jitter; nil means
	// math/rand/v2's Float64. Tests inject it to get exact waits.
	Rand func() float64

	retries int // the n of the next Next
}

// Delay is the wait before retry n (counting from 0), with fresh jitter:
// for callers that are handed the retry count, such as autopaho.
func (p Policy) Delay(n int) time.Duration {
	d := p.interval(n)
	if p.Jitter <= 0 {
		return d
	}
	r := rand.Float64
	if p.Rand != nil {
		r = p.Rand
	}
	f := float64(d)
	return time.Duration(f - f*p.Jitter*r())
}

// Next is the wait before the next retry: Delay(0) after a Reset (or for a
// new Policy), then Delay(1), and so on.
func (p *Policy) Next() time.Duration {
	d := p.Delay(p.retries)
	p.retries++
	return d
}

// Reset starts the sequence again from Initial, as after a success.
func (p *Policy) Reset() { p.retries = 0 }

// interval is the wait before retry n without jitter. It steps the engine
// only until the interval stops growing, so a huge n costs no more than
// reaching Max does.
func (p Policy) interval(n int) time.Duration {
	engine := cenkalti.ExponentialBackOff{
		InitialInterval: p.Initial,
		Multiplier:      p.Multiplier,
		MaxInterval:     p.Max,
		// RandomizationFactor 0: the engine returns the bare interval.
	}
	d := engine.NextBackOff()
	for ; n > 0; n-- {
		next := engine.NextBackOff()
		if next == d {
			break
		}
		d = next
	}
	return d
}

// Sleep waits d, or less if ctx ends first, in which case it returns
// ctx.Err(). A d of zero or less returns at once, with ctx.Err().
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
