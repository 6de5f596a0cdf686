package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/internal/backoff"
	"github.com/cellgate/cellgate/internal/testutil"
)

// fullDiskAcks is a test double, not a spool: a real spool whose Ack, while
// full is set, fails the way a spool on a full disk answers (ErrWriteFailed
// with ErrNoSpace, applying nothing) instead of acking.
type fullDiskAcks struct {
	*spool.Spool
	full    atomic.Bool
	refused atomic.Int64
}

func (s *fullDiskAcks) Ack(seqs ...uint64) error {
	if s.full.Load() {
		s.refused.Add(1)
		return fmt.Errorf("spool: the file system is full; refusing writes until space comes back: %w",
			errors.Join(spool.ErrWriteFailed, spool.ErrNoSpace, spool.ErrFull, syscall.ENOSPC))
	}
	return s.Spool.Ack(seqs...)
}

// TestForwarderRidesOutRefusedAcks: when the spool refuses the ack of a
// batch the upstream acknowledged (a full disk), the forwarder does not
// stop and does not send the batch again: it retries the ack, holds when
// asked meanwhile, and goes on once the spool takes acks again. Every
// reading goes upstream exactly once, in order; the outage is logged once
// at WARN and its end once at INFO.
func TestForwarderRidesOutRefusedAcks(t *testing.T) {
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(t.TempDir(), "spool"), NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var want []string
	for i := range 30 {
		id := fmt.Sprintf("r-%03d", i)
		want = append(want, id)
		if _, err := sp.Append(context.Background(), fmt.Appendf(nil, `{"id":%q,"sensor":"t1","ts":"2026-11-27T10:00:00Z","value":%d}`, id, i)); err != nil {
			t.Fatal(err)
		}
	}
	queue := &fullDiskAcks{Spool: sp}
	queue.full.Store(true)
	enc, err := reading.NewEncoder("json")
	if err != nil {
		t.Fatal(err)
	}
	log, logs := testutil.Logger(t)
	up := &recordingUplink{}
	f := &forwarder{spool: queue, uplink: up, enc: enc, deviceID: "gw", batch: config.Batch{MaxReadings: 10},
		holds: make(chan holdRequest), acked: &notifier{}, log: log,
		ackRetry: backoff.Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 2}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.run(ctx) }()

	testutil.Eventually(t, 10*time.Second, "the forwarder to retry the refused ack", func() bool { return queue.refused.Load() >= 5 })
	hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
	release, err := f.hold(hctx)
	hcancel()
	if err != nil {
		t.Fatalf("hold while the spool refuses acks: %v", err)
	}
	refusedBefore := queue.refused.Load()
	release()
	testutil.Eventually(t, 10*time.Second, "the ack to be retried after the hold", func() bool { return queue.refused.Load() > refusedBefore })
	select {
	case err := <-done:
		t.Fatalf("the forwarder stopped on a refused ack: %v", err)
	default:
	}
	if got := up.ids(); !slices.Equal(got, want[:10]) {
		t.Fatalf("while the ack was refused the upstream got %v, want the first batch once", got)
	}
	if st := sp.Stats(); st.Acked != 0 || st.Pending != 30 {
		t.Fatalf("spool while acks are refused: %+v", st)
	}

	queue.full.Store(false) // space returns
	testutil.Eventually(t, 10*time.Second, "the forwarder to drain the spool", func() bool { return sp.Stats().Pending == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("forwarder: %v", err)
	}
	if got := up.ids(); !slices.Equal(got, want) {
		t.Fatalf("the upstream got %v, want each reading once, in order", got)
	}
	if n := f.sentReadings.Load(); n != 30 {
		t.Fatalf("sent readings counted %d, want 30", n)
	}
	out := logs.String()
	if n := strings.Count(out, `level=WARN msg="the spool refused an ack`); n != 1 {
		t.Fatalf("%d WARN lines for the refused acks, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, `level=INFO msg="the spool takes acks again"`); n != 1 {
		t.Fatalf("%d INFO lines for the end of the outage, want 1:\n%s", n, out)
	}
}

// TestForwarderStopsOnAnAckTheSpoolCannotRetry: an ack error other than
// ErrWriteFailed (a spool that stopped for good and must be reopened) ends
// the forwarder with the error, as before: the service manager restarts
// the agent, whose Open recovers the spool.
func TestForwarderStopsOnAnAckTheSpoolCannotRetry(t *testing.T) {
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(t.TempDir(), "spool"), NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Append(context.Background(), []byte(`{"id":"a","sensor":"t1","ts":"2026-11-27T10:00:00Z","value":1}`)); err != nil {
		t.Fatal(err)
	}
	queue := &brokenAcks{Spool: sp}
	defer sp.Close()
	f := newTestForwarder(t, sp, &recordingUplink{}, filepath.Join(t.TempDir(), "refused"), &syncBuffer{})
	f.spool = queue
	err = f.run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "reopen it to recover") || errors.Is(err, spool.ErrWriteFailed) {
		t.Fatalf("forwarder returned %v, want the spool's error", err)
	}
}

// brokenAcks is a test double, not a spool: a real spool whose Ack fails
// as a spool that must be reopened does.
type brokenAcks struct{ *spool.Spool }

func (brokenAcks) Ack(...uint64) error {
	return errors.New("spool: /x stopped accepting writes after an I/O error (reopen it to recover): input/output error")
}
