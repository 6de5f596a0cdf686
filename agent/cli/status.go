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
compact summary: modem, signal, link, spool and the last error (--json: the
agent's JSON as it is).

The address is --addr, else status.listen from the configuration file
(--config, default ` + config.DefaultFile + `), else ` + defaultStatusListen + `.
Only status.listen and status.token_file are read from the file: an error
elsewhere in the configuration does not stop this command. The bearer token
is read from --token-file, else status.token_file.`,
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

// statusSection is the part of the configuration file `cellgate status`
// reads; the rest of the file is not looked at.
type statusSection struct {
	Status struct {
		Listen    string `yaml:"listen"`
		TokenFile string `yaml:"token_file"`
	} `yaml:"status"`
}

// resolveStatusTarget resolves the address and token: flags, then the file's
// status section (a missing default file is no error), then the default.
func resolveStatusTarget(cfgFile string, explicit bool, addr, tokenFile string) (statusTarget, error) {
	var sec statusSection
	if addr == "" || tokenFile == "" {
		data, err := os.ReadFile(cfgFile)
		switch {
		case err == nil:
			if err := yaml.Unmarshal(data, &sec); err != nil {
				return statusTarget{}, fmt.Errorf("%s: reading its status section: %w (pass --addr)", cfgFile, err)
			}
		case errors.Is(err, fs.ErrNotExist) && !explicit:
		default:
			return statusTarget{}, fmt.Errorf("--config: %w", err)
		}
	}
	addr = cmp.Or(addr, sec.Status.Listen, defaultStatusListen)
	tokenFile = cmp.Or(tokenFile, sec.Status.TokenFile)
	base, err := loopbackURL(addr)
	if err != nil {
		return statusTarget{}, usageError("status address %q: %v", addr, err)
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
