package remote

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/agent/config"
)

// LoadConfig puts the committed overlay between the file and the
// environment when remote configuration is on, and only then; an overlay
// that no longer fits the file is left out with a warning.
func TestLoadConfigLayersTheCommittedOverlay(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "cellgate.yaml")
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	local := baseYAML + "remote_config:\n  enabled: true\n  trusted_keys: {ops: \"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"}\n  dir: state\n"
	write(file, local)
	opts := config.LoadOptions{File: file, FileExplicit: true, Env: []string{"CELLGATE_LOG__LEVEL=warn"}}

	cfg, _, err := LoadConfig(opts)
	if err != nil || cfg.Uplink.Batch.MaxReadings != 100 {
		t.Fatalf("no overlay yet: %v, %+v", err, cfg)
	}
	store, err := OpenStore(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	o := []byte("uplink: {batch: {max_readings: 7}}\nlog: {level: debug}\n")
	if err := store.Begin(Record{Version: 1, SHA256: sha256Hex(o)}, o, Status{}); err != nil {
		t.Fatal(err)
	}
	if cfg, _, _ := LoadConfig(opts); cfg.Uplink.Batch.MaxReadings != 100 {
		t.Fatal("a pending overlay was loaded")
	}
	if err := store.Commit(testNow, Status{}); err != nil {
		t.Fatal(err)
	}
	cfg, _, err = LoadConfig(opts)
	if err != nil || cfg.Uplink.Batch.MaxReadings != 7 || cfg.Log.Level != "warn" || !cfg.Source().Overlay {
		t.Fatalf("committed overlay (below the environment): %v, batch %+v, log %+v", err, cfg.Uplink.Batch, cfg.Log)
	}

	// Off: the overlay is not read.
	write(file, strings.Replace(local, "enabled: true", "enabled: false", 1))
	if cfg, _, _ := LoadConfig(opts); cfg.Uplink.Batch.MaxReadings != 100 || cfg.Source().Overlay {
		t.Fatal("the overlay was loaded with remote configuration off")
	}

	// The file changed under the overlay: start without it, and say so.
	write(file, strings.Replace(local, "  mqtt: {broker: \"mqtts://broker.example.com:8883\"}\n", "  https: {url: \"https://ingest.example.com/\"}\n", 1))
	write(filepath.Join(dir, "state", OverlayFile), "uplink: {mqtt: {topic: t}}\n")
	cfg, warnings, err := LoadConfig(opts)
	if err != nil || cfg.Uplink.Kind() != config.UplinkHTTPS || cfg.Source().Overlay {
		t.Fatalf("misfit overlay: %v %+v", err, cfg)
	}
	if len(warnings) == 0 || !strings.Contains(warnings[len(warnings)-1].String(), "no longer fits") {
		t.Fatalf("warnings %v", warnings)
	}
}
