package conformance

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// fixture is one check's world: a modem under test (or none), one plugin
// process in front of it, and a fresh PKI. Everything it starts is undone
// by cleanup, in reverse order.
type fixture struct {
	cfg     *Config
	modem   Modem // nil: the plugin drives no modem
	plugin  *sdk.Plugin
	tr      sdk.SecureTransport
	pki     *PKI
	version string
	undo    []func()
}

func (f *fixture) defer_(fn func()) { f.undo = append(f.undo, fn) }

func (f *fixture) cleanup() {
	for i := len(f.undo) - 1; i >= 0; i-- {
		f.undo[i]()
	}
}

func (f *fixture) setup(ctx context.Context) error {
	pki, err := NewPKI(P256)
	if err != nil {
		return err
	}
	f.pki = pki
	m, err := f.cfg.newModem()
	if err != nil {
		return fmt.Errorf("start the modem under test: %w", err)
	}
	if m != nil {
		f.modem = m
		f.defer_(func() { m.Close() })
	}
	p, err := launch(ctx, f.cfg)
	if err != nil {
		return err
	}
	f.plugin, f.tr, f.version = p, p.Transport(), p.ContractVersion()
	f.defer_(func() {
		kctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		p.Kill(kctx)
	})
	return nil
}

// launch starts cfg's plugin as the agent does, its checksum pinned.
func launch(ctx context.Context, cfg *Config) (*sdk.Plugin, error) {
	sum, err := sdk.FileSHA256(cfg.Plugin)
	if err != nil {
		return nil, fmt.Errorf("checksum of %s: %w", cfg.Plugin, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p, err := sdk.Launch(lctx, sdk.LaunchConfig{Path: cfg.Plugin, SHA256: sum, Logger: log, Env: cfg.Env})
	if err != nil {
		return nil, fmt.Errorf("launch %s: %w", cfg.Plugin, err)
	}
	return p, nil
}

func (f *fixture) port() string {
	if f.modem == nil {
		return ""
	}
	return f.modem.Port()
}

func (f *fixture) modemConfig(options map[string]string) sdk.ModemConfig {
	baud := 0
	if f.cfg.Port != "" {
		baud = f.cfg.Baud
	}
	return sdk.ModemConfig{Port: f.port(), Baud: baud, APN: f.cfg.APN, Model: f.cfg.Model, Options: options, RegistrationTimeout: time.Minute}
}

func (f *fixture) open(ctx context.Context) (sdk.ModemInfo, error) {
	info, err := f.tr.Open(ctx, f.modemConfig(f.cfg.Options))
	if err != nil {
		return info, fmt.Errorf("Open: %w", err)
	}
	return info, nil
}

// bundle is the credential set the good server accepts.
func (f *fixture) bundle() sdk.Bundle {
	if s := f.cfg.Server; s != nil {
		return sdk.Bundle{CA: s.CA, Cert: s.Cert, Key: s.Key}
	}
	return sdk.Bundle{CA: f.pki.CA.CertPEM, Cert: f.pki.Client.CertPEM, Key: f.pki.Client.KeyPEM}
}

// ready opens the modem and provisions the good server's bundle.
func (f *fixture) ready(ctx context.Context) error {
	if _, err := f.open(ctx); err != nil {
		return err
	}
	if _, err := f.tr.Provision(ctx, f.bundle()); err != nil {
		return fmt.Errorf("Provision: %w", err)
	}
	return nil
}

// serve starts a local server, stopped when the check ends.
func (f *fixture) serve(cfg *tls.Config, h Handler) (*Server, error) {
	s, err := StartServer(cfg, h)
	if err != nil {
		return nil, err
	}
	f.defer_(s.Close)
	return s, nil
}

// goodServer returns where the mutual-TLS echo server is: a local one of
// the fixture's PKI (returned too), or the remote one.
func (f *fixture) goodServer() (string, int, *Server, error) {
	if s := f.cfg.Server; s != nil {
		host, port, err := splitAddr(s.Addr)
		return host, port, nil, err
	}
	s, err := f.serve(MutualTLS(f.pki, 0), Echo)
	if err != nil {
		return "", 0, nil, err
	}
	host, port := s.HostPort()
	return host, port, s, nil
}

// dial opens a modem-TLS session, closed when the check ends.
func (f *fixture) dial(ctx context.Context, host string, port int) (sdk.Session, error) {
	sess, err := f.tr.Dial(ctx, sdk.DialRequest{Host: host, Port: port, Mode: sdk.DialModemTLS})
	if err != nil {
		return nil, fmt.Errorf("Dial %s:%d: %w", host, port, err)
	}
	f.defer_(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sess.Close(cctx)
	})
	return sess, nil
}

// readyAndDial opens, provisions and dials the good server.
func (f *fixture) readyAndDial(ctx context.Context) (sdk.Session, *Server, error) {
	if err := f.ready(ctx); err != nil {
		return nil, nil, err
	}
	host, port, srv, err := f.goodServer()
	if err != nil {
		return nil, nil, err
	}
	sess, err := f.dial(ctx, host, port)
	return sess, srv, err
}
