package agent_test

import (
	"encoding/hex"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// buildBG96 builds the out-of-tree Quectel plugin (its own Go module in
// examples/quectel-bg96, which the main module's build does not reach)
// into a fresh plugins directory and returns the directory and the
// binary's SHA-256, as an operator pins it in plugins.sha256.
func buildBG96(t *testing.T) (dir, sum string) {
	t.Helper()
	dir = t.TempDir()
	bin := filepath.Join(dir, "cellgate-plugin-bg96")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join("..", "examples", "quectel-bg96")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the bg96 plugin: %v\n%s", err, out)
	}
	h, err := sdk.FileSHA256(bin)
	if err != nil {
		t.Fatal(err)
	}
	return dir, hex.EncodeToString(h)
}

// TestReadingsReachMosquittoThroughTheBG96Plugin runs the agent with
// modem.model bg96: the third-party plugin, found in plugins.dir and
// pinned by plugins.sha256, drives the emulated BG96 (modemsim's Quectel
// personality on a real pty), which carries the readings over real TLS to
// a real mosquitto requiring client certificates. Every reading must
// arrive, and the emulator's command counts must show that Quectel's
// socket commands carried them: AT+QSSLSEND when the modem runs TLS,
// AT+QISEND on a plain socket when the agent does.
func TestReadingsReachMosquittoThroughTheBG96Plugin(t *testing.T) {
	dir, sum := buildBG96(t)
	for _, c := range []struct{ mode, sendCmd string }{
		{"modem", "AT+QSSLSEND"},
		{"host", "AT+QISEND"},
	} {
		t.Run(c.mode+" TLS", func(t *testing.T) {
			w := newWorldWith(t, c.mode, worldOptions{model: "bg96", pluginDir: dir, pluginSHA256: sum})
			ids := w.post(200, "bg96")
			w.expectDelivered(ids, 60*time.Second)
			cnt := w.modem.Counters()
			if cnt.Commands[c.sendCmd] == 0 || cnt.NetTxBytes == 0 {
				t.Fatalf("%s sent %d times, %d bytes on the modem's sockets: the readings did not go through the BG96 plugin", c.sendCmd, cnt.Commands[c.sendCmd], cnt.NetTxBytes)
			}
			if c.mode == "modem" && cnt.CertUploads != 3 {
				t.Fatalf("%d files uploaded with AT+QFUPL, want the CA, the client certificate and its key", cnt.CertUploads)
			}
		})
	}
}
