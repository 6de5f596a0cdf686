// Package agent is the cellgate edge agent: it wires the configuration, the
// spool, the inputs, the plugin host and the uplink into `cellgate run`.
//
// Data path: inputs append readings to the spool (an HTTP 202 means the
// reading is on disk); the forwarder takes batches from the spool in order,
// encodes them, sends them through the uplink over a modem session and acks
// them in the spool only when the upstream acknowledged them. A crash at any
// point re-sends what was not acknowledged: delivery is at-least-once.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/input"
	"github.com/cellgate/cellgate/agent/pluginhost"
	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/transport"
)

// Options are the parts of a run that are not configuration.
type Options struct {
	Logger *slog.Logger
	// Executable locates plugins next to the cellgate binary when
	// plugins.dir is empty.
	Executable string
	// Ready, when set, is called once the inputs listen, with their
	// addresses (tests bind port 0 and need to know where).
	Ready func(Addrs)
}

// Addrs are where the inputs listen.
type Addrs struct {
	HTTP net.Addr
	UDP  net.Addr
}

// Run runs the agent until ctx ends, then shuts down in order: inputs stop
// accepting, the forwarder finishes its in-flight batch or abandons it (it
// stays in the spool), the uplink and the plugin stop, the spool closes.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	sp, err := spool.Open(spool.Options{Dir: cfg.Spool.Dir, MaxBytes: int64(cfg.Spool.MaxBytes), WhenFull: policy(cfg.Spool.WhenFull), Logger: log.With("part", "spool")})
	if err != nil {
		return fmt.Errorf("open spool: %w", err)
	}
	defer sp.Close()
	if rep := sp.Recovery(); !rep.Clean() {
		log.Warn("spool recovered from damage", "report", fmt.Sprintf("%+v", rep.Damage))
	}
	log.Info("spool open", "dir", cfg.Spool.Dir, "pending", sp.Stats().Pending)

	b := &board{deviceID: cfg.DeviceID, kind: cfg.Uplink.Kind(), started: time.Now(), spool: sp}
	enc, err := reading.NewEncoder(cfg.Uplink.Batch.Encoding)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	goRun := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}

	// Inputs first: readings are accepted (and kept) even while the modem
	// is still coming up.
	var addrs Addrs
	b.inputs = map[string]func() input.Stats{}
	if l := cfg.Inputs.HTTP.Listen; l != "" {
		ln, err := net.Listen("tcp", l)
		if err != nil {
			return fmt.Errorf("inputs.http.listen %s: %w", l, err)
		}
		addrs.HTTP = ln.Addr()
		h := input.NewHTTP(cfg.Inputs.HTTP, sp, log, time.Now)
		h.HandleStatus(b.status)
		h.Handle("/metrics", newMetrics(b).handler())
		b.inputs["http"] = h.Stats
		goRun("http input", func() error { return h.Serve(ctx, ln) })
	}
	if l := cfg.Inputs.UDP.Listen; l != "" {
		d, err := input.NewDatagram(l, sp, log, time.Now)
		if err != nil {
			return fmt.Errorf("inputs.udp.listen %s: %w", l, err)
		}
		addrs.UDP = d.Addr()
		b.inputs["datagram"] = d.Stats
		goRun("datagram input", func() error { return d.Serve(ctx) })
	}
	if r := cfg.Inputs.Demo.Rate; r > 0 {
		demo, err := input.NewDemo(r, sp, log)
		if err != nil {
			return fmt.Errorf("inputs.demo.rate: %w", err)
		}
		b.inputs["demo"] = demo.Stats
		goRun("demo input", func() error { return demo.Run(ctx) })
	}
	if opts.Ready != nil {
		opts.Ready(addrs)
	}

	host, err := startHost(ctx, cfg, opts, log)
	if err != nil {
		cancel()
		wg.Wait()
		return err
	}
	b.host.Store(host)
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer scancel()
		host.Close(sctx)
	}()
	// A host that stopped for good (a plugin binary that fails its
	// checksum, a modem of another model, a bundle the plugin refuses)
	// ends the run with its error: readings stay in the spool, and the
	// service manager sees the failure instead of an agent that silently
	// forwards nothing.
	goRun("plugin host", func() error {
		select {
		case <-host.Done():
			return host.Ready(ctx)
		case <-ctx.Done():
			return nil
		}
	})

	rt, err := dialer(cfg, host)
	if err != nil {
		cancel()
		wg.Wait()
		return err
	}
	up, err := newUplink(ctx, cfg, rt, log.With("part", "uplink"))
	if err != nil {
		cancel()
		wg.Wait()
		return err
	}
	fw := &forwarder{spool: sp, uplink: up, enc: enc, lines: cfg.Uplink.TLSLines != nil, deviceID: cfg.DeviceID, batch: cfg.Uplink.Batch,
		deadDir: filepath.Join(cfg.Spool.Dir, "refused"), log: log.With("part", "forwarder")}
	b.fw.Store(fw)
	goRun("forwarder", func() error { return fw.run(ctx) })

	<-ctx.Done()
	wg.Wait()
	up.Close()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func policy(s string) spool.Policy {
	p, err := spool.ParsePolicy(s)
	if err != nil {
		return spool.PolicyReject // config validation already refused anything else
	}
	return p
}

// startHost starts the plugin supervisor for the configured modem.
func startHost(ctx context.Context, cfg *config.Config, opts Options, log *slog.Logger) (*pluginhost.Host, error) {
	dirs := pluginhost.DefaultDirs(opts.Executable)
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
		Logger: log.With("part", "plugin"),
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

// loadBundle reads the TLS files for the modem's SSL context 0.
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

// dialer returns the uplink's Dialer: a modem session to the uplink's
// host:port, with TLS terminated by the modem or by crypto/tls here.
// route is how the uplink reaches its upstream through the modem.
type route struct {
	target string
	// dial returns a secure conn: TLS terminated by the modem, or by
	// crypto/tls here over a plain modem socket.
	dial transport.Dialer
	// plain and hostTLS are set in host-TLS mode: a plain modem socket and
	// the gateway's TLS config, for clients that run TLS themselves
	// (net/http through DialContext).
	plain   transport.Dialer
	hostTLS *tls.Config
}

func dialer(cfg *config.Config, host *pluginhost.Host) (route, error) {
	target, err := uplinkTarget(cfg.Uplink)
	if err != nil {
		return route{}, err
	}
	h, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return route{}, fmt.Errorf("uplink address %q: %w", target, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return route{}, fmt.Errorf("uplink address %q: bad port", target)
	}
	// For host TLS, crypto/tls verifies an IP address against the
	// certificate's IP SANs and sends no SNI for it, so the host itself is
	// the right default either way.
	serverName := cfg.TLS.SNI
	if serverName == "" {
		serverName = h
	}
	switch cfg.TLS.Mode {
	case config.TLSModeModem:
		req := modemDialRequest(h, port, cfg.TLS.SNI)
		return route{target: target, dial: func(ctx context.Context) (net.Conn, error) {
			sess, err := host.Dial(ctx, req)
			if err != nil {
				return nil, err
			}
			return transport.NewConn(sess, target), nil
		}}, nil
	case config.TLSModeHost:
		tc, err := hostTLS(cfg.TLS, serverName)
		if err != nil {
			return route{}, err
		}
		req := sdk.DialRequest{Host: h, Port: port, Mode: sdk.DialPlainTCP}
		plain := func(ctx context.Context) (net.Conn, error) {
			sess, err := host.Dial(ctx, req)
			if err != nil {
				return nil, err
			}
			return transport.NewConn(sess, target), nil
		}
		return route{target: target, plain: plain, hostTLS: tc, dial: func(ctx context.Context) (net.Conn, error) {
			c, err := plain(ctx)
			if err != nil {
				return nil, err
			}
			conn := tls.Client(c, tc)
			if err := conn.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, fmt.Errorf("TLS handshake with %s: %w", target, err)
			}
			return conn, nil
		}}, nil
	}
	return route{}, fmt.Errorf("tls.mode %q: want modem or host", cfg.TLS.Mode)
}

// modemDialRequest is the session request for modem-terminated TLS. The SNI
// is tls.sni when set (a plugin whose modem can only send the dialled host
// refuses a different one, which beats verifying against a name the
// operator did not ask for), else the host unless it is an IP address.
func modemDialRequest(host string, port int, sni string) sdk.DialRequest {
	req := sdk.DialRequest{Host: host, Port: port, Profile: 0, Mode: sdk.DialModemTLS, ServerName: sni}
	if sni == "" && net.ParseIP(host) == nil {
		req.ServerName = host
	}
	return req
}

// hostTLS is the gateway-side TLS config: TLS 1.3 (the keys never leave
// the gateway, so there is no reason to accept less), server verified
// against tls.ca, or the system's roots when tls.ca is empty, unless
// tls.insecure.
func hostTLS(t config.TLS, serverName string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: serverName}
	if t.Insecure {
		c.InsecureSkipVerify = true
	} else if t.CA != "" {
		ca, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("tls.ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("tls.ca %s: no PEM certificate in it", t.CA)
		}
		c.RootCAs = pool
	}
	if t.Cert != "" {
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("tls.cert/tls.key: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// uplinkTarget is the host:port the configured uplink connects to.
func uplinkTarget(u config.Uplink) (string, error) {
	switch {
	case u.MQTT != nil:
		b, err := url.Parse(u.MQTT.Broker)
		if err != nil {
			return "", fmt.Errorf("uplink.mqtt.broker: %w", err)
		}
		return b.Host, nil
	case u.TLSLines != nil:
		return u.TLSLines.Addr, nil
	case u.HTTPS != nil:
		b, err := url.Parse(u.HTTPS.URL)
		if err != nil {
			return "", fmt.Errorf("uplink.https.url: %w", err)
		}
		if b.Port() == "" {
			return net.JoinHostPort(b.Hostname(), "443"), nil
		}
		return b.Host, nil
	}
	return "", errors.New("no uplink configured")
}

func newUplink(ctx context.Context, cfg *config.Config, rt route, log *slog.Logger) (transport.Uplink, error) {
	dial, target := rt.dial, rt.target
	u := cfg.Uplink
	switch {
	case u.MQTT != nil:
		b, err := url.Parse(u.MQTT.Broker)
		if err != nil {
			return nil, fmt.Errorf("uplink.mqtt.broker: %w", err)
		}
		return transport.NewMQTT(ctx, transport.MQTTConfig{
			BrokerURL: b, Topic: u.MQTT.Topic, QoS: byte(u.MQTT.QoS), ClientID: u.MQTT.ClientID,
			SessionExpiry: u.MQTT.SessionExpiry, KeepAlive: u.MQTT.KeepAlive, ConnectTimeout: 2 * time.Minute,
		}, dial, log)
	case u.TLSLines != nil:
		return transport.NewTLSLines(transport.TLSLinesConfig{Addr: target, Ack: u.TLSLines.Ack}, dial, log), nil
	case u.HTTPS != nil:
		if rt.plain != nil {
			// Host TLS: net/http runs TLS itself over a plain modem
			// socket (Transport.DialContext).
			return transport.NewHTTPS(transport.HTTPSConfig{URL: u.HTTPS.URL, HostTLS: rt.hostTLS}, rt.plain, log), nil
		}
		return transport.NewHTTPS(transport.HTTPSConfig{URL: u.HTTPS.URL}, dial, log), nil
	}
	return nil, errors.New("no uplink configured")
}
