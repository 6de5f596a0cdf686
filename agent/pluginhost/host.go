package pluginhost

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// Defaults for Config's zero fields.
const (
	DefaultHealthInterval = 10 * time.Second
	DefaultHealthTimeout  = 3 * time.Second
	DefaultHealthFailures = 3
	DefaultStopTimeout    = 10 * time.Second
	DefaultOpenTimeout    = 3 * time.Minute
	DefaultStartTimeout   = 30 * time.Second
)

// killGrace is how long after StopTimeout the host lets go-plugin's Kill run
// before it sends SIGKILL itself. go-plugin waits 2 s for a graceful exit,
// but its graceful shutdown begins with an RPC that has no deadline, which a
// wedged (say, stopped) process never answers: without this, Kill blocks
// forever.
const killGrace = 3 * time.Second

// ErrClosed is returned (wrapped) by Ready and Dial once Close was called.
var ErrClosed = errors.New("plugin host closed")

// errHung marks a plugin that stopped answering health checks.
var errHung = errors.New("plugin hung")

// Config says which plugin the Host runs, what it opens, and how it watches
// and restarts it. Zero durations mean the documented defaults.
type Config struct {
	// Model is the modem model, e.g. "sim7600"; the plugin binary is
	// cellgate-plugin-<Model> (see Find).
	Model string
	// Dirs is the plugin search path, first match wins; empty means
	// DefaultDirs of the running executable.
	Dirs []string
	// SHA256, when set, pins the plugin binary: Start and every restart
	// refuse a binary with another checksum (*sdk.ChecksumError) and the
	// host stops rather than retry.
	SHA256 []byte
	// Modem is what Open receives on every (re)start. Port is required;
	// an empty Model means Config.Model, another model is refused.
	Modem sdk.ModemConfig
	// Bundle, when non-nil, is provisioned after every successful Open
	// (modem-TLS mode). A bundle the plugin refuses (*sdk.BundleError)
	// stops the host: retrying cannot fix it.
	Bundle *sdk.Bundle
	// Env is added to the plugin process's environment.
	Env []string
	// Logger receives the host's records and the plugin's own log lines;
	// nil means slog.Default().
	Logger *slog.Logger
	// HealthInterval is the time between health pings of a ready plugin;
	// 0 means DefaultHealthInterval.
	HealthInterval time.Duration
	// HealthTimeout bounds each ping (go-plugin's own Ping has no bound);
	// 0 means DefaultHealthTimeout.
	HealthTimeout time.Duration
	// HealthFailures is how many pings in a row must fail before the
	// plugin is deemed hung, killed and restarted; 0 means
	// DefaultHealthFailures.
	HealthFailures int
	// OpenTimeout bounds each Open and each Provision call; 0 means
	// DefaultOpenTimeout or a minute more than Modem.RegistrationTimeout,
	// whichever is longer. A plugin that does not answer in time is killed
	// and started afresh.
	OpenTimeout time.Duration
	// StartTimeout bounds launching the process and go-plugin's handshake;
	// 0 means DefaultStartTimeout.
	StartTimeout time.Duration
	// Backoff spaces the attempts after a failed launch, a failed Open or
	// Provision, and a plugin that exited or hung.
	Backoff Backoff
	// StopTimeout bounds the Stop RPC sent before a plugin is killed; 0
	// means DefaultStopTimeout.
	StopTimeout time.Duration
}

// normalise checks c and fills its defaults. Slices, maps and the bundle are
// copied so the caller may reuse its Config.
func (c Config) normalise() (Config, error) {
	if err := sdk.CheckModelName(c.Model); err != nil {
		return c, fmt.Errorf("Model: %w", err)
	}
	switch {
	case c.Modem.Model == "":
		c.Modem.Model = c.Model
	case !strings.EqualFold(c.Modem.Model, c.Model):
		return c, fmt.Errorf("Modem.Model %q differs from Model %q, whose plugin would be started", c.Modem.Model, c.Model)
	}
	if c.Modem.Port == "" {
		return c, errors.New("Modem.Port is empty: name the modem's serial device, e.g. /dev/ttyUSB2")
	}
	if n := len(c.SHA256); n != 0 && n != sha256.Size {
		return c, fmt.Errorf("SHA256 has %d bytes, want %d", n, sha256.Size)
	}
	for name, d := range map[string]time.Duration{
		"HealthInterval": c.HealthInterval, "HealthTimeout": c.HealthTimeout,
		"OpenTimeout": c.OpenTimeout, "StartTimeout": c.StartTimeout, "StopTimeout": c.StopTimeout,
	} {
		if d < 0 {
			return c, fmt.Errorf("%s %s is negative", name, d)
		}
	}
	if c.HealthFailures < 0 {
		return c, fmt.Errorf("HealthFailures %d is negative", c.HealthFailures)
	}
	if c.Modem.RegistrationTimeout > 0 && c.OpenTimeout > 0 && c.OpenTimeout <= c.Modem.RegistrationTimeout {
		return c, fmt.Errorf("OpenTimeout %s does not exceed Modem.RegistrationTimeout %s: Open would be cut off while the modem may still register", c.OpenTimeout, c.Modem.RegistrationTimeout)
	}

	c.HealthInterval = orDefault(c.HealthInterval, DefaultHealthInterval)
	c.HealthTimeout = orDefault(c.HealthTimeout, DefaultHealthTimeout)
	if c.HealthFailures == 0 {
		c.HealthFailures = DefaultHealthFailures
	}
	c.OpenTimeout = orDefault(c.OpenTimeout, max(DefaultOpenTimeout, c.Modem.RegistrationTimeout+time.Minute))
	c.StartTimeout = orDefault(c.StartTimeout, DefaultStartTimeout)
	c.StopTimeout = orDefault(c.StopTimeout, DefaultStopTimeout)
	c.Backoff = c.Backoff.withDefaults()
	if err := c.Backoff.validate(); err != nil {
		return c, err
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if len(c.Dirs) == 0 {
		exe, _ := os.Executable()
		c.Dirs = DefaultDirs(exe)
	}
	c.Dirs = slices.Clone(c.Dirs)
	c.SHA256 = slices.Clone(c.SHA256)
	c.Env = slices.Clone(c.Env)
	c.Modem.Options = maps.Clone(c.Modem.Options)
	if c.Bundle != nil {
		b := *c.Bundle
		c.Bundle = &b
	}
	return c, nil
}

// orDefault returns d, or def when d is zero.
func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Host keeps one plugin process running for one modem. Its owner goroutine
// launches the plugin (sdk.Launch: a fresh go-plugin SecureConfig with the
// pinned SHA-256 for every start), runs Open and, when a bundle is
// configured, Provision; then pings it every HealthInterval, each ping
// bounded by HealthTimeout. When the process exits, or HealthFailures pings
// in a row fail (a hang), the host kills it and starts a new one after a
// capped exponential backoff, replaying Open and Provision. Open and
// Provision failures that are the modem's (not registered yet, SIM busy,
// port gone) are logged with their typed error and retried in the same
// process after the backoff; a plugin that does not answer within
// OpenTimeout, or dies, is replaced.
//
// Five failures stop the host for good, since retrying cannot fix them: a
// binary whose checksum is not the pinned one (*sdk.ChecksumError), a plugin
// of another major contract version (*sdk.ContractError), a modem of another
// model (*sdk.ModelMismatchError), an option the plugin refuses
// (*sdk.OptionError), and a bundle the plugin refuses (*sdk.BundleError).
// Ready and Dial then return that error. The host reads only the contract's
// neutral terms (the error types and sdk.NetKind), never a vendor's codes.
//
// Its methods are safe for concurrent use.
type Host struct {
	cfg  Config // normalised; read-only after Start
	path string // the plugin binary found by Start
	log  *slog.Logger

	// state is stored only by the owner goroutine (run), and by Start
	// before run begins; every other method only loads it.
	state atomic.Pointer[snapshot]

	cancel    context.CancelFunc   // ends run; called by Close
	closeCtx  chan context.Context // Close's ctx, for the final Stop (capacity 1)
	closeOnce sync.Once            // guards closeCtx and cancel
	done      chan struct{}        // closed when run has returned
	closeErr  error                // written by run before done is closed

	// replay, when set by SetBundle, replaces cfg.Bundle as the bundle
	// provisioned after every Open (certs.go).
	replay atomic.Pointer[sdk.Bundle]
}

// snapshot is what the owner goroutine last published. A snapshot is never
// modified: the owner stores a new one and closes the old one's changed
// channel, so readers wait for a change without locks.
type snapshot struct {
	ready    *sdk.Plugin // the plugin serving Dial, nil while (re)starting
	pid      int         // the current process, ready or not; 0 when none
	info     sdk.ModemInfo
	hasInfo  bool
	restarts int
	lastErr  error // the latest failure, quoted while callers wait
	final    error // non-nil once the host stopped for good
	changed  chan struct{}
}

// Start checks cfg, finds the plugin binary and, when cfg.SHA256 is set,
// verifies its checksum; then it starts the supervisor and returns at once,
// without waiting for the plugin: bringing a modem up can take minutes, so
// use Ready or Dial to wait. A bad config, a missing plugin binary and a
// checksum mismatch (*sdk.ChecksumError) are returned here and nothing runs.
// ctx bounds only Start itself; the host runs until Close, which the caller
// must call.
func Start(ctx context.Context, cfg Config) (*Host, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start %s plugin host: %w", cfg.Model, err)
	}
	cfg, err := cfg.normalise()
	if err != nil {
		return nil, fmt.Errorf("plugin host config: %w", err)
	}
	path, err := Find(cfg.Model, cfg.Dirs)
	if err != nil {
		return nil, fmt.Errorf("start %s plugin host: %w", cfg.Model, err)
	}
	if len(cfg.SHA256) > 0 {
		got, err := sdk.FileSHA256(path)
		if err != nil {
			return nil, fmt.Errorf("start %s plugin host: %w", cfg.Model, err)
		}
		if !bytes.Equal(got, cfg.SHA256) {
			return nil, fmt.Errorf("start %s plugin host: %w", cfg.Model, &sdk.ChecksumError{Path: path, Want: cfg.SHA256, Got: got})
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	h := &Host{
		cfg:      cfg,
		path:     path,
		log:      cfg.Logger.With("modem", cfg.Model),
		cancel:   cancel,
		closeCtx: make(chan context.Context, 1),
		done:     make(chan struct{}),
	}
	h.state.Store(&snapshot{changed: make(chan struct{})})
	go h.run(runCtx)
	return h, nil
}

// Ready waits until a plugin is up with the modem open and, when a bundle is
// configured, provisioned. It returns nil at once if that is so now, even
// when ctx is already done, so a done ctx makes it a probe. Otherwise it
// returns ctx's error (wrapped, quoting the latest failure), the error that
// stopped the host for good, or ErrClosed.
func (h *Host) Ready(ctx context.Context) error {
	_, err := h.await(ctx, nil)
	return err
}

// WaitLaunched returns nil once a plugin process has answered go-plugin's
// handshake (the modem may still be coming up), ctx's error if it ends
// first, or the host's final error if it stopped for good before that.
func (h *Host) WaitLaunched(ctx context.Context) error {
	for {
		s := h.state.Load()
		switch {
		case s.pid != 0:
			return nil
		case s.final != nil:
			return s.final
		}
		select {
		case <-s.changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// IsReady says whether a plugin is up with the modem open (and provisioned,
// when a bundle is configured) now, without waiting.
func (h *Host) IsReady() bool {
	s := h.state.Load()
	return s.final == nil && s.ready != nil
}

// Dial waits for readiness as Ready does, then opens a session through the
// current plugin. If that plugin dies before the session is open, Dial waits
// for its replacement and tries again, while ctx allows. The caller owns the
// session and must Close it. A session's Send or Recv failing with
// sdk.ErrPluginExited later is the caller's cue to Dial again: the host is
// restarting the plugin meanwhile.
func (h *Host) Dial(ctx context.Context, req sdk.DialRequest) (sdk.Session, error) {
	var stale *sdk.Plugin
	for {
		p, err := h.await(ctx, stale)
		if err != nil {
			return nil, fmt.Errorf("dial %s:%d: %w", req.Host, req.Port, err)
		}
		s, err := p.Transport().Dial(ctx, req)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, sdk.ErrPluginExited) || ctx.Err() != nil {
			return nil, fmt.Errorf("dial %s:%d through plugin pid %d: %w", req.Host, req.Port, p.PID(), err)
		}
		h.log.Info("plugin exited during dial; waiting for its replacement", "pid", p.PID(), "op", "dial")
		stale = p
	}
}

// await returns the ready plugin, waiting for one other than stale.
func (h *Host) await(ctx context.Context, stale *sdk.Plugin) (*sdk.Plugin, error) {
	for {
		s := h.state.Load()
		switch {
		case s.final != nil:
			return nil, s.final
		case s.ready != nil && s.ready != stale:
			return s.ready, nil
		}
		select {
		case <-s.changed:
		case <-ctx.Done():
			if s.lastErr != nil {
				return nil, fmt.Errorf("%s plugin not ready: %w (last failure: %v)", h.cfg.Model, ctx.Err(), s.lastErr)
			}
			return nil, fmt.Errorf("%s plugin not ready: %w", h.cfg.Model, ctx.Err())
		}
	}
}

// Done is closed when the host has stopped for good: after Close, or after
// a failure that retrying cannot fix (then Ready returns it).
func (h *Host) Done() <-chan struct{} { return h.done }

// Info returns what the most recent successful Open reported, and false
// before any Open succeeded. It says nothing about readiness now; see Ready.
func (h *Host) Info() (sdk.ModemInfo, bool) {
	s := h.state.Load()
	return s.info, s.hasInfo
}

// Restarts returns how many plugin processes the host started after the
// first one.
func (h *Host) Restarts() int { return h.state.Load().restarts }

// PID returns the process id of the current plugin, ready or not, and 0
// while none is running.
func (h *Host) PID() int { return h.state.Load().pid }

// Close stops the host: the plugin gets a Stop RPC, bounded by StopTimeout
// and ctx, so it can close the modem's sessions, and is then killed
// (forcibly if it does not exit). Close returns when the process is gone and
// every goroutine of the host has ended, with the Stop error if the plugin
// failed to stop cleanly, or earlier with ctx's error if ctx ends first (the
// shutdown then completes in the background, bounded by StopTimeout plus a
// few seconds). Calling it again returns the same result.
func (h *Host) Close(ctx context.Context) error {
	h.closeOnce.Do(func() {
		h.closeCtx <- ctx
		h.cancel()
	})
	select {
	case <-h.done:
		return h.closeErr
	case <-ctx.Done():
		return fmt.Errorf("close %s plugin host: %w", h.cfg.Model, ctx.Err())
	}
}

// publish stores a copy of the current snapshot changed by update and wakes
// the waiters. Only the owner goroutine calls it.
func (h *Host) publish(update func(s *snapshot)) {
	old := h.state.Load()
	next := *old
	next.changed = make(chan struct{})
	update(&next)
	h.state.Store(&next)
	close(old.changed)
}

// run is the owner goroutine: it supervises until Close or a terminal
// failure, then stops the current plugin and publishes the end.
func (h *Host) run(ctx context.Context) {
	defer close(h.done)
	var p *sdk.Plugin
	final := h.supervise(ctx, &p)
	closing := errors.Is(final, ErrClosed)
	if closing {
		final = fmt.Errorf("%s plugin host: %w", h.cfg.Model, ErrClosed)
	} else {
		h.log.Error("plugin host stopped: retrying cannot fix this", "error", final, "kind", errorKind(final))
		final = fmt.Errorf("%s plugin host stopped: %w", h.cfg.Model, final)
	}
	h.publish(func(s *snapshot) { s.ready = nil })
	if p != nil {
		var stopCtx context.Context
		select {
		case stopCtx = <-h.closeCtx:
		default:
			stopCtx = context.Background()
		}
		pid := p.PID()
		if err := h.terminate(stopCtx, p, false); err != nil {
			err = fmt.Errorf("stop %s plugin pid %d: %w", h.cfg.Model, pid, err)
			h.log.Warn("plugin did not stop cleanly", "pid", pid, "op", "stop", "error", err)
			if closing {
				h.closeErr = err
			}
		}
		h.log.Info("plugin stopped", "pid", pid)
	}
	h.publish(func(s *snapshot) { s.pid, s.final = 0, final })
}

// supervise keeps a plugin ready until ctx ends, returning ErrClosed, or a
// failure that retrying cannot fix, returning it. *p is the current process,
// which the caller stops.
func (h *Host) supervise(ctx context.Context, p **sdk.Plugin) error {
	sv := &supervision{h: h}
	for {
		if ctx.Err() != nil {
			return ErrClosed
		}
		if *p != nil && (*p).Exited() {
			// It died while the host waited to retry Open.
			h.discard(ctx, *p, false)
			*p = nil
		}
		if *p == nil {
			np, err := h.launch(ctx)
			if err != nil {
				if terminal(err) {
					return err
				}
				if sv.retry(ctx, err) != nil {
					return ErrClosed
				}
				continue
			}
			*p = np
			sv.launches++
			h.publish(func(s *snapshot) { s.pid, s.restarts = np.PID(), sv.launches-1 })
			if ctx.Err() != nil {
				return ErrClosed
			}
		}

		info, err := h.bringUp(ctx, *p)
		if err != nil {
			if ctx.Err() != nil {
				return ErrClosed
			}
			if terminal(err) {
				return err
			}
			if !retryInPlace(err) {
				h.discard(ctx, *p, false)
				*p = nil
			}
			if sv.retry(ctx, err) != nil {
				return ErrClosed
			}
			continue
		}

		why := sv.serve(ctx, *p, info)
		if ctx.Err() != nil {
			return ErrClosed // *p is still the plugin: the caller stops it
		}
		*p = nil
		if sv.retry(ctx, why) != nil {
			return ErrClosed
		}
	}
}

// supervision is supervise's state; only the owner goroutine touches it.
type supervision struct {
	h        *Host
	launches int
	failures int // consecutive failed attempts: the backoff exponent
}

// retry records err as the latest failure and waits out the backoff. It
// returns ErrClosed when Close ended the wait.
func (sv *supervision) retry(ctx context.Context, err error) error {
	h := sv.h
	d := h.cfg.Backoff.next(sv.failures)
	sv.failures++
	h.publish(func(s *snapshot) { s.lastErr = err })
	h.log.Warn("plugin not ready; retrying", "error", err, "kind", errorKind(err), "attempt", sv.failures, "delay", d)
	// Only Close ends the wait early; any other error from an injected
	// Wait just means the wait is over.
	_ = h.cfg.Backoff.Wait(ctx, d)
	if ctx.Err() != nil {
		return ErrClosed
	}
	return nil
}

// serve publishes ready as the plugin serving Dial and watches it until it
// exits or hangs; then it discards it and returns why it was lost. When ctx
// ends first, serve returns at once and leaves the plugin to the caller.
func (sv *supervision) serve(ctx context.Context, ready *sdk.Plugin, info sdk.ModemInfo) error {
	h := sv.h
	readyAt := time.Now()
	h.publish(func(s *snapshot) { s.ready, s.info, s.hasInfo, s.lastErr = ready, info, true, nil })
	h.log.Info("plugin ready", "pid", ready.PID(), "restarts", sv.launches-1,
		"model", info.Model, "revision", info.Revision, "registration", info.Registration, "rssi", info.SignalRSSI)

	hung, why := h.watch(ctx, ready)
	h.publish(func(s *snapshot) { s.ready = nil })
	if ctx.Err() != nil {
		return ErrClosed
	}
	// A plugin that served for a whole backoff period earns a fresh start.
	if time.Since(readyAt) >= h.cfg.Backoff.Max {
		sv.failures = 0
	}
	if hung {
		h.log.Error("plugin hung; killing it", "pid", ready.PID(), "error", why)
	} else {
		h.log.Error("plugin exited; restarting it", "pid", ready.PID(), "error", why)
	}
	h.discard(ctx, ready, hung)
	return why
}

// launch starts a plugin process. The launch is not cut short by Close:
// go-plugin cannot interrupt a start, and finishing it (bounded by
// StartTimeout) lets the host stop the process properly instead of leaving
// it to a background reaper.
func (h *Host) launch(ctx context.Context) (*sdk.Plugin, error) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.StartTimeout)
	defer cancel()
	p, err := sdk.Launch(lctx, sdk.LaunchConfig{
		Path:   h.path,
		SHA256: h.cfg.SHA256,
		// The caller's logger, not h.log: the plugin's own lines come
		// through it with the plugin's attributes, and a SIMCom plugin
		// already says modem=<model>; h.log's "modem" would make it twice.
		Logger:       h.cfg.Logger,
		Env:          h.cfg.Env,
		StartTimeout: h.cfg.StartTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("start %s plugin: %w", h.cfg.Model, err)
	}
	return p, nil
}

// bringUp opens the modem and provisions the bundle, each call bounded by
// OpenTimeout.
func (h *Host) bringUp(ctx context.Context, p *sdk.Plugin) (sdk.ModemInfo, error) {
	octx, cancel := context.WithTimeout(ctx, h.cfg.OpenTimeout)
	defer cancel()
	info, err := p.Transport().Open(octx, h.cfg.Modem)
	if err != nil {
		return sdk.ModemInfo{}, fmt.Errorf("open modem on %s (plugin pid %d): %w", h.cfg.Modem.Port, p.PID(), err)
	}
	bundle := h.bundle()
	if bundle == nil {
		return info, nil
	}
	pctx, cancel := context.WithTimeout(ctx, h.cfg.OpenTimeout)
	defer cancel()
	rep, err := p.Transport().Provision(pctx, *bundle)
	if err != nil {
		return sdk.ModemInfo{}, fmt.Errorf("provision SSL context %d (plugin pid %d): %w", bundle.Profile, p.PID(), err)
	}
	h.log.Info("modem provisioned", "pid", p.PID(), "op", "provision", "profile", rep.Profile,
		"downloaded", len(rep.Downloaded), "deleted", len(rep.Deleted), "kept", len(rep.Kept), "auth_mode", rep.AuthMode)
	return info, nil
}

// watch pings p every HealthInterval until ctx ends, p exits, or
// HealthFailures pings in a row fail (hung). why says what happened.
func (h *Host) watch(ctx context.Context, p *sdk.Plugin) (hung bool, why error) {
	tick := time.NewTicker(h.cfg.HealthInterval)
	defer tick.Stop()
	failed := 0
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-p.Done():
			return false, fmt.Errorf("%s plugin pid %d: %w", h.cfg.Model, p.PID(), sdk.ErrPluginExited)
		case <-tick.C:
		}
		pctx, cancel := context.WithTimeout(ctx, h.cfg.HealthTimeout)
		err := p.Ping(pctx)
		cancel()
		switch {
		case err == nil:
			if failed > 0 {
				h.log.Info("plugin health check passed again", "pid", p.PID(), "after_failures", failed)
			}
			failed = 0
			continue
		case ctx.Err() != nil:
			return false, ctx.Err()
		case errors.Is(err, sdk.ErrPluginExited):
			return false, fmt.Errorf("%s plugin pid %d: %w", h.cfg.Model, p.PID(), err)
		}
		failed++
		h.log.Warn("plugin health check failed", "pid", p.PID(), "failures", failed, "limit", h.cfg.HealthFailures, "error", err)
		if failed >= h.cfg.HealthFailures {
			return true, fmt.Errorf("%s plugin pid %d: %w: %d health checks in a row failed, the last: %v", h.cfg.Model, p.PID(), errHung, failed, err)
		}
	}
}

// discard ends a plugin the host gives up on, before starting another: a
// hung one is killed outright, since a Stop could not run; any other gets
// Stop first. Stop errors are only logged: the process is gone either way.
func (h *Host) discard(ctx context.Context, p *sdk.Plugin, hung bool) {
	if err := h.terminate(context.WithoutCancel(ctx), p, hung); err != nil && !hung {
		h.log.Warn("plugin did not stop cleanly", "pid", p.PID(), "op", "stop", "error", err)
	}
}

// terminate ends p and returns once the process is gone, with the Stop
// RPC's error. With force it sends SIGKILL first. Otherwise the Stop RPC,
// bounded by StopTimeout and ctx, lets the plugin close the modem's sessions
// before go-plugin kills the process; should that not end it in time, the
// host sends SIGKILL.
func (h *Host) terminate(ctx context.Context, p *sdk.Plugin, force bool) error {
	if force {
		h.sigkill(p)
	}
	stopCtx, cancel := context.WithTimeout(ctx, h.cfg.StopTimeout)
	defer cancel()
	killed := make(chan error, 1)
	go func() { killed <- p.Kill(stopCtx) }()
	watchdog := time.NewTimer(h.cfg.StopTimeout + killGrace)
	defer watchdog.Stop()
	select {
	case err := <-killed:
		return err
	case <-watchdog.C:
		h.log.Warn("plugin still running after Stop and kill; sending SIGKILL", "pid", p.PID())
		h.sigkill(p)
		return <-killed
	}
}

// sigkill kills p's process outright.
func (h *Host) sigkill(p *sdk.Plugin) {
	if p.Exited() || p.PID() == 0 {
		return
	}
	proc, err := os.FindProcess(p.PID())
	if err == nil {
		err = proc.Kill()
		proc.Release()
	}
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		h.log.Warn("could not SIGKILL the plugin", "pid", p.PID(), "error", err)
	}
}

// terminal reports whether err is a failure no retry can fix.
func terminal(err error) bool {
	var (
		ce *sdk.ChecksumError
		ve *sdk.ContractError
		me *sdk.ModelMismatchError
		oe *sdk.OptionError
		be *sdk.BundleError
	)
	return errors.As(err, &ce) || errors.As(err, &ve) || errors.As(err, &me) || errors.As(err, &oe) || errors.As(err, &be)
}

// retryInPlace reports whether a failed Open or Provision may be retried in
// the same process: the plugin answered with the modem's complaint (not
// registered yet, SIM busy, no network, port gone), so the process is
// sound, and a new one would only repeat the same bring-up. A plugin that
// died, or did not answer within OpenTimeout, is replaced.
func retryInPlace(err error) bool {
	if errors.Is(err, sdk.ErrPluginExited) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var (
		me *sdk.ModemError
		ne *sdk.NetError
		se *sdk.SerialError
		te *sdk.TimeoutError
		pe *sdk.PluginError
	)
	return errors.As(err, &me) || errors.As(err, &ne) || errors.As(err, &se) || errors.As(err, &te) || errors.As(err, &pe)
}

// errorKind names err's class for the "kind" log key, so operators can
// filter "the SIM is busy" from "the plugin crashed". A network failure is
// "net_" and its neutral kind, e.g. "net_handshake".
func errorKind(err error) string {
	var (
		cs *sdk.ChecksumError
		ve *sdk.ContractError
		mm *sdk.ModelMismatchError
		oe *sdk.OptionError
		be *sdk.BundleError
		me *sdk.ModemError
		ne *sdk.NetError
		se *sdk.SerialError
		te *sdk.TimeoutError
		pe *sdk.PluginError
	)
	switch {
	case errors.As(err, &cs):
		return "checksum"
	case errors.As(err, &ve):
		return "contract"
	case errors.As(err, &mm):
		return "model_mismatch"
	case errors.As(err, &oe):
		return "option"
	case errors.As(err, &be):
		return "bundle"
	case errors.Is(err, sdk.ErrPluginExited):
		return "plugin_exited"
	case errors.Is(err, errHung):
		return "hung"
	case errors.As(err, &me):
		return "modem"
	case errors.As(err, &ne):
		return "net_" + ne.Kind.String()
	case errors.As(err, &se):
		return "serial"
	case errors.As(err, &te):
		return "modem_timeout"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.As(err, &pe):
		return "plugin"
	}
	return "other"
}
