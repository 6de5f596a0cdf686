package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/cellgate/cellgate/agent/config"
)

func init() {
	extraCommands["config"] = configCmd
}

// loadConfig parses the config flags of fs (bound with config.BindFlags)
// and loads the layered configuration.
func loadConfig(fs *pflag.FlagSet) (*config.Config, []config.Warning, error) {
	return config.Load(config.LoadOptions{Env: os.Environ(), Flags: fs})
}

// configCmd: cellgate config check [--config F]: validate, then print the
// effective configuration with secrets redacted.
func configCmd(_ context.Context, args []string, env Env) error {
	if len(args) == 0 || args[0] != "check" {
		return usageError("config: want check")
	}
	fs := newFlagSet("config check", env)
	config.BindFlags(fs)
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("config check: unexpected argument %q", fs.Arg(0))
	}
	cfg, warnings, err := loadConfig(fs)
	if err != nil {
		// The problems list is the output here: print it whole, not
		// folded onto one line.
		fmt.Fprintln(env.Stderr, err)
		return &exitError{code: 1, err: fmt.Errorf("configuration is not valid")}
	}
	for _, w := range warnings {
		fmt.Fprintf(env.Stderr, "warning: %s\n", w)
	}
	y, err := cfg.YAML()
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "# effective configuration (secrets redacted)\n%s", y)
	return nil
}
