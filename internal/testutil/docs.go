package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// DocBlock returns the body of the fenced code block that follows the
// marker comment <!-- name --> in the Markdown file path, so that a test
// checks or runs what the documentation shows, byte for byte. It fails t
// when the file, the marker or the block is missing.
func DocBlock(t testing.TB, path, name string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	marker := "<!-- " + name + " -->"
	i := strings.Index(text, marker)
	if i < 0 {
		t.Fatalf("%s: no %s", path, marker)
	}
	rest := text[i+len(marker):]
	open := strings.Index(rest, "```")
	if open < 0 {
		t.Fatalf("%s: no code block after %s", path, marker)
	}
	rest = rest[open:]
	nl := strings.IndexByte(rest, '\n')
	if nl < 0 {
		t.Fatalf("%s: unterminated code block after %s", path, marker)
	}
	body := rest[nl+1:]
	end := strings.Index(body, "\n```")
	if end < 0 {
		t.Fatalf("%s: unterminated code block after %s", path, marker)
	}
	return body[:end+1]
}

// Python is the interpreter RunPython uses: Debian's, whose packages
// (python3-cryptography) scripts/deps.sh installs.
const Python = "/usr/bin/python3"

// RunPython runs script with Python and args and returns its standard
// output, failing t (with its standard error) when it does not exit 0.
func RunPython(t testing.TB, script string, args ...string) []byte {
	t.Helper()
	file := filepath.Join(t.TempDir(), "script.py")
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Python, append([]string{file}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s(run make deps for python3-cryptography)", Python, strings.Join(args, " "), err, stderr.String())
	}
	return out
}
