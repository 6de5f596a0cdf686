package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGendocWritesPagesAndCompletion: one gzipped roff page per command,
// reproducible under SOURCE_DATE_EPOCH, the environment and examples kept
// readable, and the three completion scripts.
func TestGendocWritesPagesAndCompletion(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600") // 2026-01-01
	out := t.TempDir()
	if err := run(out); err != nil {
		t.Fatal(err)
	}
	root := readPage(t, filepath.Join(out, "man", "man1", "cellgate.1.gz"))
	for _, want := range []string{`.TH "CELLGATE" "1" "Jan 2026"`, "CELLGATE_<SECTION>__<KEY>  sets a configuration key, \"__\" between levels", "CREDENTIALS_DIRECTORY      systemd credentials", "cellgate-status(1)", "cellgate run --config /etc/cellgate/cellgate.yaml"} {
		if !strings.Contains(root, want) {
			t.Errorf("cellgate.1 lacks %q:\n%s", want, root)
		}
	}
	for _, page := range []string{"cellgate-modem-info.1.gz", "cellgate-modem-certs-provision.1.gz", "cellgate-config-check.1.gz", "cellgate-status.1.gz", "cellgate-version.1.gz"} {
		if text := readPage(t, filepath.Join(out, "man", "man1", page)); !strings.Contains(text, ".SH EXAMPLE") {
			t.Errorf("%s has no examples:\n%s", page, text)
		}
	}
	first, err := os.ReadFile(filepath.Join(out, "man", "man1", "cellgate-status.1.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if err := run(out); err != nil {
		t.Fatal(err)
	}
	if again, err := os.ReadFile(filepath.Join(out, "man", "man1", "cellgate-status.1.gz")); err != nil || !bytes.Equal(first, again) {
		t.Errorf("a second run wrote different bytes (%v): not reproducible", err)
	}
	for _, name := range []string{"cellgate.bash", "_cellgate", "cellgate.fish"} {
		data, err := os.ReadFile(filepath.Join(out, "completion", name))
		if err != nil || !bytes.Contains(data, []byte("__complete")) {
			t.Errorf("completion %s: %v, %d bytes without a call of cellgate __complete", name, err, len(data))
		}
	}
}

func readPage(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(data)
}
