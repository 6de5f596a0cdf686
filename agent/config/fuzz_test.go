package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// FuzzLoad feeds arbitrary bytes as the configuration file. Load must not
// panic, and must return either a Config and no error, or no Config and an
// *Errors whose problems are non-empty and sorted. A Config it accepts must
// render to YAML that loads back to the same Config, so what `cellgate
// config check` prints is what runs.
//
// Seeds: every golden case's file, the shipped example, and YAML corner
// cases. `go test` runs them; `go test -fuzz FuzzLoad` explores further.
func FuzzLoad(f *testing.F) {
	addLoadSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		file := filepath.Join(dir, "cellgate.yaml")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := Load(LoadOptions{File: file, FileExplicit: true})
		if err != nil {
			checkRefusal(t, cfg, err)
			return
		}
		checkRoundTrip(t, dir, cfg)
	})
}

// addLoadSeeds adds FuzzLoad's seeds: every golden case's file, the
// shipped example, and YAML corner cases.
func addLoadSeeds(f *testing.F) {
	f.Helper()
	cases, _ := filepath.Glob(filepath.Join("testdata", "cases", "*", "cellgate.yaml"))
	for _, name := range append(cases, exampleFile) {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatalf("read seed %s: %v", name, err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"",
		"~",
		"[]",
		"device_id: [",
		"\xff\xfe",
		"device_id: gw\n---\nmodem: {}\n",
		"a: &a [*a]\n",
		"x: &x {y: *x}\n",
		"a: &a [1,1,1,1]\nb: &b [*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b]\nd: [*c,*c,*c,*c]\n",
		"<<: {device_id: gw-1}\ntls: {insecure: true}\nuplink: {https: {url: 'https://h'}}\n",
		"? [a, b]\n: c\n",
		"1: x\ntrue: y\n~: z\n",
		"device_id: gw-1\ntls: {ca: \"\\x01\"}\nuplink: {https: {url: 'https://h'}}\n",
		"device_id: gw-1\ninputs: {demo: {rate: .inf}}\n",
		"device_id: gw-1\nspool: {max_bytes: 99999999999999999999}\n",
		"device_id: gw-1\nmodem: {baud: 1e3}\n",
		"device_id: 2001-12-14\n",
		"device_id: !!binary Z3ctMQ==\ntls: {insecure: true}\nuplink: {tls_lines: {addr: 'h:1'}}\n",
		"uplink: {mqtt: {broker: 'mqtts://[::1]', topic: '{device_id}'}}\ndevice_id: a\ntls: {ca: c}\n",
	} {
		f.Add([]byte(s))
	}
}

// checkRefusal checks what Load returned with an error: no Config, and an
// *Errors whose problems are there, each with its text, and sorted.
func checkRefusal(t *testing.T, cfg *Config, err error) {
	t.Helper()
	var es *Errors
	if !errors.As(err, &es) {
		t.Fatalf("Load error is %T, want *Errors: %v", err, err)
	}
	if cfg != nil {
		t.Fatal("Load returned a Config with an error")
	}
	if len(es.Problems) == 0 {
		t.Fatal("*Errors with no problems")
	}
	for _, p := range es.Problems {
		if p.Problem == "" {
			t.Fatalf("a problem without text: %+v", p)
		}
	}
	if !slices.IsSortedFunc(es.Problems, compareProblems) {
		t.Fatalf("problems not sorted:\n%v", es)
	}
}

// checkRoundTrip checks an accepted Config: it has an uplink, and renders
// to YAML (written in dir) that loads back to the same Config.
func checkRoundTrip(t *testing.T, dir string, cfg *Config) {
	t.Helper()
	if cfg.Uplink.Kind() == "" {
		t.Fatal("accepted a Config without an uplink")
	}
	if _, err := cfg.YAML(); err != nil {
		t.Fatalf("YAML: %v", err)
	}
	out, err := marshalYAML(cfg, false)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	again := filepath.Join(dir, "again.yaml")
	if err := os.WriteFile(again, out, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg2, _, err := Load(LoadOptions{File: again, FileExplicit: true})
	if err != nil {
		t.Fatalf("the rendered config does not load:\n%s\n%v", out, err)
	}
	cfg.source, cfg2.source = Source{}, Source{}
	cfg.opts, cfg2.opts = LoadOptions{}, LoadOptions{}
	if !reflect.DeepEqual(cfg, cfg2) {
		t.Fatalf("round trip changed the config:\n%s\nfirst  %+v\nsecond %+v", out, cfg, cfg2)
	}
}
