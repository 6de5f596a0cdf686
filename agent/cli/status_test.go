package cli_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/plugintest"
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
	pki := plugintest.NewPKI(t, plugintest.P256)
	files := pkiFiles(t, pki)
	cfg := fmt.Sprintf(`device_id: gw-status
modem: {model: sim7600, port: %q}
plugins: {dir: %q}
tls: {mode: host, ca: %q, cert: %q, key: %q}
inputs: {http: {listen: "127.0.0.1:0"}}
status: {listen: %q, token_file: %q}
spool: {dir: %q}
uplink:
  mqtt: {broker: "mqtts://127.0.0.1:1"}
`, m.Path(), bin, filepath.Join(files, "ca.pem"), filepath.Join(files, "client.pem"), filepath.Join(files, "client.key"),
		statusAddr, token, filepath.Join(dir, "spool"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startRun(t, bin, cfgPath)

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
	certs, err := sdk.ParseCertificates("client certificate", pki.Client.CertPEM)
	if err != nil || len(certs) == 0 {
		t.Fatalf("client certificate: %v", err)
	}
	serial := fmt.Sprintf("%x", certs[0].SerialNumber)
	for _, want := range []string{"device:   gw-status (up ", "health:   ", "link:     ", "spool:    0 readings pending", "error:    ",
		"cert:     serial " + serial + ", expires "} {
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
	checkStatusEnv(t, statusAddr, token, empty)
}

// checkStatusEnv: `cellgate status` reads CELLGATE_STATUS__LISTEN and
// CELLGATE_STATUS__TOKEN_FILE as the agent's configuration does, above
// the file and below the flags; a status.listen set to "" says where.
func checkStatusEnv(t *testing.T, statusAddr, token, emptyConfig string) {
	t.Helper()
	env := []string{"CELLGATE_STATUS__LISTEN=" + statusAddr, "CELLGATE_STATUS__TOKEN_FILE=" + token}
	out, errOut, code := cellgateEnv(t, env, "", "status", "--config", emptyConfig, "--json")
	if code != 0 || !strings.Contains(out, `"device_id":"gw-status"`) {
		t.Errorf("status from the environment: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	other := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	fileWithOther := filepath.Join(t.TempDir(), "other.yaml")
	if err := os.WriteFile(fileWithOther, []byte(fmt.Sprintf("status: {listen: %q}\n", other)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code = cellgateEnv(t, env, "", "status", "--config", fileWithOther, "--json"); code != 0 {
		t.Errorf("CELLGATE_STATUS__LISTEN over the file's %s: exit %d, stdout %q, stderr %q", other, code, out, errOut)
	}
	_, errOut, code = cellgateEnv(t, env, "", "status", "--config", emptyConfig, "--addr", other)
	if code != 1 || !strings.Contains(errOut, "no agent answers at http://"+other) {
		t.Errorf("--addr over CELLGATE_STATUS__LISTEN: exit %d, stderr %q; want %s asked", code, errOut, other)
	}
	_, errOut, code = cellgateEnv(t, []string{"CELLGATE_STATUS__LISTEN="}, "", "status", "--config", emptyConfig)
	if code != 2 || !strings.Contains(errOut, "status.listen is empty in CELLGATE_STATUS__LISTEN") {
		t.Errorf("CELLGATE_STATUS__LISTEN empty: exit %d, stderr %q; want a usage error naming the variable", code, errOut)
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
