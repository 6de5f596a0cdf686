package sdk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-plugin"
)

const (
	defaultStartTimeout = 30 * time.Second
	defaultKillTimeout  = 10 * time.Second
)

// LaunchConfig says which plugin binary to start and how.
type LaunchConfig struct {
	// Path is the plugin binary.
	Path string
	// SHA256, when set, is the binary's expected SHA-256. Launch refuses a
	// binary with another checksum, and go-plugin checks it again right
	// before it starts the process with a SecureConfig built afresh for this
	// Launch (a SecureConfig keeps hash state and cannot be reused).
	SHA256 []byte
	// Logger receives go-plugin's messages and the plugin's own log lines,
	// at the levels the plugin logged them. Nil means slog.Default().
	Logger *slog.Logger
	// Env is added to the agent's environment for the plugin process;
	// entries here win over the agent's.
	Env []string
	// StartTimeout bounds the start and handshake; 0 means 30 s. ctx's
	// deadline bounds it too.
	StartTimeout time.Duration
	// SendWindow is how many bytes each session keeps in flight to the
	// plugin before Send waits for the plugin's Session.Send to accept them;
	// 0 means DefaultSendWindow.
	SendWindow int
}

// Plugin is a running plugin process. Kill it when done.
type Plugin struct {
	path      string
	pid       int
	contract  version // negotiated at launch
	client    *plugin.Client
	transport *client
}

// ChecksumError is a plugin binary whose SHA-256 is not the configured one;
// Launch refuses to start it.
type ChecksumError struct {
	// Path is the plugin binary.
	Path string
	// Want is the configured SHA-256, Got the binary's.
	Want []byte
	Got  []byte
}

// Error names the binary and both hashes in hex.
func (e *ChecksumError) Error() string {
	return fmt.Sprintf("plugin binary %s: checksum mismatch: expected sha256 %x, actual sha256 %x; refusing to start it", e.Path, e.Want, e.Got)
}

// Launch starts the plugin binary cfg.Path with go-plugin (gRPC only,
// AutoMTLS), after checking its SHA-256 when cfg.SHA256 is set, and returns
// when the handshake is done: the contract version is negotiated then (see
// Handshake and Plugin.ContractVersion). A missing or non-executable binary,
// a checksum mismatch (*ChecksumError), a plugin of another major contract
// version (*ContractError), a failed handshake and ctx ending all return an
// error naming the binary; nothing keeps running then.
func Launch(ctx context.Context, cfg LaunchConfig) (*Plugin, error) {
	path, err := checkBinary(cfg.Path)
	if err != nil {
		return nil, err
	}
	if cfg.SendWindow < 0 {
		return nil, fmt.Errorf("launch plugin %s: SendWindow %d is negative", path, cfg.SendWindow)
	}
	secure, err := secureConfig(path, cfg.SHA256)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}

	pc := plugin.NewClient(newClientConfig(ctx, path, cfg, log, secure))
	t, err := startPlugin(ctx, pc)
	if err != nil {
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			// The file changed between our check and go-plugin's.
			if err := verifyChecksum(path, cfg.SHA256); err != nil {
				return nil, err
			}
		}
		if ce := contractMismatch(path, err); ce != nil {
			return nil, ce
		}
		return nil, fmt.Errorf("launch plugin %s: %w", path, err)
	}
	// go-plugin accepted one of the versions offered, all of this major.
	negotiated, _ := versionOfProtocol(pc.NegotiatedVersion())
	p := &Plugin{path: path, contract: negotiated, client: pc, transport: t}
	if rc := pc.ReattachConfig(); rc != nil {
		p.pid = rc.Pid
	}
	log.Info("plugin started", "plugin", filepath.Base(path), "pid", p.pid, "contract", negotiated.String())
	return p, nil
}

// checkBinary returns the absolute path of the plugin binary at name, or an
// error if it is missing, not a regular file or not executable.
func checkBinary(name string) (string, error) {
	if name == "" {
		return "", errors.New("launch plugin: LaunchConfig.Path is empty")
	}
	path, err := filepath.Abs(name)
	if err != nil {
		return "", fmt.Errorf("launch plugin %s: %w", name, err)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("launch plugin: binary %s does not exist", path)
	case err != nil:
		return "", fmt.Errorf("launch plugin %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("launch plugin: %s is not a regular file", path)
	case fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("launch plugin: %s is not executable (mode %s)", path, fi.Mode().Perm())
	}
	return path, nil
}

// secureConfig checks the binary at path against want, its SHA-256, and
// returns the go-plugin SecureConfig that checks it again at start; nil
// when want is empty (no checksum configured).
func secureConfig(path string, want []byte) (*plugin.SecureConfig, error) {
	if len(want) == 0 {
		return nil, nil
	}
	if len(want) != sha256.Size {
		return nil, fmt.Errorf("launch plugin %s: the configured SHA-256 has %d bytes, want %d", path, len(want), sha256.Size)
	}
	if err := verifyChecksum(path, want); err != nil {
		return nil, err
	}
	return &plugin.SecureConfig{Checksum: want, Hash: sha256.New()}, nil
}

// newClientConfig is the go-plugin configuration that starts the binary at
// path for cfg, with cfg's defaults filled in and the start bounded by
// ctx's deadline too.
func newClientConfig(ctx context.Context, path string, cfg LaunchConfig, log *slog.Logger, secure *plugin.SecureConfig) *plugin.ClientConfig {
	window := cfg.SendWindow
	if window == 0 {
		window = DefaultSendWindow
	}
	startTimeout := cfg.StartTimeout
	if startTimeout <= 0 {
		startTimeout = defaultStartTimeout
	}
	if deadline, ok := ctx.Deadline(); ok {
		startTimeout = max(min(startTimeout, time.Until(deadline)), time.Millisecond)
	}

	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), LogLevelEnv+"="+levelName(log))
	cmd.Env = append(cmd.Env, cfg.Env...)
	setParentDeathSignal(cmd)

	return &plugin.ClientConfig{
		HandshakeConfig: handshake(),
		VersionedPlugins: versionedPlugins(func(protocol int) *grpcPlugin {
			return &grpcPlugin{window: window, protocol: protocol}
		}),
		Cmd:              cmd,
		SkipHostEnv:      true, // cmd.Env already holds it, under cfg.Env
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     startTimeout,
		Logger:           newSlogHCLog(log, "plugin"),
		Stderr:           io.Discard,
	}
}

// startPlugin starts the plugin process of pc and connects to it. On any
// error, ctx ending included, the process is killed (once go-plugin's start
// has returned, which may be after startPlugin has).
func startPlugin(ctx context.Context, pc *plugin.Client) (*client, error) {
	type started struct {
		t   *client
		err error
	}
	ch := make(chan started, 1)
	go func() {
		t, err := connect(pc)
		ch <- started{t, err}
	}()
	select {
	case st := <-ch:
		if st.err != nil {
			pc.Kill()
			return nil, st.err
		}
		return st.t, nil
	case <-ctx.Done():
		// go-plugin's start cannot be interrupted; it ends within
		// startTimeout, and then the process is killed.
		go func() {
			<-ch
			pc.Kill()
		}()
		return nil, ctx.Err()
	}
}

// connect runs go-plugin's start and handshake and dispenses the client.
func connect(pc *plugin.Client) (*client, error) {
	rpc, err := pc.Client()
	if err != nil {
		return nil, err
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		return nil, err
	}
	c, ok := raw.(*client)
	if !ok {
		return nil, fmt.Errorf("dispensed %T, want the sdk's client", raw)
	}
	return c, nil
}

// verifyChecksum returns a *ChecksumError unless path hashes to want.
func verifyChecksum(path string, want []byte) error {
	got, err := FileSHA256(path)
	if err != nil {
		return fmt.Errorf("launch plugin: %w", err)
	}
	if !bytes.Equal(got, want) {
		return &ChecksumError{Path: path, Want: want, Got: got}
	}
	return nil
}

// levelName is the LogLevelEnv value for the most verbose level log records.
func levelName(log *slog.Logger) string {
	for _, l := range []slog.Level{levelTrace, slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		if log.Enabled(context.Background(), l) {
			return hclogLevel(l).String()
		}
	}
	return "error"
}

// FileSHA256 returns the SHA-256 of the file at path, e.g. to pin a plugin
// binary in the agent's config.
func FileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sha256 of %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("sha256 of %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

// Transport returns the plugin's SecureTransport. Its calls and sessions
// fail with errors wrapping ErrPluginExited once the process is gone.
func (p *Plugin) Transport() SecureTransport { return p.transport }

// Path returns the absolute path of the plugin binary.
func (p *Plugin) Path() string { return p.path }

// PID returns the plugin's process id (0 if unknown).
func (p *Plugin) PID() int { return p.pid }

// ContractVersion returns the contract version negotiated at launch: the
// highest minor version of this agent's major that both sides speak, e.g.
// "1.0" for a plugin built against sdk 1.0 run by a 1.2 agent.
func (p *Plugin) ContractVersion() string { return p.contract.String() }

// Ping checks, bounded by ctx, that the plugin process answers RPCs and
// speaks this protocol version. It does not touch the modem.
func (p *Plugin) Ping(ctx context.Context) error { return p.transport.ping(ctx) }

// Exited reports whether the plugin process has exited.
func (p *Plugin) Exited() bool { return p.client.Exited() }

// Done returns a channel that is closed when the plugin process has exited,
// for whatever reason.
func (p *Plugin) Done() <-chan struct{} { return p.transport.exited }

// Kill stops the plugin: first a Stop RPC, bounded by ctx (10 s if ctx has
// no deadline), so the plugin can close the modem's sessions; then
// go-plugin's Kill, which ends the process (forcibly after 2 s). It returns
// the Stop error, if any, once the process is gone; it is safe to call more
// than once and after the process died.
func (p *Plugin) Kill(ctx context.Context) error {
	var stopErr error
	if !p.client.Exited() {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, defaultKillTimeout)
			defer cancel()
		}
		if err := p.transport.Stop(ctx); err != nil && !errors.Is(err, ErrPluginExited) {
			stopErr = err
		}
	}
	p.client.Kill()
	return stopErr
}
