// Package agent is the cellgate edge agent: it wires the configuration, the
// spool, the inputs, the plugin host and the uplink into `cellgate run`.
//
// Data path: inputs append readings to the spool (an HTTP 202 means the
// reading is on disk); the forwarder takes batches from the spool in order,
// encodes them, sends them through the uplink over a modem session and acks
// them in the spool only when the upstream acknowledged them. A crash at any
// point re-sends what was not acknowledged: delivery is at-least-once.
//
// Lifecycle: newAgent builds every part, in data-path order, each by its
// own small function (build.go); run starts them under one errgroup; stop
// closes them in reverse order under one deadline. A part that fails ends
// the run, and the error says which part.
package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/input"
	"github.com/cellgate/cellgate/agent/pluginhost"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/agent/statuspage"
	"github.com/cellgate/cellgate/transport/uplink"
)

// Options are the parts of a run that are not configuration.
type Options struct {
	Logger *slog.Logger
	// Executable locates plugins next to the cellgate binary when
	// plugins.dir is empty.
	Executable string
	// Ready, when set, is called once the inputs listen, with their
	// addresses (tests bind port 0 and need to know where).
	Ready func(Addrs)
	// Started, when set, is called once per run, from the run's own
	// goroutine, when the agent takes readings: the spool is open, the
	// inputs listen and the plugin process has answered its handshake. It
	// does not wait for the modem to register or the upstream to answer,
	// so a gateway offline at boot still starts (`cellgate run` sends
	// systemd READY=1 here).
	Started func()
	// Alive, when set, is called by the agent's health loop every
	// AliveInterval (and once when the run begins), each time after the
	// loop has read every part's state (the spool's counters under its
	// lock, the plugin host's, the forwarder's). A part that wedges holding
	// its state, or a run that has ended, stops the calls (`cellgate run`
	// sends systemd WATCHDOG=1 here). AliveInterval must then be positive.
	Alive         func()
	AliveInterval time.Duration
	// LogLevel, when set, is the level of Logger's handler: the agent sets
	// it when a remote configuration changes log.level, so the change
	// takes effect at once. Without it log.level applies at the next start.
	LogLevel *slog.LevelVar
	// StatusPageInterval is how often the status page samples the agent
	// for its charts; 0 means statuspage.DefaultInterval (tests use less).
	StatusPageInterval time.Duration
}

// Addrs are where the inputs listen.
type Addrs struct {
	HTTP net.Addr
	UDP  net.Addr
	// Status is where the status listener (status.listen) listens.
	Status net.Addr
}

// stopTimeout bounds the whole shutdown after the parts have returned:
// closing the uplink, stopping the plugin (its Stop RPC closes the modem's
// sessions) and closing the spool.
const stopTimeout = 20 * time.Second

// Agent is one cellgate: every part built, none running until run.
type Agent struct {
	// cfg is the configuration the agent started with. What a remote
	// configuration cannot change (device_id, modem, plugins, tls,
	// remote_config, the uplink's kind) is read from it; current() is the
	// configuration in effect.
	cfg     *config.Config
	log     *slog.Logger
	started time.Time

	spool  *spool.Spool
	inputs []*inputPart // guarded by mu: reconfigure replaces them
	host   *pluginhost.Host
	uplink uplink.Uplink // guarded by mu: reconfigure replaces it
	fw     *forwarder
	// remote is the remote configuration; nil when it is off.
	remote *remoteConfig
	// rotation is the client certificate's rotation (rotation.go); nil
	// without a client certificate or an MQTT uplink.
	rotation *rotation
	// link follows the uplink's sessions and publishes, poller the modem's
	// state; page is the status page, statusSrv the status listener (nil
	// when status.listen is empty).
	link      *linkState
	poller    *modemPoller
	page      *statuspage.Page
	statusSrv *statusServer
	// spoolOpen is true from the spool's opening to its closing; ready
	// once the agent takes readings (GET /readyz).
	spoolOpen, ready atomic.Bool

	// mu guards live, inputs and uplink, which reconfigure (on the remote
	// configuration's goroutine) replaces while the surfaces read them.
	mu   sync.Mutex
	live *config.Config
	// retired is what the inputs reconfigure stopped counted, by name, to
	// carry into the ones that replace them.
	retired map[string]input.Stats
	// logLevel is Options.LogLevel.
	logLevel *slog.LevelVar
	// group and gctx are the run's errgroup and its context, for the parts
	// reconfigure starts (a moved input).
	group *errgroup.Group
	gctx  context.Context

	// onStarted, onAlive and aliveEvery are Options.Started, Alive and
	// AliveInterval, for run.
	onStarted  func()
	onAlive    func()
	aliveEvery time.Duration

	// closers undo what newAgent built, in build order; stop runs them
	// backwards.
	closers []closer
}

// closer releases one part at shutdown.
type closer struct {
	name  string
	close func(ctx context.Context) error
}

// Run runs the agent until ctx ends or a part fails for good, then shuts
// down in reverse order: the inputs stop accepting (readings they answered
// are on disk), the forwarder abandons its in-flight batch (it stays in the
// spool), the uplink and the plugin stop, the spool closes.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	a, err := newAgent(ctx, cfg, opts)
	if err != nil {
		return err
	}
	return a.run(ctx)
}

// newAgent builds the parts in data-path order: spool, inputs (listening,
// so readings are accepted while the modem comes up), the plugin host
// (started: bringing a modem up takes minutes), the uplink over it, and the
// forwarder between spool and uplink. On failure it releases what it built.
func newAgent(ctx context.Context, cfg *config.Config, opts Options) (a *Agent, err error) {
	a = &Agent{cfg: cfg, live: cfg, log: opts.Logger, started: time.Now(), logLevel: opts.LogLevel, link: newLinkState(cfg.DeviceID)}
	if a.log == nil {
		a.log = slog.Default()
	}
	if opts.Alive != nil && opts.AliveInterval <= 0 {
		return nil, fmt.Errorf("agent options: AliveInterval %v with Alive set", opts.AliveInterval)
	}
	a.onStarted, a.onAlive, a.aliveEvery = opts.Started, opts.Alive, opts.AliveInterval
	// `return nil, err` sets a to nil before the deferred stop runs, and the
	// closers registered below read a: stop the agent that was built.
	built := a
	defer func() {
		if err != nil {
			a = built
			a.stop()
			a = nil
		}
	}()
	if a.spool, err = openSpool(cfg.Spool, a.log.With("part", "spool")); err != nil {
		return nil, err
	}
	a.spoolOpen.Store(true)
	a.onStop("spool", func(context.Context) error { a.spoolOpen.Store(false); return a.spool.Close() })
	if a.page, err = newStatusPage(a, opts.StatusPageInterval); err != nil {
		return nil, err
	}

	addrs, err := a.buildInputs()
	if err != nil {
		return nil, err
	}
	if a.statusSrv, err = a.buildStatusListener(cfg.Status); err != nil {
		return nil, err
	}
	if a.statusSrv != nil {
		a.onStop("status listener", a.statusSrv.close)
		addrs.Status = a.statusSrv.ln.Addr()
	}
	if opts.Ready != nil {
		opts.Ready(addrs)
	}

	// Before anything reads the TLS files: a rotation the last run left
	// ends in one consistent set (rotation.go).
	if a.rotation, err = newRotation(a, a.log.With("part", "certificate rotation")); err != nil {
		return nil, err
	}
	if a.host, err = startHost(ctx, cfg, opts.Executable, a.log.With("part", "plugin")); err != nil {
		return nil, err
	}
	a.onStop("plugin host", a.host.Close)
	a.poller = &modemPoller{src: a.host, interval: cmp.Or(cfg.Modem.Poll, defaultModemPoll), log: a.log.With("part", "modem poll")}

	if a.uplink, err = newUplink(ctx, cfg, a.sessionDialer(), a.log.With("part", "uplink")); err != nil {
		return nil, err
	}
	a.onStop("uplink", func(context.Context) error { return a.currentUplink().Close() })

	if a.fw, err = newForwarder(cfg, a.spool, a.uplink, a.log.With("part", "forwarder")); err != nil {
		return nil, err
	}
	a.fw.link = a.link

	if a.remote, err = newRemoteConfig(a, a.log.With("part", "remote config")); err != nil {
		return nil, err
	}
	if a.rotation != nil {
		a.rotation.attach(a.uplink)
	}
	return a, nil
}

// onStop registers how to release a part just built.
func (a *Agent) onStop(name string, close func(ctx context.Context) error) {
	a.closers = append(a.closers, closer{name, close})
}

// run runs the inputs, the plugin host's watch, the forwarder and the
// remote configuration until ctx ends or one of them fails, then stops the
// agent.
func (a *Agent) run(ctx context.Context) error {
	defer a.stop()
	g, gctx := errgroup.WithContext(ctx)
	a.group, a.gctx = g, gctx
	part := a.goPart
	for _, in := range a.inputs {
		a.startInput(in)
	}
	part("plugin host", a.watchHost)
	part("modem poll", a.poller.run)
	part("forwarder", a.fw.run)
	if a.remote != nil {
		part("remote config", a.remote.run)
	}
	if a.rotation != nil {
		part("certificate rotation", a.rotation.run)
	}
	part("readiness", a.reportStarted)
	part("status page", a.page.Run)
	if a.statusSrv != nil {
		part("status listener", a.statusSrv.serve)
	}
	if a.onAlive != nil {
		part("health", a.reportAlive)
	}
	return g.Wait()
}

// goPart runs a part in the run's errgroup; its error ends the run.
func (a *Agent) goPart(name string, run func(ctx context.Context) error) {
	a.group.Go(func() error {
		// An error after the run began to end (a request cut at
		// shutdown) is not why the run ended.
		if err := run(a.gctx); err != nil && a.gctx.Err() == nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// startInput runs an input in the run's errgroup under a context of its
// own, so that reconfigure can stop it alone (stopInput).
func (a *Agent) startInput(in *inputPart) {
	ctx, cancel := context.WithCancel(a.gctx)
	in.cancel, in.done = cancel, make(chan struct{})
	a.group.Go(func() error {
		defer close(in.done)
		err := in.run(ctx)
		switch {
		case err == nil || a.gctx.Err() != nil:
			return nil
		case ctx.Err() != nil:
			// Stopped by reconfigure: requests cut after the grace are
			// worth a line, not the end of the run.
			a.log.Warn(in.name+" input stopped for a reconfiguration", "err", err)
			return nil
		}
		return fmt.Errorf("%s input: %w", in.name, err)
	})
}

// stopInput stops an input startInput runs and waits until it returned:
// its listener is closed and the readings it answered are on disk.
func stopInput(in *inputPart) {
	if in.cancel == nil {
		in.close()
		return
	}
	in.cancel()
	<-in.done
}

// reportStarted calls Options.Started once the plugin process has answered
// go-plugin's handshake; the spool is open and the inputs listen since
// newAgent. A host that stops for good first is watchHost's to report.
func (a *Agent) reportStarted(ctx context.Context) error {
	if a.host.WaitLaunched(ctx) == nil {
		a.ready.Store(true)
		if a.onStarted != nil {
			a.onStarted()
		}
	}
	return nil
}

// reportAlive is the agent's health loop: now and every aliveEvery it reads
// every part's state, as GET /v1/status does, then calls Options.Alive. A
// part stuck holding its state (a spool in a hung fsync) stops the calls,
// and the service manager's watchdog restarts the agent. The network being
// down is not a failure here: readings keep going to the spool.
func (a *Agent) reportAlive(ctx context.Context) error {
	tick := time.NewTicker(a.aliveEvery)
	defer tick.Stop()
	for {
		_ = a.status()
		a.onAlive()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// watchHost ends the run when the plugin host stopped for good (a plugin
// binary that fails its checksum, a modem of another model, a bundle the
// plugin refuses): readings stay in the spool, and the service manager
// sees the failure instead of an agent that silently forwards nothing.
func (a *Agent) watchHost(ctx context.Context) error {
	select {
	case <-a.host.Done():
		return a.host.Ready(ctx)
	case <-ctx.Done():
		return nil
	}
}

// stop releases every part built, last built first, all under one
// deadline. Failures are logged: the run's own error, if any, is the one
// the caller needs.
func (a *Agent) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	for i := len(a.closers) - 1; i >= 0; i-- {
		c := a.closers[i]
		if err := c.close(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
			a.log.Warn("shutdown: "+c.name+" did not close cleanly", "err", err)
		}
	}
	a.closers = nil
}
