package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

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
	if *addr == "" {
		cfg, _, err := loadConfig(fs)
		if err != nil {
			fmt.Fprintln(env.Stderr, err)
			return &exitError{code: 1, err: fmt.Errorf("configuration is not valid: pass --addr")}
		}
		if cfg.Inputs.HTTP.Listen == "" {
			return usageError("the HTTP input is off (inputs.http.listen is empty): nothing to ask")
		}
		*addr = cfg.Inputs.HTTP.Listen
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return usageError("--addr %q: %v", *addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/v1/status", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("is the agent running? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent answered %s: %s", resp.Status, body)
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
	return nil
}
