package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReplacesAndLeavesNoTemporary(t *testing.T) {
	dir := t.TempDir()
	for _, content := range []string{"first\n", "second, longer\n"} {
		if err := Write(dir, "state.json", []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "state.json"))
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
	}
	st, err := os.Stat(filepath.Join(dir, "state.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", st.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only state.json", len(entries))
	}
}

func TestWriteNamesTheFileOnFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	err := Write(dir, "state.json", []byte("x"), 0o600)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "state.json")) {
		t.Fatalf("err = %v, want it to name the file", err)
	}
}
