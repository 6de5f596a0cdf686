package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/cellgate/cellgate/agent/pluginhost"
	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/transport"
)

// modemFlags are the connection flags every `cellgate modem` command takes.
type modemFlags struct {
	model     string
	port      string
	baud      int
	apn       string
	pluginDir string
	pluginSum string
	logLevel  string
	timeout   time.Duration
	options   map[string]string
}

func (m *modemFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&m.model, "model", "", "modem model: sim7600, sim7800, or netstack for the gateway's own IP stack (the plugin cellgate-plugin-<model> drives it)")
	fs.StringVar(&m.port, "port", "", "serial port of the modem's AT interface, e.g. /dev/ttyUSB2")
	fs.IntVar(&m.baud, "baud", 115200, "serial line rate")
	fs.StringVar(&m.apn, "apn", "", "APN of the packet data context (empty: the network's default)")
	fs.StringVar(&m.pluginDir, "plugin-dir", "", "directory holding the plugins (default: next to cellgate, then "+pluginhost.SystemDir+")")
	fs.StringVar(&m.pluginSum, "plugin-sha256", "", "expected SHA-256 of the plugin binary, hex; the plugin is refused when it differs")
	fs.StringVar(&m.logLevel, "log-level", "warn", "log level on stderr: debug, info, warn, error")
	fs.DurationVar(&m.timeout, "timeout", 3*time.Minute, "bound on bringing the modem up (registration included)")
	fs.StringToStringVar(&m.options, "option", nil, "a setting of the plugin, KEY=VALUE, as modem.options holds them in the config (repeatable)")
}

func (m *modemFlags) check() error {
	if m.model == "" {
		return usageError("--model is required (sim7600 or sim7800)")
	}
	if m.port == "" {
		return usageError("--port is required (the modem's AT serial port)")
	}
	if m.baud <= 0 {
		return usageError("--baud %d: want a positive line rate", m.baud)
	}
	return nil
}

// modemSession is a started plugin with an opened modem.
type modemSession struct {
	plugin *sdk.Plugin
	info   sdk.ModemInfo
}

// start launches the plugin for m.model and opens the modem.
func (m *modemFlags) start(ctx context.Context, env Env) (*modemSession, error) {
	log, err := newLogger(env.Stderr, m.logLevel)
	if err != nil {
		return nil, err
	}
	dirs := pluginhost.DefaultDirs(executable(env))
	if m.pluginDir != "" {
		dirs = []string{m.pluginDir}
	}
	path, err := pluginhost.Find(m.model, dirs)
	if err != nil {
		return nil, err
	}
	var sum []byte
	if m.pluginSum != "" {
		sum, err = hex.DecodeString(m.pluginSum)
		if err != nil || len(sum) != 32 {
			return nil, usageError("--plugin-sha256: want 64 hex digits")
		}
	}
	p, err := sdk.Launch(ctx, sdk.LaunchConfig{Path: path, SHA256: sum, Logger: log})
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	info, err := p.Transport().Open(octx, sdk.ModemConfig{Port: m.port, Baud: m.baud, APN: m.apn, Model: m.model, Options: m.options})
	if err != nil {
		p.Kill(context.Background())
		return nil, fmt.Errorf("open modem on %s: %w", m.port, err)
	}
	return &modemSession{plugin: p, info: info}, nil
}

// close stops the modem (sessions closed, its network service stopped) and
// ends the plugin.
func (s *modemSession) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s.plugin.Kill(ctx)
}

func executable(env Env) string {
	if env.Executable != "" {
		return env.Executable
	}
	p, _ := os.Executable()
	return p
}

func modemCmd(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return usageError("modem: want info, certs or dial")
	}
	switch args[0] {
	case "info":
		return modemInfo(ctx, args[1:], env)
	case "certs":
		return modemCerts(ctx, args[1:], env)
	case "dial":
		return modemDial(ctx, args[1:], env)
	}
	return usageError("modem %s: unknown command (want info, certs or dial)", args[0])
}

func newFlagSet(name string, env Env) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	return fs
}

func parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return errHelp
		}
		return usageError("%s: %v", fs.Name(), err)
	}
	return nil
}

// modemInfo: cellgate modem info --model M --port P [--json]
func modemInfo(ctx context.Context, args []string, env Env) error {
	var m modemFlags
	var asJSON bool
	fs := newFlagSet("modem info", env)
	m.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := m.check(); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("modem info: unexpected argument %q", fs.Arg(0))
	}
	s, err := m.start(ctx, env)
	if err != nil {
		return err
	}
	defer s.close()
	if asJSON {
		out := struct {
			sdk.ModemInfo
			Port string `json:"port"`
		}{s.info, m.port}
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, string(b))
		return nil
	}
	i := s.info
	fmt.Fprintf(env.Stdout, "model:        %s\nmanufacturer: %s\nrevision:     %s\nimei:         %s\niccid:        %s\nsignal:       rssi %d, ber %d\nregistration: %s\nclock synced: %t\n",
		i.Model, i.Manufacturer, i.Revision, i.IMEI, i.ICCID, i.SignalRSSI, i.SignalBER, i.Registration, i.ClockSynced)
	return nil
}

// modemCerts: cellgate modem certs list|provision|delete
func modemCerts(ctx context.Context, args []string, env Env) error {
	const certsUsage = "modem certs: want list, provision (--ca FILE [--cert FILE --key FILE] [--profile N] [--insecure]) or delete NAME"
	if len(args) == 0 {
		return usageError(certsUsage)
	}
	var m modemFlags
	var b bundleFlags
	var asJSON bool
	fs := newFlagSet("modem certs "+args[0], env)
	m.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	switch args[0] {
	case "list", "delete":
	case "provision":
		b.register(fs)
	default:
		return usageError(certsUsage)
	}
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if err := m.check(); err != nil {
		return err
	}
	var bundle sdk.Bundle
	switch args[0] {
	case "delete":
		if fs.NArg() != 1 {
			return usageError("modem certs delete: want exactly one file name")
		}
	case "provision":
		var err error
		if bundle, err = b.load(); err != nil {
			return err
		}
		fallthrough
	default:
		if fs.NArg() != 0 {
			return usageError("modem certs %s: unexpected argument %q", args[0], fs.Arg(0))
		}
	}
	s, err := m.start(ctx, env)
	if err != nil {
		return err
	}
	defer s.close()
	t := s.plugin.Transport()
	switch args[0] {
	case "list":
		names, err := t.ListCerts(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			if names == nil {
				names = []string{}
			}
			return json.NewEncoder(env.Stdout).Encode(names)
		}
		for _, n := range names {
			fmt.Fprintln(env.Stdout, n)
		}
	case "delete":
		return t.DeleteCert(ctx, fs.Arg(0))
	case "provision":
		r, err := t.Provision(ctx, bundle)
		if err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(env.Stdout).Encode(r)
		}
		fmt.Fprintf(env.Stdout, "profile %d: authmode %d; downloaded %s; kept %s; deleted %s\n",
			r.Profile, r.AuthMode, list(r.Downloaded), list(r.Kept), list(r.Deleted))
	}
	return nil
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// bundleFlags are the credential flags of provision and dial.
type bundleFlags struct {
	ca, cert, key string
	keyPassword   string
	profile       int
	insecure      bool
}

func (b *bundleFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&b.ca, "ca", "", "PEM file of the CA that signed the server's certificate")
	fs.StringVar(&b.cert, "cert", "", "PEM file of the client certificate (mutual TLS)")
	fs.StringVar(&b.key, "key", "", "PEM file of the client certificate's private key")
	fs.StringVar(&b.keyPassword, "key-password-file", "", "file holding the password of an encrypted key")
	fs.IntVar(&b.profile, "profile", 0, "the modem's SSL context, 0-9")
	fs.BoolVar(&b.insecure, "insecure", false, "do not verify the server (testing only)")
}

func (b *bundleFlags) load() (sdk.Bundle, error) {
	out := sdk.Bundle{Profile: b.profile, Insecure: b.insecure}
	if b.ca == "" && !b.insecure {
		return out, usageError("--ca is required to verify the server (or --insecure to skip verification)")
	}
	if (b.cert == "") != (b.key == "") {
		return out, usageError("--cert and --key go together")
	}
	var err error
	read := func(flag, path string) []byte {
		if path == "" || err != nil {
			return nil
		}
		var data []byte
		data, err = os.ReadFile(path)
		if err != nil {
			err = fmt.Errorf("--%s: %w", flag, err)
		}
		return data
	}
	out.CA = read("ca", b.ca)
	out.Cert = read("cert", b.cert)
	out.Key = read("key", b.key)
	if pw := read("key-password-file", b.keyPassword); pw != nil {
		out.KeyPassword = strings.TrimRight(string(pw), "\r\n")
	}
	return out, err
}

// modemDial: like `openssl s_client` through the modem. Stdin goes to the
// server and the server's bytes to stdout. After stdin ends the session
// stays open until the server closes it or --linger passes without data,
// so a request/response exchange completes.
func modemDial(ctx context.Context, args []string, env Env) error {
	var m modemFlags
	var b bundleFlags
	var tlsMode, sni string
	var linger time.Duration
	fs := newFlagSet("modem dial", env)
	m.register(fs)
	b.register(fs)
	fs.StringVar(&tlsMode, "tls", "modem", "where TLS runs: modem (the modem's TLS stack) or host (TLS 1.3 on this machine over plain modem TCP)")
	fs.StringVar(&sni, "sni", "", "TLS server name (default: HOST when it is a name)")
	fs.DurationVar(&linger, "linger", 3*time.Second, "after stdin ends, how long to wait for more server data before closing")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := m.check(); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("modem dial: want exactly one HOST:PORT")
	}
	_, portStr, err := net.SplitHostPort(fs.Arg(0))
	if err != nil {
		return usageError("modem dial %q: %v", fs.Arg(0), err)
	}
	if port, err := strconv.Atoi(portStr); err != nil || port < 1 || port > 65535 {
		return usageError("modem dial %q: port must be 1-65535", fs.Arg(0))
	}
	bundle, err := b.load()
	if err != nil {
		return err
	}
	ep := transport.Endpoint{Address: fs.Arg(0), Mode: transport.TLSMode(tlsMode), ServerName: sni, Profile: b.profile, Credentials: bundle}
	if ep.Mode != transport.TLSByModem && ep.Mode != transport.TLSByHost {
		return usageError("--tls %q: want modem or host", tlsMode)
	}

	s, err := m.start(ctx, env)
	if err != nil {
		return err
	}
	defer s.close()
	t := s.plugin.Transport()
	route, err := transport.NewRoute(t, ep)
	if err != nil {
		var ce *transport.CredentialError
		if errors.As(err, &ce) {
			return fmt.Errorf("--%s: %w", strings.ReplaceAll(ce.Field, "/", "/--"), ce.Err)
		}
		return err
	}
	if ep.Mode == transport.TLSByModem {
		if _, err := t.Provision(ctx, bundle); err != nil {
			return err
		}
	}
	// The bound covers the modem's session open and, in host mode, the
	// TLS handshake over it; the plugin bounds each AT step itself.
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	conn, err := route.Dial(dctx)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close()
	return pump(ctx, conn, env, linger)
}

// pump copies stdin to conn and conn to stdout until the server closes, or
// stdin ended and the server stayed quiet for linger, or ctx ends.
func pump(ctx context.Context, conn net.Conn, env Env, linger time.Duration) error {
	stdinDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, env.Stdin)
		stdinDone <- err
	}()
	var (
		mu       sync.Mutex
		lastData = time.Now()
		inputEOF bool
	)
	readDone := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			conn.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
			n, err := conn.Read(buf)
			if n > 0 {
				mu.Lock()
				lastData = time.Now()
				mu.Unlock()
				if _, werr := env.Stdout.Write(buf[:n]); werr != nil {
					readDone <- werr
					return
				}
			}
			if err == nil {
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				mu.Lock()
				quiet := inputEOF && time.Since(lastData) >= linger
				mu.Unlock()
				if quiet {
					readDone <- nil
					return
				}
				if ctx.Err() != nil {
					readDone <- ctx.Err()
					return
				}
				continue
			}
			if errors.Is(err, io.EOF) {
				err = nil
			}
			readDone <- err
			return
		}
	}()
	for {
		select {
		case err := <-stdinDone:
			if err != nil {
				conn.Close()
				<-readDone
				return fmt.Errorf("sending: %w", err)
			}
			mu.Lock()
			inputEOF = true
			lastData = time.Now()
			mu.Unlock()
			stdinDone = nil
		case err := <-readDone:
			return err
		}
	}
}
