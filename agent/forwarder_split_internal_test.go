package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/transport/uplink"
)

// sizeLimitUplink takes messages of at most limit readings, each reading
// at most once on record, and refuses larger ones as an HTTPS server with
// a body limit does (413, for good); a reading with "huge" in its id is
// too large even alone.
type sizeLimitUplink struct {
	limit int
	mu    sync.Mutex
	took  []string
	sends int
}

func (u *sizeLimitUplink) Send(_ context.Context, m uplink.Message) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sends++
	huge := slices.ContainsFunc(m.IDs, func(id string) bool { return strings.Contains(id, "huge") })
	if len(m.IDs) > u.limit || huge {
		return &uplink.PermanentError{Err: &uplink.StatusError{StatusCode: 413, Status: "413 Request Entity Too Large"}}
	}
	u.took = append(u.took, m.IDs...)
	return nil
}

func (u *sizeLimitUplink) Close() error { return nil }

func (u *sizeLimitUplink) delivered() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.took)
}

// TestForwarderSplitsABatchRefusedAsTooLarge: a backlog drained in
// batches larger than the upstream takes is sent again in halves until
// every reading is delivered, exactly once, and only a reading too large
// alone is set aside; one at a time and pipelined alike.
func TestForwarderSplitsABatchRefusedAsTooLarge(t *testing.T) {
	for _, inFlight := range []int{1, 3} {
		t.Run(fmt.Sprintf("in_flight_%d", inFlight), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spool")
			sp, err := spool.Open(spool.Options{Dir: dir, NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			var want []string
			var payloads [][]byte
			for i := range 200 {
				id := fmt.Sprintf("r%03d", i)
				if i == 137 {
					id = "r137-huge"
				}
				want = append(want, id)
				payloads = append(payloads, fmt.Appendf(nil, `{"id":%q,"sensor":"t1","ts":"2026-11-27T10:00:00Z","value":%d}`, id, i))
			}
			if _, err := sp.Append(context.Background(), payloads...); err != nil {
				t.Fatal(err)
			}
			up := &sizeLimitUplink{limit: 7}
			f := newPipeForwarder(t, sp, up)
			f.maxInFlight = inFlight
			f.batch = config.Batch{MaxReadings: 10, BacklogMaxReadings: 100}
			f.deadDir = filepath.Join(t.TempDir(), "refused")
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- f.run(ctx) }()
			testutil.Eventually(t, 30*time.Second, "every reading delivered or set aside", func() bool {
				return f.sentReadings.Load() == 200
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			got := up.delivered()
			slices.Sort(got)
			wantTaken := slices.DeleteFunc(slices.Clone(want), func(id string) bool { return id == "r137-huge" })
			if !slices.Equal(got, wantTaken) {
				t.Fatalf("delivered %d readings (%v…), want the 199 that fit, each once", len(got), got[:min(5, len(got))])
			}
			files, _ := filepath.Glob(filepath.Join(f.deadDir, "*.ndjson"))
			if len(files) != 1 {
				t.Fatalf("set aside in %d files, want the one reading too large alone", len(files))
			}
			body, _ := os.ReadFile(files[0])
			if strings.Count(string(body), "\n") != 1 || !strings.Contains(string(body), "r137-huge") {
				t.Fatalf("set aside %q, want only r137-huge", body)
			}
			nctx, ncancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer ncancel()
			if recs, err := sp.Next(nctx, 0, 10, 1<<20); err == nil {
				t.Fatalf("%d readings still unacknowledged in the spool", len(recs))
			}
		})
	}
}
