package agent_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// BenchmarkForwardingFootprint runs the real agent and plugin binaries
// forwarding 100 readings/s (the demo input) through the emulated modem at
// 115200 baud to an HTTPS server, and reports their resident memory after a
// warm-up. The design targets are 30 MiB for the agent and 20 MiB for the
// plugin; the idle agent (no input) is the in-run baseline.
func BenchmarkForwardingFootprint(b *testing.B) {
	bin, err := binaries()
	if err != nil {
		b.Fatal(err)
	}
	idleAgent, _, _ := footprint(b, bin, 0)
	agentRSS, pluginRSS, delivered := footprint(b, bin, 100)
	b.ReportMetric(agentRSS, "agent-MiB")
	b.ReportMetric(pluginRSS, "plugin-MiB")
	b.ReportMetric(agentRSS/idleAgent, "agent/idle")
	b.ReportMetric(float64(delivered), "readings-delivered")
}

// footprint runs one agent at rate readings/s for a warm-up and returns the
// agent's and the plugin's VmRSS in MiB and the readings delivered.
func footprint(b *testing.B, bin string, rate int) (agent, plugin float64, delivered int64) {
	dir := b.TempDir()
	p := plugintest.NewPKI(b, plugintest.P256)
	p.WriteFiles(b, dir)
	modem, err := modemsim.Start(modemsim.Config{Model: "sim7600", Baud: 115200, Link: filepath.Join(dir, "ttyUSB2")})
	if err != nil {
		b.Fatal(err)
	}
	defer modem.Close()
	var count atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		count.Add(int64(strings.Count(string(body), `"sensor"`)))
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = plugintest.MutualTLS(p, 0)
	srv.StartTLS()
	defer srv.Close()
	cfg := fmt.Sprintf(`device_id: footprint
modem: {model: sim7600, port: %q}
plugins: {dir: %q}
tls: {mode: modem, ca: ca.pem, cert: client.pem, key: client.key}
inputs: {http: {listen: "127.0.0.1:%d"}, demo: {rate: %d}}
status: {listen: ""}
spool: {dir: spool}
uplink:
  https: {url: "%s/ingest"}
  batch: {max_readings: 100, max_delay: 1s, encoding: json}
log: {level: warn}
`, filepath.Join(dir, "ttyUSB2"), bin, testutil.FreePort(b), rate, srv.URL)
	if err := os.WriteFile(filepath.Join(dir, "cellgate.yaml"), []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "cellgate"), "run", "--config", filepath.Join(dir, "cellgate.yaml"))
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	time.Sleep(15 * time.Second) // warm-up at a steady rate: what is measured is the steady state
	a := &agentProc{cmd: cmd, buf: out}
	pluginPID := a.pluginPID(b)
	return rssMiB(b, cmd.Process.Pid), rssMiB(b, pluginPID), count.Load()
}

func rssMiB(b *testing.B, pid int) float64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024
		}
	}
	b.Fatalf("no VmRSS for pid %d", pid)
	return 0
}
