package config

import (
	"bufio"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/cases")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// A case folder under testdata/cases holds the inputs of one Load:
//
//	cellgate.yaml  the file (absent: the default file is missing)
//	env            KEY=VALUE lines (optional)
//	flags          command-line arguments, one per line (optional)
//	overlay.yaml   the remote overlay, as a map (optional)
//	remote.yaml    the remote overlay, as YAML text with lines (optional)
//
// and its expected outcome: init.err (the exact error text) or
// effective.yaml (the redacted effective configuration), plus warnings
// when Load warns. -update rewrites the outcome files.
func TestGoldenCases(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join("testdata", "cases"))
	if err != nil {
		t.Fatalf("read cases: %v", err)
	}
	if len(entries) < 15 {
		t.Fatalf("found %d golden cases, want at least 15", len(entries))
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		t.Run(e.Name(), func(t *testing.T) {
			runCase(t, filepath.Join("testdata", "cases", e.Name()))
		})
	}
}

func runCase(t *testing.T, dir string) {
	t.Helper()
	opts := caseOptions(t, dir)
	cfg, warnings, err := Load(opts)

	var got, outcome, other string
	if err != nil {
		var es *Errors
		if !errors.As(err, &es) {
			t.Fatalf("Load returned %T (%v), want *Errors", err, err)
		}
		if cfg != nil {
			t.Errorf("Load returned a Config with an error")
		}
		got, outcome, other = err.Error()+"\n", "init.err", "effective.yaml"
	} else {
		b, yerr := cfg.YAML()
		if yerr != nil {
			t.Fatalf("YAML: %v", yerr)
		}
		got, outcome, other = string(b), "effective.yaml", "init.err"
	}
	var warned string
	for _, w := range warnings {
		warned += w.String() + "\n"
	}

	if *update {
		writeGolden(t, filepath.Join(dir, outcome), got)
		_ = os.Remove(filepath.Join(dir, other))
		writeGolden(t, filepath.Join(dir, "warnings"), warned)
		return
	}
	if _, err := os.Stat(filepath.Join(dir, other)); err == nil {
		t.Errorf("Load gave %s but the case expects %s", outcome, other)
	}
	compareGolden(t, filepath.Join(dir, outcome), got)
	compareGolden(t, filepath.Join(dir, "warnings"), warned)
}

func caseOptions(t *testing.T, dir string) LoadOptions {
	t.Helper()
	var opts LoadOptions
	for _, line := range readLines(t, filepath.Join(dir, "env")) {
		if line != "" && !strings.HasPrefix(line, "#") {
			opts.Env = append(opts.Env, line)
		}
	}
	fs := pflag.NewFlagSet("cellgate", pflag.ContinueOnError)
	BindFlags(fs)
	var args []string
	for _, line := range readLines(t, filepath.Join(dir, "flags")) {
		if line != "" {
			args = append(args, line)
		}
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse flags %q: %v", args, err)
	}
	opts.Flags = fs
	if !fs.Changed("config") {
		opts.File = filepath.Join(dir, "cellgate.yaml")
		_, err := os.Stat(opts.File)
		opts.FileExplicit = err == nil
	}
	if b, err := os.ReadFile(filepath.Join(dir, "overlay.yaml")); err == nil {
		if err := yaml.Unmarshal(b, &opts.Overlay); err != nil {
			t.Fatalf("parse overlay: %v", err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "remote.yaml")); err == nil {
		opts.OverlayYAML, opts.OverlayName = b, filepath.Join(dir, "remote.yaml")
	}
	return opts
}

// readLines returns the lines of an optional file; a missing file has none.
func readLines(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return lines
}

func writeGolden(t *testing.T, name, content string) {
	t.Helper()
	if content == "" {
		_ = os.Remove(name)
		return
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
}

// compareGolden compares content with the golden file; an absent file
// stands for empty content.
func compareGolden(t *testing.T, name, content string) {
	t.Helper()
	want, err := os.ReadFile(name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read %s: %v", name, err)
	}
	if string(want) != content {
		t.Errorf("%s differs (run go test -update to accept)\n--- want\n%s--- got\n%s", name, want, content)
	}
}
