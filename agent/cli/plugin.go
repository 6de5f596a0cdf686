package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/cellgate/cellgate/sdk/conformance"
	"github.com/cellgate/cellgate/sdk/modemsim"
)

// `cellgate plugin verify` certifies a plugin binary with the conformance
// suite (sdk/conformance); `cellgate plugin echo-server` is the TLS echo
// server a modem on a real network reaches while it is certified.

func init() {
	extraCommands["plugin"] = pluginCmd
}

const pluginHelp = `Certify a modem plugin, or run the echo server a real modem is certified against.

Usage:
  cellgate plugin verify --plugin PATH --model NAME [--port DEV | --emulator NAME]
                         [--server HOST:PORT --ca FILE --cert FILE --key FILE [--rogue-server HOST:PORT]]
                         [--baud N] [--apn APN] [--option KEY=VALUE]... [--timeout 3m] [--json]
  cellgate plugin echo-server [--listen 127.0.0.1:PORT] [--rogue-listen HOST:PORT] [--host NAME]... [--out DIR]

verify runs every check of the plugin contract against the plugin binary,
each with a fresh plugin process: open, provision idempotence, list/delete,
dial TLS with a good certificate, a rogue certificate refused with a
handshake-kind error, 64 KiB of every byte value and 1 MiB echoed, two
sessions, peer close, a modem reboot mid-session, cancellation, a killed
plugin, stop, and the optional Status call (n/a for a plugin without it). It
prints a table of the checks (--json: one JSON object)
and exits 1 when one failed. A check that cannot run against the modem under
test is "n/a", with the reason, and fails nothing.

The modem under test:
  --emulator sim7600|sim7800|bg96  an emulated modem (sdk/modemsim) on a pty, fresh for each check
  --port DEV                       a real modem on a serial port; needs --server (the modem cannot
                                   reach this host's loopback). A real modem cannot be rebooted on
                                   demand: reboot-mid-session and other-model-refused are n/a.
  neither                          the plugin drives no modem (--model netstack) and reaches the servers itself

Without --server the checks start their own TLS echo servers on 127.0.0.1 with a
fresh PKI (a good CA, and a rogue CA whose server must be refused). With
--server they use that echo server (cellgate plugin echo-server), with its CA
(--ca) and the client certificate and key it accepts (--cert, --key); the
rogue-certificate check needs --rogue-server and is n/a without it, and
cancel-dial (a local server that never answers) is n/a.

echo-server writes a fresh PKI into --out (default: a temporary directory
removed on exit): ca.pem (the CA the modem must trust), client.pem and
client.key (0600; the identity the server requires), rogue-ca.pem (the CA of
the rogue server), server.pem; it serves a mutual-TLS echo server on --listen
and a rogue one on --rogue-listen, prints the verify command to run against
them, and runs until Ctrl-C. It listens on loopback unless told otherwise;
--host adds the names or addresses a modem dials to the server certificates.

Examples:
  cellgate plugin verify --plugin bin/cellgate-plugin-sim7600 --model sim7600 --emulator sim7600
  cellgate plugin verify --plugin bin/cellgate-plugin-netstack --model netstack --json
  cellgate plugin echo-server --listen 0.0.0.0:8443 --rogue-listen 0.0.0.0:8444 --host verify.example.net --out ./verify-pki
  cellgate plugin verify --plugin /usr/lib/cellgate/plugins/cellgate-plugin-sim7600 --model sim7600 \
      --port /dev/ttyUSB2 --server verify.example.net:8443 --rogue-server verify.example.net:8444 \
      --ca ./verify-pki/ca.pem --cert ./verify-pki/client.pem --key ./verify-pki/client.key
`

// pluginCmd: cellgate plugin verify|echo-server.
func pluginCmd(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(env.Stdout, pluginHelp)
		if len(args) == 0 {
			return usageError("plugin: want a subcommand, verify or echo-server")
		}
		return errHelp
	}
	switch args[0] {
	case "verify":
		return pluginVerify(ctx, args[1:], env)
	case "echo-server":
		return pluginEchoServer(ctx, args[1:], env)
	}
	return usageError("plugin: unknown subcommand %q: want verify or echo-server", args[0])
}

// verifyFlags are the flags of cellgate plugin verify.
type verifyFlags struct {
	plugin, model, port, emulator string
	server, rogue                 string
	ca, cert, key                 string
	baud                          int
	apn                           string
	options                       map[string]string
	timeout                       time.Duration
	asJSON                        bool
	logLevel                      string
}

func (v *verifyFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&v.plugin, "plugin", "", "the plugin binary to certify")
	fs.StringVar(&v.model, "model", "", "the model it drives, as modem.model names it (sim7600, bg96, netstack)")
	fs.StringVar(&v.port, "port", "", "a real modem's serial port (needs --server)")
	fs.StringVar(&v.emulator, "emulator", "", "an emulated modem: "+strings.Join(modemsim.Models(), ", "))
	fs.StringVar(&v.server, "server", "", "a reachable TLS echo server, HOST:PORT (cellgate plugin echo-server)")
	fs.StringVar(&v.rogue, "rogue-server", "", "its rogue twin, HOST:PORT, whose certificate another CA signed")
	fs.StringVar(&v.ca, "ca", "", "with --server: the CA file that signed the server's certificate")
	fs.StringVar(&v.cert, "cert", "", "with --server: the client certificate file the server accepts")
	fs.StringVar(&v.key, "key", "", "with --server: its key file")
	fs.IntVar(&v.baud, "baud", 0, "serial line rate: a real port's (0: the plugin's default) or the emulator's pacing (0: unthrottled)")
	fs.StringVar(&v.apn, "apn", "", "APN of the packet data context (empty: the network's default)")
	fs.StringToStringVar(&v.options, "option", nil, "a setting of the plugin, KEY=VALUE, as modem.options holds it (repeatable)")
	fs.DurationVar(&v.timeout, "timeout", 0, "bound on each check (default 3m, 10m with --port)")
	fs.BoolVar(&v.asJSON, "json", false, "print the report as one JSON object")
	fs.StringVar(&v.logLevel, "log-level", "", "show the plugin's logs on stderr from this level: debug, info, warn, error (default: none; the checks kill and break plugins on purpose, which they log)")
}

// config checks the flags and turns them into a conformance.Config.
func (v *verifyFlags) config() (conformance.Config, error) {
	switch {
	case v.plugin == "" || v.model == "":
		return conformance.Config{}, usageError("plugin verify: --plugin and --model are required")
	case v.port != "" && v.emulator != "":
		return conformance.Config{}, usageError("plugin verify: --port and --emulator exclude each other")
	case v.emulator != "" && !slices.Contains(modemsim.Models(), v.emulator):
		return conformance.Config{}, usageError("plugin verify: --emulator %q: want one of %s", v.emulator, strings.Join(modemsim.Models(), ", "))
	case v.port != "" && v.server == "":
		return conformance.Config{}, usageError("plugin verify: --port needs --server: a modem on a real network cannot reach this host's loopback servers")
	case v.server == "" && (v.ca != "" || v.cert != "" || v.key != "" || v.rogue != ""):
		return conformance.Config{}, usageError("plugin verify: --ca, --cert, --key and --rogue-server go with --server")
	case v.server != "" && (v.ca == "" || v.cert == "" || v.key == ""):
		return conformance.Config{}, usageError("plugin verify: --server needs --ca, --cert and --key (cellgate plugin echo-server writes them)")
	case v.timeout < 0:
		return conformance.Config{}, usageError("plugin verify: --timeout %s: want a positive duration", v.timeout)
	}
	if _, err := os.Stat(v.plugin); err != nil {
		return conformance.Config{}, fmt.Errorf("plugin verify: --plugin: %w", err)
	}
	cfg := conformance.Config{
		Plugin: v.plugin, Model: v.model, Port: v.port, Emulator: v.emulator,
		Baud: v.baud, APN: v.apn, Options: v.options, CheckTimeout: v.timeout,
	}
	if v.server == "" {
		return cfg, nil
	}
	rs := &conformance.RemoteServer{Addr: v.server, RogueAddr: v.rogue}
	for _, f := range []struct {
		flag, path string
		into       *[]byte
	}{{"--ca", v.ca, &rs.CA}, {"--cert", v.cert, &rs.Cert}, {"--key", v.key, &rs.Key}} {
		data, err := os.ReadFile(f.path)
		if err != nil {
			return conformance.Config{}, fmt.Errorf("plugin verify: %s: %w", f.flag, err)
		}
		*f.into = data
	}
	cfg.Server = rs
	return cfg, nil
}

// pluginVerify: cellgate plugin verify …
func pluginVerify(ctx context.Context, args []string, env Env) error {
	var v verifyFlags
	fs := newFlagSet("plugin verify", env)
	v.register(fs)
	if err := parseNoArgs(fs, args, env, pluginHelp); err != nil {
		return err
	}
	cfg, err := v.config()
	if err != nil {
		return err
	}
	if v.logLevel != "" {
		if cfg.Logger, err = newLogger(env.Stderr, v.logLevel); err != nil {
			return err
		}
	}
	fmt.Fprintf(env.Stderr, "verifying %s (model %s): %d checks\n", cfg.Plugin, cfg.Model, len(conformance.Checks()))
	rep, err := conformance.Run(ctx, cfg, func(r conformance.Result) {
		fmt.Fprintf(env.Stderr, "  %-24s %s\n", r.Name, r.Status)
	})
	if err != nil {
		return usageError("plugin verify: %v", err)
	}
	if v.asJSON {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, string(b))
	} else if err := rep.WriteTable(env.Stdout); err != nil {
		return err
	}
	if rep.Passed {
		return nil
	}
	var failed []string
	for _, r := range rep.Results {
		if r.Status == conformance.Fail {
			failed = append(failed, r.Name)
		}
	}
	return fmt.Errorf("plugin verify: %s failed %d of %d checks: %s", filepath.Base(cfg.Plugin), len(failed), len(rep.Results), strings.Join(failed, ", "))
}

// echoPKI is what echo-server writes into --out: the PKI of the good
// server and the CA of the rogue one.
type echoPKI struct {
	good, rogue *conformance.PKI
}

func newEchoPKI(hosts []string) (*echoPKI, error) {
	good, err := conformance.NewPKIFor(conformance.P256, hosts)
	if err != nil {
		return nil, err
	}
	rogue, err := conformance.NewPKIFor(conformance.P256, hosts)
	if err != nil {
		return nil, err
	}
	return &echoPKI{good: good, rogue: rogue}, nil
}

// write puts the files a verify run needs into dir: only the client key
// is secret (0600); the CA keys are never written.
func (p *echoPKI) write(dir string) error {
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{"ca.pem", p.good.CA.CertPEM, 0o644},
		{"client.pem", p.good.Client.CertPEM, 0o644},
		{"client.key", p.good.Client.KeyPEM, 0o600},
		{"server.pem", p.good.Server.CertPEM, 0o644},
		{"rogue-ca.pem", p.rogue.CA.CertPEM, 0o644},
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		// Remove first so that a key file left by an earlier run cannot
		// keep looser permissions than perm.
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return err
		}
		if err := os.WriteFile(path, f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

// echoFlags are the flags of cellgate plugin echo-server.
type echoFlags struct {
	listen, rogueListen, out string
	hosts                    []string
	logLevel                 string
}

func (e *echoFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&e.listen, "listen", "127.0.0.1:0", "address of the mutual-TLS echo server (port 0: any free port)")
	fs.StringVar(&e.rogueListen, "rogue-listen", "", "address of the rogue server (default: --listen's host, any free port)")
	fs.StringArrayVar(&e.hosts, "host", nil, "a name or address the modem dials, added to the server certificates (repeatable)")
	fs.StringVar(&e.out, "out", "", "directory for the PKI files (created; default: a temporary directory removed on exit)")
	fs.StringVar(&e.logLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
}

// pluginEchoServer: cellgate plugin echo-server …
func pluginEchoServer(ctx context.Context, args []string, env Env) error {
	var e echoFlags
	fs := newFlagSet("plugin echo-server", env)
	e.register(fs)
	if err := parseNoArgs(fs, args, env, pluginHelp); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(e.listen)
	if err != nil {
		return usageError("plugin echo-server: --listen %q: want HOST:PORT", e.listen)
	}
	if e.rogueListen == "" {
		e.rogueListen = net.JoinHostPort(host, "0")
	}
	log, err := newLogger(env.Stderr, e.logLevel)
	if err != nil {
		return err
	}
	dir, cleanup, err := echoDir(e.out)
	if err != nil {
		return err
	}
	defer cleanup()
	pki, err := newEchoPKI(e.hosts)
	if err != nil {
		return err
	}
	if err := pki.write(dir); err != nil {
		return fmt.Errorf("plugin echo-server: --out: %w", err)
	}
	good, err := conformance.Listen(e.listen, conformance.MutualTLS(pki.good, 0), loggedEcho(log, "echo"))
	if err != nil {
		return err
	}
	defer good.Close()
	rogue, err := conformance.Listen(e.rogueListen, conformance.RogueTLS(pki.rogue), loggedEcho(log, "rogue"))
	if err != nil {
		return err
	}
	defer rogue.Close()
	printVerifyCommand(env, dir, dialAddr(good.Addr, e.hosts), dialAddr(rogue.Addr, e.hosts))
	<-ctx.Done()
	fmt.Fprintln(env.Stderr, "echo-server: stopped")
	return nil
}

// echoDir returns the directory for the PKI files and what removes it on
// exit: nothing for --out, everything for a temporary one.
func echoDir(out string) (string, func(), error) {
	if out == "" {
		dir, err := os.MkdirTemp("", "cellgate-echo-server-")
		if err != nil {
			return "", nil, err
		}
		return dir, func() { os.RemoveAll(dir) }, nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", nil, fmt.Errorf("plugin echo-server: --out: %w", err)
	}
	return out, func() {}, nil
}

// dialAddr is addr as a modem dials it: an unspecified listen address
// (0.0.0.0, ::) is replaced by the first --host, or by a placeholder.
func dialAddr(addr string, hosts []string) string {
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "THIS_HOST"
		if len(hosts) > 0 {
			host = hosts[0]
		}
	}
	return net.JoinHostPort(host, port)
}

func printVerifyCommand(env Env, dir, addr, rogueAddr string) {
	abs, err := filepath.Abs(dir)
	if err == nil {
		dir = abs
	}
	fmt.Fprintf(env.Stdout, "echo server on %s, rogue server on %s, PKI in %s\n", addr, rogueAddr, dir)
	fmt.Fprintf(env.Stdout, "certify a plugin against them (leave out --port for a plugin that drives no modem, e.g. --model netstack):\n\n")
	fmt.Fprintf(env.Stdout, "  cellgate plugin verify --plugin PLUGIN --model MODEL --port DEV --server %s --rogue-server %s --ca %s --cert %s --key %s\n\n",
		addr, rogueAddr, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key"))
	fmt.Fprintln(env.Stdout, "running until Ctrl-C")
}

// loggedEcho is conformance.Echo that logs each connection, so whoever
// certifies a real modem sees its sessions arrive.
func loggedEcho(log *slog.Logger, server string) conformance.Handler {
	return func(c net.Conn) {
		start := time.Now()
		if server == "rogue" {
			log.Warn("a client accepted the rogue server's certificate: it does not verify servers", "remote", c.RemoteAddr().String())
		} else {
			log.Info("connection", "server", server, "remote", c.RemoteAddr().String())
		}
		conformance.Echo(c)
		log.Info("connection closed", "server", server, "remote", c.RemoteAddr().String(), "after", time.Since(start).Round(time.Millisecond))
	}
}
