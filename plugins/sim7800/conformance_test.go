package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cellgate/cellgate/sdk/plugintest"
)

// TestConformance builds this plugin and runs the plugin conformance kit
// against it, exactly as a third-party plugin would be certified.
func TestConformance(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "cellgate-plugin-sim7800")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build plugin: %v", err)
	}
	plugintest.Run(t, plugintest.Config{Binary: bin, Model: "sim7800"})
}
