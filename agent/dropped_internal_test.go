package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/transport/uplink"
)

// refusingUplink is a test double, not an upstream: it refuses every
// message for good, as an HTTPS upstream answering 422 would.
type refusingUplink struct {
	mu    sync.Mutex
	sends int
}

func (u *refusingUplink) Send(context.Context, uplink.Message) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sends++
	return &uplink.PermanentError{Err: errors.New("422 Unprocessable Entity")}
}

func (u *refusingUplink) Close() error { return nil }

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestRefusedBatchesAreBoundedAndCountedOnce: every batch the upstream
// refuses is set aside in refused/ and its readings counted as dropped
// (refused_upstream) once; past refused_max_bytes the oldest files go, with
// a WARN that says how many readings they held, and the counts do not move.
// A record that is not a reading is set aside and counted as damaged. The
// counts survive a reopen of the spool.
func TestRefusedBatchesAreBoundedAndCountedOnce(t *testing.T) {
	dir := t.TempDir()
	spoolDir := filepath.Join(dir, "spool")
	sp, err := spool.Open(spool.Options{Dir: spoolDir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { sp.Close() }()
	mk := func(i int) []byte {
		return fmt.Appendf(nil, `{"id":"r-%03d","sensor":"t1","ts":"2026-11-27T10:00:00Z","value":%d}`, i, 1000+i)
	}
	const batches, perBatch = 8, 10
	n := 0
	for b := 0; b < batches; b++ {
		var batch [][]byte
		for range perBatch {
			batch = append(batch, mk(n))
			n++
		}
		if b == 3 {
			batch = append(batch, []byte("this is not a reading"))
		}
		if _, err := sp.Append(context.Background(), batch...); err != nil {
			t.Fatal(err)
		}
	}
	var logs syncBuffer
	up := &refusingUplink{}
	f := newTestForwarder(t, sp, up, filepath.Join(spoolDir, "refused"), &logs)
	// Room for about three files of ten readings (68 bytes a line).
	f.refusedMax.Store(3*perBatch*68 + 30)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.run(ctx) }()
	testutil.Eventually(t, 10*time.Second, "the forwarder to set every batch aside", func() bool { return sp.Stats().Pending == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("forwarder stopped with %v", err)
	}

	drops := sp.Stats().Drops
	if drops.RefusedUpstream != batches*perBatch || drops.Damaged != 1 || drops.DropOldest != 0 || drops.Total() != batches*perBatch+1 {
		t.Fatalf("drops %+v, want %d refused upstream and 1 damaged", drops, batches*perBatch)
	}
	files, sizes := refusedFiles(t, filepath.Join(spoolDir, "refused"))
	var total int64
	for _, s := range sizes {
		total += s
	}
	if total > f.refusedMax.Load() || len(files) < 2 {
		t.Fatalf("refused/ holds %d bytes in %v, bound %d", total, files, f.refusedMax.Load())
	}
	// The newest files are the ones kept: the last record's is there, the
	// first batch's is not.
	if !slices.ContainsFunc(files, func(name string) bool { return strings.HasSuffix(name, fmt.Sprintf("-%d.ndjson", batches*perBatch+1)) }) {
		t.Fatalf("refused/ holds %v, not the newest batch", files)
	}
	if slices.Contains(files, "refused-1-10.ndjson") {
		t.Fatalf("refused/ still holds the oldest batch: %v", files)
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN msg=\"refused batches over spool.refused_max_bytes") || !strings.Contains(out, "cause=refused_upstream") {
		t.Fatalf("no WARN about the removed refused files with their readings:\n%s", out)
	}

	// The counts are the spool directory's: a reopen keeps them.
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	sp, err = spool.Open(spool.Options{Dir: spoolDir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if again := sp.Stats().Drops; again != drops {
		t.Fatalf("after a reopen the drops are %+v, were %+v", again, drops)
	}
}

// TestTrimRefusedLeavesOtherFilesAndTheNewest: only the forwarder's own
// files are removed, and never the one just written even when it alone is
// over the bound.
func TestTrimRefusedLeavesOtherFilesAndTheNewest(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int) {
		if err := os.WriteFile(filepath.Join(dir, name), bytes.Repeat([]byte("r\n"), size/2), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	write("notes.txt", 5000)
	write("refused-1-5.ndjson", 1000)
	write("refused-20-30.ndjson", 1000)
	write("refused-7-9.ndjson", 1000)
	write("refused-40-41.ndjson", 3000)
	var logs syncBuffer
	f := &forwarder{deadDir: dir, log: slog.New(slog.NewTextHandler(&logs, nil))}
	f.refusedMax.Store(2000)
	f.trimRefused(filepath.Join(dir, "refused-40-41.ndjson"))
	files, _ := refusedFiles(t, dir)
	if want := []string{"notes.txt", "refused-40-41.ndjson"}; !slices.Equal(files, want) {
		t.Fatalf("left %v, want %v", files, want)
	}
	if !strings.Contains(logs.String(), "readings=1500") {
		t.Fatalf("the WARN does not count the 1500 readings removed:\n%s", logs.String())
	}
	for _, bad := range []string{"refused-.ndjson", "refused-1.ndjson", "refused-a-2.ndjson", "refused-1-2.ndjson.tmp", "x-refused-1-2.ndjson"} {
		if _, ok := parseRefusedName(bad); ok {
			t.Errorf("parseRefusedName(%q) accepted it", bad)
		}
	}
}

func newTestForwarder(t *testing.T, sp *spool.Spool, up uplink.Uplink, deadDir string, logs *syncBuffer) *forwarder {
	t.Helper()
	enc, err := reading.NewEncoder("json")
	if err != nil {
		t.Fatal(err)
	}
	return &forwarder{spool: sp, uplink: up, enc: enc, deviceID: "gw", batch: config.Batch{MaxReadings: 10},
		deadDir: deadDir, log: slog.New(slog.NewTextHandler(logs, nil)), holds: make(chan holdRequest), acked: &notifier{}}
}

// refusedFiles lists dir's files by name, with their sizes.
func refusedFiles(t *testing.T, dir string) ([]string, []int64) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var sizes []int64
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, e.Name())
		sizes = append(sizes, info.Size())
	}
	return names, sizes
}
