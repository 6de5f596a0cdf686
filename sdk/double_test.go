package sdk_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/cellgate/cellgate/sdk"
)

// This file is the plugin side of the tests: the test binary re-executes
// itself with envPlugin set and serves the double below through sdk.Serve.
//
// double is a TEST DOUBLE, NOT A MODEM: it speaks no AT commands and opens
// no serial port. It implements SecureTransport in memory with behaviours
// chosen by the test through the requests themselves (the dialled Host,
// ModemConfig.Options) so that the host side of the sdk — the gRPC service,
// flow control, typed errors, process supervision — can be exercised across
// a real process boundary. Modem behaviour is tested against modemsim by
// sdk/plugintest.
//
// Dial hosts:
//
//	echo        Send's bytes come back from Recv XORed with echoMask
//	events      Recv: "hello", a peer-closed event, then io.EOF
//	gated       Send waits for a grant from the test's control socket
//	idle        Send discards, Recv waits for Close
//	slowdial    Dial reports "dial-waiting", waits for ctx, reports "dial-canceled"
//	fail-dial   Dial fails with CCH error 15
//	fail-send   Send fails with a SerialError
//	fail-recv   Recv returns "x", then a CCH error
//	fail-close  Close fails with a TimeoutError
const (
	envPlugin  = "SDK_TEST_PLUGIN"
	envControl = "SDK_TEST_CONTROL"
	echoMask   = 0xA5
	doubleName = "CELLGATE-TEST-DOUBLE"
)

type double struct {
	log *slog.Logger

	mu       sync.Mutex
	certs    map[string][]byte
	sessions [2]*doubleSession // by modem session id, like CCH sessions 0 and 1

	ctlOnce sync.Once
	ctl     *doubleControl
	ctlErr  error
}

// newDouble returns the double, logging through sdk.NewLogger like a real
// plugin so the log bridge is exercised too.
func newDouble() *double {
	return &double{log: sdk.NewLogger(slog.LevelDebug), certs: map[string][]byte{}}
}

// doubleControl is the double's side of the control socket: it reports what
// it did ("send N", "dial-canceled") and receives grants ("ok") for gated
// sends.
type doubleControl struct {
	wmu    sync.Mutex
	conn   net.Conn
	grants chan struct{}
}

func (d *double) control() (*doubleControl, error) {
	d.ctlOnce.Do(func() {
		path := os.Getenv(envControl)
		if path == "" {
			d.ctlErr = errors.New("double: no control socket configured")
			return
		}
		conn, err := net.Dial("unix", path)
		if err != nil {
			d.ctlErr = fmt.Errorf("double: control socket: %w", err)
			return
		}
		c := &doubleControl{conn: conn, grants: make(chan struct{}, 1024)}
		go func() {
			sc := bufio.NewScanner(conn)
			for sc.Scan() {
				if sc.Text() == "ok" {
					c.grants <- struct{}{}
				}
			}
		}()
		d.ctl = c
	})
	return d.ctl, d.ctlErr
}

func (c *doubleControl) report(line string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := io.WriteString(c.conn, line+"\n")
	return err
}

func (d *double) Open(ctx context.Context, cfg sdk.ModemConfig) (sdk.ModemInfo, error) {
	d.log.Warn("double opened", "port", cfg.Port, "op", "open")
	if cfg.Model != "" && cfg.Model != "double" {
		return sdk.ModemInfo{}, &sdk.ModelMismatchError{Want: cfg.Model, Got: doubleName}
	}
	switch cfg.Options["fail"] {
	case "":
	case "modem":
		return sdk.ModemInfo{}, fmt.Errorf("double: sim ready: %w", &sdk.ModemError{Op: "AT+CPIN?", Code: 10, Text: "SIM not inserted"})
	case "modem-bare":
		return sdk.ModemInfo{}, &sdk.ModemError{Op: "AT+CGACT=1,1", Code: -1}
	case "cch":
		return sdk.ModemInfo{}, &sdk.CCHError{Op: "start", Session: -1, Code: 17}
	case "serial":
		return sdk.ModemInfo{}, fmt.Errorf("double: %w", &sdk.SerialError{Op: "open", Port: cfg.Port, Err: "no such file or directory"})
	case "timeout":
		return sdk.ModemInfo{}, &sdk.TimeoutError{Op: "registration", After: cfg.RegistrationTimeout}
	case "untyped":
		return sdk.ModemInfo{}, errors.New("double: something without a type")
	case "hang":
		<-ctx.Done()
		return sdk.ModemInfo{}, fmt.Errorf("double: open: %w", ctx.Err())
	default:
		return sdk.ModemInfo{}, fmt.Errorf("double: unknown failure %q", cfg.Options["fail"])
	}
	// Echo the config into the answer so the test sees every field cross.
	return sdk.ModemInfo{
		Model:        doubleName,
		Manufacturer: "cellgate tests",
		Revision:     fmt.Sprintf("baud=%d apn=%s timeout=%s opt=%s", cfg.Baud, cfg.APN, cfg.RegistrationTimeout, cfg.Options["k"]),
		IMEI:         "490154203237518",
		ICCID:        "8944500102198304826",
		SignalRSSI:   23,
		SignalBER:    99,
		Registration: "roaming",
		Operator:     cfg.Port,
		ClockSynced:  true,
	}, nil
}

func (d *double) Provision(_ context.Context, b sdk.Bundle) (sdk.ProvisionReport, error) {
	if b.Profile < 0 || b.Profile > 9 {
		return sdk.ProvisionReport{}, &sdk.BundleError{Field: "profile", Reason: fmt.Sprintf("%d is outside 0-9", b.Profile)}
	}
	files := map[string][]byte{}
	for _, f := range []struct {
		field string
		pem   []byte
	}{{"ca", b.CA}, {"cert", b.Cert}, {"key", b.Key}} {
		if len(f.pem) == 0 {
			continue
		}
		if blk, _ := pem.Decode(f.pem); blk == nil {
			return sdk.ProvisionReport{}, &sdk.BundleError{Field: f.field, Reason: "no PEM block found"}
		}
		sum := sha256.Sum256(f.pem)
		files[fmt.Sprintf("%s_%x.pem", f.field, sum[:6])] = f.pem
	}
	rep := sdk.ProvisionReport{Profile: b.Profile, AuthMode: 1}
	if b.Insecure {
		rep.AuthMode = 0
	} else if len(b.Cert) > 0 {
		rep.AuthMode = 2
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, content := range files {
		if _, ok := d.certs[name]; ok {
			rep.Kept = append(rep.Kept, name)
			continue
		}
		d.certs[name] = content
		rep.Downloaded = append(rep.Downloaded, name)
	}
	sort.Strings(rep.Kept)
	sort.Strings(rep.Downloaded)
	return rep, nil
}

func (d *double) ListCerts(context.Context) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	names := make([]string, 0, len(d.certs))
	for n := range d.certs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

func (d *double) DeleteCert(_ context.Context, name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.certs[name]; !ok {
		return &sdk.ModemError{Op: "AT+CCERTDELE=\"" + name + "\"", Code: -1}
	}
	delete(d.certs, name)
	return nil
}

func (d *double) Dial(ctx context.Context, req sdk.DialRequest) (sdk.Session, error) {
	switch req.Host {
	case "fail-dial":
		return nil, fmt.Errorf("double: dial %s:%d: %w", req.Host, req.Port, &sdk.CCHError{Op: "open", Session: 0, Code: 15})
	case "slowdial":
		c, err := d.control()
		if err != nil {
			return nil, err
		}
		if err := c.report("dial-waiting"); err != nil {
			return nil, err
		}
		<-ctx.Done()
		_ = c.report("dial-canceled")
		return nil, fmt.Errorf("double: dial: %w", ctx.Err())
	case "echo", "events", "gated", "idle", "fail-send", "fail-recv", "fail-close":
	default:
		return nil, &sdk.CCHError{Op: "open", Session: 0, Code: 13}
	}
	s := &doubleSession{d: d, kind: req.Host, echo: make(chan []byte, 4), closed: make(chan struct{})}
	if req.Host == "gated" {
		c, err := d.control()
		if err != nil {
			return nil, err
		}
		s.ctl = c
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, cur := range d.sessions {
		if cur == nil {
			s.id = id
			d.sessions[id] = s
			return s, nil
		}
	}
	return nil, &sdk.CCHError{Op: "open", Session: 0, Code: 3}
}

func (d *double) Stop(ctx context.Context) error {
	d.mu.Lock()
	sessions := d.sessions
	d.mu.Unlock()
	if os.Getenv(envControl) != "" {
		if c, err := d.control(); err == nil {
			_ = c.report("stopped")
		}
	}
	for _, s := range sessions {
		if s != nil {
			if err := s.Close(ctx); err != nil && s.kind != "fail-close" {
				return err
			}
		}
	}
	return nil
}

type doubleSession struct {
	d    *double
	id   int
	kind string
	ctl  *doubleControl

	echo chan []byte // echo: transformed bytes waiting for Recv (bounded)

	sending   sync.Mutex // held during Send: TryLock failing means concurrent Sends
	recvState int        // events, fail-recv: how far Recv got (Recv's caller is one goroutine)

	closeOnce sync.Once
	closed    chan struct{}
}

func (s *doubleSession) ID() int { return s.id }

func (s *doubleSession) Send(ctx context.Context, p []byte) error {
	if !s.sending.TryLock() {
		return errors.New("double: concurrent Send calls; the sdk must serialise them")
	}
	defer s.sending.Unlock()
	select {
	case <-s.closed:
		return &sdk.CCHError{Op: "send", Session: s.id, Code: 11}
	default:
	}
	switch s.kind {
	case "echo":
		out := make([]byte, len(p))
		for i, b := range p {
			out[i] = b ^ echoMask
		}
		select {
		case s.echo <- out:
			return nil
		case <-s.closed:
			return &sdk.CCHError{Op: "send", Session: s.id, Code: 4}
		case <-ctx.Done():
			return ctx.Err()
		}
	case "gated":
		if err := s.ctl.report("send " + strconv.Itoa(len(p))); err != nil {
			return err
		}
		select {
		case <-s.ctl.grants:
			return nil
		case <-s.closed:
			return &sdk.CCHError{Op: "send", Session: s.id, Code: 4}
		case <-ctx.Done():
			return ctx.Err()
		}
	case "fail-send":
		return fmt.Errorf("double: AT+CCHSEND: %w", &sdk.SerialError{Op: "write", Port: "/dev/ttyDOUBLE", Err: "input/output error"})
	}
	return nil
}

func (s *doubleSession) Recv(ctx context.Context) (sdk.Frame, error) {
	switch s.kind {
	case "echo":
		select {
		case b := <-s.echo:
			return sdk.Frame{Data: b}, nil
		case <-s.closed:
			return sdk.Frame{}, io.EOF
		case <-ctx.Done():
			return sdk.Frame{}, ctx.Err()
		}
	case "events":
		s.recvState++
		switch s.recvState {
		case 1:
			return sdk.Frame{Data: []byte("hello")}, nil
		case 2:
			return sdk.Frame{Event: &sdk.SessionEvent{Kind: sdk.EventPeerClosed, Code: 4, Detail: "+CCH_PEER_CLOSED: " + strconv.Itoa(s.id)}}, nil
		}
		return sdk.Frame{}, io.EOF
	case "fail-recv":
		s.recvState++
		if s.recvState == 1 {
			return sdk.Frame{Data: []byte("x")}, nil
		}
		return sdk.Frame{}, fmt.Errorf("double: +CCH_RECV_CLOSED: %w", &sdk.CCHError{Op: "recv", Session: s.id, Code: 9})
	}
	select {
	case <-s.closed:
		return sdk.Frame{}, io.EOF
	case <-ctx.Done():
		return sdk.Frame{}, ctx.Err()
	}
}

func (s *doubleSession) Close(context.Context) error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		close(s.closed)
		s.d.mu.Lock()
		if s.d.sessions[s.id] == s {
			s.d.sessions[s.id] = nil
		}
		s.d.mu.Unlock()
	})
	if first && s.kind == "fail-close" {
		return &sdk.TimeoutError{Op: "AT+CCHCLOSE result", After: 5 * time.Second}
	}
	return nil
}
