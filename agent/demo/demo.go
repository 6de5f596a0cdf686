// Package demo runs the quickstart: a development PKI, an emulated SIM7600
// on a pseudo-terminal, an embedded MQTT broker requiring client
// certificates, the agent with its demo input, and a subscriber that prints
// what arrives. Everything is real except the modem, which is sdk/modemsim;
// the embedded broker (mochi-mqtt) is for the demo only, the integration
// tests use mosquitto.
package demo

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/cellgate/cellgate/agent"
	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/internal/devpki"
	"github.com/cellgate/cellgate/sdk/modemsim"
)

// Options configure the demo.
type Options struct {
	// Dir holds everything the demo creates; it is removed at the end.
	Dir string
	// PluginDir holds cellgate-plugin-sim7600 (make build puts it in bin/).
	PluginDir string
	// Rate is the demo input's readings per second.
	Rate float64
	// Baud is the emulated modem's line rate.
	Baud int
	// Out receives the subscriber's lines; Log the components' logs.
	Out io.Writer
	Log *slog.Logger
	// Rotate shows one certificate rotation by CSR once readings flow
	// (DEMO_ROTATE=1; rotate.go).
	Rotate bool
}

// Run runs the demo until ctx ends, then stops everything and removes Dir.
func Run(ctx context.Context, o Options) error {
	// The config the demo writes needs absolute paths (a device path must
	// be one), and the default directory is relative.
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	o.Dir = dir
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(o.Dir)
	step := func(format string, a ...any) { fmt.Fprintf(o.Out, "demo: "+format+"\n", a...) }

	pki, pkiDir, err := writePKI(o.Dir)
	if err != nil {
		return err
	}
	step("development PKI in %s (CA, broker and gateway certificates)", pkiDir)

	link := filepath.Join(o.Dir, "ttyUSB2")
	modem, err := modemsim.Start(modemsim.Config{Model: "sim7600", Link: link, StateDir: filepath.Join(o.Dir, "modem-flash"), Baud: o.Baud,
		NetworkLatency: 30 * time.Millisecond, Logger: o.Log.With("part", "modemsim")})
	if err != nil {
		return fmt.Errorf("modem emulator: %w", err)
	}
	defer modem.Close()
	step("emulated SIM7600 on %s (%d baud)", link, o.Baud)

	broker, addr, err := startBroker(pki, o.Log)
	if err != nil {
		return err
	}
	defer broker.Close()
	step("MQTT broker (mutual TLS) on %s", addr)

	var received atomic.Int64
	sub, err := subscribe(ctx, pki, addr, o.Out, &received)
	if err != nil {
		return err
	}
	defer sub.Disconnect(&paho.Disconnect{ReasonCode: 0})

	cfgPath, cfg, err := writeConfig(o, link, addr)
	if err != nil {
		return err
	}
	step("agent starting with %s (demo input: %g readings/s); Ctrl-C stops everything", cfgPath, o.Rate)

	var rot *rotationDemo
	if o.Rotate {
		rot = startRotationDemo(ctx, pki, addr, o.Log, step)
	}
	// The agent stops when ctx ends.
	err = agent.Run(ctx, cfg, agent.Options{Logger: o.Log.With("part", "agent"), Ready: func(a agent.Addrs) {
		rot.ready(a.Status)
		if a.Status != nil {
			// make demo builds cellgate beside the plugin: name the one that
			// works from this shell, as the operator would type it.
			cellgate := "cellgate"
			if p := filepath.Join(o.PluginDir, "cellgate"); fileExists(p) {
				cellgate = p
			}
			step("status page on http://%s/ ; from another shell: %s status --addr %s", a.Status, cellgate, a.Status)
		}
	}})
	rot.wait()
	c := modem.Counters()
	step("stopped: %d readings received by the subscriber; the modem's socket carried %d bytes up and %d down, its serial line %d bytes",
		received.Load(), c.NetTxBytes, c.NetRxBytes, c.SerialHostToModemBytes+c.SerialModemToHostBytes)
	return err
}

// writePKI makes a development PKI and writes its files to dir/pki, which
// it returns too.
func writePKI(dir string) (*devpki.PKI, string, error) {
	pki, err := devpki.New(devpki.P256)
	if err != nil {
		return nil, "", fmt.Errorf("development PKI: %w", err)
	}
	pkiDir := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pkiDir, 0o755); err != nil {
		return nil, "", err
	}
	if err := pki.WriteFiles(pkiDir); err != nil {
		return nil, "", err
	}
	return pki, pkiDir, nil
}

// writeConfig writes the agent's config to o.Dir/cellgate.yaml: the modem
// on link, the broker at addr, the demo input at o.Rate. It returns the
// file's path and the config loaded from it.
func writeConfig(o Options, link, addr string) (string, *config.Config, error) {
	cfgPath := filepath.Join(o.Dir, "cellgate.yaml")
	yaml := fmt.Sprintf(`# written by the demo; see configs/cellgate.yaml for every key
device_id: demo-gw
modem: {model: sim7600, port: %q, baud: %d}
plugins: {dir: %q}
tls: {mode: modem, ca: pki/ca.pem, cert: pki/client.pem, key: pki/client.key}
inputs: {http: {listen: "127.0.0.1:0"}, demo: {rate: %g}}
status: {listen: "127.0.0.1:0"}
spool: {dir: spool, max_bytes: 16MiB}
uplink:
  mqtt: {broker: "mqtts://%s", topic: "cellgate/{device_id}/telemetry", qos: 1}
  batch: {max_readings: 20, max_delay: 2s, encoding: json}
`, link, o.Baud, o.PluginDir, o.Rate, addr)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		return "", nil, err
	}
	cfg, _, err := config.Load(config.LoadOptions{File: cfgPath, FileExplicit: true})
	if err != nil {
		return "", nil, fmt.Errorf("demo config: %w", err)
	}
	return cfgPath, cfg, nil
}

// startBroker runs mochi-mqtt with one TLS listener on 127.0.0.1 that
// requires a client certificate signed by the demo CA. The listener is
// open when it returns, so a client may connect at once.
func startBroker(pki *devpki.PKI, log *slog.Logger) (*mqtt.Server, string, error) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.ServerTLS())
	if err != nil {
		return nil, "", fmt.Errorf("broker listener: %w", err)
	}
	// The broker's own chatter (clients disconnecting at shutdown) is not
	// what the demo is about: only its errors are shown.
	blog := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	srv := mqtt.New(&mqtt.Options{InlineClient: false, Logger: blog.With("part", "broker")})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		ln.Close()
		return nil, "", err
	}
	if err := srv.AddListener(listeners.NewNet("mtls", ln)); err != nil {
		ln.Close()
		return nil, "", fmt.Errorf("broker listener: %w", err)
	}
	go srv.Serve()
	return srv, ln.Addr().String(), nil
}

// subscribe connects a subscriber with the demo client certificate and
// prints each batch that arrives with a running count.
func subscribe(ctx context.Context, pki *devpki.PKI, addr string, out io.Writer, count *atomic.Int64) (*paho.Client, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: pki.ClientTLS()}
	conn, err := d.DialContext(cctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	c := paho.NewClient(paho.ClientConfig{
		// paho's lock around each packet's Writes: without it the PUBACKs
		// and the PINGREQ it sends from other goroutines can land inside
		// another packet.
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			var batch struct {
				DeviceID string            `json:"device_id"`
				Readings []json.RawMessage `json:"readings"`
			}
			if err := json.Unmarshal(pr.Packet.Payload, &batch); err != nil {
				fmt.Fprintf(out, "subscriber: %s: %d bytes that are not a JSON batch\n", pr.Packet.Topic, len(pr.Packet.Payload))
				return true, nil
			}
			total := count.Add(int64(len(batch.Readings)))
			last := ""
			if n := len(batch.Readings); n > 0 {
				last = string(batch.Readings[n-1])
			}
			fmt.Fprintf(out, "subscriber: %s  +%d readings (%d bytes)  total %d  last %s\n", time.Now().Format("15:04:05"), len(batch.Readings), len(pr.Packet.Payload), total, last)
			return true, nil
		}},
	})
	if _, err := c.Connect(cctx, &paho.Connect{ClientID: "demo-subscriber", CleanStart: true, KeepAlive: 30}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscriber connect: %w", err)
	}
	if _, err := c.Subscribe(cctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "cellgate/+/telemetry", QoS: 1}}}); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	return c, nil
}

// fileExists says whether path names a regular file.
func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}
