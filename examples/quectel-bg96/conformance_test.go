package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cellgate/cellgate/sdk/plugintest"
)

// TestConformance certifies the plugin the way a third party's plugin is
// certified: it builds the binary and runs sdk/plugintest against it, in
// front of the emulated BG96 (modemsim's bg96 personality on a real pty)
// and real TLS servers on loopback.
func TestConformance(t *testing.T) {
	plugintest.Run(t, plugintest.Config{Binary: buildPlugin(t), Model: "bg96", Env: []string{"GORACE=halt_on_error=1"}})
}

// buildPlugin builds this module's binary into a temporary directory,
// race-instrumented when the test is, so a race in the plugin kills it and
// fails the suite.
func buildPlugin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cellgate-plugin-bg96")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func cgo() string {
	if raceEnabled {
		return "1"
	}
	return "0"
}
