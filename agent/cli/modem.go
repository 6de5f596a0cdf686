package cli

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cellgate/cellgate/agent/certcheck"
	"github.com/cellgate/cellgate/agent/pluginhost"
	"github.com/cellgate/cellgate/internal/logging"
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
	regWait   time.Duration
	options   map[string]string
	// noNetwork opens the modem for its certificate store only
	// (sdk.ModemConfig.NoNetwork): port, identity and SIM, no registration.
	noNetwork bool
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
	fs.DurationVar(&m.regWait, "registration-wait", 15*time.Second, "how long to wait for a signal and for network registration before reporting what the modem found")
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

// modemSession is a started plugin with an opened modem, and the progress
// line of the command using it.
type modemSession struct {
	plugin   *sdk.Plugin
	info     sdk.ModemInfo
	progress *progress
}

// start launches the plugin for m.model and opens the modem, showing each
// step on a terminal. The session's close ends both.
func (m *modemFlags) start(ctx context.Context, env Env) (*modemSession, error) {
	prog := newProgress(env)
	p, err := m.launch(ctx, env, prog)
	if err != nil {
		prog.Close()
		return nil, err
	}
	if m.noNetwork {
		prog.Step("opening the modem on %s (SIM only, no network needed)", m.port)
	} else {
		prog.Step("opening the modem on %s (registration: up to %s)", m.port, m.regWait)
	}
	info, err := m.open(ctx, p)
	if err != nil {
		prog.Close()
		return nil, err
	}
	prog.Step("modem ready: %s, %s, %s", info.Model, info.Registration, signalWords(info.SignalRSSI))
	return &modemSession{plugin: p, info: info, progress: prog}, nil
}

// launch finds, checks and starts the plugin for m.model.
func (m *modemFlags) launch(ctx context.Context, env Env, prog *progress) (*sdk.Plugin, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(m.logLevel)); err != nil {
		return nil, usageError("--log-level %q: want debug, info, warn or error", m.logLevel)
	}
	log := slog.New(prog.Handler(logging.NewHandler(env.Stderr, logging.Options{Level: level, Journal: toJournal(env.Stderr)}), level))
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
	prog.Step("starting %s", path)
	return sdk.Launch(ctx, sdk.LaunchConfig{Path: path, SHA256: sum, Logger: log})
}

// open opens the modem through p. On failure p is ended, and a modem that
// answered but is not on the network is an *offlineError saying what it
// showed.
func (m *modemFlags) open(ctx context.Context, p *sdk.Plugin) (sdk.ModemInfo, error) {
	octx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	info, err := p.Transport().Open(octx, sdk.ModemConfig{Port: m.port, Baud: m.baud, APN: m.apn, Model: m.model, Options: m.options, RegistrationTimeout: m.regWait, NoNetwork: m.noNetwork})
	if err == nil {
		return info, nil
	}
	found, ok := modemState(ctx, p)
	p.Kill(context.Background())
	if errors.Is(err, context.DeadlineExceeded) && octx.Err() != nil {
		err = fmt.Errorf("no answer within --timeout %s", m.timeout)
	}
	// A serial error names the port already.
	var se *sdk.SerialError
	if !errors.As(err, &se) {
		err = fmt.Errorf("open modem on %s: %w", m.port, err)
	}
	if ok && !onNetwork(found) {
		return info, &offlineError{found: found, err: err}
	}
	return info, err
}

// modemState asks the plugin what the modem it could not bring up shows:
// SIM, registration, signal. ok is false when the plugin cannot say (it
// predates the Status call, or the port never opened).
func modemState(ctx context.Context, p *sdk.Plugin) (sdk.ModemStatus, bool) {
	r, isReporter := p.Transport().(sdk.StatusReporter)
	if !isReporter {
		return sdk.ModemStatus{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := r.Status(ctx)
	return st, err == nil && st.PortOpen
}

// onNetwork says whether st shows the modem registered with a signal: a
// bring-up that failed then failed for another reason than the network.
func onNetwork(st sdk.ModemStatus) bool {
	_, signal := sdk.RSSIToDBM(st.SignalRSSI)
	return signal && (st.Registration == "home" || st.Registration == "roaming")
}

// offlineError is a modem that answered but did not come onto the network:
// what it showed, and why the bring-up stopped.
type offlineError struct {
	found sdk.ModemStatus
	err   error
}

// Error reads like "modem not on the network: SIM ready, registration
// searching, no signal (rssi 99); open modem on /dev/ttyUSB2: ...".
func (e *offlineError) Error() string {
	return "modem not on the network: " + describeState(e.found) + "; " + e.err.Error()
}

func (e *offlineError) Unwrap() error { return e.err }

// describeState says in words what a modem showed: "SIM ready,
// registration denied, no signal (rssi 99)".
func describeState(st sdk.ModemStatus) string {
	sim := "SIM " + cmp.Or(st.SIM, "unknown")
	reg := "registration " + cmp.Or(st.Registration, "unknown")
	return sim + ", " + reg + ", " + signalWords(st.SignalRSSI)
}

// signalWords is a +CSQ rssi in words: "-69 dBm (rssi 22)", or "no signal
// (rssi 99)".
func signalWords(rssi int) string {
	dbm, ok := sdk.RSSIToDBM(rssi)
	if !ok {
		return fmt.Sprintf("no signal (rssi %d)", rssi)
	}
	return fmt.Sprintf("%d dBm (rssi %d)", dbm, rssi)
}

// close stops the modem (sessions closed, its network service stopped) and
// ends the plugin.
func (s *modemSession) close() {
	s.progress.Step("closing the modem")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s.plugin.Kill(ctx)
	s.progress.Close()
}

func executable(env Env) string {
	if env.Executable != "" {
		return env.Executable
	}
	p, _ := os.Executable()
	return p
}

// modemCommand is `cellgate modem`: the modem through its plugin, without
// the agent.
func modemCommand(env Env) *cobra.Command {
	certs := group("certs", "List, provision and delete the TLS files on the modem's flash",
		"The certificate authority, client certificate and key the modem's TLS stack\nuses live in its flash file system; these commands manage them through the\nplugin, as the agent does at start. They need the modem and its SIM, not the\nnetwork: they work out of coverage or with registration denied.",
		`  cellgate modem certs list --model sim7600 --port /dev/ttyUSB2
  cellgate modem certs provision --model sim7600 --port /dev/ttyUSB2 --ca ca.pem --cert client.pem --key client.key
  cellgate modem certs delete --model sim7600 --port /dev/ttyUSB2 client.pem`,
		leaf(&cobra.Command{Use: "list", Short: "List the TLS files on the modem",
			Example: "  cellgate modem certs list --model sim7600 --port /dev/ttyUSB2 --json"},
			func(fs *pflag.FlagSet) action { return modemCerts("list", fs, env) }),
		leaf(&cobra.Command{Use: "provision", Short: "Download a CA, client certificate and key to the modem (skipping files already there)",
			Example: "  cellgate modem certs provision --model sim7600 --port /dev/ttyUSB2 --ca ca.pem --cert client.pem --key client.key --profile 0"},
			func(fs *pflag.FlagSet) action { return modemCerts("provision", fs, env) }),
		leaf(&cobra.Command{Use: "delete NAME", Short: "Delete one TLS file from the modem",
			Example: "  cellgate modem certs delete --model sim7600 --port /dev/ttyUSB2 client.pem"},
			func(fs *pflag.FlagSet) action { return modemCerts("delete", fs, env) }),
	)
	return group("modem", "Talk to a modem through its plugin, without the agent",
		"Each command starts the model's plugin (cellgate-plugin-<model>, next to\ncellgate or in "+pluginhost.SystemDir+"), opens the modem on its serial\nport, does its work and closes the modem again. Stop the agent first: the\nport is the agent's while it runs.",
		`  cellgate modem info --model sim7600 --port /dev/ttyUSB2
  cellgate modem certs list --model sim7600 --port /dev/ttyUSB2
  echo hello | cellgate modem dial --model sim7600 --port /dev/ttyUSB2 --ca ca.pem example.net:443`,
		leaf(&cobra.Command{Use: "info", Short: "Print the modem's identity, SIM, registration and signal",
			Long:    "Print the modem's model, revision, IMEI, ICCID, registration and signal.\nWithout network service it reports what it found (SIM state, registration\ndenied or searching, no signal) and exits 1.",
			Example: "  cellgate modem info --model sim7600 --port /dev/ttyUSB2\n  cellgate modem info --model sim7600 --port /dev/ttyUSB2 --json"},
			func(fs *pflag.FlagSet) action { return modemInfo(fs, env) }),
		certs,
		leaf(&cobra.Command{Use: "dial HOST:PORT", Short: "Open a TLS connection through the modem, like openssl s_client",
			Long:    "Open a TLS connection through the modem: stdin goes to the server and the\nserver's bytes to stdout. TLS runs in the modem (--tls modem) or on this\nmachine over the modem's plain TCP (--tls host).",
			Example: "  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | cellgate modem dial --model sim7600 --port /dev/ttyUSB2 --ca ca.pem example.net:443"},
			func(fs *pflag.FlagSet) action { return modemDial(fs, env) }),
	)
}

// newFlagSet and parse are for the commands registered in extraCommands,
// which parse their own flags; the cobra tree's commands get theirs parsed
// by cobra (see leaf).
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
func modemInfo(fs *pflag.FlagSet, env Env) action {
	var m modemFlags
	var asJSON bool
	m.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	return func(ctx context.Context) error {
		if err := m.check(); err != nil {
			return err
		}
		if fs.NArg() != 0 {
			return usageError("modem info: unexpected argument %q", fs.Arg(0))
		}
		s, err := m.start(ctx, env)
		var offline *offlineError
		if errors.As(err, &offline) {
			printOffline(env.Stdout, offline.found, m.port, asJSON)
		}
		if err != nil {
			return err
		}
		defer s.close()
		s.progress.Clear()
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
		fmt.Fprintf(env.Stdout, "model:        %s\nmanufacturer: %s\nrevision:     %s\nimei:         %s\niccid:        %s\nsignal:       %s, ber %d\nregistration: %s\nclock synced: %t\n",
			i.Model, i.Manufacturer, i.Revision, i.IMEI, i.ICCID, signalWords(i.SignalRSSI), i.SignalBER, i.Registration, i.ClockSynced)
		return nil
	}
}

// printOffline writes what `modem info` found on a modem that did not come
// onto the network, as text or one JSON object (with "online": false).
func printOffline(w io.Writer, st sdk.ModemStatus, port string, asJSON bool) {
	if asJSON {
		b, err := json.Marshal(struct {
			sdk.ModemStatus
			Port   string `json:"port"`
			Online bool   `json:"online"`
		}{st, port, false})
		if err == nil {
			fmt.Fprintln(w, string(b))
		}
		return
	}
	fmt.Fprintf(w, "port:         %s\nsim:          %s\nregistration: %s\nsignal:       %s\n",
		port, cmp.Or(st.SIM, "unknown"), cmp.Or(st.Registration, "unknown"), signalWords(st.SignalRSSI))
	if st.Operator != "" {
		fmt.Fprintf(w, "operator:     %s\n", st.Operator)
	}
}

// modemCerts: cellgate modem certs list|provision|delete, as op says.
func modemCerts(op string, fs *pflag.FlagSet, env Env) action {
	var m modemFlags
	var b bundleFlags
	var asJSON bool
	m.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	if op == "provision" {
		b.register(fs)
	}
	// The certificate store is in the modem's flash: reaching it needs the
	// port and the SIM, not the network.
	m.noNetwork = true
	return func(ctx context.Context) error {
		if err := m.check(); err != nil {
			return err
		}
		var bundle sdk.Bundle
		switch op {
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
				return usageError("modem certs %s: unexpected argument %q", op, fs.Arg(0))
			}
		}
		s, err := m.start(ctx, env)
		if err != nil {
			return err
		}
		defer s.close()
		t := s.plugin.Transport()
		switch op {
		case "list":
			s.progress.Step("listing the files on the modem")
			names, err := t.ListCerts(ctx)
			if err != nil {
				return err
			}
			s.progress.Clear()
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
			s.progress.Step("deleting %s", fs.Arg(0))
			return t.DeleteCert(ctx, fs.Arg(0))
		case "provision":
			s.progress.Step("provisioning profile %d (%d bytes)", bundle.Profile, len(bundle.CA)+len(bundle.Cert)+len(bundle.Key))
			r, err := t.Provision(ctx, bundle)
			if err != nil {
				return err
			}
			s.progress.Clear()
			if asJSON {
				return json.NewEncoder(env.Stdout).Encode(r)
			}
			fmt.Fprintf(env.Stdout, "profile %d: authmode %d; downloaded %s; kept %s; deleted %s\n",
				r.Profile, r.AuthMode, list(r.Downloaded), list(r.Kept), list(r.Deleted))
		}
		return nil
	}
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
	if err == nil && b.keyPassword != "" {
		// The agent's rule for tls.key_password_file: 0600, one trailing
		// newline dropped, not empty; a flag has no tls.allow_readable_key,
		// so the refusal suggests chmod 600 only.
		out.KeyPassword, err = certcheck.ReadStrictKeyPassword(b.keyPassword)
		if err != nil {
			err = fmt.Errorf("--key-password-file: %w", err)
		}
	}
	return out, err
}

// modemDial: like `openssl s_client` through the modem. Stdin goes to the
// server and the server's bytes to stdout. After stdin ends the session
// stays open until the server closes it or --linger passes without data,
// so a request/response exchange completes.
func modemDial(fs *pflag.FlagSet, env Env) action {
	var m modemFlags
	var b bundleFlags
	var tlsMode, sni string
	var linger time.Duration
	m.register(fs)
	b.register(fs)
	fs.StringVar(&tlsMode, "tls", "modem", "where TLS runs: modem (the modem's TLS stack) or host (TLS 1.3 on this machine over plain modem TCP)")
	fs.StringVar(&sni, "sni", "", "TLS server name (default: HOST when it is a name)")
	fs.DurationVar(&linger, "linger", 3*time.Second, "after stdin ends, how long to wait for more server data before closing")
	return func(ctx context.Context) error {
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
			s.progress.Step("provisioning profile %d", bundle.Profile)
			if _, err := t.Provision(ctx, bundle); err != nil {
				return err
			}
		}
		// The bound covers the modem's session open and, in host mode, the
		// TLS handshake over it; the plugin bounds each AT step itself.
		s.progress.Step("connecting to %s (TLS by the %s)", fs.Arg(0), tlsMode)
		dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		conn, err := route.Dial(dctx)
		cancel()
		if err != nil {
			return err
		}
		defer conn.Close()
		s.progress.Clear()
		return pump(ctx, conn, env, linger)
	}
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
