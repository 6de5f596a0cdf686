package input

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/internal/testutil"
)

// trickler is a client that sends a POST's headers and then one body byte
// every 2 s, and dials again whenever the server ends its request. framing
// is the header that frames its body: a small or a max_body
// Content-Length, or chunked.
type trickler struct {
	addr    string
	framing string
	cut     *atomic.Int64 // requests the server ended before their body did
}

func (tr *trickler) run(ctx context.Context, connected func()) {
	for first := true; ctx.Err() == nil; first = false {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", tr.addr)
		if err != nil {
			return
		}
		if first {
			connected()
		}
		if tr.trickle(ctx, conn) {
			tr.cut.Add(1)
		}
		conn.Close()
	}
}

// trickle sends the request on conn until ctx ends or the server answers
// or hangs up, and reports whether the server did. Waiting 2 s for the
// server's answer is also the pause between two body bytes.
func (tr *trickler) trickle(ctx context.Context, conn net.Conn) bool {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	byteOf := "["
	if strings.Contains(tr.framing, "chunked") {
		byteOf = "1\r\n[\r\n"
	}
	if _, err := fmt.Fprintf(conn, "POST /v1/readings HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n%s\r\n\r\n%s", tr.framing, byteOf); err != nil {
		return false
	}
	r := bufio.NewReader(conn)
	for ctx.Err() == nil {
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		resp, err := http.ReadResponse(r, nil)
		if err == nil {
			resp.Body.Close()
			return true
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return ctx.Err() == nil // the server hung up
		}
		if _, err := conn.Write([]byte(byteOf)); err != nil {
			return ctx.Err() == nil
		}
	}
	return false
}

// A body that trickles in holds nothing another request needs: with 200
// clients sending one body byte every 2 s (announcing a small body,
// max_body, or chunked, and dialling again as soon as they are cut), a
// sensor's POST still gets its 202 at once. The issue's threshold is "well
// under a second"; the machine is shared, so the test asserts only 5 s and
// logs the figures.
func TestHTTPSlowBodiesDoNotHoldUpOtherRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("200 slow clients for a few seconds")
	}
	const maxBody = 64 << 10
	sp := openSpool(t, spool.Options{})
	h := NewHTTP(config.HTTPInput{MaxBody: maxBody}, sp, quiet, nil)
	srv := startHTTP(t, h)
	addr := strings.TrimPrefix(srv.url, "http://")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var cut atomic.Int64
	const clients = 200
	var up sync.WaitGroup
	up.Add(clients)
	framings := []string{"Content-Length: 100", fmt.Sprintf("Content-Length: %d", maxBody), "Transfer-Encoding: chunked"}
	for i := range clients {
		tr := &trickler{addr: addr, framing: framings[i%len(framings)], cut: &cut}
		wg.Go(func() { tr.run(ctx, up.Done) })
	}
	up.Wait()

	// Sensors post for 3 s while the slow clients come and go.
	var latencies []time.Duration
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		start := time.Now()
		r := srv.post(t, `{"sensor":"t1","value":21.5,"unit":"C"}`)
		took := time.Since(start)
		if r.status != http.StatusAccepted {
			t.Fatalf("a sensor's POST among %d slow clients → %d %s", clients, r.status, r.raw)
		}
		if took > 5*time.Second {
			t.Errorf("a sensor's POST among %d slow clients took %v", clients, took)
		}
		latencies = append(latencies, took)
		time.Sleep(100 * time.Millisecond) // a sensor's pace, not a wait for a condition
	}
	cancel()
	wg.Wait()
	slices.Sort(latencies)
	t.Logf("%d sensor POSTs among %d slow clients: median %v, max %v; %d slow requests cut",
		len(latencies), clients, latencies[len(latencies)/2], latencies[len(latencies)-1], cut.Load())
	if cut.Load() < clients {
		t.Errorf("the server cut %d slow requests; each of the %d slow clients should have been cut at least once", cut.Load(), clients)
	}
	if n := h.Stats().ByReason[ReasonSlowBody]; n < clients {
		t.Errorf("Stats counts %d slow bodies, want at least %d", n, clients)
	}
}

// A body slower than 1 KiB/s after its first second is cut with 408, and
// the readings it had brought are not stored.
func TestHTTPSlowBodyIsCutWith408(t *testing.T) {
	sp := openSpool(t, spool.Options{})
	srv := startHTTP(t, testHTTP(sp))
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `[{"sensor":"t1","value":1},{"sensor":"t2","value":2}`
	start := time.Now()
	fmt.Fprintf(conn, "POST /v1/readings HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n%s", body)
	conn.SetReadDeadline(time.Now().Add(waitLimit))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("stalled body → %d (close %t), want 408 and the connection closed", resp.StatusCode, resp.Close)
	}
	if took < bodyGrace || took > bodyGrace+5*time.Second {
		t.Errorf("stalled body cut after %v, want about %v", took, bodyGrace)
	}
	if n := sp.Stats().Appended; n != 0 {
		t.Errorf("spool holds %d readings of a cut request", n)
	}
	// Both readings it brought, and the one it was in the middle of.
	if st := srv.h.Stats(); st.ByReason[ReasonSlowBody] != 3 {
		t.Errorf("Stats = %+v, want 3 readings rejected as slow_body", st)
	}
}

// A full spool refuses every request; its warnings are rate-limited like
// the datagram input's (10 per 10 s), the next one saying how many were
// suppressed.
func TestHTTPFullSpoolWarningsAreRateLimited(t *testing.T) {
	log, logs := testutil.Logger(t)
	h := NewHTTP(config.HTTPInput{MaxBody: 64 << 10}, failingSink{fmt.Errorf("append: %w", spool.ErrFull)}, log, nil)
	srv := startHTTP(t, h)
	for range 27 {
		if r := srv.post(t, `{"sensor":"t1","value":1}`); r.status != http.StatusInsufficientStorage {
			t.Fatalf("→ %d %s, want 507", r.status, r.raw)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 10 {
		t.Errorf("27 refusals logged %d warnings, want 10:\n%s", n, logs.String())
	}
	if st := h.Stats(); st.ByReason[ReasonSpoolFull] != 27 {
		t.Errorf("Stats = %+v, want 27 readings rejected as spool_full", st)
	}
}
