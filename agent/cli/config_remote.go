package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/cellgate/cellgate/agent"
	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/remote"
	"github.com/cellgate/cellgate/internal/duration"
)

// The operator's side of remote configuration (docs/remote-config.md):
// make a key, sign an overlay, check an envelope, push it over MQTT, or
// apply it on the gateway itself. Each prints what the gateway said and
// exits 1 on a refusal or a rollback.

// configKeygen: cellgate config keygen --out NAME.
func configKeygen(fs *pflag.FlagSet, env Env) action {
	out := fs.String("out", "", "base name of the key files: NAME.key (private, mode 0600) and NAME.pub (public)")
	return func(context.Context) error {
		if *out == "" || fs.NArg() != 0 {
			return usageError("config keygen: want --out NAME and no argument")
		}
		key, err := remote.GenerateKey()
		if err != nil {
			return err
		}
		pemKey, err := remote.MarshalPrivateKey(key)
		if err != nil {
			return err
		}
		pub := remote.EncodePublicKey(key.Public().(ed25519.PublicKey))
		keyFile, pubFile := *out+".key", *out+".pub"
		// Never overwrite a key: it may be the only copy of one gateways trust.
		if err := writeNew(keyFile, pemKey, 0o600); err != nil {
			return err
		}
		if err := writeNew(pubFile, []byte(pub+"\n"), 0o644); err != nil {
			os.Remove(keyFile)
			return err
		}
		id := filepath.Base(*out)
		fmt.Fprintf(env.Stdout, "wrote %s (secret: it signs pushes; keep it off the gateways) and %s\n", keyFile, pubFile)
		fmt.Fprintf(env.Stdout, "trust it in each gateway's configuration file:\n\nremote_config:\n  enabled: true\n  trusted_keys:\n    %s: %q\n", id, pub)
		return nil
	}
}

func writeNew(name string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// parseValidity reads --expires with the agent's one duration parser: a Go
// duration (36h, 90m), days (7d) or both (1d12h), and positive.
func parseValidity(s string) (time.Duration, error) {
	d, err := duration.Parse(s)
	if err != nil {
		return 0, fmt.Errorf("--expires: %w", err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("--expires %q: want a positive duration such as 7d, 36h or 90m", s)
	}
	return d, nil
}

// configSign: cellgate config sign --key F --key-id ID --version N --device
// ID [--expires 7d] OVERLAY.yaml: the envelope on stdout.
func configSign(fs *pflag.FlagSet, env Env) action {
	keyFile := fs.String("key", "", "the private key file (from config keygen)")
	keyID := fs.String("key-id", "", "the key's ID, as the gateways' remote_config.trusted_keys names it")
	version := fs.Uint64("version", 0, "the push's version: above every version the gateways committed")
	device := fs.String("device", "", "the gateway's device_id, or '*' for every gateway that trusts the key")
	expires := fs.String("expires", "7d", "how long the push is valid: 7d, 36h, 90m")
	return func(context.Context) error {
		if fs.NArg() != 1 {
			return usageError("config sign: want one overlay file (- for stdin)")
		}
		key, validity, err := signFlags{keyFile, keyID, device, expires, version}.load("config sign")
		if err != nil {
			return err
		}
		overlay, err := readArg(fs.Arg(0), env)
		if err != nil {
			return err
		}
		if err := checkOverlay(overlay); err != nil {
			return fmt.Errorf("%s: %w", fs.Arg(0), err)
		}
		now := time.Now().UTC().Truncate(time.Second)
		e := remote.NewEnvelope(*device, *version, now, now.Add(validity), *keyID, string(overlay))
		e.Sign(key)
		data, err := e.Marshal()
		if err != nil {
			return err
		}
		if len(data) > remote.MaxEnvelopeBytes {
			return fmt.Errorf("the envelope is %d bytes; gateways refuse more than %d", len(data), remote.MaxEnvelopeBytes)
		}
		fmt.Fprintf(env.Stdout, "%s\n", data)
		return nil
	}
}

// checkOverlay refuses an overlay every gateway would refuse: not a YAML
// section of keys, or setting a key no push may set.
func checkOverlay(overlay []byte) error {
	var root map[string]any
	if err := yaml.Unmarshal(overlay, &root); err != nil {
		return fmt.Errorf("not a YAML section of keys: %w", err)
	}
	for _, k := range remote.OverlayKeys(string(overlay)) {
		top, _, _ := strings.Cut(k, ".")
		if slices.Contains(config.NeverRemote, top) {
			return fmt.Errorf("%s may never be set remotely (%s are the gateway's own)", k, strings.Join(config.NeverRemote, ", "))
		}
	}
	return nil
}

func readArg(name string, env Env) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(io.LimitReader(env.Stdin, remote.MaxEnvelopeBytes+1))
	}
	return os.ReadFile(name)
}

// configVerify: cellgate config verify --trusted F [--device ID] push.json:
// the envelope's checks on this machine, with the key of F trusted under
// the envelope's key_id and the default allow list.
func configVerify(fs *pflag.FlagSet, env Env) action {
	trusted := fs.String("trusted", "", "the public key file (NAME.pub) the envelope must be signed with")
	device := fs.String("device", "", "the gateway the envelope must address (default: the one it names)")
	return func(context.Context) error {
		if *trusted == "" || fs.NArg() != 1 {
			return usageError("config verify: want --trusted NAME.pub and one envelope file (- for stdin)")
		}
		pubData, err := os.ReadFile(*trusted)
		if err != nil {
			return err
		}
		pub, err := remote.ParsePublicKeyFile(pubData)
		if err != nil {
			return fmt.Errorf("%s: %w", *trusted, err)
		}
		data, err := readArg(fs.Arg(0), env)
		if err != nil {
			return err
		}
		e, err := remote.ParseEnvelope(data)
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		p := remote.Policy{DeviceID: cmpOr(*device, e.DeviceID), Trusted: map[string]ed25519.PublicKey{e.KeyID: pub}, Now: time.Now()}
		if _, err := remote.Verify(data, p); err != nil {
			return &exitError{code: 1, err: err}
		}
		if err := remote.CheckAllowed(e.Config, config.DefaultRemoteAllow); err != nil {
			return &exitError{code: 1, err: fmt.Errorf("%w (under the default remote_config.allow)", err)}
		}
		fmt.Fprintf(env.Stdout, "ok: version %d for %s signed by %s, issued %s, expires %s; sets %s\n",
			e.Version, e.DeviceID, e.KeyID, e.IssuedAt, e.ExpiresAt, strings.Join(remote.OverlayKeys(e.Config), ", "))
		return nil
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// finalState says whether st ends a push, and how: committed is success.
func finalState(st remote.Status) (done bool, err error) {
	switch st.State {
	case remote.StateCommitted:
		return true, nil
	case remote.StateRefused, remote.StateRolledBack:
		return true, &exitError{code: 1, err: fmt.Errorf("version %d %s: %s", st.Version, st.State, st.Reason)}
	}
	return false, nil
}

func printStatus(env Env, st remote.Status) {
	b, _ := json.Marshal(st)
	fmt.Fprintf(env.Stdout, "%s\n", b)
}

// configPush: cellgate config push --broker URL --ca --cert --key push.json:
// publishes the envelope on the gateway's config topic and prints the
// statuses it publishes for this version until the final one.
func configPush(fs *pflag.FlagSet, env Env) action {
	broker := fs.String("broker", "", "the broker, mqtts://host[:port]")
	caFile := fs.String("ca", "", "PEM certificate authorities to verify the broker with (default: the system's)")
	certFile := fs.String("cert", "", "PEM client certificate")
	keyFile := fs.String("key", "", "PEM client key")
	sni := fs.String("sni", "", "the broker's name to verify (default: its host)")
	device := fs.String("device", "", "the gateway to push to (default: the envelope's device_id; required for '*')")
	configTopic := fs.String("config-topic", "", "default "+config.DefaultConfigTopic)
	statusTopic := fs.String("status-topic", "", "default "+config.DefaultStatusTopic)
	timeout := fs.Duration("timeout", 3*time.Minute, "how long to wait for the final status (more than the gateways' remote_config.confirm)")
	return func(ctx context.Context) error {
		if *broker == "" || fs.NArg() != 1 {
			return usageError("config push: want --broker mqtts://host:port and one envelope file (- for stdin)")
		}
		u, err := url.Parse(*broker)
		if err != nil || u.Scheme != "mqtts" || u.Host == "" {
			return usageError("config push: --broker %q: want mqtts://host[:port]", *broker)
		}
		if u.Port() == "" {
			u.Host += ":8883"
		}
		data, err := readArg(fs.Arg(0), env)
		if err != nil {
			return err
		}
		e, err := remote.ParseEnvelope(data)
		if err != nil {
			return err
		}
		dev := cmpOr(*device, e.DeviceID)
		if dev == remote.AnyDevice && (*configTopic == "" || *statusTopic == "") {
			return usageError("config push: the envelope is for every gateway ('*'): name one with --device, or give both topics")
		}
		expand := strings.NewReplacer("{device_id}", dev)
		ct, st := expand.Replace(cmpOr(*configTopic, config.DefaultConfigTopic)), expand.Replace(cmpOr(*statusTopic, config.DefaultStatusTopic))
		tlsCfg, err := clientTLS(*caFile, *certFile, *keyFile, *sni)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		return pushAndWait(ctx, u, tlsCfg, ct, st, data, e.Version, env)
	}
}

func clientTLS(caFile, certFile, keyFile, sni string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: sni, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate in it", caFile)
		}
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// pushAndWait subscribes to the status topic, publishes the envelope and
// prints the live statuses of version until the final one. Retained
// statuses (an earlier push's) are skipped.
func pushAndWait(ctx context.Context, broker *url.URL, tlsCfg *tls.Config, configTopic, statusTopic string, envelope []byte, version uint64, env Env) error {
	statuses := make(chan remote.Status, 16)
	suffix := make([]byte, 4)
	rand.Read(suffix)
	mctx, stop := context.WithCancel(context.Background())
	defer stop()
	cm, err := autopaho.NewConnection(mctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{broker}, TlsCfg: tlsCfg, KeepAlive: 30,
		CleanStartOnInitialConnection: true, ConnectTimeout: 30 * time.Second,
		ReconnectBackoff: autopaho.NewConstantBackoff(time.Second),
		ClientConfig: paho.ClientConfig{
			ClientID: "cellgate-push-" + hex.EncodeToString(suffix),
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				var s remote.Status
				if pr.Packet.Topic == statusTopic && !pr.Packet.Retain && json.Unmarshal(pr.Packet.Payload, &s) == nil {
					select {
					case statuses <- s:
					default:
					}
				}
				return true, nil
			}},
		},
	})
	if err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cm.Disconnect(dctx)
	}()
	if err := cm.AwaitConnection(ctx); err != nil {
		return fmt.Errorf("connect to %s: %w", broker.Host, err)
	}
	sub, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: statusTopic, QoS: 1}}})
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", statusTopic, err)
	}
	if len(sub.Reasons) > 0 && sub.Reasons[0] >= 0x80 {
		return fmt.Errorf("the broker refused the subscription to %s (reason 0x%02x)", statusTopic, sub.Reasons[0])
	}
	resp, err := cm.Publish(ctx, &paho.Publish{QoS: 1, Topic: configTopic, Payload: envelope,
		Properties: &paho.PublishProperties{ContentType: "application/json"}})
	if err != nil {
		return fmt.Errorf("publish to %s: %w", configTopic, err)
	}
	if resp != nil && resp.ReasonCode >= 0x80 {
		return fmt.Errorf("the broker refused the push on %s (reason 0x%02x)", configTopic, resp.ReasonCode)
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no final status for version %d on %s: %w", version, statusTopic, ctx.Err())
		case s := <-statuses:
			if s.Version != version {
				continue
			}
			printStatus(env, s)
			if done, err := finalState(s); done {
				return err
			}
		}
	}
}

// configApply: cellgate config apply [--config F | --addr HOST:PORT]
// [--token-file F] push.json: hands the envelope to the running agent (POST
// /v1/config on its status listener, found as `cellgate status` finds it),
// which takes it through the same checks as a push from the config topic,
// then follows GET /v1/status until the final state.
func configApply(fs *pflag.FlagSet, env Env) action {
	config.BindFlags(fs)
	addr := fs.String("addr", "", "the agent's status listener, HOST:PORT (default: status.listen from the config, else "+defaultStatusListen+")")
	tokenFile := fs.String("token-file", "", "file holding the status listener's bearer token (default: status.token_file)")
	timeout := fs.Duration("timeout", 3*time.Minute, "how long to wait for the final state (more than remote_config.confirm)")
	return func(ctx context.Context) error {
		if fs.NArg() != 1 {
			return usageError("config apply: want one envelope file (- for stdin)")
		}
		data, err := readArg(fs.Arg(0), env)
		if err != nil {
			return err
		}
		target, err := resolveStatusTarget(fs.Lookup("config").Value.String(), fs.Changed("config"), *addr, *tokenFile)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		first, err := postEnvelope(ctx, target, data)
		if err != nil {
			return err
		}
		printStatus(env, first)
		if done, err := finalState(first); done {
			return err
		}
		// A push that moves the status listener is followed there.
		if e, perr := remote.ParseEnvelope(data); perr == nil {
			if moved := overlayStatusListen(e.Config); moved != "" {
				if b, err := loopbackURL(moved); err == nil {
					target.base = b
				}
			}
		}
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return fmt.Errorf("no final state for version %d: %w", first.Version, ctx.Err())
			case <-tick.C:
			}
			body, err := getStatusWith(ctx, target)
			if err != nil {
				continue // the listener may be moving
			}
			var st agent.Status
			if json.Unmarshal(body, &st) != nil || st.RemoteConfig == nil || st.RemoteConfig.Last == nil {
				continue
			}
			if last := *st.RemoteConfig.Last; last.Version == first.Version && last.State != remote.StateApplying {
				printStatus(env, last)
				_, err := finalState(last)
				return err
			}
		}
	}
}

func postEnvelope(ctx context.Context, t statusTarget, data []byte) (remote.Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.base+"/v1/config", bytes.NewReader(data))
	if err != nil {
		return remote.Status{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return remote.Status{}, fmt.Errorf("is the agent running? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return remote.Status{}, err
	}
	var out struct {
		remote.Status
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Error != "" || out.State == "" {
		if out.Error == "" {
			out.Error = strings.TrimSpace(string(body))
		}
		return remote.Status{}, errors.New("agent answered " + resp.Status + ": " + out.Error)
	}
	return out.Status, nil
}

// overlayStatusListen returns status.listen as an overlay sets it, or "".
func overlayStatusListen(overlay string) string {
	var o statusSection
	if yaml.Unmarshal([]byte(overlay), &o) != nil {
		return ""
	}
	return o.Status.Listen
}
