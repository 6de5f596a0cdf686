package agent

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/internal/testutil"
)

// keepAliveUplink is a sizeLimitUplink with an MQTT-like keep-alive.
type keepAliveUplink struct {
	sizeLimitUplink
	keep time.Duration
}

func (u *keepAliveUplink) KeepAlive() time.Duration { return u.keep }

// TestBatchWaitsNoLongerThanTheKeepAlive: with a latency budget of an hour
// and a 1 s keep-alive, a lone reading goes within the keep-alive (where a
// ping would go anyway) instead of an hour later.
func TestBatchWaitsNoLongerThanTheKeepAlive(t *testing.T) {
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(t.TempDir(), "spool"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	up := &keepAliveUplink{sizeLimitUplink: sizeLimitUplink{limit: 100}, keep: time.Second}
	f := newPipeForwarder(t, sp, up)
	f.maxInFlight = 1
	f.batch = config.Batch{MaxReadings: 100, MaxDelay: time.Hour}
	if got := f.maxDelay(); got != 900*time.Millisecond {
		t.Fatalf("maxDelay = %s, want nine tenths of the 1s keep-alive", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.run(ctx) }()
	if _, err := sp.Append(ctx, []byte(`{"id":"r1","sensor":"t1","ts":"2026-11-27T10:00:00Z","value":1}`)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "the reading sent within the keep-alive, not max_delay's hour", func() bool {
		return len(up.delivered()) == 1
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	up.keep = 0
	if got := f.maxDelay(); got != time.Hour {
		t.Fatalf("without a keep-alive maxDelay = %s, want max_delay", got)
	}
}
