package sdk

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/cellgate/cellgate/sdk/proto"
)

// PluginName is the name under which a plugin serves SecureTransport.
const PluginName = "secure_transport"

// Handshake is the go-plugin handshake shared by the agent and every plugin.
// Its ProtocolVersion is ContractVersion as one number, major*1000 + minor
// (1.0 is 1000). Launch and Serve each offer every minor version of their
// major up to their own (go-plugin's VersionedPlugins), and go-plugin
// settles on the highest both offer; a plugin of another major version is
// refused with a *ContractError. The magic cookie only tells a plugin binary
// run by hand that it is not meant to be (it is not a security measure:
// checksums are).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  uint(contract.protocol()),
	MagicCookieKey:   "CELLGATE_PLUGIN",
	MagicCookieValue: "VRTxh9fSUUDIvu7J0tZsNogIjJkhwjKT",
}

// handshake is Handshake for the contract this process speaks.
func handshake() plugin.HandshakeConfig {
	h := Handshake
	h.ProtocolVersion = uint(contract.protocol())
	return h
}

// LogLevelEnv is the environment variable through which Launch tells the
// plugin the most verbose level the agent records ("trace", "debug",
// "info", "warn", "error"), so the plugin does not produce lines that would
// be dropped.
const LogLevelEnv = "CELLGATE_PLUGIN_LOG_LEVEL"

// stopTimeout bounds the Stop that Serve runs when the plugin is shut down,
// so a wedged modem cannot keep the process alive.
const stopTimeout = 10 * time.Second

// pluginStderr is the process's stderr as it was at start. go-plugin's Serve
// redirects os.Stderr into a gRPC stream that the agent discards, so plugin
// logs must go to the original file, which the agent reads line by line.
var pluginStderr = os.Stderr

// Serve runs impl as a cellgate plugin and returns when the agent shut the
// plugin down; call it from main and return afterwards. Nothing may be
// written to stdout before Serve: stdout carries go-plugin's handshake, in
// which Serve offers every minor version of ContractVersion's major up to
// its own (see Handshake). Logs go to stderr as hclog JSON (use NewLogger),
// which the agent bridges into its own log.
//
// After the agent disconnects, and on SIGTERM (which Launch arranges to be
// sent on Linux when the agent dies), Serve calls impl.Stop so the modem's
// sessions are closed before the process exits. Run by hand, without the
// agent's handshake, Serve prints an explanation and exits with status 1.
func Serve(impl SecureTransport) {
	level := LogLevel()
	log := NewLogger(level)
	internal := hclog.New(&hclog.LoggerOptions{
		Name:       "go-plugin",
		Level:      hclogLevel(level),
		Output:     pluginStderr,
		JSONFormat: true,
	})

	// When the agent dies, stderr is a broken pipe, and Go kills a process
	// that writes to a broken fd 2 with SIGPIPE unless SIGPIPE is handled:
	// the first log line would end the plugin before it stopped the modem.
	signal.Ignore(syscall.SIGPIPE)
	sigCh := make(chan os.Signal, 1)
	signal.Notify(sigCh, syscall.SIGTERM)
	served := make(chan struct{})
	defer func() {
		signal.Stop(sigCh)
		close(served)
	}()
	go func() {
		select {
		case <-sigCh:
			log.Warn("SIGTERM: stopping the modem and exiting", "op", "stop")
			stopImpl(impl, log)
			os.Exit(0)
		case <-served:
		}
	}()

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: handshake(),
		VersionedPlugins: versionedPlugins(func(protocol int) *grpcPlugin {
			return &grpcPlugin{impl: impl, log: log, protocol: protocol}
		}),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(opts...)
		},
		Logger: internal,
	})
	stopImpl(impl, log)
}

func stopImpl(impl SecureTransport, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := impl.Stop(ctx); err != nil {
		log.Error("stopping the modem on shutdown", "op", "stop", "error", err)
	}
}

// NewLogger returns a logger for plugin code. It writes hclog-style JSON
// lines (@level, @message, @timestamp and the attributes) to the process's
// original stderr, which the agent parses so each line arrives in the
// agent's log at its own level with its attributes. Records below level are
// dropped. Never log key material.
func NewLogger(level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(pluginStderr, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				if t, ok := a.Value.Any().(time.Time); ok {
					// The only layout go-plugin's stderr parser accepts.
					return slog.String("@timestamp", t.Format("2006-01-02T15:04:05.000000Z07:00"))
				}
			case slog.LevelKey:
				if l, ok := a.Value.Any().(slog.Level); ok {
					return slog.String("@level", hclogLevel(l).String())
				}
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	}))
}

// LogLevel is the level the agent asked this plugin process to log at
// (LogLevelEnv: trace, debug, info, warn or error), info when unset. A
// plugin's main passes it to NewLogger.
func LogLevel() slog.Level {
	switch strings.ToLower(os.Getenv(LogLevelEnv)) {
	case "trace":
		return levelTrace
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// grpcPlugin is the go-plugin adapter: it registers the service in the
// plugin and builds the client in the agent. There is one per protocol
// version offered, so the side that go-plugin picks knows the version.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl     SecureTransport // plugin side only
	log      *slog.Logger    // plugin side only
	window   int             // agent side only
	protocol int             // the go-plugin protocol version this instance serves
}

// versionedPlugins is the go-plugin plugin set of every protocol version
// this process offers, with the adapter that adapter makes for it.
func versionedPlugins(adapter func(protocol int) *grpcPlugin) map[int]plugin.PluginSet {
	sets := map[int]plugin.PluginSet{}
	for _, v := range contract.protocols() {
		sets[v] = plugin.PluginSet{PluginName: adapter(v)}
	}
	return sets
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterSecureTransportServer(s, &server{impl: p.impl, log: p.log, protocol: p.protocol})
	return nil
}

func (p *grpcPlugin) GRPCClient(doneCtx context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &client{rpc: pb.NewSecureTransportClient(conn), exited: doneCtx.Done(), window: p.window, protocol: p.protocol}, nil
}
