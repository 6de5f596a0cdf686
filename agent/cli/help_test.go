package cli

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/cellgate/cellgate/internal/buildinfo"
)

var update = flag.Bool("update", false, "rewrite testdata/help/*.golden from the current output")

// helpPaths are the command paths whose help is pinned: every command of
// the tree but those registered the legacy way (their files own their
// help text).
func helpPaths(t *testing.T) [][]string {
	t.Helper()
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.DisableFlagParsing || c.Hidden {
			return
		}
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(Command(Env{}), nil)
	return paths
}

// TestHelpGolden: --help at every level exits 0 with its description,
// examples and flags, as testdata/help/<path>.golden pins them (go test
// -run TestHelpGolden -update rewrites them).
func TestHelpGolden(t *testing.T) {
	// Commands registered the legacy way come and go with their files;
	// the golden files pin the tree without them.
	saved := extraCommands
	extraCommands = map[string]func(context.Context, []string, Env) error{}
	t.Cleanup(func() { extraCommands = saved })
	paths := helpPaths(t)
	if len(paths) < 15 {
		t.Fatalf("only %d commands in the tree: %v", len(paths), paths)
	}
	for _, path := range paths {
		name := strings.Join(append([]string{"cellgate"}, path...), "_")
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := Main(append(append([]string(nil), path...), "--help"), Env{Stdout: &out, Stderr: &errOut}); code != 0 || errOut.Len() != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut.String())
			}
			if !strings.Contains(out.String(), "Usage:") || (len(path) > 0 && path[0] != "help" && path[0] != "completion" && !strings.Contains(out.String(), "Examples:")) {
				t.Errorf("help lacks usage or examples:\n%s", out.String())
			}
			golden(t, filepath.Join("testdata", "help", name+".golden"), out.String())
		})
	}
}

// TestVersionGolden: `cellgate version` and `cellgate --version` print the
// same one line, pinned by testdata/help/version.golden with the Go
// version and platform (and any commit stamp) as placeholders.
func TestVersionGolden(t *testing.T) {
	i := buildinfo.Get()
	for _, args := range [][]string{{"version"}, {"--version"}, {"-v"}} {
		var out, errOut bytes.Buffer
		if code := Main(args, Env{Stdout: &out, Stderr: &errOut}); code != 0 || errOut.Len() != 0 {
			t.Fatalf("cellgate %v: exit %d, stderr %q", args, code, errOut.String())
		}
		got := out.String()
		for old, placeholder := range map[string]string{i.GoVersion: "GOVERSION", i.Platform: "PLATFORM", i.Commit: "COMMIT", i.Date: "DATE"} {
			if old != "" {
				got = strings.ReplaceAll(got, old, placeholder)
			}
		}
		golden(t, filepath.Join("testdata", "help", "version.golden"), got)
	}
}

// golden compares got with the file, or rewrites the file under -update.
func golden(t *testing.T, file, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test ./agent/cli -run 'Golden' -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test ./agent/cli -run Golden -update rewrites it)\n--- got\n%s\n--- want\n%s", file, got, want)
	}
}
