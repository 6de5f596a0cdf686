package bg96

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
	"github.com/cellgate/cellgate/sdk/atkit"
)

// bringUp takes the modem from "answers AT" to "can open sockets": SIM
// ready, registered, signal read, PDP context defined and active, SSL
// contexts configured as provisioned. first says this is Open's bring-up,
// which also closes the sockets a previous driver left open (they outlive
// the host and block their ids; Quectel reference §8.11).
func (d *Driver) bringUp(ctx context.Context, cfg sdk.ModemConfig, first bool) error {
	ch, err := d.channel()
	if err != nil {
		return err
	}
	d.mu.Lock()
	set := d.set
	d.mu.Unlock()
	var r bringUpResult
	err = d.exchange(ctx, func(ctx context.Context) error {
		var err error
		r, err = runBringUp(ctx, ch, cfg, set.pdp, first)
		return err
	})
	if err != nil {
		return d.sdkError("bring-up", err)
	}
	if first {
		if err := d.findStale(ctx); err != nil {
			return err
		}
	}
	d.mu.Lock()
	d.info.ICCID, d.info.SignalRSSI, d.info.SignalBER = r.iccid, r.sig.RSSI, r.sig.BER
	d.info.Registration, d.clock = r.reg.String(), r.clock
	profiles := d.profiles
	d.mu.Unlock()
	for _, p := range profiles {
		if err := d.configure(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// bringUpResult is what a bring-up read from the modem.
type bringUpResult struct {
	iccid string
	sig   atkit.Signal
	reg   atkit.RegStat
	clock bool
}

// runBringUp runs the bring-up's commands; the caller holds the slot.
func runBringUp(ctx context.Context, ch *at.Channel, cfg sdk.ModemConfig, pdp int, first bool) (bringUpResult, error) {
	var r bringUpResult
	within := cfg.RegistrationTimeout
	if within <= 0 {
		within = bootWait
	}
	if !first {
		// After a reboot echo is back on; payload commands need it off.
		if _, err := atkit.Sync(ctx, ch, atkit.SyncConfig{Probe: atkit.Step{Op: "sync", Cmd: "AT", Within: within}}); err != nil {
			return r, err
		}
	}
	err := atkit.Run(ctx, ch,
		atkit.Step{Op: "numeric errors", Cmd: "AT+CMEE=1"},
		atkit.CheckSIM(within),
		atkit.Step{Op: "read ICCID", Cmd: "AT+QCCID", Optional: true, Check: func(resp *at.Response) (bool, error) {
			r.iccid, _ = atkit.Field(resp, "+QCCID:")
			return true, nil
		}},
	)
	if err != nil {
		return r, err
	}
	if cfg.NoNetwork {
		return readOffline(ctx, ch)
	}
	if r.reg, err = waitRegistered(ctx, ch, within); err != nil {
		return r, err
	}
	signal := atkit.WaitSignal(5*time.Second, &r.sig)
	signal.Optional = true
	steps := []atkit.Step{signal,
		{Op: "read clock", Cmd: "AT+CCLK?", Optional: true, Check: func(resp *at.Response) (bool, error) {
			v, _ := atkit.Field(resp, "+CCLK:")
			r.clock = clockSynced(v)
			return true, nil
		}},
	}
	if cfg.APN != "" {
		if err := atkit.CheckString(cfg.APN); err != nil {
			return r, &sdk.ModemError{Op: "define PDP context", Code: -1, Text: "APN " + err.Error()}
		}
		steps = append(steps, atkit.Step{Op: "define PDP context", Cmd: fmt.Sprintf("AT+QICSGP=%d,1,%s", pdp, atkit.Quote(cfg.APN))})
	}
	if err := atkit.Run(ctx, ch, steps...); err != nil {
		return r, err
	}
	return r, activate(ctx, ch, pdp)
}

// readOffline is the rest of a bring-up without network
// (sdk.ModemConfig.NoNetwork): registration, signal and clock read once
// each, none required, and no PDP context.
func readOffline(ctx context.Context, ch *at.Channel) (bringUpResult, error) {
	var r bringUpResult
	r.reg, _ = waitRegistered(ctx, ch, 0) // the state found, registered or not
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	signal := atkit.WaitSignal(0, &r.sig)
	signal.Optional = true
	err := atkit.Run(ctx, ch, signal,
		atkit.Step{Op: "read clock", Cmd: "AT+CCLK?", Optional: true, Check: func(resp *at.Response) (bool, error) {
			v, _ := atkit.Field(resp, "+CCLK:")
			r.clock = clockSynced(v)
			return true, nil
		}})
	return r, err
}

// waitRegistered asks CEREG (LTE Cat-M1/NB-IoT), CGREG and CREG (GSM
// fallback) until one says home or roaming: on Cat-M a BG96 may show
// +CGREG: 0,4 while CEREG is registered (Quectel reference §3.4).
func waitRegistered(ctx context.Context, ch *at.Channel, within time.Duration) (atkit.RegStat, error) {
	deadline := time.Now().Add(within)
	for {
		var denied error
		for _, cmd := range []string{"AT+CEREG?", "AT+CGREG?", "AT+CREG?"} {
			var st atkit.RegStat
			err := atkit.WaitRegistered(cmd, 0, &st).Run(ctx, ch)
			if err == nil {
				return st, nil
			}
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			if st == atkit.RegDenied && denied == nil {
				denied = err
			}
		}
		if time.Now().After(deadline) {
			if denied != nil {
				return atkit.RegDenied, denied
			}
			return atkit.RegSearching, &sdk.TimeoutError{Op: "registration", After: within}
		}
		if err := pause(ctx, time.Second); err != nil {
			return atkit.RegSearching, err
		}
	}
}

// activate makes the PDP context active: AT+QIACT? lists the active ones,
// and AT+QIACT=<ctx> on an active one is an ERROR, so it asks first.
func activate(ctx context.Context, ch *at.Channel, pdp int) error {
	resp, err := ch.Command(ctx, "AT+QIACT?")
	if err != nil {
		return &atkit.StepError{Op: "read PDP contexts", Cmd: "AT+QIACT?", Err: err}
	}
	for _, l := range resp.Lines {
		if v, ok := strings.CutPrefix(at.Normalize(l), "+QIACT:"); ok {
			if f := atkit.Fields(v); len(f) >= 2 && f[0] == strconv.Itoa(pdp) && f[1] == "1" {
				return nil
			}
		}
	}
	return atkit.Run(ctx, ch, atkit.Step{Op: "activate PDP context", Cmd: fmt.Sprintf("AT+QIACT=%d", pdp), Timeout: qiactTimeout})
}

// findStale lists the sockets open on the modem (AT+QSSLSTATE,
// AT+QISTATE) and closes them: they belong to a driver that died.
func (d *Driver) findStale(ctx context.Context) error {
	for _, q := range []struct{ cmd, prefix, close string }{
		{"AT+QSSLSTATE", "+QSSLSTATE:", "AT+QSSLCLOSE"},
		{"AT+QISTATE", "+QISTATE:", "AT+QICLOSE"},
	} {
		resp, err := d.command(ctx, q.cmd, cmdTimeout)
		if err != nil {
			return d.sdkError("open: list sockets", err)
		}
		for _, l := range resp.Lines {
			v, ok := strings.CutPrefix(at.Normalize(l), q.prefix)
			if !ok {
				continue
			}
			id, err := atoi(atkit.Fields(v)[0])
			if err != nil {
				continue
			}
			d.log.Info("closing a socket left open by a previous driver", "session", id)
			if _, err := d.command(ctx, fmt.Sprintf("%s=%d,0", q.close, id), cmdTimeout); err != nil {
				return d.sdkError("open: close stale socket", err)
			}
		}
	}
	return nil
}

// ensureReady brings the modem up again after a reboot, once.
func (d *Driver) ensureReady(ctx context.Context) error {
	d.mu.Lock()
	need := d.needInit
	d.mu.Unlock()
	if !need {
		return nil
	}
	// Bring-ups do not overlap: the first caller does it, the others wait
	// for the slot inside it and then find needInit false.
	select {
	case d.initCh <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-d.initCh }()
	d.mu.Lock()
	need, cfg := d.needInit, d.cfg
	d.mu.Unlock()
	if !need {
		return nil
	}
	if err := d.bringUp(ctx, cfg, false); err != nil {
		return err
	}
	d.mu.Lock()
	d.needInit = false
	d.mu.Unlock()
	return nil
}

// clockSynced reads AT+CCLK?'s "yy/MM/dd,hh:mm:ss±zz" and reports whether
// it holds a plausible network time rather than the power-on default.
func clockSynced(v string) bool {
	v = strings.Trim(v, `"`)
	if len(v) < 2 {
		return false
	}
	yy, err := strconv.Atoi(v[:2])
	return err == nil && yy >= 24 && yy < 80
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// trimPrefixed returns an identity line without a "+CGMR: "-style prefix,
// which some firmware prints and the BG96 does not.
func trimPrefixed(s string) string {
	if strings.HasPrefix(s, "+") {
		if _, v, ok := strings.Cut(s, ":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return s
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToUpper(s), strings.ToUpper(sub))
}

func atoi(s string) (int, error) { return strconv.Atoi(strings.TrimSpace(s)) }
