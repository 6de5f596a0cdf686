// Command cellgate-demo runs the quickstart (`make demo`): an emulated modem,
// an embedded MQTT broker, the agent and a subscriber; see agent/demo.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/cellgate/cellgate/agent/demo"
)

func main() {
	dir := flag.String("dir", ".demo", "working directory for the demo (removed at the end)")
	bin := flag.String("bin", "bin", "directory holding cellgate-plugin-sim7600")
	rate := flag.Float64("rate", 5, "demo readings per second")
	baud := flag.Int("baud", 115200, "emulated modem line rate")
	verbose := flag.Bool("v", false, "log the components at debug level")
	rotate := flag.Bool("rotate", os.Getenv("DEMO_ROTATE") == "1", "show one certificate rotation by CSR (default from DEMO_ROTATE=1)")
	flag.Parse()

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	pluginDir, err := filepath.Abs(*bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cellgate-demo:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demo.Run(ctx, demo.Options{Dir: *dir, PluginDir: pluginDir, Rate: *rate, Baud: *baud, Out: os.Stdout, Log: log, Rotate: *rotate}); err != nil {
		fmt.Fprintln(os.Stderr, "cellgate-demo:", err)
		os.Exit(1)
	}
}
