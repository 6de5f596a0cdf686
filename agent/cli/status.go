package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/cellgate/cellgate/agent/config"
)

// defaultStatusListen is status.listen when neither the flag nor the
// configuration file sets it.
const defaultStatusListen = config.DefaultStatusListen

// statusCommand is `cellgate status`.
func statusCommand(env Env) *cobra.Command {
	return leaf(&cobra.Command{
		Use:   "status",
		Short: "Ask the running agent how it is doing (modem, signal, link, spool, last error)",
		Long: `Ask the running agent for GET /v1/status on its status listener and print a
compact summary: modem, signal, link, spool, the last error and the client
certificate (--json: the agent's JSON as it is).

The address is --addr, else status.listen as the agent reads it: from
CELLGATE_STATUS__LISTEN, else the configuration file (--config, default
` + config.DefaultFile + `), else ` + defaultStatusListen + `. The bearer token is read
from --token-file, else status.token_file (CELLGATE_STATUS__TOKEN_FILE, else
the file). Only the status section is read: an error elsewhere in the
configuration does not stop this command.`,
		Example: `  cellgate status
  cellgate status --addr 127.0.0.1:9464 --json
  cellgate status --config ./cellgate.yaml --token-file /etc/cellgate/status.token`,
		Args: noOperands,
	}, func(fs *pflag.FlagSet) action { return statusCmd(fs, env) })
}

// statusCmd: cellgate status [--config F] [--addr HOST:PORT] [--token-file
// F] [--json].
func statusCmd(fs *pflag.FlagSet, env Env) action {
	cfgFile := fs.String("config", config.DefaultFile, "configuration file to read status.listen and status.token_file from")
	addr := fs.String("addr", "", "the agent's status listener, HOST:PORT (default: status.listen, else "+defaultStatusListen+")")
	tokenFile := fs.String("token-file", "", "file holding the status listener's bearer token (default: status.token_file)")
	asJSON := fs.Bool("json", false, "print the agent's JSON as it is")
	return func(ctx context.Context) error {
		target, err := resolveStatusTarget(*cfgFile, fs.Changed("config"), *addr, *tokenFile)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		body, err := getStatusWith(ctx, target)
		if err != nil {
			return err
		}
		if *asJSON {
			fmt.Fprintln(env.Stdout, strings.TrimSpace(string(body)))
			return nil
		}
		var st map[string]any
		if err := json.Unmarshal(body, &st); err != nil {
			return fmt.Errorf("agent status from %s: not JSON: %w", target.base, err)
		}
		printStatusSummary(env.Stdout, st)
		return nil
	}
}

// statusTarget is where `cellgate status` asks, and with which token.
type statusTarget struct {
	base  string // http://host:port
	token string // bearer token; empty for none
}

// statusSection is the status section of a configuration file or overlay.
type statusSection struct {
	Status struct {
		Listen    string `yaml:"listen"`
		TokenFile string `yaml:"token_file"`
	} `yaml:"status"`
}

// statusKeys is the part of the configuration file `cellgate status` reads;
// the rest of the file is not looked at. Pointers tell a key set to ""
// from one not set.
type statusKeys struct {
	Status struct {
		Listen    *string `yaml:"listen"`
		TokenFile *string `yaml:"token_file"`
	} `yaml:"status"`
}

// statusSetting is one status key as resolved: its value and where it was
// set ("" when nowhere: the default).
type statusSetting struct{ value, from string }

// resolveStatusTarget resolves the address and token file as the agent's
// configuration loader does, for the status section only: flags, then the
// environment (CELLGATE_STATUS__LISTEN, CELLGATE_STATUS__TOKEN_FILE), then
// the file's status section (a missing default file is no error), then the
// default. A status.listen set to "" (the listener off) is an error
// naming where.
func resolveStatusTarget(cfgFile string, explicit bool, addr, tokenFile string) (statusTarget, error) {
	listen := statusSetting{addr, "--addr"}
	token := statusSetting{tokenFile, "--token-file"}
	for _, s := range []struct {
		set  *statusSetting
		path string
	}{{&listen, "status.listen"}, {&token, "status.token_file"}} {
		if s.set.value != "" {
			continue
		}
		*s.set = statusSetting{}
		name := config.EnvName(s.path)
		if v, ok := os.LookupEnv(name); ok {
			*s.set = statusSetting{v, name}
		}
	}
	if listen.from == "" || token.from == "" {
		if err := readStatusSection(cfgFile, explicit, &listen, &token); err != nil {
			return statusTarget{}, err
		}
	}
	if listen.from != "" && listen.value == "" {
		return statusTarget{}, usageError("status.listen is empty in %s: the agent serves no status; pass --addr", listen.from)
	}
	addr = cmp.Or(listen.value, defaultStatusListen)
	tokenFile = token.value
	base, err := loopbackURL(addr)
	if err != nil {
		return statusTarget{}, usageError("status address %q (%s): %v", addr, cmp.Or(listen.from, "default"), err)
	}
	t := statusTarget{base: base}
	if tokenFile != "" {
		data, err := os.ReadFile(tokenFile)
		if err != nil {
			return statusTarget{}, fmt.Errorf("status token: %w", err)
		}
		t.token = strings.TrimSpace(string(data))
	}
	return t, nil
}

// readStatusSection fills the settings not set yet (from == "") from the
// status section of cfgFile.
func readStatusSection(cfgFile string, explicit bool, listen, token *statusSetting) error {
	data, err := os.ReadFile(cfgFile)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !explicit:
		return nil
	case err != nil:
		return fmt.Errorf("--config: %w", err)
	}
	var sec statusKeys
	if err := yaml.Unmarshal(data, &sec); err != nil {
		return fmt.Errorf("%s: reading its status section: %w (pass --addr)", cfgFile, err)
	}
	if listen.from == "" && sec.Status.Listen != nil {
		*listen = statusSetting{*sec.Status.Listen, cfgFile}
	}
	if token.from == "" && sec.Status.TokenFile != nil {
		*token = statusSetting{*sec.Status.TokenFile, cfgFile}
	}
	return nil
}

// getStatusWith reads GET /v1/status of the agent at t.
func getStatusWith(ctx context.Context, t statusTarget) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.base+"/v1/status", nil)
	if err != nil {
		return nil, err
	}
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no agent answers at %s (is it running? is status.listen set?): %w", t.base, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("agent status from %s: %w", t.base, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized && t.token == "":
		return nil, fmt.Errorf("agent at %s wants a bearer token: pass --token-file or set status.token_file", t.base)
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("agent at %s refused the bearer token (401)", t.base)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("agent at %s answered %s: %s", t.base, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}
