// Package benchreport turns `go test -bench` output (make bench writes it
// to bin/bench.txt) into bench/results.json: one entry per figure the
// project tracks, each with its in-run baseline and the ratio, or a null
// figure and why. It also renders the README's performance table from
// the same entries.
package benchreport

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Metrics are the figures of one bench run: benchmark name (the -N CPU
// suffix cut off) to unit to value. A name seen twice keeps its last run.
type Metrics map[string]map[string]float64

// Get returns the value of name's unit and whether it was there.
func (m Metrics) Get(name, unit string) (float64, bool) {
	v, ok := m[name][unit]
	return v, ok
}

var cpuSuffix = regexp.MustCompile(`-[0-9]+$`)

// Parse reads go test -bench output. Lines that are not benchmark
// results (package headers, logs, PASS) are skipped; a result line whose
// figures do not come in value-unit pairs is an error naming its line.
func Parse(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue // a log line that happens to start with Benchmark
		}
		if (len(f)-2)%2 != 0 {
			return nil, fmt.Errorf("bench output line %d: %d fields after the iteration count, want value-unit pairs: %q", n, len(f)-2, sc.Text())
		}
		name := cpuSuffix.ReplaceAllString(f[0], "")
		units := m[name]
		if units == nil {
			units = map[string]float64{}
			m[name] = units
		}
		for i := 2; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("bench output line %d: %s %q: not a number", n, f[i+1], f[i])
			}
			units[f[i+1]] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bench output: %w", err)
	}
	return m, nil
}
