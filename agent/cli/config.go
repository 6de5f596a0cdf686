package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cellgate/cellgate/agent/certcheck"
	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/remote"
)

// configCommand is `cellgate config`: the configuration's check, and the
// remote configuration's tools (docs/remote-config.md).
func configCommand(env Env) *cobra.Command {
	return group("config", "Check the configuration; make, sign, verify, push and apply remote configurations",
		"check validates the configuration as `cellgate run` would load it. The other\ncommands are the operator's side of remote configuration (docs/remote-config.md):\nmake a signing key, sign an overlay, check an envelope, push it to a gateway\nover MQTT, or apply it on the gateway itself.",
		`  cellgate config check --config /etc/cellgate/cellgate.yaml
  cellgate config keygen --out ops-2026
  cellgate config sign --key ops-2026.key --key-id ops-2026 --version 43 --device gw-0001 overlay.yaml > push.json
  cellgate config verify --trusted ops-2026.pub push.json
  cellgate config push --broker mqtts://broker.example:8883 --ca ca.pem --cert ops.pem --key ops.key push.json
  cellgate config apply push.json`,
		leaf(&cobra.Command{Use: "check", Short: "Validate the configuration and print it, secrets redacted",
			Long:    "Load the configuration as `cellgate run` would (file, CELLGATE_* environment,\nflags, committed remote overlay) and check the files it names (CA, certificate,\nkey and its password file, plugin checksums: docs/certificates.md); print every\nproblem with where it comes from and exit 1, or print the effective\nconfiguration with secrets redacted. --json prints the problems and warnings\nas JSON instead.",
			Example: "  cellgate config check\n  cellgate config check --config ./cellgate.yaml --modem.port /dev/ttyUSB3\n  cellgate config check --json"},
			func(fs *pflag.FlagSet) action { return configCheck(fs, env) }),
		leaf(&cobra.Command{Use: "keygen", Short: "Make an Ed25519 key pair that signs remote configurations (NAME.key 0600, NAME.pub)",
			Example: "  cellgate config keygen --out ops-2026"},
			func(fs *pflag.FlagSet) action { return configKeygen(fs, env) }),
		leaf(&cobra.Command{Use: "sign OVERLAY.yaml", Short: "Sign a configuration overlay for one gateway or all; the envelope goes to stdout",
			Example: "  cellgate config sign --key ops-2026.key --key-id ops-2026 --version 43 --device gw-0001 --expires 7d overlay.yaml > push.json"},
			func(fs *pflag.FlagSet) action { return configSign(fs, env) }),
		leaf(&cobra.Command{Use: "verify PUSH.json", Short: "Check a signed envelope as a gateway would",
			Example: "  cellgate config verify --trusted ops-2026.pub push.json\n  cellgate config sign ... overlay.yaml | cellgate config verify --trusted ops-2026.pub -"},
			func(fs *pflag.FlagSet) action { return configVerify(fs, env) }),
		leaf(&cobra.Command{Use: "push PUSH.json", Short: "Publish a signed envelope to a gateway over MQTT and follow its status",
			Example: "  cellgate config push --broker mqtts://broker.example:8883 --ca ca.pem --cert ops.pem --key ops.key push.json"},
			func(fs *pflag.FlagSet) action { return configPush(fs, env) }),
		leaf(&cobra.Command{Use: "apply PUSH.json", Short: "Hand a signed envelope to the agent running on this gateway",
			Example: "  cellgate config apply push.json\n  cellgate config apply --addr 127.0.0.1:8080 push.json"},
			func(fs *pflag.FlagSet) action { return configApply(fs, env) }),
	)
}

// loadConfig parses the config flags of fs (bound with config.BindFlags)
// and loads the configuration as the agent runs with it: the layers, and
// the committed remote overlay when remote configuration is on.
func loadConfig(fs *pflag.FlagSet) (*config.Config, []config.Warning, error) {
	return remote.LoadConfig(config.LoadOptions{Env: os.Environ(), Flags: fs})
}

// configCheck: cellgate config check [--config F]: validate, then print the
// effective configuration with secrets redacted.
func configCheck(fs *pflag.FlagSet, env Env) action {
	config.BindFlags(fs)
	asJSON := fs.Bool("json", false, "print {\"ok\", \"errors\", \"warnings\"} as JSON instead (docs/certificates.md)")
	return func(context.Context) error {
		if fs.NArg() != 0 {
			return usageError("config check: unexpected argument %q", fs.Arg(0))
		}
		cfg, warnings, err := loadConfig(fs)
		var files certcheck.Report // the files the configuration names
		if err == nil {
			files = certcheck.Check(cfg, certcheck.Options{Executable: executable(env)})
		}
		if *asJSON {
			return printCheckJSON(env, certcheck.NewJSON(err, warnings, files))
		}
		if err != nil {
			// The problems list is the output here: print it whole, not
			// folded onto one line.
			fmt.Fprintln(env.Stderr, err)
			return &exitError{code: 1, err: fmt.Errorf("configuration is not valid")}
		}
		for _, w := range warnings {
			fmt.Fprintf(env.Stderr, "warning: %s\n", w)
		}
		for _, w := range files.Warnings {
			fmt.Fprintf(env.Stderr, "warning: %s\n", w)
		}
		if err := files.Err(); err != nil {
			fmt.Fprintln(env.Stderr, err)
			return &exitError{code: 1, err: fmt.Errorf("configuration is not valid")}
		}
		y, err := cfg.YAML()
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "# effective configuration (secrets redacted)\n%s", y)
		return nil
	}
}

// printCheckJSON prints `config check --json`'s report; it exits 1 when the
// report has errors.
func printCheckJSON(env Env, j certcheck.JSON) error {
	out, err := j.Marshal()
	if err != nil {
		return err
	}
	if _, err := env.Stdout.Write(out); err != nil {
		return err
	}
	if !j.OK {
		return &exitError{code: 1, err: fmt.Errorf("configuration is not valid")}
	}
	return nil
}
