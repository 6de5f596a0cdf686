package agent

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/pki"
	"github.com/cellgate/cellgate/agent/rotate"
	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/transport/uplink"
)

// trial is what a rotation changed outside the disk, for its rollback.
type trial struct {
	provisioned bool // the new set is on the modem's SSL context 1
	switched    bool // the uplink runs with the new set
}

// rotate runs one rotation, as this file's package comment says. On
// failure the old set is in use again, the new one is gone from the modem
// and the disk, and the status says why. When ctx ends midway nothing is
// undone: the journal is left for the next start's recovery.
func (r *rotation) rotate(ctx context.Context, trigger string) (err error) {
	r.log.Info("certificate rotation begins", "trigger", trigger, "key_type", r.tls.KeyType)
	j := &rotate.Journal{State: "start", Started: time.Now().UTC(), Trigger: trigger}
	t := &trial{}
	endTrial := func() {}
	defer func() {
		if err != nil {
			r.rollBack(ctx, j, t, err)
		}
		endTrial() // after the rollback: a reconfiguration waits for it
	}()
	if r.tls.KeyPasswordFile != "" {
		// The new key would be written unencrypted beside a password
		// file that says otherwise.
		return errors.New("tls.key_password_file is set: rotation writes an unencrypted key (0600) and does not rotate encrypted keys yet")
	}
	key, err := pki.NewKey(r.tls.KeyType)
	if err != nil {
		return err
	}
	keyPEM, err := pki.MarshalKey(key)
	if err != nil {
		return err
	}
	if err := rotate.WriteNext(r.files.KeyNext(), keyPEM); err != nil {
		return err
	}
	if err := r.step(ctx, j, rotate.StateRequested); err != nil {
		return err
	}
	certPEM, cert, err := r.request(ctx, key)
	if err != nil {
		return err
	}
	if err := rotate.WriteNext(r.files.CertNext(), certPEM); err != nil {
		return err
	}
	j.Serial = fmt.Sprintf("%x", cert.SerialNumber)
	if err := r.step(ctx, j, rotate.StateIssued); err != nil {
		return err
	}
	next, err := loadBundle(r.tls)
	if err != nil {
		return err
	}
	next.Cert, next.Key, next.KeyPassword = certPEM, keyPEM, ""
	if err := r.provisionNext(ctx, j, t, next); err != nil {
		return err
	}
	tctx, end, err := r.beginTrial(ctx)
	if err != nil {
		return err
	}
	endTrial = end
	if err := r.switchTo(ctx, tctx, j, t, next, cert); err != nil {
		return err
	}
	r.proven()
	return r.commit(ctx, j, next, cert)
}

// request publishes the CSR for key and waits, up to
// tls.rotation_timeout, for a certificate for key on the issued topic.
// Certificates for other keys (an earlier rotation's, still retained) are
// passed over; one for key that fails the checks fails the rotation.
func (r *rotation) request(ctx context.Context, key crypto.Signer) ([]byte, *x509.Certificate, error) {
	csr, err := pki.NewCSR(key, r.subject())
	if err != nil {
		return nil, nil, err
	}
	var roots []byte
	if r.tls.CA != "" {
		if roots, err = os.ReadFile(r.tls.CA); err != nil {
			return nil, nil, fmt.Errorf("tls.ca: %w", err)
		}
	}
	for drained := false; !drained; {
		select {
		case <-r.issued:
		default:
			drained = true
		}
	}
	m, ok := r.a.currentUplink().(*uplink.MQTT)
	if !ok {
		return nil, nil, errors.New("the uplink is not MQTT")
	}
	wctx, cancel := context.WithTimeout(ctx, r.tls.RotationTimeout)
	defer cancel()
	if err := m.PublishRetained(wctx, pki.CSRTopic(r.deviceID), csr); err != nil {
		return nil, nil, fmt.Errorf("publish the CSR: %w", err)
	}
	r.log.Info("certificate rotation: CSR published", "topic", pki.CSRTopic(r.deviceID), "subject", r.subject().CommonName)
	for {
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			return nil, nil, fmt.Errorf("no certificate on %s within tls.rotation_timeout (%s)", pki.IssuedTopic(r.deviceID), r.tls.RotationTimeout)
		case p := <-r.issued:
			cert, err := rotate.CheckIssued(p, key, roots, time.Now())
			if errors.Is(err, rotate.ErrOtherKey) {
				r.log.Info("certificate rotation: a certificate for another key passed over", "err", err)
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			r.log.Info("certificate rotation: certificate received", "serial", fmt.Sprintf("%x", cert.SerialNumber), "not_after", cert.NotAfter)
			return p, cert, nil
		}
	}
}

// provisionNext (modem TLS) downloads the new set to the modem on SSL
// context 1 while context 0 keeps the old set, and notes which files each
// set has alone.
func (r *rotation) provisionNext(ctx context.Context, j *rotate.Journal, t *trial, next sdk.Bundle) error {
	if r.tls.Mode != config.TLSModeModem {
		return r.step(ctx, j, rotate.StateProvisioned)
	}
	old, err := loadBundle(r.tls)
	if err != nil {
		return err
	}
	// Provisioning context 0 again changes nothing; its report names the
	// old set's files, in the plugin's own naming.
	oldRep, err := r.a.host.Provision(ctx, old)
	if err != nil {
		return fmt.Errorf("read the old set's files: %w", err)
	}
	next.Profile = rotationProfile
	t.provisioned = true
	newRep, err := r.a.host.Provision(ctx, next)
	if err != nil {
		return fmt.Errorf("provision the new set: %w", err)
	}
	oldNames := slices.Concat(oldRep.Kept, oldRep.Downloaded)
	newNames := slices.Concat(newRep.Kept, newRep.Downloaded)
	j.NewModemFiles = without(newNames, oldNames)
	j.OldModemFiles = without(oldNames, newNames)
	r.log.Info("certificate rotation: new set on the modem", "profile", rotationProfile, "downloaded", newRep.Downloaded)
	return r.step(ctx, j, rotate.StateProvisioned)
}

// without returns the names of a not in b.
func without(a, b []string) []string {
	var out []string
	for _, n := range a {
		if !slices.Contains(b, n) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// switchTo reconnects the uplink with the new set and waits, up to
// tls.rotation_timeout, for the broker to acknowledge a publish with it,
// on the connection it built with the new set: the only proof the commit
// accepts. tctx is the trial's: a reconfiguration that rebuilds the uplink
// meanwhile cancels it (errTrialAborted), and the trial fails with that
// cause rather than take an acknowledgement on a connection made with the
// old set.
func (r *rotation) switchTo(ctx, tctx context.Context, j *rotate.Journal, t *trial, next sdk.Bundle, cert *x509.Certificate) error {
	if err := r.step(ctx, j, rotate.StateSwitching); err != nil {
		return err
	}
	ucfg, ep, err := r.endpoint(next)
	if err != nil {
		return err
	}
	t.switched = true
	var built uplink.Uplink // made with the new set
	err = r.a.swapUplink(tctx, func(c context.Context) (uplink.Uplink, error) {
		up, err := newUplinkTo(c, ucfg, ep, r.a.host, r.a.log.With("part", "uplink"))
		built = up
		return up, err
	})
	if err != nil {
		return trialError(ctx, tctx, fmt.Errorf("reconnect with the new certificate: %w", err))
	}
	if os.Getenv(rotationHoldTrialEnv) != "" {
		r.holdTrial(tctx)
	}
	m, ok := built.(*uplink.MQTT)
	if !ok {
		return errors.New("the uplink is not MQTT")
	}
	st := *r.snapshot()
	st.Step, st.Serial = "confirming", fmt.Sprintf("%x", cert.SerialNumber)
	payload, _ := json.Marshal(st)
	cctx, cancel := context.WithTimeout(tctx, r.tls.RotationTimeout)
	defer cancel()
	if tctx.Err() == nil {
		err = m.PublishRetained(cctx, pki.StatusTopic(r.deviceID), payload)
	}
	if err := trialError(ctx, tctx, err); err != nil {
		if errors.Is(err, errTrialAborted) || errors.Is(err, ctx.Err()) {
			return err
		}
		return fmt.Errorf("the broker acknowledged no publish with the new certificate within tls.rotation_timeout (%s): %w", r.tls.RotationTimeout, err)
	}
	if r.a.currentUplink() != built {
		// Only a trial's own rollback or a reconfiguration (which
		// aborts the trial first) replaces the uplink: a bug otherwise.
		return errors.New("the uplink was replaced during the trial: the acknowledgement does not prove the new certificate")
	}
	r.log.Info("certificate rotation: a publish with the new certificate was acknowledged", "serial", st.Serial)
	return nil
}

// trialError is err, or the cause that ended the trial when it ended
// (errTrialAborted), or ctx's error when the rotation itself ends.
func trialError(ctx, tctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case tctx.Err() != nil:
		return context.Cause(tctx)
	}
	return err
}

// commit makes the new set the configured one on disk, then on the modem's
// context 0 (which deletes the old set's files there), and ends the
// rotation.
func (r *rotation) commit(ctx context.Context, j *rotate.Journal, next sdk.Bundle, cert *x509.Certificate) error {
	if err := rotate.Commit(r.files, j); err != nil {
		return err
	}
	if r.tls.Mode == config.TLSModeModem {
		next.Profile = 0
		r.a.host.SetBundle(next)
		rep, err := r.a.host.Provision(ctx, next)
		if err != nil {
			// Committed on disk: the next plugin start provisions the
			// new set and deletes the old one.
			r.log.Warn("certificate rotation: the old set stays on the modem until the plugin restarts", "err", err)
		} else {
			r.log.Info("certificate rotation: old set deleted from the modem", "deleted", rep.Deleted)
		}
		r.deleteOrphans(ctx, j.OldModemFiles)
	}
	if err := rotate.Finish(r.files); err != nil {
		r.log.Warn("certificate rotation: journal not removed", "err", err)
	}
	r.clearCSR(ctx)
	r.readCurrent()
	r.setStatus(func(st *CertStatus) {
		st.State, st.Step, st.Error = "rotated", "", ""
		st.Rotations["rotated"]++
	})
	r.log.Info("certificate rotation done: the new certificate is in use", "serial", fmt.Sprintf("%x", cert.SerialNumber), "not_after", cert.NotAfter)
	return nil
}

// rollBack puts the old set back in use after a failed rotation.
func (r *rotation) rollBack(ctx context.Context, j *rotate.Journal, t *trial, cause error) {
	if ctx.Err() != nil {
		r.log.Warn("certificate rotation stopped at "+string(j.State)+"; the next start recovers", "err", cause)
		return
	}
	r.log.Warn("certificate rotation failed at "+string(j.State)+"; going back to the old certificate", "err", cause)
	if t.switched {
		err := r.a.swapUplink(ctx, func(c context.Context) (uplink.Uplink, error) {
			return newUplink(c, r.a.current(), r.a.host, r.a.log.With("part", "uplink"))
		})
		if err != nil {
			r.log.Error("certificate rotation: cannot reconnect with the old certificate", "err", err)
		}
	}
	if t.provisioned {
		r.settleModem(ctx, j.NewModemFiles)
	}
	if err := rotate.Finish(r.files); err != nil {
		r.log.Warn("certificate rotation: files of the new set not removed", "err", err)
	}
	r.clearCSR(ctx)
	r.setStatus(func(st *CertStatus) {
		st.State, st.Step, st.Error = "rolled_back", "", fmt.Sprintf("at %s: %v", j.State, cause)
		st.Rotations["rolled_back"]++
	})
}

// clearCSR removes the retained CSR from the broker.
func (r *rotation) clearCSR(ctx context.Context) {
	m, ok := r.a.currentUplink().(*uplink.MQTT)
	if !ok {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, statusPublishTimeout)
	defer cancel()
	if err := m.PublishRetained(cctx, pki.CSRTopic(r.deviceID), nil); err != nil {
		r.log.Warn("certificate rotation: the retained CSR was not cleared", "err", err)
	}
}

// swapUplink replaces the uplink with the one build makes, the forwarder
// holding meanwhile (its batch in flight acknowledged or left in the
// spool). When build fails, the configured uplink is built again.
func (a *Agent) swapUplink(ctx context.Context, build func(ctx context.Context) (uplink.Uplink, error)) error {
	release, err := a.fw.hold(ctx)
	if err != nil {
		return fmt.Errorf("hold the forwarder: %w", err)
	}
	defer release()
	if err := a.currentUplink().Close(); err != nil {
		a.log.Warn("the old uplink did not close cleanly", "err", err)
	}
	up, err := build(a.gctx)
	if err != nil {
		var err2 error
		if up, err2 = newUplink(a.gctx, a.current(), a.host, a.log.With("part", "uplink")); err2 != nil {
			return errors.Join(err, err2)
		}
	}
	a.mu.Lock()
	a.uplink = up
	a.mu.Unlock()
	a.fw.uplink = up
	if a.remote != nil {
		a.remote.attach(up, a.current())
	}
	if a.rotation != nil {
		a.rotation.attach(up)
	}
	return err
}
