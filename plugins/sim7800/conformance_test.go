package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cellgate/cellgate/sdk/plugintest"
)

// TestConformance builds this plugin and runs the plugin conformance kit
// against it, exactly as a third-party plugin would be certified. Under
// -race the plugin is built with the race detector too, and a race kills
// it at once, failing the kit.
func TestConformance(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "cellgate-plugin-sim7800")
	args := append([]string{"build"}, raceBuildFlags...)
	build := exec.Command("go", append(args, "-o", bin, ".")...)
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build plugin: %v", err)
	}
	plugintest.Run(t, plugintest.Config{Binary: bin, Model: "sim7800", Env: []string{"GORACE=halt_on_error=1 atexit_sleep_ms=0"}})
}
