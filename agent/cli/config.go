package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/remote"
)

func init() {
	extraCommands["config"] = configCmd
}

// configUsage is `cellgate config`'s help: the check, and the remote
// configuration's tools (docs/remote-config.md).
const configUsage = `Usage:
  cellgate config check  [--config FILE]
  cellgate config keygen --out NAME                      (writes NAME.key, 0600, and NAME.pub)
  cellgate config sign   --key NAME.key --key-id ID --version N --device ID|'*'
                         [--expires 7d] OVERLAY.yaml > push.json
  cellgate config verify --trusted NAME.pub [--device ID] push.json
  cellgate config push   --broker mqtts://HOST:PORT --ca FILE --cert FILE --key FILE
                         [--device ID] [--timeout 3m] push.json
  cellgate config apply  [--config FILE | --addr HOST:PORT] [--timeout 3m] push.json
`

// loadConfig parses the config flags of fs (bound with config.BindFlags)
// and loads the configuration as the agent runs with it: the layers, and
// the committed remote overlay when remote configuration is on.
func loadConfig(fs *pflag.FlagSet) (*config.Config, []config.Warning, error) {
	return remote.LoadConfig(config.LoadOptions{Env: os.Environ(), Flags: fs})
}

// configCmd: cellgate config check|keygen|sign|verify|push|apply.
func configCmd(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, configUsage)
		return usageError("config: want check, keygen, sign, verify, push or apply")
	}
	sub := map[string]func(context.Context, []string, Env) error{
		"check": configCheck, "keygen": configKeygen, "sign": configSign,
		"verify": configVerify, "push": configPush, "apply": configApply,
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(env.Stdout, configUsage)
		return nil
	}
	cmd, ok := sub[args[0]]
	if !ok {
		fmt.Fprint(env.Stderr, configUsage)
		return usageError("config: unknown command %q (want check, keygen, sign, verify, push or apply)", args[0])
	}
	return cmd(ctx, args[1:], env)
}

// configCheck: cellgate config check [--config F]: validate, then print the
// effective configuration with secrets redacted.
func configCheck(_ context.Context, args []string, env Env) error {
	fs := newFlagSet("config check", env)
	config.BindFlags(fs)
	if err := parse(fs, args); err != nil {
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
