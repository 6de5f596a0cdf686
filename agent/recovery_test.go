package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// TestPeerCloseRecovery closes the modem's TCP connection to the broker as
// if the network had (the emulated modem reports +CCH_PEER_CLOSED), then
// measures the time to the next acknowledged delivery. The design target
// is 3 s; the figure is logged, and the test fails only if delivery does
// not resume at all.
func TestPeerCloseRecovery(t *testing.T) {
	w := newWorld(t, "modem")
	ids := w.post(10, "before")
	w.expectDelivered(ids, 60*time.Second)
	opened := w.modem.Counters().SessionsOpened
	if err := w.modem.Fault(modemsim.Fault{Kind: modemsim.FaultPeerClose, Session: 0}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ids = w.post(10, "after")
	w.expectDelivered(ids, 60*time.Second)
	t.Logf("peer close → next acknowledged delivery: %s (target ≤ 3s)", time.Since(start).Round(10*time.Millisecond))
	if w.modem.Counters().SessionsOpened <= opened {
		t.Fatal("delivery resumed without a new modem session: the peer close was not noticed")
	}
}

// TestModemRebootLosesNothing reboots the emulated modem mid-stream: the
// plugin sees the boot URCs, brings the modem up again, re-provisions the
// SSL context, and the uplink reconnects through a new session.
func TestModemRebootLosesNothing(t *testing.T) {
	w := newWorld(t, "modem")
	ids := w.post(50, "before")
	w.expectDelivered(ids[:1], 60*time.Second)
	if err := w.modem.Fault(modemsim.Fault{Kind: modemsim.FaultReboot}); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, w.post(50, "during")...)
	w.expectDelivered(ids, 90*time.Second)
	if n := w.modem.Counters().Reboots; n < 1 {
		t.Fatalf("the modem did not reboot (reboots=%d)", n)
	}
}

// TestAgentExitsWhenThePluginCannotWork: a modem of another model is a
// failure no restart fixes; the agent must exit non-zero saying so (so the
// service manager notices), not run on forwarding nothing.
func TestAgentExitsWhenThePluginCannotWork(t *testing.T) {
	bin, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plugintest.NewPKI(t, plugintest.P256).WriteFiles(t, dir)
	m, err := modemsim.Start(modemsim.Config{Model: "sim7800", Baud: -1, Link: filepath.Join(dir, "ttyUSB2")})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cfg := fmt.Sprintf(`device_id: wrong-modem
modem: {model: sim7600, port: %q}
plugins: {dir: %q}
tls: {mode: modem, ca: ca.pem, cert: client.pem, key: client.key}
inputs: {http: {listen: "127.0.0.1:%d"}}
status: {listen: ""}
spool: {dir: spool}
uplink:
  mqtt: {broker: "mqtts://127.0.0.1:1"}
`, filepath.Join(dir, "ttyUSB2"), bin, testutil.FreePort(t))
	if err := os.WriteFile(filepath.Join(dir, "cellgate.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(bin, "cellgate"), "run", "--config", filepath.Join(dir, "cellgate.yaml")).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("agent against the wrong modem: %v, want exit status 1; output:\n%s", err, out)
	}
	last := strings.TrimSpace(string(out))
	last = last[strings.LastIndex(last, "\n")+1:]
	if !strings.Contains(last, "model mismatch") || !strings.Contains(last, "SIM7800") {
		t.Fatalf("last line %q should name the model mismatch", last)
	}
}
