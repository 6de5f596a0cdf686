package input

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/agent/spool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openSpool opens a real spool in a fresh directory and closes it at the
// end of the test (a test may close it earlier).
func openSpool(t testing.TB, opts spool.Options) *spool.Spool {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := spool.Open(opts)
	if err != nil {
		t.Fatalf("open spool: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, spool.ErrClosed) {
			t.Errorf("close spool: %v", err)
		}
	})
	return s
}

// storedReadings closes s, reopens its directory as a new process would,
// and returns every unacknowledged reading in order, parsed.
func storedReadings(t *testing.T, s *spool.Spool, dir string) []reading.Reading {
	t.Helper()
	if err := s.Close(); err != nil && !errors.Is(err, spool.ErrClosed) {
		t.Fatalf("close spool: %v", err)
	}
	re := openSpool(t, spool.Options{Dir: dir})
	var out []reading.Reading
	pending := re.Stats().Pending
	var after uint64
	for uint64(len(out)) < pending {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		recs, err := re.Next(ctx, after, 1000, 0)
		cancel()
		if err != nil {
			t.Fatalf("read back the spool: %v", err)
		}
		for _, rec := range recs {
			r, err := reading.Unmarshal(rec.Payload)
			if err != nil {
				t.Fatalf("stored record %d is not a canonical reading: %v\n%s", rec.Seq, err, rec.Payload)
			}
			out = append(out, r)
			after = rec.Seq
		}
	}
	return out
}

// waitLimit bounds every wait for a condition in these tests; the machine
// is shared and slow, so it only bounds a failure.
const waitLimit = 20 * time.Second

// totalRejected adds up the readings st counts as rejected or failed, for
// every reason, checking that the totals and the split by reason agree.
func totalRejected(st Stats) uint64 {
	var n uint64
	for _, v := range st.ByReason {
		n += v
	}
	if n != st.Rejected+st.Failed {
		panic(fmt.Sprintf("Stats %+v: reasons add up to %d", st, n))
	}
	return n
}

// quiet is the logger of tests that do not look at the log.
var quiet = slog.New(slog.DiscardHandler)

// failingSink is a test double that refuses every append with err. It
// stands in for sink failures a real spool cannot be made to produce on
// demand (an I/O error).
type failingSink struct{ err error }

func (f failingSink) Append(context.Context, ...[]byte) ([]uint64, error) { return nil, f.err }

// gatedSink is a test double that holds every append until its gate is
// opened or the append's context ends, then passes it to a real spool.
type gatedSink struct {
	next    Sink
	gate    chan struct{}
	arrived chan struct{}
}

func newGatedSink(next Sink) *gatedSink {
	return &gatedSink{next: next, gate: make(chan struct{}), arrived: make(chan struct{}, 100)}
}

func (g *gatedSink) Append(ctx context.Context, p ...[]byte) ([]uint64, error) {
	g.arrived <- struct{}{}
	select {
	case <-g.gate:
		return g.next.Append(ctx, p...)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
