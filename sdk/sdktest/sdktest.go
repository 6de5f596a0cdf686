// Package sdktest provides Transport, an in-memory double of
// sdk.SecureTransport, in the spirit of net/http/httptest: hand it to code
// that drives a plugin (the agent's plugin host, a net.Conn over a Session,
// a plugin author's own wrappers), or serve it with sdk.Serve from a test
// binary that plays the plugin, to exercise the process boundary.
//
// A Transport is a test double, not a modem. It opens no serial port, speaks
// no AT commands and makes no network connection, so nothing it does shows
// that a driver works with a modem: sdk/plugintest, run against sdk/modemsim,
// is where that is proved. What it models:
//
//   - Open refuses a ModemConfig.Model other than Config.Model with a
//     *sdk.ModelMismatchError and otherwise reports Config.Info.
//   - Provision checks a bundle's shape (profile 0-9, PEM blocks, certificate
//     and key together, a CA unless Insecure, a known TLS version) and
//     refuses a broken one with a *sdk.BundleError; it stores each file under
//     a name derived from its content, keeps what is already stored, and
//     deletes the files a profile no longer uses once no profile uses them.
//     Running it twice changes nothing.
//   - ListCerts and DeleteCert read and change that store.
//   - Dial hands out session ids from 0 (Config.MaxSessions of them, 2 by
//     default) and refuses one more with a *sdk.NetError of kind
//     sdk.NetBusy.
//   - A Session echoes what Send accepted unless Config.Dial says otherwise;
//     its far side can deliver data, disconnect with a SessionEvent, or fail
//     the receive side with an error (see Session).
//   - Stop ends the receive side of every open session with io.EOF and
//     closes it.
//
// Faults are injected with hooks: Config's Open, Provision, Dial and Stop may
// fail their call, block until its context ends (a hang), or do anything a
// test needs first (count calls, journal them, kill the process);
// SessionConfig's Send and Close fail or gate a session's Send and Close.
//
// It does not enforce the call order (Dial works before Open), keeps nothing
// across processes, and has no notion of time, signal or network: a test
// that needs those injects them through the hooks. Every method is safe for
// concurrent use, as sdk.SecureTransport requires.
package sdktest

import (
	"context"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/cellgate/cellgate/sdk"
)

// Config says how a Transport behaves. The zero value is a working double
// that accepts any model and echoes on every session.
type Config struct {
	// Model is the model name the double answers to: Open refuses a
	// ModemConfig.Model that is set and differs. Empty accepts any model.
	Model string
	// Info is what a successful Open reports; the zero value means
	// DefaultInfo().
	Info sdk.ModemInfo
	// MaxSessions is how many sessions may be open at once; 0 means 2.
	MaxSessions int

	// Open, Provision and Stop, when set, run first in their method, on the
	// caller's goroutine, and may be called concurrently. A non-nil error is
	// the method's result and the double does nothing else; a hook that
	// blocks until ctx ends models a modem that does not answer.
	Open      func(ctx context.Context, cfg sdk.ModemConfig) error
	Provision func(ctx context.Context, b sdk.Bundle) error
	Stop      func(ctx context.Context) error

	// Dial, when set, decides what one Dial does once the new session s has
	// its id (s.ID, s.Request): it returns how s behaves, or an error that
	// fails the Dial and frees the id. Before returning it may prime s from
	// the far side (Deliver, Disconnect, FailRecv); it may block until ctx
	// ends, as a connect that never completes. Nil means every session
	// echoes: SessionConfig{Echo: true}.
	Dial func(ctx context.Context, s *Session) (SessionConfig, error)
}

// DefaultInfo is what Open reports when Config.Info is zero: a double that
// says what it is in Model, with every other field set.
func DefaultInfo() sdk.ModemInfo {
	return sdk.ModemInfo{
		Model:        "CELLGATE-TEST-DOUBLE",
		Manufacturer: "cellgate sdktest",
		Revision:     "sdktest",
		IMEI:         "990000000000001",
		ICCID:        "8900000000000000001",
		SignalRSSI:   20,
		SignalBER:    99,
		Registration: "home",
		Operator:     "sdktest",
		ClockSynced:  true,
	}
}

// Transport is the in-memory sdk.SecureTransport. Create it with New.
type Transport struct {
	cfg Config // read-only after New

	mu       sync.Mutex
	files    map[string][]byte // the certificate store, by file name
	profiles map[int][]string  // the files each provisioned profile uses
	sessions []*Session        // by id; nil is a free id
}

var _ sdk.SecureTransport = (*Transport)(nil)

// New returns a Transport behaving as cfg says, with an empty certificate
// store and no sessions.
func New(cfg Config) *Transport {
	if cfg.Info == (sdk.ModemInfo{}) {
		cfg.Info = DefaultInfo()
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 2
	}
	return &Transport{
		cfg:      cfg,
		files:    map[string][]byte{},
		profiles: map[int][]string{},
		sessions: make([]*Session, cfg.MaxSessions),
	}
}

// Open runs Config.Open, then reports Config.Info, or a
// *sdk.ModelMismatchError{Want: cfg.Model, Got: Info.Model} when cfg asks
// for a model other than Config.Model.
func (t *Transport) Open(ctx context.Context, cfg sdk.ModemConfig) (sdk.ModemInfo, error) {
	if t.cfg.Open != nil {
		if err := t.cfg.Open(ctx, cfg); err != nil {
			return sdk.ModemInfo{}, err
		}
	}
	if cfg.Model != "" && t.cfg.Model != "" && cfg.Model != t.cfg.Model {
		return sdk.ModemInfo{}, &sdk.ModelMismatchError{Want: cfg.Model, Got: t.cfg.Info.Model}
	}
	return t.cfg.Info, nil
}

// Provision runs Config.Provision, checks b (see the package comment) and
// makes profile b.Profile use b's files. Each file is named
// "<field>_<12 hex digits of its SHA-256>.pem"; the report lists the names
// downloaded, kept and deleted, each sorted.
func (t *Transport) Provision(ctx context.Context, b sdk.Bundle) (sdk.ProvisionReport, error) {
	if t.cfg.Provision != nil {
		if err := t.cfg.Provision(ctx, b); err != nil {
			return sdk.ProvisionReport{}, err
		}
	}
	if err := checkBundle(b); err != nil {
		return sdk.ProvisionReport{}, err
	}
	want := map[string][]byte{}
	for _, f := range []struct {
		field string
		pem   []byte
	}{{"ca", b.CA}, {"cert", b.Cert}, {"key", b.Key}} {
		if len(f.pem) > 0 {
			sum := sha256.Sum256(f.pem)
			want[fmt.Sprintf("%s_%x.pem", f.field, sum[:6])] = f.pem
		}
	}
	rep := sdk.ProvisionReport{Profile: b.Profile, AuthMode: 1}
	switch {
	case b.Insecure:
		rep.AuthMode = 0
	case len(b.Cert) > 0:
		rep.AuthMode = 2
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	for name, content := range want {
		if _, ok := t.files[name]; ok {
			rep.Kept = append(rep.Kept, name)
			continue
		}
		t.files[name] = slices.Clone(content)
		rep.Downloaded = append(rep.Downloaded, name)
	}
	old := t.profiles[b.Profile]
	t.profiles[b.Profile] = sortedKeys(want)
	// Superseded files go only after the profile points at the new ones,
	// and only when no other profile still uses them.
	for _, name := range old {
		if _, ok := want[name]; !ok && !t.inUse(name) {
			delete(t.files, name)
			rep.Deleted = append(rep.Deleted, name)
		}
	}
	slices.Sort(rep.Downloaded)
	slices.Sort(rep.Kept)
	slices.Sort(rep.Deleted)
	return rep, nil
}

// inUse reports whether a provisioned profile uses the file name. t.mu is
// held.
func (t *Transport) inUse(name string) bool {
	for _, names := range t.profiles {
		if slices.Contains(names, name) {
			return true
		}
	}
	return false
}

// checkBundle refuses what a plugin must refuse before sending any command.
func checkBundle(b sdk.Bundle) error {
	if b.Profile < 0 || b.Profile > 9 {
		return &sdk.BundleError{Field: "profile", Reason: fmt.Sprintf("%d is outside 0-9", b.Profile)}
	}
	for _, f := range []struct {
		field string
		pem   []byte
	}{{"ca", b.CA}, {"cert", b.Cert}, {"key", b.Key}} {
		if len(f.pem) == 0 {
			continue
		}
		if blk, _ := pem.Decode(f.pem); blk == nil {
			return &sdk.BundleError{Field: f.field, Reason: "no PEM block found"}
		}
	}
	switch {
	case len(b.Cert) > 0 && len(b.Key) == 0:
		return &sdk.BundleError{Field: "key", Reason: "missing, but a client certificate is set"}
	case len(b.Key) > 0 && len(b.Cert) == 0:
		return &sdk.BundleError{Field: "cert", Reason: "missing, but a client key is set"}
	case len(b.CA) == 0 && !b.Insecure:
		return &sdk.BundleError{Field: "ca", Reason: "missing: without Insecure the server must be verified"}
	}
	switch b.TLSVersion {
	case "", "1.0", "1.1", "1.2":
	default:
		return &sdk.BundleError{Field: "tls_version", Reason: fmt.Sprintf("%q is not one of 1.0, 1.1, 1.2", b.TLSVersion)}
	}
	return nil
}

// ListCerts returns the names in the certificate store, sorted.
func (t *Transport) ListCerts(context.Context) ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return sortedKeys(t.files), nil
}

// DeleteCert removes name from the certificate store, and from the profiles
// that used it. A name that is not stored is a *sdk.ModemError.
func (t *Transport) DeleteCert(_ context.Context, name string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.files[name]; !ok {
		return &sdk.ModemError{Op: "delete " + name, Code: -1, Text: "no such file"}
	}
	delete(t.files, name)
	for p, names := range t.profiles {
		t.profiles[p] = slices.DeleteFunc(names, func(n string) bool { return n == name })
	}
	return nil
}

// Dial takes the lowest free session id, runs Config.Dial and returns the
// session, a *Session. With every id taken it fails with
// *sdk.NetError{Op: "open", Session: -1, Kind: sdk.NetBusy} and the words
// "no free session". The caller closes the session.
func (t *Transport) Dial(ctx context.Context, req sdk.DialRequest) (sdk.Session, error) {
	s, err := t.allocate(req)
	if err != nil {
		return nil, err
	}
	cfg := SessionConfig{Echo: true}
	if t.cfg.Dial != nil {
		if cfg, err = t.cfg.Dial(ctx, s); err != nil {
			t.release(s)
			return nil, err
		}
	}
	s.configure(cfg)
	return s, nil
}

func (t *Transport) allocate(req sdk.DialRequest) (*Session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, cur := range t.sessions {
		if cur == nil {
			s := newSession(t, id, req)
			t.sessions[id] = s
			return s, nil
		}
	}
	return nil, &sdk.NetError{Op: "open", Session: -1, Kind: sdk.NetBusy, Text: "no free session"}
}

// release frees s's id, if s still holds it.
func (t *Transport) release(s *Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sessions[s.id] == s {
		t.sessions[s.id] = nil
	}
}

// Stop runs Config.Stop, then ends every open session as the modem's
// service stopping would: its Recv returns io.EOF, and it is closed (its
// SessionConfig.Close runs). It returns the sessions' Close errors, joined.
// Calling it again, or before Open, does the same and so returns nil when no
// session is open.
func (t *Transport) Stop(ctx context.Context) error {
	if t.cfg.Stop != nil {
		if err := t.cfg.Stop(ctx); err != nil {
			return err
		}
	}
	t.mu.Lock()
	open := slices.DeleteFunc(slices.Clone(t.sessions), func(s *Session) bool { return s == nil })
	t.mu.Unlock()
	var errs []error
	for _, s := range open {
		s.endRecv(nil, io.EOF)
		if err := s.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
