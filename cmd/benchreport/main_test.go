package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReportWritesResultsAndTheREADMETable(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "bench.txt")
	os.WriteFile(in, []byte("BenchmarkUploadEfficiency-2 1 5 ns/op 0.97 payload/line\nBenchmarkRawLineBaseline-2 1 5 ns/op 0.94 payload/line\nPASS\n"), 0o644)
	readme := filepath.Join(dir, "README.md")
	os.WriteFile(readme, []byte("# t\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n"), 0o644)
	out := filepath.Join(dir, "bench", "results.json")
	var stdout, stderr strings.Builder
	if code := run([]string{"-in", in, "-out", out, "-readme", readme}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]struct{ Figure, Baseline, Ratio *float64 }
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	if e := res["serial_efficiency"]; e.Figure == nil || *e.Figure != 0.97 || e.Ratio == nil {
		t.Fatalf("serial_efficiency = %+v", e)
	}
	if e := res["month_mb_1per10s"]; e.Figure != nil {
		t.Fatalf("month_mb_1per10s has a figure the run did not measure: %v", *e.Figure)
	}
	text, _ := os.ReadFile(readme)
	if strings.Contains(string(text), "old") || !strings.Contains(string(text), "| `serial_efficiency` | 0.97 payload/line |") {
		t.Fatalf("README:\n%s", text)
	}
	// Bad input names the file and the line, and writes nothing.
	os.WriteFile(in, []byte("BenchmarkX-2 1 5 ns/op 7\n"), 0o644)
	os.Remove(out)
	stderr.Reset()
	if code := run([]string{"-in", in, "-out", out}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), in+": bench output line 1") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("results written from bad input: %v", err)
	}
}
