package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cellgate/cellgate/agent"
	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/internal/buildinfo"
	"github.com/cellgate/cellgate/internal/logging"
	"github.com/cellgate/cellgate/internal/sdnotify"
)

// runCommand is `cellgate run`, the agent itself.
func runCommand(env Env) *cobra.Command {
	return leaf(&cobra.Command{
		Use:   "run",
		Short: "Run the agent until SIGINT or SIGTERM (SIGHUP reloads the configuration)",
		Long: `Run the agent: inputs, spool, uplink and the modem's plugin, until SIGINT or
SIGTERM. SIGHUP (systemctl reload) re-reads and validates the configuration
and rebuilds the agent with it; an invalid one is logged and the running one
kept. Under systemd (Type=notify) it reports READY=1 once it takes readings.

The configuration is the file (--config), then CELLGATE_* environment
variables, then the flags below; an invalid configuration starts nothing
(exit 1, every problem on stderr).`,
		Example: `  cellgate run --config /etc/cellgate/cellgate.yaml
  cellgate run --config ./cellgate.yaml --modem.port /dev/ttyUSB3 --log.level debug
  CELLGATE_MODEM__APN=iot.example cellgate run`,
	}, func(fs *pflag.FlagSet) action { return runCmd(fs, env) })
}

// runCmd: cellgate run [--config F] [overrides]: the agent, until SIGINT or
// SIGTERM.
//
// SIGHUP (systemctl reload) re-reads the configuration: the file, the
// environment and the flags given at start, validated as at start. An
// invalid configuration is logged and the agent keeps running as it was. A
// valid one is applied by rebuilding the agent's parts in this process: the
// inputs stop accepting for the moment of the swap (a sensor retries), the
// spool is closed and reopened with every reading it holds, the plugin is
// stopped and started again (the modem's session is reopened). Should the
// new configuration not come up (a port in use, a plugin that fails its
// checksum), the previous one is started again. Credentials from systemd
// ($CREDENTIALS_DIRECTORY) are fixed for the service's lifetime: rotating a
// key takes a restart.
//
// Under systemd (Type=notify) it sends READY=1 when the agent takes
// readings (see agent.Options.Started), WATCHDOG=1 from the agent's health
// loop when WatchdogSec= is set, RELOADING=1 and READY=1 around a reload,
// and STOPPING=1 on SIGTERM.
func runCmd(fs *pflag.FlagSet, env Env) action {
	config.BindFlags(fs)
	return func(ctx context.Context) error {
		// Caught before the configuration is read: SIGHUP's default action
		// would end the agent.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		if fs.NArg() != 0 {
			return usageError("run: unexpected argument %q", fs.Arg(0))
		}
		first, err := loadRunConfig(fs)
		if err != nil {
			printErr(env.Stderr, err.Error())
			return &exitError{code: 1, err: fmt.Errorf("configuration is not valid; nothing started")}
		}
		notify, watchdog := sdnotify.FromEnv()
		r := &runner{env: env, fs: fs, notify: notify, watchdog: watchdog}
		stopping := context.AfterFunc(ctx, func() { r.send(sdnotify.Stopping) })
		defer stopping()
		return r.loop(ctx, r.start(ctx, first), hup)
	}
}

// loaded is a configuration as `cellgate run` loaded it, with what to log
// about it.
type loaded struct {
	cfg         *config.Config
	warnings    []config.Warning
	credentials []string // which TLS files came from systemd credentials
}

// loadRunConfig loads the configuration as `cellgate run` uses it: the
// layered configuration, then the TLS files systemd handed over as
// credentials in place of the files the configuration names.
func loadRunConfig(fs *pflag.FlagSet) (loaded, error) {
	cfg, warnings, err := loadConfig(fs)
	if err != nil {
		return loaded{}, err
	}
	creds := useCredentials(cfg, os.Getenv("CREDENTIALS_DIRECTORY"))
	return loaded{cfg: cfg, warnings: warnings, credentials: creds}, nil
}

// useCredentials points tls.ca, tls.cert, tls.key, tls.key_password_file and
// status.token_file at the systemd credentials of the same names in dir
// ($CREDENTIALS_DIRECTORY), when there: the unit's
// `LoadCredential=tls.key:/etc/cellgate/client.key` lets the service's
// dynamic user read a key (or the status listener's token) only root may
// read. An empty credential (an empty file loaded, a placeholder) is
// skipped: the configured path stands, and its error, if any, says which
// file is missing. Which credentials the unit passes, and why the optional
// ones go in a drop-in, is in packaging/README.md.
func useCredentials(cfg *config.Config, dir string) []string {
	if dir == "" {
		return nil
	}
	var notes []string
	for _, c := range []struct {
		name string
		path *string
	}{
		{"tls.ca", &cfg.TLS.CA}, {"tls.cert", &cfg.TLS.Cert}, {"tls.key", &cfg.TLS.Key},
		{"tls.key_password_file", &cfg.TLS.KeyPasswordFile}, {"status.token_file", &cfg.Status.TokenFile},
	} {
		cred := filepath.Join(dir, c.name)
		if fi, err := os.Stat(cred); err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			continue
		}
		notes = append(notes, fmt.Sprintf("%s: using the systemd credential %s in place of %q", c.name, cred, *c.path))
		*c.path = cred
	}
	return notes
}

// runner runs the agent generation after generation: one per configuration
// that a start or a reload brought.
type runner struct {
	env      Env
	fs       *pflag.FlagSet // parsed at start; re-read on each reload
	notify   *sdnotify.Notifier
	watchdog time.Duration // WatchdogSec, 0 when the manager wants no pings
}

// generation is one agent run with one configuration.
type generation struct {
	loaded
	log     *slog.Logger
	cancel  context.CancelFunc
	done    chan error    // the run's result, once
	started chan struct{} // closed when the agent reported Started
}

// loop waits for the current generation to end, or for SIGHUP to replace
// it. It returns the run's error when the agent stops for good.
func (r *runner) loop(ctx context.Context, g *generation, hup <-chan os.Signal) error {
	var lastGood *loaded // to go back to while a reloaded one is not up
	for {
		select {
		case err := <-g.done:
			if lastGood == nil || ctx.Err() != nil || isClosed(g.started) {
				return err
			}
			g.log.Error("reload: the new configuration did not come up; starting the previous one again", "error", err)
			r.send(sdnotify.Status("reload failed: " + oneLine(err.Error())))
			g, lastGood = r.start(ctx, *lastGood), nil
		case <-hup:
			next, err := r.reread(g.log)
			if err != nil {
				continue
			}
			if isClosed(g.started) {
				lastGood = &g.loaded
			}
			g.log.Info("reload: configuration valid; rebuilding the agent", "config", configFile(r.fs))
			g.stop()
			g = r.start(ctx, next)
		}
	}
}

// reread loads the configuration again for a reload. An invalid one is
// logged, with every problem, and the running agent stays as it is.
func (r *runner) reread(log *slog.Logger) (loaded, error) {
	r.send(sdnotify.Reloading)
	next, err := loadRunConfig(r.fs)
	if err != nil {
		log.Error("reload: configuration not valid; keeping the running one", "config", configFile(r.fs), "problems", err.Error())
		r.send(sdnotify.Ready, sdnotify.Status("reload refused: configuration not valid (see the log); running the previous one"))
		return loaded{}, err
	}
	return next, nil
}

// start runs the agent with l in a new generation.
func (r *runner) start(ctx context.Context, l loaded) *generation {
	rctx, cancel := context.WithCancel(ctx)
	log, level := r.logger(l.cfg)
	g := &generation{loaded: l, log: log, cancel: cancel, done: make(chan error, 1), started: make(chan struct{})}
	g.log.Info("cellgate starting", "version", buildinfo.Get().String())
	for _, w := range l.warnings {
		g.log.Warn("config: " + w.String())
	}
	for _, c := range l.credentials {
		g.log.Info(c)
	}
	opts := agent.Options{Logger: g.log, LogLevel: level, Executable: executable(r.env)}
	var once sync.Once
	opts.Started = func() {
		once.Do(func() { close(g.started) })
		r.send(sdnotify.Ready, sdnotify.Status("taking readings; modem coming up"))
	}
	if r.watchdog > 0 {
		// Three pings per WatchdogSec: one late ping is not a restart.
		opts.Alive, opts.AliveInterval = func() { r.send(sdnotify.Watchdog) }, r.watchdog/3
	}
	go func() { g.done <- agent.Run(rctx, l.cfg, opts) }()
	return g
}

// stop ends the generation and waits until every part is closed, so the
// next one can listen on the same ports and open the same spool.
func (g *generation) stop() {
	g.cancel()
	<-g.done
}

// send notifies the service manager; a failure is logged, not fatal.
func (r *runner) send(assignments ...string) {
	if err := r.notify.Notify(assignments...); err != nil {
		printErr(r.env.Stderr, "cellgate: "+err.Error())
	}
}

// logger builds a generation's logger from its configuration: on stderr,
// with syslog priority prefixes when stderr is the journal. The level is a
// LevelVar the agent changes when a remote push sets log.level.
func (r *runner) logger(cfg *config.Config) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.Set(cfg.Log.SlogLevel())
	h := logging.NewHandler(r.env.Stderr, logging.Options{
		JSON:    cfg.Log.Format == "json",
		Level:   level,
		Journal: toJournal(r.env.Stderr),
	})
	return slog.New(h).With("device", cfg.DeviceID), level
}

// toJournal says whether w is the systemd journal's stream.
func toJournal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && logging.ToJournal(f)
}

// configFile is the configuration file the flags name, for log lines.
func configFile(fs *pflag.FlagSet) string {
	if f := fs.Lookup("config"); f != nil {
		return f.Value.String()
	}
	return config.DefaultFile
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
