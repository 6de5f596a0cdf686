// Command benchreport reads `go test -bench` output (make bench writes
// bin/bench.txt) and writes bench/results.json: every figure the project
// tracks with its in-run baseline and the ratio, or a null figure and why.
// With -readme it regenerates the performance table between the
// <!-- bench:begin --> and <!-- bench:end --> markers of that file.
//
//	go run ./cmd/benchreport -in bin/bench.txt -out bench/results.json -readme README.md
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cellgate/cellgate/internal/atomicfile"
	"github.com/cellgate/cellgate/internal/benchreport"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "bin/bench.txt", "go test -bench output to read")
	out := fs.String("out", "bench/results.json", "results file to write")
	readme := fs.String("readme", "", "Markdown file whose bench markers get the table (none when empty)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := report(*in, *out, *readme, stdout); err != nil {
		fmt.Fprintln(stderr, "benchreport:", err)
		return 1
	}
	return 0
}

func report(in, out, readme string, stdout io.Writer) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := benchreport.Parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	r := benchreport.Build(m)
	data, err := r.MarshalJSON()
	if err != nil {
		return err
	}
	if err := writeFile(out, data); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n%s", out, r.Table())
	if readme == "" {
		return nil
	}
	text, err := os.ReadFile(readme)
	if err != nil {
		return err
	}
	updated, err := benchreport.UpdateREADME(text, r.Table())
	if err != nil {
		return fmt.Errorf("%s: %w", readme, err)
	}
	return writeFile(readme, updated)
}

// writeFile replaces path whole or not at all, creating its directory.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Dir(path), filepath.Base(path), data, 0o644)
}
