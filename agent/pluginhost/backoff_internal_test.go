package pluginhost

import (
	"strings"
	"testing"
	"time"
)

// The defaults reach the policy: 500 ms doubling to 30 s, losing up to a
// fifth to jitter. The sequence that policy gives is internal/backoff's to
// test.
func TestBackoffDefaults(t *testing.T) {
	b := Backoff{}.withDefaults()
	p := b.policy()
	if p.Initial != 500*time.Millisecond || p.Max != 30*time.Second || p.Multiplier != 2 || p.Jitter != 0.2 {
		t.Fatalf("default policy: Initial %s, Max %s, Multiplier %v, Jitter %v; want 500ms, 30s, 2, 0.2",
			p.Initial, p.Max, p.Multiplier, p.Jitter)
	}
	if b.Wait == nil {
		t.Fatal("the default Wait is nil")
	}
}

func TestBackoffNegativeJitterTurnsItOff(t *testing.T) {
	if got := (Backoff{Jitter: -1}).withDefaults().policy().Jitter; got != 0 {
		t.Fatalf("policy jitter for Backoff.Jitter -1 = %v, want 0 (off)", got)
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
