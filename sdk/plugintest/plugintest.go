// Package plugintest is the Go-test form of the cellgate plugin
// conformance suite (sdk/conformance): Run certifies a plugin binary from a
// plugin's own tests, one subtest per check, against an emulated modem
// (sdk/modemsim on a real pseudo-terminal) and real TLS servers on
// loopback; RunNetwork certifies a plugin that drives no modem. The checks
// themselves live in sdk/conformance, which `cellgate plugin verify` runs
// too: one copy of each. See README.md.
//
// A check runs on its own goroutines and hands back a result; this package
// reports it from the subtest's goroutine, as the testing package requires.
package plugintest

import (
	"log/slog"
	"os"
	"testing"

	"github.com/cellgate/cellgate/sdk/conformance"
)

// Config says which plugin to check.
type Config struct {
	// Binary is the plugin executable.
	Binary string
	// Model is the modem model the plugin drives ("sim7600"); Run's
	// emulated modem takes this personality unless Emulator names another.
	Model string
	// Emulator is the sdk/modemsim personality Run puts behind the plugin;
	// "" means Model.
	Emulator string
	// Modem, when set, starts the modem under test of each check in place
	// of an emulator: a conformance.Modem, and a conformance.FaultInjector
	// and conformance.CommandCounter where it can be (the checks that need
	// those are skipped, saying why, when it cannot).
	Modem func() (conformance.Modem, error)
	// Baud is the emulated line rate; 0 means unthrottled, so the kit runs
	// in seconds. Set 115200 to check behaviour at a real modem's pace.
	Baud int
	// Options go to every Open, as modem.options would.
	Options map[string]string
	// Logger receives the plugin's logs; nil discards them, unless
	// CELLGATE_PLUGINTEST_LOG is set (then they go to stderr).
	Logger *slog.Logger
	// Env is added to the plugin's environment (e.g. GORACE settings for
	// a plugin built with -race).
	Env []string
}

// Run checks the plugin in cfg against the contract, one subtest per
// check of conformance.Checks, each with its own emulated modem and plugin
// process.
func Run(t *testing.T, cfg Config) {
	t.Helper()
	cc := suiteConfig(t, cfg)
	switch {
	case cfg.Modem != nil:
		cc.NewModem = cfg.Modem
	case cfg.Emulator != "":
		cc.Emulator = cfg.Emulator
	default:
		cc.Emulator = cfg.Model
	}
	runSuite(t, cc)
}

// RunNetwork checks a plugin that drives no modem: one that carries
// sessions over the gateway's own IP stack (netstack). Every check runs
// that needs no modem; the ones that stage something on a modem (another
// model, a reboot) are skipped with the reason, and the promises about
// what reaches a modem are checked through the contract alone (reports and
// ListCerts). cfg.Baud and cfg.Emulator are unused.
func RunNetwork(t *testing.T, cfg Config) {
	t.Helper()
	runSuite(t, suiteConfig(t, cfg))
}

func suiteConfig(t *testing.T, cfg Config) conformance.Config {
	t.Helper()
	if cfg.Binary == "" || cfg.Model == "" {
		t.Fatal("plugintest: Config.Binary and Config.Model are required")
	}
	log := cfg.Logger
	if log == nil && os.Getenv("CELLGATE_PLUGINTEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return conformance.Config{Plugin: cfg.Binary, Model: cfg.Model, Baud: cfg.Baud, Options: cfg.Options, Logger: log, Env: cfg.Env}
}

func runSuite(t *testing.T, cc conformance.Config) {
	t.Helper()
	for _, c := range conformance.Checks() {
		t.Run(c.Name, func(t *testing.T) {
			res, err := conformance.RunCheck(t.Context(), cc, c.Name)
			if err != nil {
				t.Fatal(err)
			}
			switch res.Status {
			case conformance.Fail:
				t.Fatalf("%s\n(the check proves: %s)", res.Detail, c.Proves)
			case conformance.NotApplicable:
				t.Skipf("not applicable: %s", res.Detail)
			}
			t.Logf("%s in %s", res.Detail, res.Duration)
		})
	}
}
