package input

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/internal/testutil"
)

// ingestd is the HTTP input over a real spool in a child process
// (testdata/ingestd), built without the race detector so that its memory
// is the input's own.
type ingestd struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	url   string
}

func startIngestd(t *testing.T, maxBody int64) *ingestd {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ingestd")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/ingestd").CombinedOutput(); err != nil {
		t.Fatalf("build ingestd: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-spool", t.TempDir(), "-max-body", strconv.FormatInt(maxBody, 10))
	stderr := &testutil.SyncBuffer{}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &ingestd{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		stdin.Close()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("ingestd: %v\n%s", err, stderr.String())
			}
		case <-time.After(waitLimit):
			cmd.Process.Kill()
			<-exited
			t.Errorf("ingestd did not stop within %v", waitLimit)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		t.Fatalf("ingestd said %q (%v)\n%s", line, err, stderr.String())
	}
	d.url = "http://" + addr
	return d
}

// memory returns the child's resident set now and its peak so far, from
// /proc/PID/status (VmRSS, VmHWM), in bytes.
func (d *ingestd) memory(t *testing.T) (rss, peak int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	field := func(name string) int64 {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, name+":"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err != nil {
					t.Fatalf("%s in /proc/PID/status: %q", name, l)
				}
				return kb << 10
			}
		}
		t.Fatalf("no %s in /proc/PID/status", name)
		return 0
	}
	return field("VmRSS"), field("VmHWM")
}

// post sends body (its length announced) and returns the status.
func (d *ingestd) post(t *testing.T, client *http.Client, body []byte) int {
	resp, err := client.Post(d.url+"/v1/readings", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Errorf("POST %d bytes: %v", len(body), err)
		return 0
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// largestBody is a body of about n bytes that holds reading.DefaultMaxReadings
// readings without id or ts, so that the input adds both to each.
func largestBody(n int) []byte {
	const readings = 10000
	value := strings.Repeat("x", n/readings-len(`{"sensor":"s","value":""},`))
	var b bytes.Buffer
	b.Grow(n + 2)
	b.WriteByte('[')
	for i := range readings {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sensor":"s","value":"%s"}`, value)
	}
	b.WriteByte(']')
	return b.Bytes()
}

const mib = float64(1 << 20)

// The HTTP input's resident memory under the largest bodies stays within
// the formula README.md states, and falls back once it is idle. The input
// runs alone in a child process over a real spool; 16 clients post 60 MiB
// bodies (max_body 64 MiB, the largest allowed) at once, two rounds in a
// row, and the child's peak RSS (VmHWM) is checked against the formula.
func TestHTTPResidentMemoryIsBoundedByTheFormula(t *testing.T) {
	if testing.Short() {
		t.Skip("posts 2 GB through a child process")
	}
	const maxBody = 64 << 20
	d := startIngestd(t, maxBody)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: maxConcurrentIngest}, Timeout: 5 * time.Minute}
	defer client.CloseIdleConnections()
	if s := d.post(t, client, []byte(`{"sensor":"t1","value":1}`)); s != http.StatusAccepted {
		t.Fatalf("warm-up POST → %d", s)
	}
	idle, _ := d.memory(t)

	body := largestBody(60 << 20)
	const rounds = 2
	start := time.Now()
	for round := range rounds {
		var wg sync.WaitGroup
		for range maxConcurrentIngest {
			wg.Go(func() {
				if s := d.post(t, client, body); s != http.StatusAccepted {
					t.Errorf("round %d: a %d-byte POST → %d, want 202", round, len(body), s)
				}
			})
		}
		wg.Wait()
	}
	took := time.Since(start)
	_, peak := d.memory(t)
	limit := idle + ResidentBound(maxBody)
	t.Logf("%d rounds of %d concurrent %.0f MiB bodies in %v: idle RSS %.1f MiB, peak %.1f MiB, formula allows %.1f MiB (idle + %.1f MiB)",
		rounds, maxConcurrentIngest, float64(len(body))/mib, took.Round(time.Millisecond), float64(idle)/mib, float64(peak)/mib, float64(limit)/mib, float64(ResidentBound(maxBody))/mib)
	if peak > limit {
		t.Errorf("peak RSS %.1f MiB is over the formula's %.1f MiB", float64(peak)/mib, float64(limit)/mib)
	}

	// Once the last large request has ended, the input returns the memory
	// to the system at once (debug.FreeOSMemory). What stays is the
	// runtime's bookkeeping for the heap it had (about 1% of the peak) and
	// the spool's index of the readings now pending.
	settled := idle + 32<<20
	fell := time.Now()
	testutil.Eventually(t, 10*time.Second, "RSS back near idle", func() bool {
		rss, _ := d.memory(t)
		return rss <= settled
	})
	rss, _ := d.memory(t)
	t.Logf("idle again: RSS %.1f MiB after %v", float64(rss)/mib, time.Since(fell).Round(time.Millisecond))

}

// The reservation a request takes covers what it can hold, for the bodies
// that make it hold the most: the most readings a body may have, none
// with an id or ts (the input adds both), and readings just too large for
// what is left of a chunk.
func TestReservationCoversTheWorstBodies(t *testing.T) {
	tiny := `{"sensor":"a","value":0}`
	near := func(size int) string {
		return `{"sensor":"a","value":"` + strings.Repeat("x", size-len(`{"sensor":"a","value":""}`)) + `"}`
	}
	for name, body := range map[string]string{
		"one reading of the size limit": near(8 << 10),
		"100 tiny readings":             tiny,
		"10,000 tiny readings":          tiny,
		"readings wasting chunks":       near(8200 - readingGrowth),
		"readings of the size limit":    near(8 << 10),
	} {
		t.Run(name, func(t *testing.T) {
			count := min(10000, (8<<20)/len(body))
			switch {
			case strings.HasPrefix(name, "one "):
				count = 1
			case strings.HasPrefix(name, "100 "):
				count = 100
			}
			one := body
			body = "[" + strings.TrimSuffix(strings.Repeat(one+",", count), ",") + "]"
			n := int64(len(body))
			h := NewHTTP(config.HTTPInput{MaxBody: config.ByteSize(n)}, failingSink{}, quiet, nil)
			b := &batch{h: h, announced: n}
			defer b.release()
			dec := reading.NewDecoder(strings.NewReader(body), time.Now(), reading.Limits{})
			for {
				rd, err := dec.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if _, err := b.add(context.Background(), rd); err != nil {
					t.Fatalf("reading %d: %v", len(b.ids), err)
				}
			}
			if b.held > reservation(n) || (b.reserved != 0 && b.reserved != reservation(n)) {
				t.Errorf("a %d-byte body of %d readings held %d bytes (reserved %d), more than its reservation of %d", n, count, b.held, b.reserved, reservation(n))
			}
			t.Logf("%d bytes, %d readings: held %d bytes of a %d-byte reservation (%.0f%%)", n, count, b.held, reservation(n), 100*float64(b.held)/float64(reservation(n)))
		})
	}
}
