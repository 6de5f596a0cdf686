package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cellgate/cellgate/agent"
	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/remote"
)

// `cellgate cert renew` asks the running agent to rotate its client
// certificate now (docs/certificates.md, "Rotation"): a POST on the status
// listener, loopback only and behind its token, like `cellgate config
// apply`.

func init() {
	extraCommands["cert"] = certCmd
}

const certHelp = `Rotate the gateway's client certificate now.

Usage:
  cellgate cert renew [--config FILE] [--addr HOST:PORT] [--token-file FILE] [--wait 10m]
  cellgate cert sign --key FILE --key-id ID --version N --device ID [--expires 1h]

The running agent makes a new key, publishes its CSR on
cellgate/{device_id}/cert/csr, takes the certificate from
cellgate/{device_id}/cert/issued, reconnects with it and deletes the old set
once the broker acknowledged a publish with the new one; on any failure it
goes back to the old set. renew asks by POST /v1/cert/renew on the agent's
status listener (status.listen, loopback only, with status.token_file's
token) and waits for the outcome: exit 0 rotated, 1 rolled back or no answer
within --wait (0: do not wait).

sign prints a signed renewal request (format cellgate-renew/1: the envelope
of cellgate config sign, without config) for the operator to publish on
cellgate/{device_id}/cert/renew. Gateways with remote_config.enabled check it
against remote_config.trusted_keys; --version must be above the last renewal
request the gateway accepted (its own sequence, not the configuration's).

Examples:
  cellgate cert renew
  cellgate cert renew --addr 127.0.0.1:9464 --wait 0
  cellgate cert sign --key ops.key --key-id ops --version 1 --device gw-0001 > renew.json
`

func certCmd(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 0 {
			return usageError("cert: want a subcommand: renew or sign (see --help)")
		}
		fmt.Fprint(env.Stdout, certHelp)
		return errHelp
	}
	switch args[0] {
	case "renew":
	case "sign":
		return certSign(args[1:], env)
	default:
		return usageError("cert: unknown subcommand %q: want renew or sign", args[0])
	}
	fs := newFlagSet("cert renew", env)
	cfgFile := fs.String("config", config.DefaultFile, "configuration file to read status.listen and status.token_file from")
	addr := fs.String("addr", "", "the agent's status listener, HOST:PORT (default: status.listen, else "+defaultStatusListen+")")
	tokenFile := fs.String("token-file", "", "file holding the status listener's bearer token (default: status.token_file)")
	wait := fs.Duration("wait", 10*time.Minute, "how long to wait for the outcome (0: do not wait)")
	if err := parseHelp(fs, args[1:], env, certHelp); err != nil {
		return err
	}
	if fs.NArg() != 0 || *wait < 0 {
		return usageError("cert renew: want no argument and --wait of 0 or more")
	}
	target, err := resolveStatusTarget(*cfgFile, fs.Changed("config"), *addr, *tokenFile)
	if err != nil {
		return err
	}
	before, err := postRenew(ctx, target)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "rotation requested (certificate in use: serial %s)\n", before.Serial)
	if *wait == 0 {
		return nil
	}
	return awaitRotation(ctx, target, before, *wait, env)
}

// postRenew asks for a rotation and returns the certificate status then.
func postRenew(ctx context.Context, t statusTarget) (agent.CertStatus, error) {
	var st agent.CertStatus
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, t.base+"/v1/cert/renew", bytes.NewReader(nil))
	if err != nil {
		return st, err
	}
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("no agent answers at %s (is it running? is status.listen set?): %w", t.base, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusAccepted {
		return st, fmt.Errorf("agent at %s answered %s: %s", t.base, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("agent at %s: %w", t.base, err)
	}
	return st, nil
}

// awaitRotation polls /v1/status until a rotation outcome newer than
// before's counts appears.
func awaitRotation(ctx context.Context, t statusTarget, before agent.CertStatus, wait time.Duration, env Env) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no rotation outcome within --wait %s: see cellgate status", wait)
		case <-tick.C:
		}
		body, err := getStatusWith(ctx, t)
		if err != nil {
			continue
		}
		var st struct {
			Cert *agent.CertStatus `json:"cert"`
		}
		if json.Unmarshal(body, &st) != nil || st.Cert == nil {
			continue
		}
		c := st.Cert
		switch {
		case c.Rotations["rotated"] > before.Rotations["rotated"]:
			fmt.Fprintf(env.Stdout, "rotated: certificate serial %s, valid until %s\n", c.Serial, c.NotAfter.Format(time.RFC3339))
			return nil
		case c.Rotations["rolled_back"] > before.Rotations["rolled_back"]:
			return fmt.Errorf("rotation rolled back, the old certificate stays in use: %s", c.Error)
		}
	}
}

// certSign: cellgate cert sign --key F --key-id ID --version N --device ID
// [--expires 1h]: a signed renewal request on stdout.
func certSign(args []string, env Env) error {
	fs := newFlagSet("cert sign", env)
	keyFile := fs.String("key", "", "the private key file (from cellgate config keygen)")
	keyID := fs.String("key-id", "", "the key's ID, as the gateways' remote_config.trusted_keys names it")
	version := fs.Uint64("version", 0, "the request's version: above every renewal request the gateway accepted")
	device := fs.String("device", "", "the gateway's device_id, or '*' for every gateway that trusts the key")
	expires := fs.String("expires", "1h", "how long the request is valid: 1h, 90m, 2d")
	if err := parseNoArgs(fs, args, env, certHelp); err != nil {
		return err
	}
	key, validity, err := signFlags{keyFile, keyID, device, expires, version}.load("cert sign")
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	e := remote.NewRenewEnvelope(*device, *version, now, now.Add(validity), *keyID)
	e.Sign(key)
	data, err := e.Marshal()
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s\n", data)
	return nil
}
