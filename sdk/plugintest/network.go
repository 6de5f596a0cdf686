package plugintest

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// RunNetwork checks a plugin that drives no modem: one that carries
// sessions over the gateway's own IP stack (netstack). It runs the checks
// of Run that need no modem (options, TLS dials, bulk, two sessions, peer
// close, an untrusted server, cancellation, a killed plugin) and, in place
// of the ones that count what reached a modem, checks the same promises
// through the contract alone: Open reports the model and a registration,
// Provision is idempotent and rotates by content-hash names that ListCerts
// shows, and a bad bundle is a *sdk.BundleError. A model mismatch and a
// reboot have no modem to stage them on and are not checked.
// cfg.Model is the plugin's model name; cfg.Baud is unused.
func RunNetwork(t *testing.T, cfg Config) {
	t.Helper()
	if cfg.Binary == "" || cfg.Model == "" {
		t.Fatal("plugintest: Config.Binary and Config.Model are required")
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"Info", testNetworkInfo},
		{"UnknownOptionRefused", testUnknownOption},
		{"ProvisionIdempotentAndRotationSafe", testNetworkProvision},
		{"BadBundleRefused", testNetworkBadBundle},
		{"MutualTLSDial", testMutualTLS},
		{"OneMiBEachWay", testBulk},
		{"TwoSessionsAtOnce", testTwoSessions},
		{"PeerCloseEvent", testPeerClose},
		{"UntrustedServerIsHandshakeError", testUntrustedServer},
		{"CancellationHonoured", testCancel},
		{"PluginKilledMidSession", testPluginKilled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := launch(t, cfg)
			c.fn(t, &fixture{cfg: cfg, modem: noModem{}, plugin: p, tr: p.Transport(), pki: NewPKI(t, P256)})
		})
	}
}

// launch starts cfg's plugin as the agent does (checksum verified) and
// kills it at the end of the test.
// launch starts cfg.Binary, its checksum pinned, and kills it when the test
// ends. CELLGATE_PLUGINTEST_LOG=1 puts the plugin's logs on stderr, for
// debugging a failing plugin.
func launch(t *testing.T, cfg Config) *sdk.Plugin {
	t.Helper()
	sum, err := sdk.FileSHA256(cfg.Binary)
	if err != nil {
		t.Fatalf("checksum %s: %v", cfg.Binary, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
		if os.Getenv("CELLGATE_PLUGINTEST_LOG") != "" {
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	p, err := sdk.Launch(deadline(t, 30*time.Second), sdk.LaunchConfig{Path: cfg.Binary, SHA256: sum, Logger: log, Env: cfg.Env})
	if err != nil {
		t.Fatalf("launch %s: %v", cfg.Binary, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		p.Kill(ctx)
	})
	return p
}

// noModem is the modem under test of a plugin that drives none: its port
// is empty, and the checks RunNetwork runs call nothing else of it.
type noModem struct{}

func (noModem) Path() string { return "" }
func (noModem) Reboot() error {
	return errors.New("plugintest: no modem to reboot")
}
func (noModem) Commands() int64                         { return 0 }
func (noModem) CertificateWrites() int64                { return 0 }
func (noModem) RotationOrder() (lastKeyConfig, del int) { return -1, -1 }
func (noModem) ResetTrace()                             {}

func testNetworkInfo(t *testing.T, f *fixture) {
	info := f.open(t)
	if !strings.Contains(strings.ToLower(info.Model), strings.ToLower(f.cfg.Model)) {
		t.Errorf("Model %q does not name %s", info.Model, f.cfg.Model)
	}
	switch info.Registration {
	case "home", "roaming", "searching", "denied", "unknown", "not registered":
	default:
		t.Errorf("Registration %q is not one the contract names", info.Registration)
	}
}

func testNetworkProvision(t *testing.T, f *fixture) {
	f.open(t)
	ctx := deadline(t, 60*time.Second)
	r1, err := f.tr.Provision(ctx, f.bundle())
	if err != nil {
		t.Fatalf("first Provision: %v", err)
	}
	if len(r1.Downloaded) != 3 || r1.AuthMode != 2 {
		t.Fatalf("first Provision = %+v, want 3 files stored and authmode 2", r1)
	}
	r2, err := f.tr.Provision(ctx, f.bundle())
	if err != nil {
		t.Fatalf("second Provision: %v", err)
	}
	if len(r2.Downloaded) != 0 || len(r2.Deleted) != 0 || len(r2.Kept) != 3 {
		t.Fatalf("second Provision = %+v, want nothing stored or deleted, 3 kept", r2)
	}
	next := f.pki.NewClient(t, "rotated client")
	b := f.bundle()
	b.Cert, b.Key = next.CertPEM, next.KeyPEM
	r3, err := f.tr.Provision(ctx, b)
	if err != nil {
		t.Fatalf("rotation Provision: %v", err)
	}
	if len(r3.Downloaded) != 2 || len(r3.Deleted) != 2 || len(r3.Kept) != 1 {
		t.Fatalf("rotation Provision = %+v, want 2 stored (cert, key), 1 kept (CA), 2 deleted", r3)
	}
	names, err := f.tr.ListCerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]string{}, r3.Downloaded...), r3.Kept...)
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("after rotation ListCerts = %v, want exactly the current files %v", names, want)
	}
	checkServerSeesRotatedClient(t, f)
}

func testNetworkBadBundle(t *testing.T, f *fixture) {
	f.open(t)
	other := NewPKI(t, P256)
	bad := map[string]sdk.Bundle{
		"key of another certificate": {CA: f.pki.CA.CertPEM, Cert: f.pki.Client.CertPEM, Key: other.Client.KeyPEM},
		"broken PEM":                 {CA: []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")},
		"certificate without key":    {CA: f.pki.CA.CertPEM, Cert: f.pki.Client.CertPEM},
		"no CA and not insecure":     {Cert: f.pki.Client.CertPEM, Key: f.pki.Client.KeyPEM},
	}
	for name, b := range bad {
		_, err := f.tr.Provision(deadline(t, 30*time.Second), b)
		var be *sdk.BundleError
		if !errors.As(err, &be) {
			t.Errorf("%s: Provision = %v, want *sdk.BundleError", name, err)
		}
	}
}
