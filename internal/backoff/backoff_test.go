package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fixed returns a Rand that always answers r.
func fixed(r float64) func() float64 { return func() float64 { return r } }

func TestDelay(t *testing.T) {
	p := Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2, Jitter: 0.2}
	cases := []struct {
		name string
		n    int
		r    float64
		want time.Duration
	}{
		{"FirstWithoutJitterIsInitial", 0, 0, 500 * time.Millisecond},
		{"FirstWithFullJitterLosesAFifth", 0, 1, 400 * time.Millisecond},
		{"DoublesEachTime", 3, 0, 4 * time.Second},
		{"CappedAtMax", 6, 0, 30 * time.Second},
		{"CapHoldsWithJitter", 6, 1, 24 * time.Second},
		// 2^1000 overflows a Duration many times over.
		{"HugeRetryDoesNotOverflow", 1000, 0, 30 * time.Second},
		{"HugeRetryCostsNoMoreThanReachingMax", 1 << 62, 0.5, 27 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := p
			p.Rand = fixed(c.r)
			if got := p.Delay(c.n); got != c.want {
				t.Fatalf("Delay(%d) with r=%v = %s, want %s", c.n, c.r, got, c.want)
			}
		})
	}
}

func TestDelayNeverExceedsMaxOrFallsBelowTheJitter(t *testing.T) {
	p := Policy{Initial: time.Second, Max: time.Minute, Multiplier: 2, Jitter: 0.25}
	for n := range 12 {
		base := min(time.Second<<n, time.Minute)
		for range 100 {
			if d := p.Delay(n); d > base || d < base*3/4 {
				t.Fatalf("Delay(%d) = %s, want within [%s, %s]", n, d, base*3/4, base)
			}
		}
	}
}

func TestJitterZeroIsExact(t *testing.T) {
	p := Policy{Initial: time.Second, Max: time.Minute, Multiplier: 3, Rand: fixed(0.99)}
	for n, want := range []time.Duration{time.Second, 3 * time.Second, 9 * time.Second, 27 * time.Second, time.Minute, time.Minute} {
		if got := p.Delay(n); got != want {
			t.Errorf("Delay(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestMultiplierOneIsConstant(t *testing.T) {
	p := Policy{Initial: time.Second, Max: time.Minute, Multiplier: 1}
	if got := p.Delay(50); got != time.Second {
		t.Fatalf("Delay(50) = %s, want 1s", got)
	}
}

func TestZeroPolicyWaitsZero(t *testing.T) {
	var p Policy
	if d := p.Next(); d != 0 {
		t.Fatalf("zero Policy: Next = %s, want 0", d)
	}
	if d := p.Delay(7); d != 0 {
		t.Fatalf("zero Policy: Delay(7) = %s, want 0", d)
	}
}

func TestNextWalksTheSequenceAndResetRestartsIt(t *testing.T) {
	p := Policy{Initial: time.Second, Max: 4 * time.Second, Multiplier: 2}
	var got []time.Duration
	for range 4 {
		got = append(got, p.Next())
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Next ×4 = %v, want %v", got, want)
		}
	}
	p.Reset()
	if d := p.Next(); d != time.Second {
		t.Fatalf("Next after Reset = %s, want Initial 1s", d)
	}
}

func TestSleep(t *testing.T) {
	t.Run("WaitsTheDuration", func(t *testing.T) {
		start := time.Now()
		if err := Sleep(context.Background(), 20*time.Millisecond); err != nil {
			t.Fatalf("Sleep = %v, want nil", err)
		}
		if waited := time.Since(start); waited < 20*time.Millisecond {
			t.Fatalf("Sleep(20ms) returned after %s", waited)
		}
	})
	t.Run("EndsWithTheContext", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Sleep(ctx, time.Hour) }()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Sleep after cancel = %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Sleep(1h) did not end with its context")
		}
	})
	t.Run("NonPositiveReturnsAtOnceWithTheContextError", func(t *testing.T) {
		if err := Sleep(context.Background(), 0); err != nil {
			t.Fatalf("Sleep(0) = %v, want nil", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := Sleep(ctx, -time.Second); !errors.Is(err, context.Canceled) {
			t.Fatalf("Sleep(-1s) on an ended context = %v, want context.Canceled", err)
		}
	})
}
