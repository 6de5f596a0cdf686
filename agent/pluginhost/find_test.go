package pluginhost_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/agent/pluginhost"
)

func TestFind(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	install := func(dir, model string, perm os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, pluginhost.BinaryPrefix+model)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), perm); err != nil {
			t.Fatal(err)
		}
		return p
	}
	inSecond := install(second, "sim7600", 0o755)
	inFirst := install(first, "sim7800", 0o755)
	install(second, "sim7800", 0o755)
	install(first, "bg96", 0o644)
	// A model name that starts with '-' would make the binary's name look
	// like an option; it is refused even when such a file exists.
	install(first, "-sim7600", 0o755)
	dirs := []string{first, second}

	for _, c := range []struct {
		name, model string
		want        string // the path, or what the error must say
		ok          bool
	}{
		{"FoundInALaterDir", "sim7600", inSecond, true},
		{"FirstDirWins", "sim7800", inFirst, true},
		{"NotExecutable", "bg96", "is not executable", false},
		{"MissingListsEveryPlace", "sim7070", `no plugin for modem model "sim7070": looked for ` +
			filepath.Join(first, "cellgate-plugin-sim7070") + ", " + filepath.Join(second, "cellgate-plugin-sim7070"), false},
		{"NotAModelName", "Bad Model", `modem model "Bad Model": want 1 to 64 lower-case letters`, false},
		{"LeadingDash", "-sim7600", `modem model "-sim7600": want`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := pluginhost.Find(c.model, dirs)
			switch {
			case c.ok && (err != nil || got != c.want):
				t.Fatalf("Find(%q) = %q, %v; want %q", c.model, got, err, c.want)
			case !c.ok && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("Find(%q) = %q, %v; want an error saying %q", c.model, got, err, c.want)
			}
		})
	}
}
