package agent

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/cellgate/cellgate/agent/certcheck"
	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/input"
	"github.com/cellgate/cellgate/agent/pluginhost"
	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/transport"
	"github.com/cellgate/cellgate/transport/uplink"
)

// This file builds the agent's parts from the configuration, one small
// function per part, in the order newAgent calls them.

// openSpool opens the spool and says what recovery found.
func openSpool(cfg config.Spool, log *slog.Logger) (*spool.Spool, error) {
	policy, err := spool.ParsePolicy(cfg.WhenFull)
	if err != nil {
		return nil, fmt.Errorf("spool.when_full: %w", err)
	}
	sp, err := spool.Open(spool.Options{Dir: cfg.Dir, MaxBytes: int64(cfg.MaxBytes), WhenFull: policy, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	if rep := sp.Recovery(); !rep.Clean() {
		log.Warn("spool recovered from damage", "report", fmt.Sprintf("%+v", rep.Damage))
	}
	log.Info("spool open", "dir", cfg.Dir, "pending", sp.Stats().Pending)
	return sp, nil
}

// inputPart is one input as the agent runs and reports it.
type inputPart struct {
	name  string
	run   func(ctx context.Context) error
	stats func() input.Stats // counting the inputs of this name it replaced
	// close releases the input's socket; harmless after run returned.
	close func() error

	// cancel and done are set by startInput: stopInput cancels the input's
	// run and waits for it to return.
	cancel context.CancelFunc
	done   chan struct{}
}

// The inputs, in build order, by the name their metrics carry.
const (
	inputHTTP     = "http"
	inputDatagram = "datagram"
	inputDemo     = "demo"
)

var inputKinds = []string{inputHTTP, inputDatagram, inputDemo}

// buildInputs binds the configured inputs (HTTP, datagram, demo) to the
// spool. The HTTP input's listener also serves the agent's own surfaces
// (status, metrics, remote configuration).
func (a *Agent) buildInputs() (Addrs, error) {
	var addrs Addrs
	a.onStop("inputs", a.closeInputs)
	for _, kind := range inputKinds {
		p, addr, err := a.buildInput(kind, a.cfg.Inputs)
		if err != nil {
			return addrs, err
		}
		if p == nil {
			continue
		}
		a.inputs = append(a.inputs, p)
		switch kind {
		case inputHTTP:
			addrs.HTTP = addr
		case inputDatagram:
			addrs.UDP = addr
		}
	}
	return addrs, nil
}

// buildInput binds one input as in says, or returns nil when in turns it
// off. Its listener or socket is open on return: readings are accepted as
// soon as it runs.
func (a *Agent) buildInput(kind string, in config.Inputs) (*inputPart, net.Addr, error) {
	log := a.log
	switch kind {
	case inputHTTP:
		l := in.HTTP.Listen
		if l == "" {
			return nil, nil, nil
		}
		ln, err := net.Listen("tcp", l)
		if err != nil {
			return nil, nil, fmt.Errorf("inputs.http.listen %s: %w", l, err)
		}
		h := input.NewHTTP(in.HTTP, a.spool, log, time.Now)
		a.mountSurfaces(h)
		return &inputPart{name: kind, run: func(ctx context.Context) error { return h.Serve(ctx, ln) }, stats: h.Stats, close: ln.Close}, ln.Addr(), nil
	case inputDatagram:
		l := in.UDP.Listen
		if l == "" {
			return nil, nil, nil
		}
		d, err := input.NewDatagram(l, a.spool, log, time.Now)
		if err != nil {
			return nil, nil, fmt.Errorf("inputs.udp.listen %s: %w", l, err)
		}
		return &inputPart{name: kind, run: d.Serve, stats: d.Stats, close: d.Close}, d.Addr(), nil
	case inputDemo:
		if in.Demo.Rate <= 0 {
			return nil, nil, nil
		}
		demo, err := input.NewDemo(in.Demo.Rate, a.spool, log)
		if err != nil {
			return nil, nil, fmt.Errorf("inputs.demo.rate: %w", err)
		}
		return &inputPart{name: kind, run: demo.Run, stats: demo.Stats, close: func() error { return nil }}, nil, nil
	}
	return nil, nil, fmt.Errorf("bug: no input %q", kind)
}

// closeInputs releases the sockets of the inputs there are now.
func (a *Agent) closeInputs(context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for _, in := range a.inputs {
		if err := in.close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("%s input: %w", in.name, err))
		}
	}
	return errors.Join(errs...)
}

// startHost starts the plugin supervisor for the configured modem, with
// the bundle to provision in modem-TLS mode.
//
// Before anything starts it checks the files the configuration names
// (certcheck: CA, certificate, key, key password, plugin checksums) and
// refuses to touch the modem when one is wrong; warnings are logged.
func startHost(ctx context.Context, cfg *config.Config, executable string, log *slog.Logger) (*pluginhost.Host, error) {
	rep := certcheck.Check(cfg, certcheck.Options{Executable: executable})
	for _, w := range rep.Warnings {
		log.Warn("certificate check", "key", w.Key, "warning", w.Message)
	}
	if err := rep.Err(); err != nil {
		return nil, err
	}
	dirs := certcheck.PluginDirs(cfg.Plugins, executable)
	var sum []byte
	if h := cfg.Plugins.SHA256[cfg.Modem.Model]; h != "" {
		var err error
		if sum, err = hex.DecodeString(h); err != nil {
			return nil, fmt.Errorf("plugins.sha256.%s: %w", cfg.Modem.Model, err)
		}
	}
	hc := pluginhost.Config{
		Model:  cfg.Modem.Model,
		Dirs:   dirs,
		SHA256: sum,
		Modem: sdk.ModemConfig{
			Port: cfg.Modem.Port, Baud: cfg.Modem.Baud, APN: cfg.Modem.APN, Model: cfg.Modem.Model,
			// Passed as they are: the plugin alone knows what they mean.
			Options: cfg.Modem.Options,
		},
		Logger: log,
	}
	if cfg.TLS.Mode == config.TLSModeModem {
		b, err := loadBundle(cfg.TLS)
		if err != nil {
			return nil, err
		}
		hc.Bundle = &b
	}
	return pluginhost.Start(ctx, hc)
}

// loadBundle reads the TLS files the configuration names: for the modem's
// SSL context 0 in modem mode, for crypto/tls in host mode. The key stays
// as the file has it; an encrypted one travels with its password
// (tls.key_password_file), which the modem (keypwd) or transport's host
// TLS uses in memory.
func loadBundle(t config.TLS) (sdk.Bundle, error) {
	b := sdk.Bundle{Profile: 0, Insecure: t.Insecure}
	for _, f := range []struct {
		key  string
		path string
		dst  *[]byte
	}{{"tls.ca", t.CA, &b.CA}, {"tls.cert", t.Cert, &b.Cert}, {"tls.key", t.Key, &b.Key}} {
		if f.path == "" {
			continue
		}
		data, err := os.ReadFile(f.path)
		if err != nil {
			return b, fmt.Errorf("%s: %w", f.key, err)
		}
		*f.dst = data
	}
	if t.KeyPasswordFile != "" {
		pw, err := certcheck.ReadKeyPassword(t.KeyPasswordFile, t.AllowReadableKey)
		if err != nil {
			return b, fmt.Errorf("tls.key_password_file: %w", err)
		}
		b.KeyPassword = pw
	}
	return b, nil
}

// newUplink builds the configured uplink on a route through the plugin
// host: the same route and TLS policy `cellgate modem dial` uses.
func newUplink(ctx context.Context, cfg *config.Config, host transport.SessionDialer, log *slog.Logger) (uplink.Uplink, error) {
	ucfg, err := uplinkConfig(cfg.Uplink)
	if err != nil {
		return nil, err
	}
	addr, err := ucfg.Address()
	if err != nil {
		return nil, err
	}
	ep := transport.Endpoint{Address: addr, Mode: transport.TLSMode(cfg.TLS.Mode), ServerName: cfg.TLS.SNI}
	if ep.Mode == transport.TLSByHost {
		if ep.Credentials, err = loadBundle(cfg.TLS); err != nil {
			return nil, err
		}
	}
	return newUplinkTo(ctx, ucfg, ep, host, log)
}

// newUplinkTo builds the uplink ucfg says on a route to ep: newUplink's
// second half, which a certificate rotation calls with the new set.
func newUplinkTo(ctx context.Context, ucfg uplink.Config, ep transport.Endpoint, host transport.SessionDialer, log *slog.Logger) (uplink.Uplink, error) {
	route, err := transport.NewRoute(host, ep)
	if err != nil {
		var ce *transport.CredentialError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("tls.%s: %w", ce.Field, ce.Err)
		}
		return nil, err
	}
	return uplink.New(ctx, ucfg, route, log)
}

// uplinkConfig translates the uplink section of the configuration.
func uplinkConfig(u config.Uplink) (uplink.Config, error) {
	switch {
	case u.MQTT != nil:
		b, err := url.Parse(u.MQTT.Broker)
		if err != nil {
			return uplink.Config{}, fmt.Errorf("uplink.mqtt.broker: %w", err)
		}
		return uplink.Config{MQTT: &uplink.MQTTConfig{
			BrokerURL: b, Topic: u.MQTT.Topic, QoS: byte(u.MQTT.QoS), ClientID: u.MQTT.ClientID,
			SessionExpiry: u.MQTT.SessionExpiry, KeepAlive: u.MQTT.KeepAlive, ConnectTimeout: 2 * time.Minute,
		}}, nil
	case u.TLSLines != nil:
		return uplink.Config{TLSLines: &uplink.TLSLinesConfig{Addr: u.TLSLines.Addr, Ack: u.TLSLines.Ack}}, nil
	case u.HTTPS != nil:
		return uplink.Config{HTTPS: &uplink.HTTPSConfig{URL: u.HTTPS.URL}}, nil
	}
	return uplink.Config{}, uplink.ErrNoUplink
}

// newForwarder builds the forwarder between the spool and the uplink.
func newForwarder(cfg *config.Config, sp *spool.Spool, up uplink.Uplink, log *slog.Logger) (*forwarder, error) {
	enc, err := reading.NewEncoder(cfg.Uplink.Batch.Encoding)
	if err != nil {
		return nil, fmt.Errorf("uplink.batch.encoding: %w", err)
	}
	f := &forwarder{
		holds: make(chan holdRequest), acked: &notifier{},
		spool: sp, uplink: up, enc: enc, lines: cfg.Uplink.TLSLines != nil,
		deviceID: cfg.DeviceID, batch: cfg.Uplink.Batch, maxInFlight: cfg.Uplink.MaxInFlight,
		deadDir: filepath.Join(cfg.Spool.Dir, "refused"), log: log,
	}
	f.refusedMax.Store(int64(cfg.Spool.RefusedMaxBytes))
	return f, nil
}
