package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/pki"
	"github.com/cellgate/cellgate/agent/remote"
	"github.com/cellgate/cellgate/agent/rotate"
	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/transport"
	"github.com/cellgate/cellgate/transport/uplink"
)

// This file is the running half of a client certificate rotation by CSR
// (docs/certificates.md, "Rotation"); package rotate keeps its journal and
// files. A rotation makes a new key on the gateway, publishes its CSR on
// cellgate/{device_id}/cert/csr, takes the certificate from
// cellgate/{device_id}/cert/issued, checks it, writes it beside the old
// set, provisions it to the modem beside the old set (modem TLS: SSL
// context 1), reconnects the uplink with it, and commits only after a
// publish with it was acknowledged: then the old set leaves the modem and
// the disk. Any failure goes back to the old set.

// rotationProfile is the modem's SSL context that holds the new set while
// a rotation tries it; context 0 keeps the old set until the commit.
const rotationProfile = 1

// rotationPauseEnv, when set to a rotation step (provisioned, switching),
// makes a rotation stop at that step until the agent is killed: the
// crash-recovery tests' hook. Unset (production), it does nothing.
const rotationPauseEnv = "CGTEST_ROTATION_PAUSE"

// The triggers of a rotation.
const (
	TriggerRenewBefore = "renew_before"
	TriggerLocal       = "local"
	TriggerRemote      = "remote"
)

// renewCheckEvery is how often the rotation checks tls.renew_before, and
// how long it waits after a failed automatic rotation.
const renewCheckEvery = time.Hour

// CertStatus is the certificate's share of Status, also published,
// retained, on cellgate/{device_id}/cert/status.
type CertStatus struct {
	// Serial and NotAfter describe the client certificate in use.
	Serial   string     `json:"serial,omitempty"`
	NotAfter *time.Time `json:"not_after,omitempty"`
	// State is idle, rotating, rolled_back or rotated (the last outcome).
	State string `json:"state"`
	// Step is the rotation's step while rotating.
	Step    string `json:"step,omitempty"`
	Trigger string `json:"trigger,omitempty"`
	// Error says why the last rotation fell back to the old set.
	Error string `json:"error,omitempty"`
	// Refused says why the last signed renewal request
	// (cellgate-renew/1) was refused.
	Refused string    `json:"refused,omitempty"`
	At      time.Time `json:"at"`
	// Rotations counts rotations since the start, by outcome.
	Rotations map[string]int64 `json:"rotations"`
}

// rotation is the agent's certificate rotation; nil when tls.cert is
// empty or the uplink is not MQTT (the protocol runs on MQTT topics).
type rotation struct {
	a        *Agent
	log      *slog.Logger
	tls      config.TLS
	files    rotate.Files
	deviceID string
	// recovered is what rotate.Recover did at the start.
	recovered rotate.Recovery

	requests chan string // triggers, capacity 1
	renews   chan []byte // signed renewal requests from the renew topic
	// renewLog and trusted check renewal requests; nil renewLog (remote
	// configuration off) leaves the renew topic unsubscribed.
	renewLog *remote.RenewLog
	trusted  map[string]ed25519.PublicKey
	issued   chan []byte // certificates from the issued topic
	publish  chan CertStatus

	mu     sync.Mutex
	status CertStatus

	// trialGate (capacity 1) is held by a rotation's trial, from its
	// reconnect with the new set to its commit or rollback, and by a
	// reconfiguration that rebuilds the uplink: the two never build an
	// uplink over each other. See exclusive.
	trialGate chan struct{}
	// abortTrial ends the trial in progress with a cause, while the trial
	// has not proven the new set yet; nil otherwise. Guarded by mu.
	abortTrial context.CancelCauseFunc
}

// errTrialAborted is the cause of a trial that a reconfiguration ended: the
// uplink it would rebuild must not carry the trial's proof.
var errTrialAborted = errors.New("a configuration change rebuilt the uplink during the trial of the new certificate, which was not proven; the old certificate stays in use (ask for the rotation again)")

// rotationHoldTrialEnv, when set, makes a rotation's trial wait after its
// reconnect with the new set, before the publish that proves it, until the
// configuration in effect changes or the trial ends: the hook with which
// the tests land a reconfiguration inside the trial. Unset (production),
// it does nothing.
const rotationHoldTrialEnv = "CGTEST_ROTATION_HOLD_TRIAL"

// newRotation ends any rotation an earlier run left (before the plugin
// host or the uplink read the files) and returns the rotation, or nil.
func newRotation(a *Agent, log *slog.Logger) (*rotation, error) {
	cfg := a.cfg
	if cfg.TLS.Cert == "" || cfg.Uplink.MQTT == nil {
		return nil, nil
	}
	r := &rotation{a: a, log: log, tls: cfg.TLS, deviceID: cfg.DeviceID,
		files:    rotate.Files{Cert: cfg.TLS.Cert, Key: cfg.TLS.Key},
		requests: make(chan string, 1), renews: make(chan []byte, 4), issued: make(chan []byte, 8), publish: make(chan CertStatus, 1),
		trialGate: make(chan struct{}, 1),
		status:    CertStatus{State: "idle", At: time.Now().UTC(), Rotations: map[string]int64{}}}
	if rc := cfg.RemoteConfig; rc.Enabled {
		var err error
		if r.trusted, err = remote.TrustedKeys(rc); err != nil {
			return nil, err
		}
		if r.renewLog, err = remote.OpenRenewLog(rc.Dir); err != nil {
			return nil, err
		}
	}
	rec, err := rotate.Recover(r.files)
	if err != nil {
		return nil, fmt.Errorf("certificate rotation: recover: %w", err)
	}
	r.recovered = rec
	if j := rec.Found; j != nil {
		how := "rolled back to the old certificate"
		if rec.RolledForward {
			how = "completed: the new certificate is in use"
		}
		log.Warn("certificate rotation interrupted at "+string(j.State)+" by a restart: "+how, "serial", j.Serial, "trigger", j.Trigger)
		r.status.State, r.status.Trigger = "rolled_back", j.Trigger
		r.status.Error = "interrupted at " + string(j.State) + " by a restart"
		if rec.RolledForward {
			r.status.State, r.status.Error = "rotated", ""
		}
	}
	r.readCurrent()
	return r, nil
}

// readCurrent notes the serial and expiry of the certificate in use.
func (r *rotation) readCurrent() *x509.Certificate {
	data, err := os.ReadFile(r.files.Cert)
	if err != nil {
		return nil
	}
	certs, err := sdk.ParseCertificates("tls.cert", data)
	if err != nil || len(certs) == 0 {
		return nil
	}
	c := certs[0]
	na := c.NotAfter.UTC()
	r.mu.Lock()
	r.status.Serial, r.status.NotAfter = fmt.Sprintf("%x", c.SerialNumber), &na
	r.mu.Unlock()
	return c
}

// attach subscribes to the issued topic on up, and to the renew topic
// when renewal requests can be checked.
func (r *rotation) attach(up uplink.Uplink) {
	m, ok := up.(*uplink.MQTT)
	if !ok {
		return
	}
	if err := m.Subscribe(pki.IssuedTopic(r.deviceID), 1, r.receivedIssued); err != nil {
		r.log.Error("certificate rotation: cannot subscribe to the issued topic", "err", err)
	}
	if r.renewLog == nil {
		return
	}
	if err := m.Subscribe(pki.RenewTopic(r.deviceID), 1, r.receivedRenew); err != nil {
		r.log.Error("certificate rotation: cannot subscribe to the renew topic", "err", err)
	}
}

func (r *rotation) receivedIssued(in uplink.Incoming) {
	if len(in.Payload) == 0 {
		return
	}
	select {
	case r.issued <- in.Payload:
	default:
	}
}

func (r *rotation) receivedRenew(in uplink.Incoming) {
	if len(in.Payload) == 0 {
		return
	}
	select {
	case r.renews <- in.Payload:
	default:
		r.log.Warn("certificate rotation: renewal request dropped, too many waiting")
	}
}

// checkRenew checks a signed renewal request and asks for a rotation when
// it passes. A retained request already accepted is the broker repeating
// itself, not news.
func (r *rotation) checkRenew(data []byte) {
	e, err := r.renewLog.Verify(data, remote.Policy{DeviceID: r.deviceID, Trusted: r.trusted, Now: time.Now()})
	if reason, ok := remote.ReasonOf(err); ok && reason == remote.ReasonReplayed {
		r.log.Debug("certificate rotation: renewal request of an accepted version ignored", "err", err)
		return
	}
	if err != nil {
		r.log.Warn("certificate rotation: renewal request refused", "err", err)
		r.setStatus(func(st *CertStatus) { st.Refused = err.Error() })
		return
	}
	r.log.Info("certificate rotation: signed renewal request accepted", "version", e.Version, "key_id", e.KeyID)
	r.setStatus(func(st *CertStatus) { st.Refused = "" })
	r.Request(TriggerRemote)
}

// Request asks for a rotation; false when one is already asked for.
func (r *rotation) Request(trigger string) bool {
	select {
	case r.requests <- trigger:
		return true
	default:
		return false
	}
}

// snapshot returns the status now.
func (r *rotation) snapshot() *CertStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.status
	st.Rotations = make(map[string]int64, len(r.status.Rotations))
	for k, v := range r.status.Rotations {
		st.Rotations[k] = v
	}
	return &st
}

// setStatus changes the status and queues it for the status topic.
func (r *rotation) setStatus(change func(st *CertStatus)) {
	r.mu.Lock()
	change(&r.status)
	r.status.At = time.Now().UTC()
	r.mu.Unlock()
	st := *r.snapshot()
	// Latest wins, and never blocks: publishLoop may have ended with the
	// run.
	for {
		select {
		case r.publish <- st:
			return
		default:
		}
		select {
		case <-r.publish:
		default:
		}
	}
}

// step records a rotation's step in the journal (fsynced) and the status,
// then stops there when the test hook says so.
func (r *rotation) step(ctx context.Context, j *rotate.Journal, s rotate.State) error {
	j.State = s
	if err := rotate.Save(r.files, j); err != nil {
		return err
	}
	r.setStatus(func(st *CertStatus) { st.State, st.Step, st.Trigger, st.Error = "rotating", string(s), j.Trigger, "" })
	if os.Getenv(rotationPauseEnv) == string(s) {
		r.log.Warn("certificate rotation paused by "+rotationPauseEnv+" (test hook)", "step", s)
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// run settles what a recovery left on the modem, then rotates when asked
// or when the certificate enters tls.renew_before, until ctx ends.
func (r *rotation) run(ctx context.Context) error {
	done := make(chan struct{})
	go func() { defer close(done); r.publishLoop(ctx) }()
	defer func() { <-done }()
	if r.recovered.Found != nil {
		r.setStatus(func(*CertStatus) {})
		r.settleModem(ctx, r.recovered.OrphanModemFiles)
	}
	tick := time.NewTicker(renewCheckEvery)
	defer tick.Stop()
	check := time.After(0)
	for {
		var trigger string
		select {
		case <-ctx.Done():
			return nil
		case trigger = <-r.requests:
		case data := <-r.renews:
			r.checkRenew(data)
			continue
		case <-check:
			check = nil
			trigger = r.dueTrigger()
		case <-tick.C:
			trigger = r.dueTrigger()
		}
		if trigger == "" {
			continue
		}
		if err := r.rotate(ctx, trigger); err != nil && ctx.Err() == nil {
			r.log.Error("certificate rotation failed; the old certificate stays in use", "trigger", trigger, "err", err)
		}
	}
}

// dueTrigger is TriggerRenewBefore when the certificate in use expires
// within tls.renew_before, else "".
func (r *rotation) dueTrigger() string {
	c := r.readCurrent()
	if c == nil || r.tls.RenewBefore <= 0 || time.Until(c.NotAfter) > r.tls.RenewBefore {
		return ""
	}
	return TriggerRenewBefore
}

// publishLoop publishes the latest status, retained, on the status topic.
func (r *rotation) publishLoop(ctx context.Context) {
	for {
		var st CertStatus
		select {
		case <-ctx.Done():
			return
		case st = <-r.publish:
		}
		payload, _ := json.Marshal(st)
		m, ok := r.a.currentUplink().(*uplink.MQTT)
		if !ok {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, statusPublishTimeout)
		err := m.PublishRetained(pctx, pki.StatusTopic(r.deviceID), payload)
		cancel()
		if err != nil && ctx.Err() == nil {
			r.log.Info("certificate rotation: status not published yet; trying again", "state", st.State, "err", err)
			select { // try again unless a newer one came
			case r.publish <- st:
			default:
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// settleModem makes SSL context 1 mirror context 0 (the set in use), so
// that the modem refers to one set, then deletes the orphans still there.
func (r *rotation) settleModem(ctx context.Context, orphans []string) {
	if r.tls.Mode != config.TLSModeModem {
		return
	}
	b, err := loadBundle(r.tls)
	if err != nil {
		r.log.Error("certificate rotation: cannot read the certificate in use", "err", err)
		return
	}
	b.Profile = rotationProfile
	if _, err := r.a.host.Provision(ctx, b); err != nil {
		r.log.Error("certificate rotation: cannot point SSL context 1 at the set in use", "err", err)
		return
	}
	r.deleteOrphans(ctx, orphans)
}

// deleteOrphans deletes the names of orphans that the modem still lists.
func (r *rotation) deleteOrphans(ctx context.Context, orphans []string) {
	if len(orphans) == 0 {
		return
	}
	present, err := r.a.host.ListCerts(ctx)
	if err != nil {
		r.log.Warn("certificate rotation: cannot list the modem's certificates", "err", err)
		return
	}
	for _, n := range orphans {
		if !slices.Contains(present, n) {
			continue
		}
		if err := r.a.host.DeleteCert(ctx, n); err != nil {
			r.log.Warn("certificate rotation: cannot delete a file of the unused set", "file", n, "err", err)
			continue
		}
		r.log.Info("certificate rotation: deleted a file of the unused set", "file", n)
	}
}

// errRotating refuses a rotation request while one waits to run.
var errRotating = errors.New("a certificate rotation is already queued")

// subject is the CSR's subject: tls.csr_subject, else the device id.
func (r *rotation) subject() pkix.Name {
	cn := r.tls.CSRSubject
	if cn == "" {
		cn = r.deviceID
	}
	return pkix.Name{CommonName: strings.ReplaceAll(cn, "{device_id}", r.deviceID)}
}

// endpoint is the uplink's endpoint with the set b: on context 1 (modem
// TLS) or with b's files in crypto/tls (host TLS).
func (r *rotation) endpoint(b sdk.Bundle) (uplink.Config, transport.Endpoint, error) {
	cfg := r.a.current()
	ucfg, err := uplinkConfig(cfg.Uplink)
	if err != nil {
		return ucfg, transport.Endpoint{}, err
	}
	addr, err := ucfg.Address()
	if err != nil {
		return ucfg, transport.Endpoint{}, err
	}
	ep := transport.Endpoint{Address: addr, Mode: transport.TLSMode(r.tls.Mode), ServerName: r.tls.SNI, Profile: rotationProfile}
	if ep.Mode == transport.TLSByHost {
		ep.Credentials = b
		ep.Profile = 0
	}
	return ucfg, ep, nil
}

// serveCertRenew answers POST /v1/cert/renew, the door of `cellgate cert
// renew`: 202 when a rotation is queued, 409 when one is already queued,
// 404 when rotation is off. Only loopback clients are served, behind the
// status listener's token like POST /v1/config: rotating is an operator's
// act on the gateway itself.
func (a *Agent) serveCertRenew(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSONStatus(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
		return
	}
	if host, _, err := net.SplitHostPort(req.RemoteAddr); err != nil || !net.ParseIP(host).IsLoopback() {
		writeJSONStatus(w, http.StatusForbidden, map[string]string{"error": "POST /v1/cert/renew is served to loopback clients only"})
		return
	}
	if a.rotation == nil {
		writeJSONStatus(w, http.StatusNotFound, map[string]string{"error": "certificate rotation is off: it needs tls.cert and an MQTT uplink"})
		return
	}
	if !a.rotation.Request(TriggerLocal) {
		writeJSONStatus(w, http.StatusConflict, map[string]string{"error": errRotating.Error()})
		return
	}
	writeJSONStatus(w, http.StatusAccepted, a.rotation.snapshot())
}

// beginTrial takes the trial gate (waiting for a reconfiguration that
// rebuilds the uplink to finish) and returns the trial's context, which a
// reconfiguration cancels with errTrialAborted until proven is called, and
// end, which gives the gate back.
func (r *rotation) beginTrial(ctx context.Context) (tctx context.Context, end func(), err error) {
	select {
	case r.trialGate <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	tctx, cancel := context.WithCancelCause(ctx)
	r.mu.Lock()
	r.abortTrial = cancel
	r.mu.Unlock()
	return tctx, func() {
		r.proven()
		cancel(nil)
		<-r.trialGate
	}, nil
}

// proven makes the trial in progress one a reconfiguration waits for
// instead of aborting: a publish with the new set was acknowledged on the
// connection made with it, and the commit follows.
func (r *rotation) proven() {
	r.mu.Lock()
	r.abortTrial = nil
	r.mu.Unlock()
}

// exclusive is called by a reconfiguration before it rebuilds the uplink:
// it aborts a trial that has not proven the new set yet (which then rolls
// back and says why), waits for the trial's commit or rollback to end,
// and returns with the gate held until release, so no trial begins while
// the uplink is rebuilt with the configured set.
func (r *rotation) exclusive(ctx context.Context) (release func(), err error) {
	r.mu.Lock()
	if r.abortTrial != nil {
		r.abortTrial(errTrialAborted)
		r.log.Warn("certificate rotation: a reconfiguration rebuilds the uplink; the trial of the new certificate is aborted")
	}
	r.mu.Unlock()
	select {
	case r.trialGate <- struct{}{}:
		return func() { <-r.trialGate }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for the certificate rotation's trial to end: %w", ctx.Err())
	}
}

// holdTrial is rotationHoldTrialEnv's wait: until the configuration in
// effect is no longer the one at the call, or tctx ends, or two minutes.
func (r *rotation) holdTrial(tctx context.Context) {
	r.log.Warn("certificate rotation trial held by " + rotationHoldTrialEnv + " (test hook)")
	start := r.a.current()
	bound := time.After(2 * time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for r.a.current() == start {
		select {
		case <-tctx.Done():
			return
		case <-bound:
			return
		case <-tick.C:
		}
	}
}
