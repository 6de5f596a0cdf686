package spool

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cellgate/cellgate/internal/testutil"
)

// heldSync is a fault hook that counts segment writes and holds segment
// syncs while its gate is closed, so a test can queue requests while a
// sync is in progress.
type heldSync struct {
	writes  atomic.Int64
	syncs   atomic.Int64
	entered chan struct{} // one token per sync that reached the hook
	mu      sync.Mutex
	gate    chan struct{} // nil: syncs pass
}

func newHeldSync() *heldSync { return &heldSync{entered: make(chan struct{}, 1000)} }

func (h *heldSync) hook(point string) error {
	switch point {
	case hookSegmentWrite:
		h.writes.Add(1)
	case hookSegmentSync:
		h.syncs.Add(1)
		h.entered <- struct{}{}
		h.mu.Lock()
		gate := h.gate
		h.mu.Unlock()
		if gate != nil {
			<-gate
		}
	}
	return nil
}

// close makes the next syncs wait; open lets them (and the one waiting)
// go. A test that ends with the gate closed (it failed) opens it in its
// cleanup, before the spool's Close, which would wait for the sync.
func (h *heldSync) close(t *testing.T) {
	h.mu.Lock()
	h.gate = make(chan struct{})
	h.mu.Unlock()
	t.Cleanup(h.open)
}

func (h *heldSync) open() {
	h.mu.Lock()
	if h.gate != nil {
		close(h.gate)
		h.gate = nil
	}
	h.mu.Unlock()
}

func (s *Spool) queued() int {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return len(s.queue)
}

// appendAsync appends p in a goroutine and returns where its result comes.
func appendAsync(s *Spool, p []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := s.Append(context.Background(), p)
		done <- err
	}()
	return done
}

// While a sync is in progress, a burst of appends waits for it in the
// queue, then goes out in one write and one fdatasync: it waits for no
// more than the sync that was running when it arrived, and the next one.
func TestBurstDuringSyncIsOneWriteAndOneSync(t *testing.T) {
	h := newHeldSync()
	s := openT(t, Options{Dir: t.TempDir(), hook: h.hook})
	h.close(t)
	first := appendAsync(s, []byte(`{"n":0}`))
	<-h.entered // the first append's sync is in progress, held
	const burst = 50
	var results []<-chan error
	for i := range burst {
		results = append(results, appendAsync(s, fmt.Appendf(nil, `{"n":%d}`, i+1)))
	}
	// Written while the sync is held would be a second write already.
	testutil.Eventually(t, waitLimit, "the burst to be queued", func() bool { return s.queued() == burst || h.writes.Load() > 1 })
	writes, syncs := int64(1), int64(1)
	h.open()
	for i, r := range append([]<-chan error{first}, results...) {
		if err := <-r; err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if w := h.writes.Load() - writes; w != 1 {
		t.Errorf("the burst of %d appends took %d segment writes, want 1", burst, w)
	}
	if n := h.syncs.Load() - syncs; n != 1 {
		t.Errorf("the burst of %d appends took %d segment syncs, want 1", burst, n)
	}
	if st := s.Stats(); st.Appended != burst+1 || st.Commits != 2 {
		t.Errorf("Stats: %d appended in %d commits, want %d in 2", st.Appended, st.Commits, burst+1)
	}
	recs, err := s.Next(context.Background(), 0, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != burst+1 {
		t.Fatalf("read back %d records, want %d", len(recs), burst+1)
	}
}

// With nothing in flight an append is written and synced at once: holding
// applies only while a sync runs.
func TestLoneAppendIsNotHeld(t *testing.T) {
	h := newHeldSync()
	s := openT(t, Options{Dir: t.TempDir(), hook: h.hook})
	for i := range 3 {
		mustAppend(t, s, fmt.Appendf(nil, `{"n":%d}`, i))
		if w, n := h.writes.Load(), h.syncs.Load(); w != int64(i+1) || n != int64(i+1) {
			t.Fatalf("after %d appends one at a time: %d writes and %d syncs", i+1, w, n)
		}
	}
}

// An ack queued while appends are held for a sync is not held with them:
// it completes while the sync is still in progress.
func TestAckIsNotHeldBehindASync(t *testing.T) {
	h := newHeldSync()
	s := openT(t, Options{Dir: t.TempDir(), hook: h.hook})
	seqs := mustAppend(t, s, []byte(`{"n":0}`))
	<-h.entered
	h.close(t)
	first := appendAsync(s, []byte(`{"n":1}`))
	<-h.entered
	held := appendAsync(s, []byte(`{"n":2}`))
	testutil.Eventually(t, waitLimit, "the append to be queued", func() bool { return s.queued() == 1 })
	if err := s.Ack(seqs...); err != nil {
		t.Fatalf("ack while a sync is held: %v", err)
	}
	h.open()
	for _, r := range []<-chan error{first, held} {
		if err := <-r; err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Pending != 2 {
		t.Errorf("pending %d, want 2", st.Pending)
	}
}

// Close does not wait behind held appends: they are written, and synced
// once the sync in progress ends.
func TestCloseWritesHeldAppends(t *testing.T) {
	dir := t.TempDir()
	h := newHeldSync()
	s, err := Open(Options{Dir: dir, Logger: discardLogger(), hook: h.hook})
	if err != nil {
		t.Fatal(err)
	}
	h.close(t)
	first := appendAsync(s, []byte(`{"n":0}`))
	<-h.entered
	held := appendAsync(s, []byte(`{"n":1}`))
	testutil.Eventually(t, waitLimit, "the append to be queued", func() bool { return s.queued() == 1 })
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	testutil.Eventually(t, waitLimit, "the held append to be written", func() bool { return h.writes.Load() == 2 })
	h.open()
	for _, r := range []<-chan error{first, held} {
		if err := <-r; err != nil {
			t.Fatal(err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	re := openT(t, Options{Dir: dir})
	if st := re.Stats(); st.Pending != 2 {
		t.Errorf("reopened: %d pending, want 2", st.Pending)
	}
}
