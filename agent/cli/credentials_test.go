package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// TestStatusTokenAsCredential: under the packaged unit the dynamic user
// cannot read /etc/cellgate/status.token; systemd hands it over as the
// credential status.token_file (LoadCredential=), and `cellgate run` uses
// it in place of the configured path. The configuration here names a file
// that does not exist: the status listener comes up, token-guarded, only
// by using the credential. An empty credential (the unit's SetCredential=
// placeholder) is skipped, as for tls.*.
func TestStatusTokenAsCredential(t *testing.T) {
	const token = "tok-credential-7f3a"
	bin := binDir(t)
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials")
	if err := os.MkdirAll(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, "status.token_file"), []byte(token+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, "tls.key_password_file"), nil, 0o400); err != nil {
		t.Fatal(err)
	}
	statusAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfgPath := filepath.Join(dir, "cellgate.yaml")
	cfg := fmt.Sprintf(`device_id: gw-cred
modem: {model: sim7600, port: %q}
plugins: {dir: %q}
tls: {mode: host}
inputs: {http: {listen: "127.0.0.1:0"}}
status: {listen: %q, token_file: /nonexistent/status.token}
spool: {dir: %q}
uplink:
  mqtt: {broker: "mqtts://127.0.0.1:1"}
`, filepath.Join(dir, "no-modem-here"), bin, statusAddr, filepath.Join(dir, "spool"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr := startRun(t, bin, cfgPath, "CREDENTIALS_DIRECTORY="+creds)
	withToken := []string{"status", "--addr", statusAddr, "--token-file", filepath.Join(creds, "status.token_file"), "--json"}
	testutil.Eventually(t, time.Minute, "status answers with the credential's token", func() bool {
		out, _, code := cellgate(t, "", withToken...)
		return code == 0 && strings.Contains(out, `"device_id":"gw-cred"`)
	})
	_, errOut, code := cellgate(t, "", "status", "--addr", statusAddr)
	if code == 0 || !strings.Contains(errOut, "wants a bearer token") {
		t.Errorf("status without a token: exit %d, %q; want the listener to ask for one", code, errOut)
	}
	log := stderr.String()
	if !strings.Contains(log, "status.token_file: using the systemd credential") {
		t.Errorf("the agent's log does not note the credential:\n%s", log)
	}
	if strings.Contains(log, "tls.key_password_file: using") {
		t.Errorf("an empty credential was used:\n%s", log)
	}
	if strings.Contains(log, token) {
		t.Errorf("the token is in the agent's log")
	}
}
