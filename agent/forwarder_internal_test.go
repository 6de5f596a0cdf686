package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
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

// recordingUplink is a test double, not an upstream: it acknowledges every
// message at once and keeps it for the test to inspect.
type recordingUplink struct {
	mu   sync.Mutex
	msgs []uplink.Message
}

func (u *recordingUplink) Send(_ context.Context, m uplink.Message) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.msgs = append(u.msgs, m)
	return nil
}

func (u *recordingUplink) Close() error { return nil }

func (u *recordingUplink) ids() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, m := range u.msgs {
		out = append(out, m.IDs...)
	}
	return out
}

// TestForwarderSetsAsideAnUnusableRecord: a damaged record in the spool
// must not stop the readings behind it (on every restart): it goes to the
// refused directory, the others are sent, and the spool empties.
func TestForwarderSetsAsideAnUnusableRecord(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(dir, "spool")})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	good := func(id string) []byte {
		return []byte(`{"id":"` + id + `","sensor":"t1","ts":"2026-11-27T10:00:00Z","value":1}`)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := sp.Append(ctx, good("a"), []byte("this is not a reading"), good("b")); err != nil {
		t.Fatal(err)
	}
	enc, err := reading.NewEncoder("json")
	if err != nil {
		t.Fatal(err)
	}
	up := &recordingUplink{}
	f := &forwarder{spool: sp, uplink: up, enc: enc, deviceID: "gw", batch: config.Batch{MaxReadings: 10},
		deadDir: filepath.Join(dir, "refused"), log: slog.New(slog.DiscardHandler)}
	done := make(chan error, 1)
	go func() { done <- f.run(ctx) }()
	testutil.Eventually(t, 10*time.Second, "the forwarder to drain the spool", func() bool { return sp.Stats().Pending == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("forwarder stopped with %v, want it to go on past the bad record", err)
	}
	if got := strings.Join(up.ids(), ","); got != "a,b" {
		t.Fatalf("sent ids %q, want a,b", got)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "refused", "*.ndjson"))
	if len(files) != 1 {
		t.Fatalf("refused files %v, want one", files)
	}
	kept, _ := os.ReadFile(files[0])
	if strings.TrimSpace(string(kept)) != "this is not a reading" {
		t.Fatalf("refused file holds %q", kept)
	}
	if n := sp.Stats().Pending; n != 0 {
		t.Fatalf("%d records still pending", n)
	}
}
