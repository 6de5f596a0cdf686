package cli_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// TestStatusCommand: `cellgate status` against a running agent with a
// bearer token on its status listener: the address and the token come from
// the configuration file, which may be invalid elsewhere; the summary names
// the modem, signal, link, spool and last error; --json is the agent's
// JSON; without the token it says what is missing.
func TestStatusCommand(t *testing.T) {
	bin := binDir(t)
	m := startModem(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "status.token")
	if err := os.WriteFile(token, []byte("s3cret-status-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	statusAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfgPath := filepath.Join(dir, "cellgate.yaml")
	cfg := fmt.Sprintf(`device_id: gw-status
modem: {model: sim7600, port: %q}
plugins: {dir: %q}
tls: {mode: host}
inputs: {http: {listen: "127.0.0.1:0"}}
status: {listen: %q, token_file: %q}
spool: {dir: %q}
uplink:
  mqtt: {broker: "mqtts://127.0.0.1:1"}
`, m.Path(), bin, statusAddr, token, filepath.Join(dir, "spool"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := exec.Command(filepath.Join(bin, "cellgate"), "run", "--config", cfgPath)
	var stderr testutil.SyncBuffer
	agent.Stderr = &stderr
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Process.Kill()
		agent.Wait()
		if t.Failed() {
			t.Logf("agent stderr:\n%s", stderr.String())
		}
	})

	// The same file with an error elsewhere still names the listener.
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte(cfg+"spool_typo: {max_byte: 1MiB}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := cellgate(t, "", "config", "check", "--config", broken); code == 0 {
		t.Fatalf("config check of %s passed (%q %q): the test needs an invalid file", broken, out, errOut)
	}
	var summary string
	testutil.Eventually(t, time.Minute, "status shows the modem ready with its signal", func() bool {
		out, _, code := cellgate(t, "", "status", "--config", broken)
		summary = out
		return code == 0 && strings.Contains(out, "modem:    ready") && strings.Contains(out, "signal:   -69 dBm (rssi 22)")
	})
	t.Logf("cellgate status:\n%s", summary)
	for _, want := range []string{"device:   gw-status (up ", "health:   ", "link:     ", "spool:    0 readings pending", "error:    "} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	if strings.Contains(summary, "s3cret") {
		t.Errorf("summary shows the token:\n%s", summary)
	}

	out, errOut, code := cellgate(t, "", "status", "--addr", statusAddr, "--token-file", token, "--json")
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st["device_id"] != "gw-status" {
		t.Fatalf("status --json: exit %d, %q (%v), stderr %q", code, out, err, errOut)
	}
	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = cellgate(t, "", "status", "--addr", statusAddr, "--config", empty)
	if code != 1 || !strings.Contains(errOut, "wants a bearer token: pass --token-file or set status.token_file") {
		t.Errorf("status without the token: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = cellgate(t, "", "status", "--addr", statusAddr, "--config", filepath.Join(dir, "none.yaml"))
	if code != 1 || !strings.HasPrefix(errOut, "cellgate: --config: ") {
		t.Errorf("status with a --config that does not exist: exit %d, stderr %q", code, errOut)
	}
}

// TestStatusWithoutAgent: nothing listens at the address; the error says
// where it asked, on one line.
func TestStatusWithoutAgent(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := cellgate(t, "", "status", "--addr", addr, "--config", empty)
	if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "no agent answers at http://"+addr) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}
