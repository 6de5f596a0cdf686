package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/modemsim"
)

// check is one promise of the contract, checked against a fresh fixture.
type check struct {
	name   string
	proves string
	// applies returns why the check cannot run against cfg's modem and
	// servers, or "" when it can.
	applies func(cfg *Config) string
	// run returns what it saw on success, or why the plugin failed.
	run func(ctx context.Context, f *fixture) (string, error)
}

// checks are every check, in the order Run runs them.
var checks = []check{
	{"open", "Open brings the modem up and reports its model, identity, signal and registration", nil, checkOpen},
	{"other-model-refused", "started against another model's modem, Open fails with *sdk.ModelMismatchError", needsEmulator, checkOtherModel},
	{"unknown-option-refused", "Open with an option no plugin reads fails with *sdk.OptionError naming it", nil, checkUnknownOption},
	{"provision-idempotent", "Provision stores CA, certificate and key once; again it stores and deletes nothing; a rotation stores the new pair and deletes the old one only after the TLS profile uses the new", nil, checkProvision},
	{"bad-bundle-refused", "a broken bundle is a *sdk.BundleError, and no command reaches the modem first", nil, checkBadBundle},
	{"list-delete", "ListCerts shows the stored files; DeleteCert of one in use is refused (and it stays listed) or done (it leaves the list, and Provision stores it again)", nil, checkListDelete},
	{"dial-tls", "a modem-TLS session to a server requiring a client certificate carries data both ways", nil, checkDialTLS},
	{"rogue-cert-refused", "Dial to a server whose certificate a CA other than the provisioned one signed fails with a *sdk.NetError of kind handshake or certificate", needsRogue, checkRogue},
	{"binary-64k", "64 KiB of every byte value, AT result codes, prompts and Ctrl-Z included, come back intact", nil, checkBinary64K},
	{"bulk-1mib", "1 MiB of random bytes through an echo server comes back intact", nil, checkBulk},
	{"two-sessions", "two sessions exist at once, with distinct ids, and carry 64 KiB each concurrently", nil, checkTwoSessions},
	{"peer-close", "data the server sent before it closed arrives, then an EventPeerClosed frame, then io.EOF", nil, checkPeerClose},
	{"reboot-mid-session", "a modem reboot ends the session with EventModemRebooted, and the next Dial works", needsFaults, checkReboot},
	{"cancel-dial", "a Dial to a server that never answers returns with context.DeadlineExceeded when its context ends, and the plugin stays usable", needsLocalServers, checkCancel},
	{"plugin-killed", "after SIGKILL of the plugin, Recv and Send fail with sdk.ErrPluginExited within a second", nil, checkPluginKilled},
	{"stop", "Stop before Open is a no-op; Stop ends every session, and a second Stop returns nil", nil, checkStop},
	{"status", "the optional Status (sdk.StatusReporter, contract 1.1) reports PortOpen false before Open, answers within 20 s while a session moves data, without holding it up, and reports the modem's signal and registration as the modem gives them; n/a when the plugin does not implement it", nil, checkStatus},
}

func needsEmulator(cfg *Config) string {
	switch {
	case cfg.Emulator != "":
		return ""
	case cfg.hasModem():
		return "needs an emulated modem of another model; only --emulator runs it"
	}
	return "the plugin drives no modem"
}

func needsFaults(cfg *Config) string {
	switch {
	case cfg.Emulator != "" || cfg.NewModem != nil:
		return ""
	case cfg.Port != "":
		return "a real port cannot be rebooted on demand; only --emulator runs it"
	}
	return "the plugin drives no modem"
}

func needsRogue(cfg *Config) string {
	if cfg.Server != nil && cfg.Server.RogueAddr == "" {
		return "no rogue server given (--rogue-server; cellgate plugin echo-server starts one)"
	}
	return ""
}

func needsLocalServers(cfg *Config) string {
	if cfg.Server != nil {
		return "needs a local server that never answers the handshake; runs without --server"
	}
	return ""
}

// notApplicable is a check that found out only at run time that the
// modem under test lacks what it needs.
type notApplicable string

func (n notApplicable) Error() string { return string(n) }

func checkOpen(ctx context.Context, f *fixture) (string, error) {
	info, err := f.open(ctx)
	if err != nil {
		return "", err
	}
	var bad []string
	if !strings.Contains(strings.ToLower(info.Model), strings.ToLower(f.cfg.Model)) {
		bad = append(bad, fmt.Sprintf("Model %q does not name %s", info.Model, f.cfg.Model))
	}
	if f.modem != nil {
		bad = append(bad, modemInfoProblems(info, f.cfg.Port != "")...)
	} else if !slices.Contains([]string{"home", "roaming", "searching", "denied", "unknown", "not registered"}, info.Registration) {
		bad = append(bad, fmt.Sprintf("Registration %q is not one the contract names", info.Registration))
	}
	if len(bad) > 0 {
		return "", errors.New(strings.Join(bad, "; "))
	}
	return fmt.Sprintf("%s %s rev %q, registration %s, signal %d", info.Manufacturer, info.Model, info.Revision, info.Registration, info.SignalRSSI), nil
}

func modemInfoProblems(info sdk.ModemInfo, realPort bool) []string {
	var bad []string
	if len(info.IMEI) != 15 || strings.Trim(info.IMEI, "0123456789") != "" {
		bad = append(bad, fmt.Sprintf("IMEI %q is not 15 digits", info.IMEI))
	}
	if info.Revision == "" || info.Manufacturer == "" {
		bad = append(bad, fmt.Sprintf("Revision %q / Manufacturer %q missing", info.Revision, info.Manufacturer))
	}
	if info.Registration != "home" && info.Registration != "roaming" {
		bad = append(bad, fmt.Sprintf("Registration %q, want home or roaming", info.Registration))
	}
	if (info.SignalRSSI < 0 || info.SignalRSSI > 31) && !(realPort && info.SignalRSSI == 99) {
		bad = append(bad, fmt.Sprintf("SignalRSSI %d, want 0-31", info.SignalRSSI))
	}
	return bad
}

// otherModel picks an emulated model other than model, preferring one of
// the same family (sim7800 for sim7600), whose dialect the plugin speaks.
func otherModel(model string) string {
	other := ""
	for _, m := range modemsim.Models() {
		switch {
		case m == model:
		case len(m) > 3 && strings.HasPrefix(model, m[:3]):
			return m
		case other == "":
			other = m
		}
	}
	return other
}

func checkOtherModel(ctx context.Context, f *fixture) (string, error) {
	other := otherModel(f.cfg.Emulator)
	if other == "" {
		return "", notApplicable("the emulator has no model other than " + f.cfg.Emulator)
	}
	om, err := StartEmulator(other, -1)
	if err != nil {
		return "", err
	}
	f.defer_(func() { om.Close() })
	cfg := f.modemConfig(f.cfg.Options)
	cfg.Port = om.Port()
	_, err = f.tr.Open(ctx, cfg)
	var mm *sdk.ModelMismatchError
	if !errors.As(err, &mm) {
		return "", fmt.Errorf("Open against a %s = %v, want *sdk.ModelMismatchError", other, err)
	}
	return fmt.Sprintf("against a %s: %v", other, err), nil
}

// unknownOption is an option no plugin reads.
const unknownOption = "conformance_no_such_option"

func checkUnknownOption(ctx context.Context, f *fixture) (string, error) {
	opts := map[string]string{unknownOption: "1"}
	for k, v := range f.cfg.Options {
		opts[k] = v
	}
	_, err := f.tr.Open(ctx, f.modemConfig(opts))
	var oe *sdk.OptionError
	if !errors.As(err, &oe) || oe.Key != unknownOption {
		return "", fmt.Errorf("Open with option %s = %v, want *sdk.OptionError naming it", unknownOption, err)
	}
	return err.Error(), nil
}

func checkDialTLS(ctx context.Context, f *fixture) (string, error) {
	sess, _, err := f.readyAndDial(ctx)
	if err != nil {
		return "", err
	}
	if err := roundTrip(ctx, sess, []byte("hello through the modem\n")); err != nil {
		return "", err
	}
	return fmt.Sprintf("session %d echoed", sess.ID()), nil
}

// RogueTLS is the configuration of a rogue server: it presents p's server
// certificate, which the plugin under test must refuse because its CA is
// not the provisioned one, and asks nothing of the client, so the only
// thing that can fail the handshake is the plugin's verification.
func RogueTLS(p *PKI) *tls.Config {
	cfg := MutualTLS(p, 0)
	cfg.ClientAuth, cfg.ClientCAs = tls.NoClientCert, nil
	return cfg
}

func checkRogue(ctx context.Context, f *fixture) (string, error) {
	if err := f.ready(ctx); err != nil {
		return "", err
	}
	addr := ""
	if f.cfg.Server != nil {
		addr = f.cfg.Server.RogueAddr
	} else {
		rogue, err := NewPKI(P256)
		if err != nil {
			return "", err
		}
		srv, err := f.serve(RogueTLS(rogue), Echo)
		if err != nil {
			return "", err
		}
		addr = srv.Addr
	}
	host, port, err := splitAddr(addr)
	if err != nil {
		return "", err
	}
	sess, err := f.tr.Dial(ctx, sdk.DialRequest{Host: host, Port: port, Mode: sdk.DialModemTLS})
	if err == nil {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sess.Close(cctx)
		return "", fmt.Errorf("Dial to %s succeeded (session %d), but a CA the modem was not given signed its certificate: the plugin does not verify the server", addr, sess.ID())
	}
	// Modems differ in whether they call this a failed handshake or a
	// refused certificate; both are right.
	if kind, ok := sdk.NetKindOf(err); !ok || (kind != sdk.NetHandshake && kind != sdk.NetCertificate) {
		return "", fmt.Errorf("Dial to a server with a rogue certificate = %v, want a *sdk.NetError of kind handshake or certificate", err)
	}
	return "refused: " + err.Error(), nil
}

// hostilePayload is 64 KiB that an AT channel which scans payloads rather
// than counting them would mangle: result codes, prompts, URC heads,
// Ctrl-Z and ESC, every byte value, then random bytes.
func hostilePayload() []byte {
	var b bytes.Buffer
	b.WriteString("\r\nOK\r\n\r\nERROR\r\n> \x1a\x1b+++\r\n+CCHRECV: DATA,0,16\r\n+QSSLURC: \"closed\",0\r\nRDY\r\n")
	for i := range 256 {
		b.WriteByte(byte(i))
	}
	rest := make([]byte, 64<<10-b.Len())
	rand.Read(rest)
	b.Write(rest)
	return b.Bytes()
}

func checkBinary64K(ctx context.Context, f *fixture) (string, error) {
	return echoIntact(ctx, f, hostilePayload(), 5*time.Minute)
}

func checkBulk(ctx context.Context, f *fixture) (string, error) {
	data := make([]byte, 1<<20)
	rand.Read(data)
	return echoIntact(ctx, f, data, 10*time.Minute)
}

// echoIntact sends data through a session to the echo server and checks
// that it comes back byte for byte.
func echoIntact(ctx context.Context, f *fixture, data []byte, within time.Duration) (string, error) {
	sess, _, err := f.readyAndDial(ctx)
	if err != nil {
		return "", err
	}
	start := time.Now()
	got, err := exchange(ctx, sess, data, within)
	if err != nil {
		return "", err
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		return "", fmt.Errorf("%d bytes echoed back differ from the %d sent", len(got), len(data))
	}
	return fmt.Sprintf("%d bytes each way in %s", len(data), time.Since(start).Round(time.Millisecond)), nil
}

func checkTwoSessions(ctx context.Context, f *fixture) (string, error) {
	if err := f.ready(ctx); err != nil {
		return "", err
	}
	host, port, _, err := f.goodServer()
	if err != nil {
		return "", err
	}
	a, err := f.dial(ctx, host, port)
	if err != nil {
		return "", err
	}
	b, err := f.dial(ctx, host, port)
	if err != nil {
		return "", fmt.Errorf("second session: %w", err)
	}
	if a.ID() == b.ID() {
		return "", fmt.Errorf("two sessions share id %d", a.ID())
	}
	errs := make(chan error, 2)
	for i, s := range []sdk.Session{a, b} {
		go func() {
			data := bytes.Repeat([]byte{byte('a' + i)}, 64<<10)
			got, err := exchange(ctx, s, data, 5*time.Minute)
			switch {
			case err != nil:
				errs <- fmt.Errorf("session %d: %w", s.ID(), err)
			case !bytes.Equal(got, data):
				errs <- fmt.Errorf("session %d: echoed data differs", s.ID())
			default:
				errs <- nil
			}
		}()
	}
	return fmt.Sprintf("sessions %d and %d", a.ID(), b.ID()), errors.Join(<-errs, <-errs)
}

func checkPeerClose(ctx context.Context, f *fixture) (string, error) {
	sess, _, err := f.readyAndDial(ctx)
	if err != nil {
		return "", err
	}
	if err := sess.Send(ctx, []byte(CloseRequest)); err != nil {
		return "", fmt.Errorf("Send: %w", err)
	}
	got, ev, err := untilEvent(ctx, sess)
	if err != nil {
		return "", fmt.Errorf("Recv before the peer-closed event: %w (got %q)", err, got)
	}
	if ev.Kind != sdk.EventPeerClosed {
		return "", fmt.Errorf("event %v, want peer_closed", ev.Kind)
	}
	if want := CloseRequest + CloseReply; string(got) != want {
		return "", fmt.Errorf("data before close = %q, want %q", got, want)
	}
	if _, err := sess.Recv(ctx); !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("Recv after the event = %v, want io.EOF", err)
	}
	return fmt.Sprintf("%d bytes, then %v (%s), then EOF", len(got), ev.Kind, ev.Detail), nil
}

func checkReboot(ctx context.Context, f *fixture) (string, error) {
	fi, ok := f.modem.(FaultInjector)
	if !ok {
		return "", notApplicable("the modem under test cannot be rebooted on demand")
	}
	sess, _, err := f.readyAndDial(ctx)
	if err != nil {
		return "", err
	}
	if err := roundTrip(ctx, sess, []byte("before\n")); err != nil {
		return "", err
	}
	if err := fi.Reboot(); err != nil {
		return "", fmt.Errorf("reboot the modem: %w", err)
	}
	_, ev, err := untilEvent(ctx, sess)
	if err != nil {
		return "", fmt.Errorf("Recv after reboot = %w, want a modem-rebooted event first", err)
	}
	if ev.Kind != sdk.EventModemRebooted {
		return "", fmt.Errorf("event %v, want modem_rebooted", ev.Kind)
	}
	host, port, _, err := f.goodServer()
	if err != nil {
		return "", err
	}
	again, err := f.dial(ctx, host, port)
	if err != nil {
		return "", fmt.Errorf("after the reboot: %w", err)
	}
	if err := roundTrip(ctx, again, []byte("after\n")); err != nil {
		return "", fmt.Errorf("after the reboot: %w", err)
	}
	return fmt.Sprintf("%v, then session %d echoed", ev.Kind, again.ID()), nil
}

func checkCancel(ctx context.Context, f *fixture) (string, error) {
	if err := f.ready(ctx); err != nil {
		return "", err
	}
	// A server that accepts TCP and never answers the TLS handshake.
	mute, err := f.serve(nil, func(c net.Conn) { io.Copy(io.Discard, c) })
	if err != nil {
		return "", err
	}
	host, port := mute.HostPort()
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	_, err = f.tr.Dial(dctx, sdk.DialRequest{Host: host, Port: port, Mode: sdk.DialModemTLS})
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		return "", fmt.Errorf("Dial with a 1 s deadline = %v, want context.DeadlineExceeded", err)
	}
	if took > 10*time.Second {
		return "", fmt.Errorf("Dial returned %s after its deadline", (took - time.Second).Round(time.Millisecond))
	}
	// The plugin is still usable and the session slot is free again.
	host, port, _, err = f.goodServer()
	if err != nil {
		return "", err
	}
	sess, err := f.dial(ctx, host, port)
	if err != nil {
		return "", fmt.Errorf("after the cancelled Dial: %w", err)
	}
	if err := roundTrip(ctx, sess, []byte("still alive\n")); err != nil {
		return "", fmt.Errorf("after the cancelled Dial: %w", err)
	}
	return fmt.Sprintf("Dial returned after %s", took.Round(time.Millisecond)), nil
}

func checkPluginKilled(ctx context.Context, f *fixture) (string, error) {
	sess, _, err := f.readyAndDial(ctx)
	if err != nil {
		return "", err
	}
	if err := roundTrip(ctx, sess, []byte("ping\n")); err != nil {
		return "", err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recvErr := make(chan error, 1)
	go func() {
		_, err := sess.Recv(rctx)
		recvErr <- err
	}()
	proc, err := os.FindProcess(f.plugin.PID())
	if err == nil {
		err = proc.Kill()
	}
	if err != nil {
		return "", fmt.Errorf("kill the plugin (pid %d): %w", f.plugin.PID(), err)
	}
	select {
	case err := <-recvErr:
		if !errors.Is(err, sdk.ErrPluginExited) {
			return "", fmt.Errorf("Recv after SIGKILL = %v, want sdk.ErrPluginExited", err)
		}
	case <-time.After(time.Second):
		return "", errors.New("Recv did not fail within 1 s of the plugin's SIGKILL")
	}
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if err := sess.Send(sctx, []byte("x")); !errors.Is(err, sdk.ErrPluginExited) {
		return "", fmt.Errorf("Send after SIGKILL = %v, want sdk.ErrPluginExited", err)
	}
	return "Recv and Send: " + sdk.ErrPluginExited.Error(), nil
}

func checkStop(ctx context.Context, f *fixture) (string, error) {
	if err := f.tr.Stop(ctx); err != nil {
		return "", fmt.Errorf("Stop before Open = %w, want nil", err)
	}
	sess, _, err := f.readyAndDial(ctx)
	if err != nil {
		return "", err
	}
	if err := roundTrip(ctx, sess, []byte("before stop\n")); err != nil {
		return "", err
	}
	if err := f.tr.Stop(ctx); err != nil {
		return "", fmt.Errorf("Stop with a session open: %w", err)
	}
	_, ev, err := untilEvent(ctx, sess)
	switch {
	case ev != nil:
		// An event is a fine way to say the session ended; Recv must end
		// after it.
		if _, err = sess.Recv(ctx); err == nil {
			return "", fmt.Errorf("after Stop and event %v, Recv returned a frame, want the end of the session", ev.Kind)
		}
	case ctx.Err() != nil:
		return "", fmt.Errorf("Recv did not end after Stop: %w", err)
	}
	if err := f.tr.Stop(ctx); err != nil {
		return "", fmt.Errorf("second Stop = %w, want nil", err)
	}
	return fmt.Sprintf("session %d ended: %v", sess.ID(), err), nil
}
