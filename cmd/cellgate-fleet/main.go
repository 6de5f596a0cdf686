// Command cellgate-fleet runs a fleet of gateways on one machine (make
// fleet): for each size in -steps, that many agents, each with its own
// emulated modem (bin/modemsim on a pty) and plugin, against one real
// mosquitto requiring client certificates, each at -rate readings/s. It
// measures every process from /proc over -duration and prints per-agent
// CPU% and RSS (agent, plugin and modemsim apart) and the broker's
// messages/s, then the ratio of per-agent cost at the largest size to the
// smallest, and writes it all to -out. Everything listens on 127.0.0.1;
// every process is stopped by its PID and every temporary directory
// removed at the end, Ctrl-C included.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cellgate/cellgate/internal/atomicfile"
	"github.com/cellgate/cellgate/internal/fleet"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cellgate-fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("bin", "bin", "directory holding cellgate, modemsim and cellgate-plugin-sim7600")
	n := fs.Int("n", 10, "fleet size when -steps is empty")
	steps := fs.String("steps", "", "comma-separated fleet sizes to run in turn (e.g. 10,25,50)")
	dur := fs.Duration("duration", 60*time.Second, "how long each size is measured once every agent delivers")
	rate := fs.Float64("rate", 1, "readings/s per agent (the demo input)")
	out := fs.String("out", "bench/fleet.json", "where to write the figures")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	sizes, err := parseSteps(*steps, *n)
	if err != nil {
		fmt.Fprintln(stderr, "cellgate-fleet: -steps:", err)
		return 2
	}
	if *dur <= 0 || *rate <= 0 {
		fmt.Fprintln(stderr, "cellgate-fleet: -duration and -rate must be positive")
		return 2
	}
	abs, err := filepath.Abs(*bin)
	if err != nil {
		fmt.Fprintln(stderr, "cellgate-fleet:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	rep, err := fleet.Run(ctx, fleet.Options{Bin: abs, Steps: sizes, Duration: *dur, Rate: *rate, Log: log})
	rep.Table(stdout)
	if err != nil {
		fmt.Fprintln(stderr, "cellgate-fleet:", err)
		return 1
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(*out), 0o755); err == nil {
			err = atomicfile.Write(filepath.Dir(*out), filepath.Base(*out), append(data, '\n'), 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "cellgate-fleet:", err)
		return 1
	}
	fmt.Fprintln(stdout, "wrote", *out)
	return 0
}

// parseSteps reads "10,25,50"; empty is the one size n.
func parseSteps(s string, n int) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		s = strconv.Itoa(n)
	}
	var out []int
	for i, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("item %d %q: want a positive whole number", i+1, f)
		}
		out = append(out, v)
	}
	return out, nil
}
