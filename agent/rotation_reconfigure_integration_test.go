package agent_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// TestReconfigurationDuringRotationTrialFallsBack: a remote configuration
// that rebuilds the uplink (uplink.mqtt.keepalive) lands while a rotation
// tries its new certificate, after the reconnect with the new set and
// before the publish that proves it (the agent's CGTEST_ROTATION_HOLD_TRIAL
// hook holds the trial there until the configuration changes). The broker
// refuses the new certificate (another CA signed it), so an acknowledgement
// can only come from a connection made with the old one: the rotation must
// not take it as proof. It falls back, says why in /v1/status and on the
// cert/status topic, the push commits on the old certificate, the files and
// the modem hold the old set, and every reading is delivered.
func TestReconfigurationDuringRotationTrialFallsBack(t *testing.T) {
	for _, mode := range []string{"modem", "host"} {
		t.Run(mode+" TLS", func(t *testing.T) {
			t.Setenv("CGTEST_ROTATION_HOLD_TRIAL", "1")
			var rogue rotCA
			w := newRotWorldWith(t, mode, newCA(&rogue, "rogue", false), "", trustOpsKey)
			w.pkiServe(rogue)
			watch := newRetainedWatcher(t, w.pki, w.broker.addr, "cellgate/it-gw/cert/status")
			ids := w.post(20, "before")
			w.expectDelivered(ids, 60*time.Second)
			stop := w.feed()

			type result struct {
				out  string
				code int
			}
			renewed := make(chan result, 1)
			go func() {
				out, code := w.renewAsync("3m")
				renewed <- result{out, code}
			}()
			testutil.Eventually(t, 2*time.Minute, "the rotation's trial to be held after the reconnect", func() bool {
				return strings.Contains(w.agent.log(), "certificate rotation trial held")
			})
			overlay := filepath.Join(w.dir, "keepalive.yaml")
			if err := os.WriteFile(overlay, []byte("uplink:\n  mqtt:\n    keepalive: 45s\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			push := filepath.Join(w.dir, "push.json")
			env := w.cellgate("config", "sign", "--key", filepath.Join(w.dir, "ops.key"), "--key-id", "ops", "--version", "1", "--device", "it-gw", overlay)
			if err := os.WriteFile(push, []byte(env), 0o644); err != nil {
				t.Fatal(err)
			}
			applied := w.cellgate("config", "apply", "--addr", w.status, push)
			if !strings.Contains(applied, "committed") {
				t.Fatalf("cellgate config apply did not commit the keepalive push:\n%s", applied)
			}

			var r result
			select {
			case r = <-renewed:
			case <-time.After(4 * time.Minute):
				t.Fatal("cellgate cert renew did not return")
			}
			ids = append(ids, stop()...)
			const why = "a configuration change rebuilt the uplink during the trial"
			if r.code != 1 || !strings.Contains(r.out, "rolled back") || !strings.Contains(r.out, why) {
				t.Fatalf("cellgate cert renew: exit %d, want 1 with %q\n%s\nagent log:\n%s", r.code, why, r.out, w.agent.log())
			}
			w.expectRolledBack(watch, why, ids)
		})
	}
}

// renewAsync is renew without t.Fatal, for a goroutine: `cellgate cert
// renew`'s output and exit code (-1 when it could not run).
func (w *rotWorld) renewAsync(wait string) (string, int) {
	bin, _ := binaries()
	out, err := exec.Command(filepath.Join(bin, "cellgate"), "cert", "renew", "--addr", w.status, "--wait", wait).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		return err.Error(), -1
	}
	return string(out), 0
}
