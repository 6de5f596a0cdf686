package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/spf13/pflag"

	"github.com/cellgate/cellgate/agent"
	"github.com/cellgate/cellgate/agent/config"
)

func init() {
	extraCommands["status"] = statusCmd
}

// statusCmd: cellgate status [--config F | --addr HOST:PORT] [--json]: asks
// the running agent (GET /v1/status on its HTTP input) where readings are.
func statusCmd(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("status", env)
	config.BindFlags(fs)
	addr := fs.String("addr", "", "the agent's HTTP input (default: inputs.http.listen from the config)")
	asJSON := fs.Bool("json", false, "print the agent's JSON as it is")
	if err := parse(fs, args); err != nil {
		return err
	}
	base, err := agentURL(fs, *addr, env)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	body, err := getStatus(ctx, base)
	if err != nil {
		return err
	}
	if *asJSON {
		fmt.Fprintln(env.Stdout, string(body))
		return nil
	}
	var st agent.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("agent status: %w", err)
	}
	modem := "not ready"
	if st.ModemReady {
		modem = "ready"
	}
	if st.Modem != nil {
		modem += fmt.Sprintf(" (%s %s, %s, rssi %d)", st.Modem.Model, st.Modem.Revision, st.Modem.Registration, st.Modem.SignalRSSI)
	}
	last := "never"
	if st.Uplink.LastAck != nil {
		last = st.Uplink.LastAck.Local().Format(time.RFC3339)
	}
	fmt.Fprintf(env.Stdout, "device:   %s (up %s)\nmodem:    %s\nplugin:   pid %d, %d restarts\nspool:    %d readings pending (%d bytes), %d dropped\nuplink:   %s, %d readings in %d batches acknowledged, last %s\n",
		st.DeviceID, st.Uptime, modem, st.PluginPID, st.PluginRestarts, st.Spool.Pending, st.Spool.PendingBytes, st.Spool.Dropped,
		st.Uplink.Kind, st.Uplink.AckedReadings, st.Uplink.AckedBatches, last)
	if rc := st.RemoteConfig; rc != nil {
		printRemoteStatus(env.Stdout, rc)
	}
	return nil
}

// agentURL is the base URL of the running agent's HTTP input: --addr, or
// inputs.http.listen from the configuration, on loopback when it listens
// on every address.
func agentURL(fs *pflag.FlagSet, addr string, env Env) (string, error) {
	if addr == "" {
		cfg, _, err := loadConfig(fs)
		if err != nil {
			fmt.Fprintln(env.Stderr, err)
			return "", &exitError{code: 1, err: fmt.Errorf("configuration is not valid: pass --addr")}
		}
		if cfg.Inputs.HTTP.Listen == "" {
			return "", usageError("the HTTP input is off (inputs.http.listen is empty): nothing to ask")
		}
		addr = cfg.Inputs.HTTP.Listen
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", usageError("--addr %q: %v", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// getStatus reads GET /v1/status of the agent at base.
func getStatus(ctx context.Context, base string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("is the agent running? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("agent answered %s: %s", resp.Status, body)
	}
	return body, nil
}

// printRemoteStatus writes the remote configuration lines of `cellgate
// status`.
func printRemoteStatus(w io.Writer, rc *agent.RemoteConfigStatus) {
	committed := "none committed"
	if rc.CommittedVersion > 0 {
		committed = fmt.Sprintf("version %d (key %s)", rc.CommittedVersion, rc.KeyID)
		if rc.CommittedAt != nil {
			committed += ", committed " + rc.CommittedAt.Local().Format(time.RFC3339)
		}
	}
	fmt.Fprintf(w, "remote:   %s\n", committed)
	if p := rc.Pending; p != nil {
		by := ""
		if p.ConfirmBy != nil {
			by = ", rolled back at " + p.ConfirmBy.Local().Format(time.RFC3339) + " unless healthy"
		}
		fmt.Fprintf(w, "          pending version %d (key %s) since %s%s\n", p.Version, p.KeyID, p.Since.Local().Format(time.RFC3339), by)
	}
	if l := rc.Last; l != nil {
		line := fmt.Sprintf("last push: version %d %s at %s", l.Version, l.State, l.At.Local().Format(time.RFC3339))
		if l.Reason != "" {
			line += " (" + l.Reason + ")"
		}
		fmt.Fprintf(w, "          %s\n", line)
	}
}
