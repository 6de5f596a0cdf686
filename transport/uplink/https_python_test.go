package uplink

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// pythonRecord is one request as testdata/pipeline_server.py saw it.
type pythonRecord struct {
	Conn      int    `json:"conn"`
	K         int    `json:"k"`
	Body      string `json:"body"`
	Pipelined bool   `json:"pipelined"`
}

// pythonServer is testdata/pipeline_server.py running, and what it
// recorded.
type pythonServer struct {
	addr string

	mu      sync.Mutex
	records []pythonRecord
	bad     []string // lines that were not records
}

// startPythonServer runs testdata/pipeline_server.py with requests 2..hold
// of a connection held until the next arrives.
func startPythonServer(t *testing.T, pki *testPKI, hold int) *pythonServer {
	t.Helper()
	port := testutil.FreePort(t)
	s := &pythonServer{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	cmd := exec.Command(testutil.Python, "testdata/pipeline_server.py", strconv.Itoa(port),
		pki.serverCertFile, pki.serverKeyFile, pki.caFile, strconv.Itoa(hold))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &testutil.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s (make deps installs it): %v", testutil.Python, err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r pythonRecord
			s.mu.Lock()
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				s.bad = append(s.bad, sc.Text())
			} else {
				s.records = append(s.records, r)
			}
			s.mu.Unlock()
		}
	}()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		<-read
		if t.Failed() {
			t.Logf("python server stderr:\n%s", stderr.String())
		}
	})
	if err := testutil.WaitListening(s.addr, 30*time.Second, exited); err != nil {
		t.Fatalf("python server: %v\n%s", err, stderr.String())
	}
	return s
}

// Pipelining against another implementation: Python's http.server
// (HTTP/1.1, ssl with client certificates required) answers requests 2..8
// of a connection only once the next request has begun to arrive, which a
// client that waits for each answer never makes happen.
func TestHTTPSPipelinesToPythonHTTPServer(t *testing.T) {
	pki := newTestPKI(t)
	s := startPythonServer(t, pki, 8)
	h := newPipeHTTPS(t, pki, "https://"+s.addr+"/v1/ingest", HTTPSConfig{}, nil)
	for b, err := range primeAndPipeline(t, h) {
		if err != nil {
			t.Errorf("Send of %s: %v", b, err)
		}
	}
	testutil.Eventually(t, 30*time.Second, "the python server's records of 9 requests", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.records) >= 9
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]int{}
	for _, r := range s.records {
		seen[r.Body]++
		if !r.Pipelined {
			t.Errorf("request %d (%s) on connection %d: the next request never came while the server held its answer", r.K, r.Body, r.Conn)
		}
		if r.Conn != 1 {
			t.Errorf("request %s came on connection %d, want all on 1", r.Body, r.Conn)
		}
	}
	for i := range 9 {
		if seen[body(i)] != 1 {
			t.Errorf("the server saw %s %d times, want once", body(i), seen[body(i)])
		}
	}
	if len(s.records) != 9 || len(s.bad) > 0 {
		t.Errorf("the server recorded %d requests (want 9), unreadable lines %q", len(s.records), s.bad)
	}
}
