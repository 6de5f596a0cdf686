package agent

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/transport/uplink"
)

// gateUplink is a test double, not an upstream: each Send waits for the
// test to answer it, so a test decides when (and whether) a batch is
// acknowledged.
type gateUplink struct {
	calls chan gateCall
}

type gateCall struct {
	msg    uplink.Message
	result chan error
}

func (u *gateUplink) Send(ctx context.Context, m uplink.Message) error {
	c := gateCall{m, make(chan error, 1)}
	select {
	case u.calls <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c.result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (u *gateUplink) Close() error { return nil }

func (u *gateUplink) next(t *testing.T) gateCall {
	t.Helper()
	select {
	case c := <-u.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no Send")
		return gateCall{}
	}
}

// holdRig is a forwarder over a real spool and a gateUplink, running.
type holdRig struct {
	f  *forwarder
	sp *spool.Spool
	up *gateUplink
}

func newHoldRig(t *testing.T, maxReadings int) *holdRig {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(t.TempDir(), "spool"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := reading.NewEncoder("json")
	if err != nil {
		t.Fatal(err)
	}
	up := &gateUplink{calls: make(chan gateCall)}
	f := &forwarder{spool: sp, uplink: up, enc: enc, deviceID: "gw", batch: config.Batch{MaxReadings: maxReadings},
		holds: make(chan holdRequest), acked: &notifier{}, log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("forwarder: %v", err)
		}
		sp.Close()
	})
	return &holdRig{f: f, sp: sp, up: up}
}

func (r *holdRig) add(t *testing.T, ids ...string) {
	t.Helper()
	var ps [][]byte
	for _, id := range ids {
		ps = append(ps, []byte(`{"id":"`+id+`","sensor":"t1","ts":"2026-11-27T10:00:00Z","value":1}`))
	}
	if _, err := r.sp.Append(context.Background(), ps...); err != nil {
		t.Fatal(err)
	}
}

// holdAsync asks for a hold and returns where its release arrives.
func (r *holdRig) holdAsync() chan func() {
	out := make(chan func(), 1)
	go func() {
		release, err := r.f.hold(context.Background())
		if err == nil {
			out <- release
		}
	}()
	return out
}

func waitRelease(t *testing.T, c chan func(), within time.Duration) func() {
	t.Helper()
	select {
	case release := <-c:
		return release
	case <-time.After(within):
		t.Fatalf("the forwarder did not hold within %v", within)
		return nil
	}
}

// A batch acknowledged while a hold waits is acked in the spool before the
// forwarder holds: it is not sent again after the hold.
func TestHoldLetsTheBatchInFlightFinish(t *testing.T) {
	r := newHoldRig(t, 10)
	r.add(t, "a", "b", "c")
	call := r.up.next(t)
	held := r.holdAsync()
	select {
	case <-held:
		t.Fatal("the forwarder held with a batch in flight")
	case <-time.After(100 * time.Millisecond):
	}
	call.result <- nil
	release := waitRelease(t, held, 10*time.Second)
	if n := r.sp.Stats().Pending; n != 0 {
		t.Fatalf("%d readings pending after their batch was acknowledged", n)
	}
	release()
	r.add(t, "d")
	call = r.up.next(t)
	if !slices.Equal(call.msg.IDs, []string{"d"}) {
		t.Fatalf("after the hold the forwarder sent %v, want only d", call.msg.IDs)
	}
	call.result <- nil
}

// A batch not acknowledged within the grace is abandoned: it stays in the
// spool and is the first one sent after the hold.
func TestHoldAbandonsABatchNotAcknowledged(t *testing.T) {
	r := newHoldRig(t, 10)
	r.f.grace = 50 * time.Millisecond
	r.add(t, "a", "b", "c")
	r.up.next(t) // never answered
	release := waitRelease(t, r.holdAsync(), 10*time.Second)
	if n := r.sp.Stats().Pending; n != 3 {
		t.Fatalf("%d readings pending after the batch was abandoned, want 3", n)
	}
	release()
	call := r.up.next(t)
	if !slices.Equal(call.msg.IDs, []string{"a", "b", "c"}) {
		t.Fatalf("after the hold the forwarder sent %v, want the abandoned batch", call.msg.IDs)
	}
	call.result <- nil
}

// A hold during the backoff after a failed send does not wait for it; new
// batching settings apply from the first batch after the hold.
func TestHoldDuringBackoffAndNewBatching(t *testing.T) {
	r := newHoldRig(t, 10)
	r.add(t, "a", "b", "c", "d", "e")
	r.up.next(t).result <- errors.New("broker refused the message: reason code 0x87 (not authorized)")
	start := time.Now()
	release := waitRelease(t, r.holdAsync(), 10*time.Second)
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("the hold waited %v for the backoff (1s)", d)
	}
	if err := r.f.setBatch(config.Batch{MaxReadings: 2, Encoding: "json"}); err != nil {
		t.Fatal(err)
	}
	release()
	var sent []string
	for len(sent) < 5 {
		call := r.up.next(t)
		if len(call.msg.IDs) > 2 {
			t.Fatalf("a batch of %d after max_readings became 2", len(call.msg.IDs))
		}
		sent = append(sent, call.msg.IDs...)
		call.result <- nil
	}
	if !slices.Equal(sent, []string{"a", "b", "c", "d", "e"}) {
		t.Fatalf("sent %v", sent)
	}
}
