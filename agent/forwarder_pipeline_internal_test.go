package agent

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/transport/uplink"
)

// pipeRig is a pipelined forwarder (3 in flight, batches of 10) over a
// real spool holding 60 readings, and a gateUplink the test answers.
type pipeRig struct {
	dir  string
	sp   *spool.Spool
	up   *gateUplink
	f    *forwarder
	stop context.CancelFunc
	done chan error
	ids  []string // the readings, in spool order
}

func newPipeRig(t *testing.T) *pipeRig {
	t.Helper()
	r := &pipeRig{dir: filepath.Join(t.TempDir(), "spool"), up: &gateUplink{calls: make(chan gateCall)}}
	sp, err := spool.Open(spool.Options{Dir: r.dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r.sp = sp
	var payloads [][]byte
	for i := range 60 {
		id := fmt.Sprintf("r%02d", i)
		r.ids = append(r.ids, id)
		payloads = append(payloads, fmt.Appendf(nil, `{"id":%q,"sensor":"t1","ts":"2026-11-27T10:00:00Z","value":%d}`, id, i))
	}
	if _, err := sp.Append(context.Background(), payloads...); err != nil {
		t.Fatal(err)
	}
	r.f = newPipeForwarder(t, sp, r.up)
	ctx, cancel := context.WithCancel(context.Background())
	r.stop, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.f.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
		r.sp.Close()
	})
	return r
}

func newPipeForwarder(t *testing.T, sp *spool.Spool, up uplink.Uplink) *forwarder {
	t.Helper()
	enc, err := reading.NewEncoder("json")
	if err != nil {
		t.Fatal(err)
	}
	return &forwarder{spool: sp, uplink: up, enc: enc, deviceID: "gw", batch: config.Batch{MaxReadings: 10},
		maxInFlight: 3, grace: 100 * time.Millisecond,
		holds: make(chan holdRequest), acked: &notifier{}, log: slog.New(slog.DiscardHandler)}
}

// batchNo is the batch (1-based, 10 readings each) a call carries.
func batchNo(t *testing.T, c gateCall) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(c.msg.IDs[0], "r%d", &i); err != nil || len(c.msg.IDs) != 10 {
		t.Fatalf("unexpected batch %v", c.msg.IDs)
	}
	return i/10 + 1
}

// inFlight takes the next n Sends, by batch number.
func (r *pipeRig) inFlight(t *testing.T, n int) map[int]gateCall {
	t.Helper()
	got := map[int]gateCall{}
	for range n {
		c := r.up.next(t)
		got[batchNo(t, c)] = c
	}
	return got
}

// ackOutOfOrder runs the part both tests share: batches 1-3 go out
// together, 3 and 2 are acknowledged (in that order) and acked in the
// spool while 1 is not; 4 and 5 go out; 5 is acknowledged. Batches 1 and
// 4 stay in flight, 6 is unread.
func (r *pipeRig) ackOutOfOrder(t *testing.T) (open map[int]gateCall) {
	t.Helper()
	first := r.inFlight(t, 3)
	if !equalKeys(first, 1, 2, 3) {
		t.Fatalf("in flight first: batches %v, want 1, 2, 3", slices.Sorted(maps.Keys(first)))
	}
	select {
	case c := <-r.up.calls:
		t.Fatalf("a fourth batch (%v) went out with max_in_flight 3", c.msg.IDs)
	case <-time.After(300 * time.Millisecond): // room for a wrong fourth Send to show up
	}
	first[3].result <- nil
	first[2].result <- nil
	testutil.Eventually(t, 10*time.Second, "batches 2 and 3 acked in the spool", func() bool { return r.sp.Stats().Pending == 40 })
	next := r.inFlight(t, 2)
	if !equalKeys(next, 4, 5) {
		t.Fatalf("in flight next: batches %v, want 4, 5", slices.Sorted(maps.Keys(next)))
	}
	next[5].result <- nil
	testutil.Eventually(t, 10*time.Second, "batch 5 acked in the spool", func() bool { return r.sp.Stats().Pending == 30 })
	if got := r.f.sentReadings.Load(); got != 30 {
		t.Fatalf("sent readings %d, want 30", got)
	}
	return map[int]gateCall{1: first[1], 4: next[4]}
}

// wantOnly checks the readings sent are exactly batches 1, 4 and 6, each
// once.
func wantOnly(t *testing.T, sent []string, all []string) {
	t.Helper()
	var want []string
	for _, b := range []int{1, 4, 6} {
		want = append(want, all[(b-1)*10:b*10]...)
	}
	slices.Sort(sent)
	if !slices.Equal(sent, want) {
		t.Fatalf("sent again %v,\nwant exactly the unacknowledged batches 1, 4, 6: %v", sent, want)
	}
}

// Batches acknowledged out of order are acked in the spool as they come;
// after the agent stops with others in flight (and after a restart) only
// the batches not acknowledged are sent again, and each once.
func TestPipelineAcksOutOfOrderAndRestartResendsOnlyUnacked(t *testing.T) {
	r := newPipeRig(t)
	r.ackOutOfOrder(t)
	r.stop() // the agent stops with batches 1 and 4 in flight
	if err := <-r.done; err != nil {
		t.Fatalf("forwarder: %v", err)
	}
	r.done <- nil // for the cleanup
	if err := r.sp.Close(); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(spool.Options{Dir: r.dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r.sp = sp
	if n := sp.Stats().Pending; n != 30 {
		t.Fatalf("after the restart %d readings pending, want 30", n)
	}
	up := &recordingUplink{}
	f := newPipeForwarder(t, sp, up)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.run(ctx) }()
	testutil.Eventually(t, 10*time.Second, "the rest drained", func() bool { return sp.Stats().Pending == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("forwarder after restart: %v", err)
	}
	wantOnly(t, up.ids(), r.ids)
}

// A hold with batches in flight gives them the grace, then abandons them;
// after the hold they and the unread batch are sent, and nothing
// acknowledged before is sent again.
func TestPipelineHoldResendsOnlyAbandonedBatches(t *testing.T) {
	r := newPipeRig(t)
	open := r.ackOutOfOrder(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	release, err := r.f.hold(ctx) // batches 1 and 4 get 100 ms, then are abandoned
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range open {
		select {
		case c.result <- nil: // too late: the Send was cut
		default:
		}
	}
	release()
	var sent []string
	for len(sent) < 30 {
		c := r.up.next(t)
		sent = append(sent, c.msg.IDs...)
		c.result <- nil
	}
	testutil.Eventually(t, 10*time.Second, "the spool empty", func() bool { return r.sp.Stats().Pending == 0 })
	wantOnly(t, sent, r.ids)
}

func equalKeys(m map[int]gateCall, keys ...int) bool {
	return slices.Equal(slices.Sorted(maps.Keys(m)), keys)
}

// While more than max_readings wait in the spool, a batch takes up to
// backlog_max_readings; once the backlog is gone, batches are back to
// max_readings at most. Without backlog_max_readings, never more than
// max_readings.
func TestBacklogBatches(t *testing.T) {
	for _, tc := range []struct {
		backlog int
		want    []int
	}{
		{0, []int{10, 10, 10, 10, 10, 10, 5}},
		{25, []int{25, 25, 10, 5}},
	} {
		t.Run(fmt.Sprint("backlog_max_readings=", tc.backlog), func(t *testing.T) {
			sp, err := spool.Open(spool.Options{Dir: filepath.Join(t.TempDir(), "spool"), NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			var payloads [][]byte
			for i := range 65 {
				payloads = append(payloads, fmt.Appendf(nil, `{"id":"r%02d","sensor":"t1","ts":"2026-11-27T10:00:00Z","value":%d}`, i, i))
			}
			// 60 waiting, then 5 more once they are sent.
			if _, err := sp.Append(context.Background(), payloads[:60]...); err != nil {
				t.Fatal(err)
			}
			up := &gateUplink{calls: make(chan gateCall)}
			f := newPipeForwarder(t, sp, up)
			f.maxInFlight = 1
			f.batch.BacklogMaxReadings = tc.backlog
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- f.run(ctx) }()
			var sizes []int
			for sent := 0; sent < 65; {
				c := up.next(t)
				sizes = append(sizes, len(c.msg.IDs))
				sent += len(c.msg.IDs)
				if sent == 60 {
					if _, err := sp.Append(context.Background(), payloads[60:]...); err != nil {
						t.Fatal(err)
					}
				}
				c.result <- nil
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(sizes, tc.want) {
				t.Fatalf("batch sizes %v, want %v", sizes, tc.want)
			}
		})
	}
}

// limitedGate is a gateUplink that takes at most limit messages in flight,
// as an MQTT uplink does under the broker's Receive Maximum.
type limitedGate struct {
	*gateUplink
	limit int
}

func (l limitedGate) InFlightLimit() int { return l.limit }

// The uplink's bound (the broker's Receive Maximum) wins over
// uplink.max_in_flight when it is lower.
func TestPipelineStaysWithinTheUplinksLimit(t *testing.T) {
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(t.TempDir(), "spool"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var payloads [][]byte
	for i := range 40 {
		payloads = append(payloads, fmt.Appendf(nil, `{"id":"r%02d","sensor":"t1","ts":"2026-11-27T10:00:00Z","value":%d}`, i, i))
	}
	if _, err := sp.Append(context.Background(), payloads...); err != nil {
		t.Fatal(err)
	}
	up := limitedGate{&gateUplink{calls: make(chan gateCall)}, 2}
	f := newPipeForwarder(t, sp, up)
	f.maxInFlight = 8
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	a, b := up.next(t), up.next(t)
	select {
	case c := <-up.calls:
		t.Fatalf("a third batch (%v) went out with the uplink taking 2", c.msg.IDs)
	case <-time.After(300 * time.Millisecond): // room for a wrong third Send to show up
	}
	b.result <- nil
	c := up.next(t) // a slot is free again
	a.result <- nil
	c.result <- nil
	d := up.next(t)
	d.result <- nil
	testutil.Eventually(t, 10*time.Second, "the spool drained", func() bool { return sp.Stats().Pending == 0 })
}

// uplink.max_in_flight changes live, like uplink.batch: the forwarder holds
// and takes it, without a new connection.
func TestMaxInFlightChangesWithoutANewConnection(t *testing.T) {
	cur := &config.Config{Uplink: config.Uplink{MQTT: &config.MQTT{Topic: "t"}, MaxInFlight: 32}}
	next := &config.Config{Uplink: config.Uplink{MQTT: &config.MQTT{Topic: "t"}, MaxInFlight: 4}}
	c := diff(cur, next)
	if !c.batch || c.rebuild || c.topic || !c.forwarder() {
		t.Fatalf("changes %+v: want the forwarder to take max_in_flight like a batch setting, with no new uplink", c)
	}
}
