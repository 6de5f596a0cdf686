package cli

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cellgate/cellgate/agent"
	"github.com/cellgate/cellgate/agent/config"
)

func init() {
	extraCommands["run"] = runCmd
}

// runCmd: cellgate run [--config F] [overrides]: the agent, until SIGINT or
// SIGTERM.
func runCmd(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("run", env)
	config.BindFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("run: unexpected argument %q", fs.Arg(0))
	}
	cfg, warnings, err := loadConfig(fs)
	if err != nil {
		fmt.Fprintln(env.Stderr, err)
		return &exitError{code: 1, err: fmt.Errorf("configuration is not valid; nothing started")}
	}
	opts := &slog.HandlerOptions{Level: cfg.Log.SlogLevel()}
	var h slog.Handler = slog.NewTextHandler(env.Stderr, opts)
	if cfg.Log.Format == "json" {
		h = slog.NewJSONHandler(env.Stderr, opts)
	}
	log := slog.New(h).With("device", cfg.DeviceID)
	for _, w := range warnings {
		log.Warn("config: " + w.String())
	}
	return agent.Run(ctx, cfg, agent.Options{Logger: log, Executable: executable(env)})
}
