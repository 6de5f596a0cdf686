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
	stats func() input.Stats
}

// buildInputs binds the configured inputs (HTTP, datagram, demo) to the
// spool. The HTTP input's listener also serves the agent's own surfaces
// (status, metrics).
func (a *Agent) buildInputs() (Addrs, error) {
	var addrs Addrs
	in := a.cfg.Inputs
	log := a.log
	if l := in.HTTP.Listen; l != "" {
		ln, err := net.Listen("tcp", l)
		if err != nil {
			return addrs, fmt.Errorf("inputs.http.listen %s: %w", l, err)
		}
		a.onStop("http listener", func(context.Context) error { return ln.Close() })
		addrs.HTTP = ln.Addr()
		h := input.NewHTTP(in.HTTP, a.spool, log, time.Now)
		a.mountSurfaces(h)
		a.inputs = append(a.inputs, &inputPart{"http", func(ctx context.Context) error { return h.Serve(ctx, ln) }, h.Stats})
	}
	if l := in.UDP.Listen; l != "" {
		d, err := input.NewDatagram(l, a.spool, log, time.Now)
		if err != nil {
			return addrs, fmt.Errorf("inputs.udp.listen %s: %w", l, err)
		}
		a.onStop("datagram socket", func(context.Context) error { return d.Close() })
		addrs.UDP = d.Addr()
		a.inputs = append(a.inputs, &inputPart{"datagram", d.Serve, d.Stats})
	}
	if r := in.Demo.Rate; r > 0 {
		demo, err := input.NewDemo(r, a.spool, log)
		if err != nil {
			return addrs, fmt.Errorf("inputs.demo.rate: %w", err)
		}
		a.inputs = append(a.inputs, &inputPart{"demo", demo.Run, demo.Stats})
	}
	return addrs, nil
}

// startHost starts the plugin supervisor for the configured modem, with
// the bundle to provision in modem-TLS mode.
func startHost(ctx context.Context, cfg *config.Config, executable string, log *slog.Logger) (*pluginhost.Host, error) {
	dirs := pluginhost.DefaultDirs(executable)
	if cfg.Plugins.Dir != "" {
		dirs = []string{cfg.Plugins.Dir}
	}
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
		Modem:  sdk.ModemConfig{Port: cfg.Modem.Port, Baud: cfg.Modem.Baud, APN: cfg.Modem.APN, Model: cfg.Modem.Model},
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
// SSL context 0 in modem mode, for crypto/tls in host mode.
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
	return &forwarder{
		spool: sp, uplink: up, enc: enc, lines: cfg.Uplink.TLSLines != nil,
		deviceID: cfg.DeviceID, batch: cfg.Uplink.Batch,
		deadDir: filepath.Join(cfg.Spool.Dir, "refused"), log: log,
	}, nil
}
