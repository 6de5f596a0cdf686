package pluginhost

import (
	"strings"
	"testing"
	"time"
)

// The defaults reach the policy: 500 ms doubling to 30 s, losing up to a
// fifth to jitter. The sequence itself is internal/backoff's to test.
func TestBackoffDefaults(t *testing.T) {
	b := Backoff{}.withDefaults()
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
		{"HugeAttemptStaysCapped", 1 << 30, 0.5, 27 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := b.policy()
			p.Rand = func() float64 { return c.r }
			if got := p.Delay(c.n); got != c.want {
				t.Fatalf("delay %d with r=%v = %s, want %s", c.n, c.r, got, c.want)
			}
		})
	}
	if b.Wait == nil {
		t.Fatal("the default Wait is nil")
	}
}

func TestBackoffNegativeJitterTurnsItOff(t *testing.T) {
	p := Backoff{Initial: time.Second, Jitter: -1}.withDefaults().policy()
	p.Rand = func() float64 { return 0.99 }
	if got := p.Delay(0); got != time.Second {
		t.Fatalf("delay with jitter off = %s, want 1s", got)
	}
}

func TestBackoffValidate(t *testing.T) {
	cases := []struct {
		name string
		b    Backoff
		want string
	}{
		{"NegativeInitial", Backoff{Initial: -time.Second, Max: time.Second}, "Backoff.Initial -1s is negative"},
		{"MaxBelowInitial", Backoff{Initial: time.Minute, Max: time.Second}, "Backoff.Max 1s is below Backoff.Initial 1m0s"},
		{"FactorBelowOne", Backoff{Factor: 0.9}, "Backoff.Factor 0.9"},
		{"JitterAboveOne", Backoff{Jitter: 1.5}, "Backoff.Jitter 1.5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.b.withDefaults().validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("validate = %v, want it to say %q", err, c.want)
			}
		})
	}
	if err := (Backoff{}).withDefaults().validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	if b := (Backoff{Initial: time.Minute}).withDefaults(); b.Max != time.Minute {
		t.Fatalf("Initial above the default Max: Max = %s, want it raised to Initial", b.Max)
	}
}
