// Package plugintest is the conformance kit for cellgate modem plugins. Run
// starts a plugin binary the way the agent does (go-plugin, checksum
// verified), puts it in front of an emulated modem (sdk/modemsim, on a real
// pseudo-terminal) and real TLS servers on loopback, and checks it against
// the SecureTransport contract. The checks expect the contract's neutral
// terms (error kinds, counted certificate writes), never one vendor's codes
// or commands. See README.md.
//
// Every check reports failures from the test's own goroutine; work done on
// other goroutines hands its errors back over channels.
package plugintest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/modemsim"
)

// Config says which plugin to check.
type Config struct {
	// Binary is the plugin executable.
	Binary string
	// Model is the modem model the plugin drives ("sim7600"); the emulated
	// modem takes this personality.
	Model string
	// Baud is the emulated line rate; 0 means unthrottled, so the kit runs
	// in seconds. Set 115200 to check behaviour at a real modem's pace.
	Baud int
	// Logger receives the plugin's logs; nil discards them.
	Logger *slog.Logger
	// Env is added to the plugin's environment (e.g. GORACE settings for
	// a plugin built with -race).
	Env []string
}

// Run checks the plugin in cfg against the contract, one subtest per
// promise. Each subtest starts its own modem and plugin.
func Run(t *testing.T, cfg Config) {
	t.Helper()
	if cfg.Binary == "" || cfg.Model == "" {
		t.Fatal("plugintest: Config.Binary and Config.Model are required")
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"Info", testInfo},
		{"OtherModelRefused", testOtherModel},
		{"UnknownOptionRefused", testUnknownOption},
		{"ProvisionIdempotentAndRotationSafe", testProvision},
		{"BadBundleRefusedBeforeAnyCommand", testBadBundle},
		{"MutualTLSDial", testMutualTLS},
		{"OneMiBEachWay", testBulk},
		{"TwoSessionsAtOnce", testTwoSessions},
		{"PeerCloseEvent", testPeerClose},
		{"RebootMidSession", testReboot},
		{"UntrustedServerIsHandshakeError", testUntrustedServer},
		{"CancellationHonoured", testCancel},
		{"PluginKilledMidSession", testPluginKilled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, cfg, cfg.Model)
			c.fn(t, f)
		})
	}
}

// fixture is one modem under test with one plugin process in front of it.
type fixture struct {
	cfg    Config
	modem  modemUnderTest
	plugin *sdk.Plugin
	tr     sdk.SecureTransport
	pki    *PKI
}

func newFixture(t *testing.T, cfg Config, modemModel string) *fixture {
	t.Helper()
	trace := &testutil.SyncBuffer{}
	baud := cfg.Baud
	if baud == 0 {
		baud = -1
	}
	m, err := modemsim.Start(modemsim.Config{Model: modemModel, Baud: baud, Trace: trace})
	if err != nil {
		t.Fatalf("start emulated %s: %v", modemModel, err)
	}
	t.Cleanup(func() { m.Close() })
	p := launch(t, cfg)
	return &fixture{cfg: cfg, modem: &emulated{m: m, trace: trace}, plugin: p, tr: p.Transport(), pki: NewPKI(t, P256)}
}

func (f *fixture) open(t *testing.T) sdk.ModemInfo {
	t.Helper()
	info, err := f.tr.Open(deadline(t, 60*time.Second), sdk.ModemConfig{Port: f.modem.Path(), Model: f.cfg.Model, RegistrationTimeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return info
}

func (f *fixture) bundle() sdk.Bundle {
	return sdk.Bundle{Profile: 0, CA: f.pki.CA.CertPEM, Cert: f.pki.Client.CertPEM, Key: f.pki.Client.KeyPEM}
}

// ready opens the modem and provisions the fixture's mutual-TLS bundle.
func (f *fixture) ready(t *testing.T) {
	t.Helper()
	f.open(t)
	if _, err := f.tr.Provision(deadline(t, 60*time.Second), f.bundle()); err != nil {
		t.Fatalf("Provision: %v", err)
	}
}

func (f *fixture) dial(t *testing.T, s *Server) sdk.Session {
	t.Helper()
	host, port := s.HostPort()
	sess, err := f.tr.Dial(deadline(t, 60*time.Second), sdk.DialRequest{Host: host, Port: port, Profile: 0, Mode: sdk.DialModemTLS})
	if err != nil {
		t.Fatalf("Dial %s: %v", s.Addr, err)
	}
	t.Cleanup(func() { sess.Close(context.Background()) })
	return sess
}

func testInfo(t *testing.T, f *fixture) {
	info := f.open(t)
	if !strings.Contains(strings.ToUpper(info.Model), strings.ToUpper(f.cfg.Model)) {
		t.Errorf("Model %q does not name %s", info.Model, f.cfg.Model)
	}
	if len(info.IMEI) != 15 || strings.Trim(info.IMEI, "0123456789") != "" {
		t.Errorf("IMEI %q is not 15 digits", info.IMEI)
	}
	if info.Revision == "" || info.Manufacturer == "" {
		t.Errorf("Revision %q / Manufacturer %q missing", info.Revision, info.Manufacturer)
	}
	if info.Registration != "home" && info.Registration != "roaming" {
		t.Errorf("Registration %q, want home or roaming", info.Registration)
	}
	if info.SignalRSSI < 0 || info.SignalRSSI > 31 {
		t.Errorf("SignalRSSI %d, want 0-31", info.SignalRSSI)
	}
}

func testOtherModel(t *testing.T, f *fixture) {
	other := ""
	for _, m := range modemsim.Models() {
		if m != f.cfg.Model {
			other = m
			break
		}
	}
	if other == "" {
		t.Fatalf("modemsim has no model other than %s to test against", f.cfg.Model)
	}
	om, err := modemsim.Start(modemsim.Config{Model: other, Baud: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer om.Close()
	_, err = f.tr.Open(deadline(t, 30*time.Second), sdk.ModemConfig{Port: om.Path(), Model: f.cfg.Model})
	var mm *sdk.ModelMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("Open against a %s = %v, want *sdk.ModelMismatchError", other, err)
	}
}

// unknownOption is an option no plugin reads.
const unknownOption = "plugintest_no_such_option"

func testUnknownOption(t *testing.T, f *fixture) {
	_, err := f.tr.Open(deadline(t, 60*time.Second), sdk.ModemConfig{
		Port: f.modem.Path(), Model: f.cfg.Model, RegistrationTimeout: 30 * time.Second,
		Options: map[string]string{unknownOption: "1"},
	})
	var oe *sdk.OptionError
	if !errors.As(err, &oe) || oe.Key != unknownOption {
		t.Fatalf("Open with option %s = %v, want *sdk.OptionError naming it", unknownOption, err)
	}
}

func testProvision(t *testing.T, f *fixture) {
	f.open(t)
	ctx := deadline(t, 60*time.Second)
	r1, err := f.tr.Provision(ctx, f.bundle())
	if err != nil {
		t.Fatalf("first Provision: %v", err)
	}
	if len(r1.Downloaded) != 3 || r1.AuthMode != 2 {
		t.Fatalf("first Provision = %+v, want 3 files downloaded and authmode 2", r1)
	}
	writes := f.modem.CertificateWrites()
	r2, err := f.tr.Provision(ctx, f.bundle())
	if err != nil {
		t.Fatalf("second Provision: %v", err)
	}
	if len(r2.Downloaded) != 0 || len(r2.Deleted) != 0 || len(r2.Kept) != 3 {
		t.Fatalf("second Provision = %+v, want nothing downloaded or deleted, 3 kept", r2)
	}
	if n := f.modem.CertificateWrites(); n != writes {
		t.Fatalf("second Provision wrote %d certificate files into the modem, want none", n-writes)
	}

	// Rotate the client identity.
	next := f.pki.NewClient(t, "rotated client")
	b := f.bundle()
	b.Cert, b.Key = next.CertPEM, next.KeyPEM
	f.modem.ResetTrace()
	r3, err := f.tr.Provision(ctx, b)
	if err != nil {
		t.Fatalf("rotation Provision: %v", err)
	}
	if len(r3.Downloaded) != 2 || len(r3.Deleted) != 2 || len(r3.Kept) != 1 {
		t.Fatalf("rotation Provision = %+v, want 2 downloaded (cert, key), 1 kept (CA), 2 deleted", r3)
	}
	// Rotation safety: the profile points at the new files before the old
	// ones are deleted.
	lastConfig, firstDelete := f.modem.RotationOrder()
	if lastConfig < 0 || firstDelete < 0 || firstDelete < lastConfig {
		t.Fatalf("old files deleted before the TLS profile was switched to the new ones (client key set at %d, first delete at %d)", lastConfig, firstDelete)
	}
	names, err := f.tr.ListCerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 3 {
		t.Fatalf("after rotation the modem holds %v, want exactly the 3 current files", names)
	}
	checkServerSeesRotatedClient(t, f)
}

// checkServerSeesRotatedClient dials a mutual-TLS echo server and checks
// that the client certificate it sees is the rotated one.
func checkServerSeesRotatedClient(t *testing.T, f *fixture) {
	t.Helper()
	srv := StartServer(t, MutualTLS(f.pki, 0), Echo)
	roundTrip(t, f.dial(t, srv), []byte("rotated\n"))
	c := <-srv.accepted
	tc, ok := c.(*tls.Conn)
	if !ok {
		t.Fatalf("server connection is %T, want *tls.Conn", c)
	}
	if peers := tc.ConnectionState().PeerCertificates; len(peers) == 0 || peers[0].Subject.CommonName != "rotated client" {
		t.Fatalf("server saw client certificate %v, want the rotated one", peers)
	}
}

func testBadBundle(t *testing.T, f *fixture) {
	f.open(t)
	other := NewPKI(t, P256)
	bad := map[string]sdk.Bundle{
		"key of another certificate": {CA: f.pki.CA.CertPEM, Cert: f.pki.Client.CertPEM, Key: other.Client.KeyPEM},
		"broken PEM":                 {CA: []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")},
		"certificate without key":    {CA: f.pki.CA.CertPEM, Cert: f.pki.Client.CertPEM},
		"oversized CA":               {CA: bytes.Repeat(f.pki.CA.CertPEM, 40)},
		"no CA and not insecure":     {Cert: f.pki.Client.CertPEM, Key: f.pki.Client.KeyPEM},
	}
	for name, b := range bad {
		before := f.modem.Commands()
		_, err := f.tr.Provision(deadline(t, 30*time.Second), b)
		var be *sdk.BundleError
		if !errors.As(err, &be) {
			t.Errorf("%s: Provision = %v, want *sdk.BundleError", name, err)
			continue
		}
		if after := f.modem.Commands(); after != before {
			t.Errorf("%s: refused, but %d commands reached the modem first", name, after-before)
		}
	}
}

func testMutualTLS(t *testing.T, f *fixture) {
	f.ready(t)
	srv := StartServer(t, MutualTLS(f.pki, 0), Echo)
	sess := f.dial(t, srv)
	roundTrip(t, sess, []byte("hello through the modem\n"))
}

func testBulk(t *testing.T, f *fixture) {
	f.ready(t)
	srv := StartServer(t, MutualTLS(f.pki, 0), Echo)
	sess := f.dial(t, srv)
	data := make([]byte, 1<<20)
	rand.Read(data)
	got, err := exchange(sess, data, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("1 MiB echoed back differs (got %d bytes)", len(got))
	}
}

func testTwoSessions(t *testing.T, f *fixture) {
	f.ready(t)
	srv := StartServer(t, MutualTLS(f.pki, 0), Echo)
	a, b := f.dial(t, srv), f.dial(t, srv)
	if a.ID() == b.ID() {
		t.Fatalf("two sessions share id %d", a.ID())
	}
	errs := make(chan error, 2)
	for i, s := range []sdk.Session{a, b} {
		go func() {
			data := bytes.Repeat([]byte{byte('a' + i)}, 64<<10)
			got, err := exchange(s, data, time.Minute)
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
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func testPeerClose(t *testing.T, f *fixture) {
	f.ready(t)
	srv := StartServer(t, MutualTLS(f.pki, 0), func(c net.Conn) { c.Write([]byte("bye\n")) })
	sess := f.dial(t, srv)
	var got []byte
	ctx := deadline(t, 30*time.Second)
	for {
		fr, err := sess.Recv(ctx)
		if err != nil {
			t.Fatalf("Recv before the peer-closed event: %v (got %q)", err, got)
		}
		if fr.Event != nil {
			if fr.Event.Kind != sdk.EventPeerClosed {
				t.Fatalf("event %v, want peer closed", fr.Event.Kind)
			}
			break
		}
		got = append(got, fr.Data...)
	}
	if string(got) != "bye\n" {
		t.Fatalf("data before close = %q, want %q", got, "bye\n")
	}
	if _, err := sess.Recv(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after the event = %v, want io.EOF", err)
	}
}

func testReboot(t *testing.T, f *fixture) {
	f.ready(t)
	srv := StartServer(t, MutualTLS(f.pki, 0), Echo)
	sess := f.dial(t, srv)
	roundTrip(t, sess, []byte("before\n"))
	if err := f.modem.Reboot(); err != nil {
		t.Fatal(err)
	}
	ctx := deadline(t, 30*time.Second)
	for {
		fr, err := sess.Recv(ctx)
		if err != nil {
			t.Fatalf("Recv after reboot = %v, want a modem-rebooted event first", err)
		}
		if fr.Event != nil {
			if fr.Event.Kind != sdk.EventModemRebooted {
				t.Fatalf("event %v, want modem rebooted", fr.Event.Kind)
			}
			break
		}
	}
	again := f.dial(t, srv)
	roundTrip(t, again, []byte("after\n"))
}

func testUntrustedServer(t *testing.T, f *fixture) {
	f.ready(t)
	stranger := NewPKI(t, P256)
	srv := StartServer(t, MutualTLS(stranger, 0), Echo)
	host, port := srv.HostPort()
	_, err := f.tr.Dial(deadline(t, 60*time.Second), sdk.DialRequest{Host: host, Port: port, Mode: sdk.DialModemTLS})
	// Modems differ in whether they call this a failed handshake or a
	// refused certificate; both are right.
	if kind, ok := sdk.NetKindOf(err); !ok || (kind != sdk.NetHandshake && kind != sdk.NetCertificate) {
		t.Fatalf("Dial to an untrusted server = %v, want a *sdk.NetError of kind handshake or certificate", err)
	}
}

func testCancel(t *testing.T, f *fixture) {
	f.ready(t)
	// A server that accepts TCP and never answers the TLS handshake.
	mute := StartServer(t, nil, func(c net.Conn) { io.Copy(io.Discard, c) })
	host, port := mute.HostPort()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := f.tr.Dial(ctx, sdk.DialRequest{Host: host, Port: port, Mode: sdk.DialModemTLS})
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial with a 1 s deadline = %v, want context.DeadlineExceeded", err)
	}
	if took > 10*time.Second {
		t.Fatalf("Dial returned %s after its deadline", took-time.Second)
	}
	// The plugin is still usable and the session slot is free again.
	srv := StartServer(t, MutualTLS(f.pki, 0), Echo)
	roundTrip(t, f.dial(t, srv), []byte("still alive\n"))
}

func testPluginKilled(t *testing.T, f *fixture) {
	f.ready(t)
	srv := StartServer(t, MutualTLS(f.pki, 0), Echo)
	sess := f.dial(t, srv)
	roundTrip(t, sess, []byte("ping\n"))
	recvErr := make(chan error, 1)
	go func() {
		_, err := sess.Recv(context.Background())
		recvErr <- err
	}()
	if err := syscall.Kill(f.plugin.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-recvErr:
		if !errors.Is(err, sdk.ErrPluginExited) {
			t.Fatalf("Recv after SIGKILL = %v, want sdk.ErrPluginExited", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Recv did not fail within 1 s of the plugin's SIGKILL")
	}
	if err := sess.Send(deadline(t, 5*time.Second), []byte("x")); !errors.Is(err, sdk.ErrPluginExited) {
		t.Fatalf("Send after SIGKILL = %v, want sdk.ErrPluginExited", err)
	}
}

// roundTrip sends msg and expects it back whole. It must run on the test's
// goroutine.
func roundTrip(t *testing.T, s sdk.Session, msg []byte) {
	t.Helper()
	got, err := exchange(s, msg, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// exchange sends data while reading the same amount back, within the given
// time. It reports nothing to a testing.T, so any goroutine may run it; it
// returns once its sending goroutine has ended.
func exchange(s sdk.Session, data []byte, within time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	sendErr := make(chan error, 1)
	go func() {
		for p := data; len(p) > 0; {
			n := min(len(p), 32<<10)
			if err := s.Send(ctx, p[:n]); err != nil {
				sendErr <- err
				return
			}
			p = p[n:]
		}
		sendErr <- nil
	}()
	got := make([]byte, 0, len(data))
	fail := func(err error) ([]byte, error) {
		cancel()
		<-sendErr
		return got, err
	}
	for len(got) < len(data) {
		fr, err := s.Recv(ctx)
		if err != nil {
			return fail(fmt.Errorf("Recv after %d of %d bytes: %w", len(got), len(data), err))
		}
		if fr.Event != nil {
			return fail(fmt.Errorf("event %v after %d of %d bytes", fr.Event.Kind, len(got), len(data)))
		}
		got = append(got, fr.Data...)
	}
	if err := <-sendErr; err != nil {
		return got, fmt.Errorf("Send: %w", err)
	}
	return got, nil
}

// deadline returns a context that ends after d or with the test.
func deadline(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
