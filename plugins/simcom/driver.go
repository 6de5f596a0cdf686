// Package simcom drives SIMCom SIM7600/SIM7800 modems through their CCH
// SSL/TLS command set (AT+CCERTDOWN, AT+CSSLCFG, AT+CCHSTART, AT+CCHOPEN,
// AT+CCHSEND, AT+CCHCLOSE, AT+CCHSTOP) and implements sdk.SecureTransport.
//
// SIMCom's words stay here: the CCH <err> codes are mapped to the
// contract's neutral sdk.NetKind, and ride along in sdk.NetError as the
// vendor ("simcom"), the code and the modem's result line, e.g. "open
// session 0: +CCHOPEN: 0,15 (handshake error)". The options it reads from
// sdk.ModemConfig.Options are listed at OptionNegotiateTime.
//
// One Driver owns one serial port and one at.Channel. The channel's reader
// goroutine parses; URC handlers (run on the channel's dispatcher) only hand
// data and events to sessions; every command is issued by a caller of the
// SecureTransport methods. Driver-wide state (whether the modem is up, which
// sessions exist, the last bundle per SSL context) is guarded by mu.
package simcom

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
)

// Driver is a sdk.SecureTransport for one SIMCom modem of the model described
// by its Profile. The zero value is not usable: call New.
type Driver struct {
	profile Profile
	log     *slog.Logger
	// openPort is replaceable so host-side tests can drive the driver over a
	// scripted transcript instead of a serial device.
	openPort func(ctx context.Context, name string, baud int) (io.ReadWriteCloser, error)

	// reportTimeout is how long a send waits for its +CCHSEND report
	// before asking the modem (defaultReportTimeout; shorter in tests).
	reportTimeout time.Duration

	// bringup serialises Open and the re-bring-up after a modem reboot, so
	// two callers never interleave bring-up scripts.
	bringup sync.Mutex

	mu       sync.Mutex
	cfg      sdk.ModemConfig
	opts     options // parsed from cfg.Options
	ch       *at.Channel
	info     sdk.ModemInfo
	up       bool // bring-up complete and no reboot seen since
	started  bool // AT+CCHSTART succeeded since the last bring-up
	sessions []*session
	bundles  map[int]provisioned // the last provisioned bundle per SSL context
	stopped  bool
	// storeSuspect: sync had to complete an abandoned payload, which may
	// have been a certificate download; Provision then replaces our files
	// instead of trusting their names.
	storeSuspect bool
}

// New returns a Driver for the model p. Logs go to log (nil discards).
func New(p Profile, log *slog.Logger) *Driver {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{
		profile: p,
		log:     log.With("modem", p.Name),
		openPort: func(ctx context.Context, name string, baud int) (io.ReadWriteCloser, error) {
			return openPort(ctx, name, baud)
		},
		sessions:      make([]*session, p.Sessions),
		bundles:       map[int]provisioned{},
		reportTimeout: defaultReportTimeout,
	}
}

// Open opens the serial port and brings the modem to a known state: in sync,
// echo off, verbose errors, the right model, SIM ready, registered, PDP
// context up. Every step is bounded and a failure names the step and carries
// the modem's words. Calling Open again re-runs the bring-up on the same port.
func (d *Driver) Open(ctx context.Context, cfg sdk.ModemConfig) (sdk.ModemInfo, error) {
	d.bringup.Lock()
	defer d.bringup.Unlock()

	if cfg.Model != "" && !strings.EqualFold(cfg.Model, d.profile.Name) {
		return sdk.ModemInfo{}, &sdk.ModelMismatchError{Want: d.profile.Name, Got: cfg.Model}
	}
	if cfg.Port == "" {
		return sdk.ModemInfo{}, &sdk.SerialError{Op: "open", Err: "no serial port configured"}
	}
	if err := validATString(cfg.APN); err != nil {
		return sdk.ModemInfo{}, &sdk.ModemError{Op: "open", Code: -1, Text: "invalid APN: " + err.Error()}
	}
	opts, err := parseOptions(d.profile, cfg.Options)
	if err != nil {
		return sdk.ModemInfo{}, err
	}

	d.mu.Lock()
	ch := d.ch
	if ch != nil && d.cfg.Port != cfg.Port {
		d.mu.Unlock()
		return sdk.ModemInfo{}, fmt.Errorf("open %s: the driver already drives %s; Stop it first", cfg.Port, d.cfg.Port)
	}
	d.cfg = cfg
	d.opts = opts
	d.stopped = false
	d.mu.Unlock()

	if ch == nil {
		rw, err := d.openPort(ctx, cfg.Port, cfg.Baud)
		if err != nil {
			return sdk.ModemInfo{}, &sdk.SerialError{Op: "open", Port: cfg.Port, Err: err.Error()}
		}
		ch = at.New(rw, at.WithLogger(d.log))
		d.registerURCs(ch)
		d.mu.Lock()
		d.ch = ch
		d.mu.Unlock()
	}
	info, err := d.bringUp(ctx, ch, cfg)
	if err != nil {
		return sdk.ModemInfo{}, d.modemErr("open", err)
	}
	d.mu.Lock()
	d.info = info
	d.up = true
	d.started = false
	d.mu.Unlock()
	d.log.Info("modem ready", "model", info.Model, "revision", info.Revision, "rssi", info.SignalRSSI, "registration", info.Registration)
	return info, nil
}

// bringUp runs the bring-up script and returns what the modem said of itself.
func (d *Driver) bringUp(ctx context.Context, ch *at.Channel, cfg sdk.ModemConfig) (sdk.ModemInfo, error) {
	regWait := cfg.RegistrationTimeout
	if regWait <= 0 {
		regWait = 90 * time.Second
	}
	var info sdk.ModemInfo
	registered := map[string]string{}

	if err := d.sync(ctx, ch); err != nil {
		return sdk.ModemInfo{}, err
	}
	steps := d.identifySteps(&info)
	steps = append(steps, networkSteps(&info, regWait, registered)...)
	steps = append(steps, dataSteps(&info, cfg.APN)...)
	err := runScript(ctx, ch, steps, func(op string, err error) {
		d.log.Debug("optional bring-up step failed", "op", op, "err", err)
	})
	if err != nil {
		return sdk.ModemInfo{}, err
	}
	info.Registration = registered["+CREG:"]
	return info, nil
}

// identifySteps is the first part of the bring-up script: echo off and
// verbose errors, then what the modem is, into info. A modem that is not
// of the driver's model fails it.
func (d *Driver) identifySteps(info *sdk.ModemInfo) []step {
	return []step{
		{op: "echo off", cmd: "ATE0"},
		{op: "verbose errors", cmd: "AT+CMEE=2"},
		{op: "identify model", cmd: "AT+CGMM", check: func(r *at.Response) (bool, error) {
			model := firstLine(r)
			if !d.profile.matches(model) {
				return false, &sdk.ModelMismatchError{Want: d.profile.Name, Got: model}
			}
			info.Model = model
			return true, nil
		}},
		{op: "identify", cmd: "ATI", check: func(r *at.Response) (bool, error) {
			for _, l := range r.Lines {
				k, v, ok := strings.Cut(l, ":")
				if !ok {
					continue
				}
				v = strings.TrimSpace(v)
				switch strings.TrimSpace(k) {
				case "Manufacturer":
					info.Manufacturer = v
				case "Revision":
					info.Revision = v
				case "IMEI":
					info.IMEI = v
				}
			}
			return true, nil
		}},
		{op: "read revision", cmd: "AT+CGMR", optional: true, check: func(r *at.Response) (bool, error) {
			if v, ok := field(r, "+CGMR:"); ok && info.Revision == "" {
				info.Revision = v
			}
			return true, nil
		}},
		{op: "read IMEI", cmd: "AT+CGSN", optional: true, check: func(r *at.Response) (bool, error) {
			if l := firstLine(r); l != "" && info.IMEI == "" {
				info.IMEI = l
			}
			return true, nil
		}},
	}
}

// networkSteps is the part of the bring-up script that waits for the SIM,
// then for a signal and registration (each for up to regWait). It notes the
// ICCID and signal in info, and each registration state in registered,
// keyed by its prefix.
func networkSteps(info *sdk.ModemInfo, regWait time.Duration, registered map[string]string) []step {
	return []step{
		// Right after boot the SIM answers "+CME ERROR: SIM busy" for a few
		// seconds; SIMCom's checklist allows 20 s before calling it broken.
		{op: "check SIM", cmd: "AT+CPIN?", retry: at.IsSIMBusy, within: 30 * time.Second, check: func(r *at.Response) (bool, error) {
			v, ok := field(r, "+CPIN:")
			if !ok {
				return false, fmt.Errorf("no +CPIN line in %q", r.Lines)
			}
			if v != "READY" {
				return false, &sdk.ModemError{Op: "check SIM", Code: -1, Text: "SIM not ready: " + v}
			}
			return true, nil
		}},
		{op: "read ICCID", cmd: "AT+CICCID", optional: true, check: func(r *at.Response) (bool, error) {
			if v, ok := field(r, "+ICCID:"); ok {
				info.ICCID = v
			}
			return true, nil
		}},
		// +CSQ: 99,99 (unknown) is normal right after boot.
		{op: "wait for signal", cmd: "AT+CSQ", within: regWait, check: func(r *at.Response) (bool, error) {
			v, ok := field(r, "+CSQ:")
			if !ok {
				return false, fmt.Errorf("no +CSQ line in %q", r.Lines)
			}
			rssi, ber, err := twoInts(v)
			if err != nil {
				return false, fmt.Errorf("+CSQ: %q: %w", v, err)
			}
			info.SignalRSSI, info.SignalBER = rssi, ber
			return rssi != 99, nil
		}},
		{op: "wait for registration", cmd: "AT+CREG?", within: regWait, check: regCheck("+CREG:", registered)},
		{op: "read GPRS registration", cmd: "AT+CGREG?", optional: true, check: regCheck("+CGREG:", registered)},
		{op: "read LTE registration", cmd: "AT+CEREG?", optional: true, check: regCheck("+CEREG:", registered)},
	}
}

// dataSteps is the last part of the bring-up script: the APN when one is
// configured, PDP context 1 activated, and whether the network has set the
// clock, into info.
func dataSteps(info *sdk.ModemInfo, apn string) []step {
	var steps []step
	if apn != "" {
		steps = append(steps, step{op: "set APN", cmd: fmt.Sprintf(`AT+CGDCONT=1,"IP",%s`, quote(apn))})
	}
	return append(steps,
		step{op: "activate PDP context", cmd: "AT+CGACT=1,1", timeout: 30 * time.Second},
		step{op: "read clock", cmd: "AT+CCLK?", optional: true, check: func(r *at.Response) (bool, error) {
			if v, ok := field(r, "+CCLK:"); ok {
				info.ClockSynced = clockSynced(v)
			}
			return true, nil
		}},
	)
}

// sync waits until the modem answers AT. A modem still booting ignores AT
// until it printed RDY, so silence is retried for a while. Silence can also
// mean the modem is collecting payload bytes for an AT+CCHSEND or
// AT+CCERTDOWN whose sender died between command and payload (a plugin
// killed with SIGKILL): after a few silent seconds the driver sends filler
// to complete it, and marks the certificate store suspect, since a download
// completed with filler leaves a file whose name no longer matches its
// content.
//
// The probe is AT+CGMM rather than AT because its answer carries a line: a
// stale OK left in the line by the previous owner cannot pass for it.
func (d *Driver) sync(ctx context.Context, ch *at.Channel) error {
	attempt := step{op: "sync", cmd: "AT+CGMM", timeout: time.Second, retry: retryTimeouts, within: 3 * time.Second, every: 200 * time.Millisecond,
		check: func(r *at.Response) (bool, error) { return firstLine(r) != "", nil }}
	err := runScript(ctx, ch, []step{attempt}, nil)
	if err == nil || ctx.Err() != nil {
		return err
	}
	var me *at.CMEError
	var ae *at.Error
	if errors.As(err, &me) || errors.As(err, &ae) {
		return err // the modem answers: it is not stuck
	}
	d.log.Warn("modem silent; completing a payload a previous driver may have left it waiting for", "op", "sync", "bytes", d.profile.MaxCertBytes)
	if uerr := ch.Unstick(ctx, d.profile.MaxCertBytes); uerr != nil {
		return &stepError{Op: "sync", Cmd: "AT", Cause: uerr}
	}
	d.mu.Lock()
	d.storeSuspect = true
	d.mu.Unlock()
	attempt.within = 20 * time.Second
	return runScript(ctx, ch, []step{attempt}, nil)
}

// regCheck accepts a registration answer with stat 1 (home) or 5 (roaming)
// and records it; other states mean "keep waiting".
func regCheck(prefix string, into map[string]string) func(*at.Response) (bool, error) {
	return func(r *at.Response) (bool, error) {
		v, ok := field(r, prefix)
		if !ok {
			return false, fmt.Errorf("no %s line in %q", prefix, r.Lines)
		}
		parts := splitFields(v)
		if len(parts) < 2 {
			return false, fmt.Errorf("%s %q: want <n>,<stat>", prefix, v)
		}
		stat, err := strconv.Atoi(parts[1])
		if err != nil {
			return false, fmt.Errorf("%s %q: stat is not a number", prefix, v)
		}
		into[prefix] = registrationName(stat)
		switch stat {
		case 1, 5:
			return true, nil
		case 3:
			return false, &sdk.ModemError{Op: "registration", Code: -1, Text: "registration denied (" + prefix + " " + v + ")"}
		}
		return false, nil
	}
}

func registrationName(stat int) string {
	switch stat {
	case 0:
		return "not registered"
	case 1:
		return "home"
	case 2:
		return "searching"
	case 3:
		return "denied"
	case 5:
		return "roaming"
	case 6, 7:
		return "sms only"
	case 8:
		return "emergency only"
	}
	return "unknown"
}

// clockSynced reports whether a +CCLK value ("yy/MM/dd,hh:mm:ss±zz") looks
// set: an unsynchronised module counts from 1980 (or 1970 on some firmware),
// and SIMCom's two-digit year cannot express anything before 2000 otherwise.
func clockSynced(v string) bool {
	v = strings.Trim(v, `"`)
	if len(v) < 2 {
		return false
	}
	yy, err := strconv.Atoi(v[:2])
	if err != nil {
		return false
	}
	return yy >= 20 && yy < 70
}

// registerURCs routes the modem's unsolicited codes to sessions and to the
// reboot handling. Handlers never issue commands: they run on the channel's
// dispatcher and only hand over data.
func (d *Driver) registerURCs(ch *at.Channel) {
	ch.HandleBinary("+CCHRECV: DATA,", at.CCHRecvLength, func(u at.URC) {
		id, ok := sessionID(u.Line, "+CCHRECV: DATA,")
		if !ok {
			d.log.Warn("receive frame with a bad session id", "line", u.Line)
			return
		}
		if s := d.session(id); s != nil {
			s.deliver(u.Payload)
		} else {
			d.log.Warn("data for a session that is not open; dropped", "session", id, "bytes", len(u.Payload))
		}
	})
	ch.Handle("+CCHSEND:", func(u at.URC) {
		id, code, ok := idAndCode(u.Line, "+CCHSEND:")
		if !ok {
			return
		}
		if s := d.session(id); s != nil {
			s.sendReport(code)
		}
	})
	ch.Handle("+CCH_PEER_CLOSED:", func(u at.URC) {
		id, ok := sessionID(u.Line, "+CCH_PEER_CLOSED:")
		if !ok {
			return
		}
		if s := d.session(id); s != nil {
			s.end(sdk.SessionEvent{Kind: sdk.EventPeerClosed, Detail: u.Line}, nil)
			d.release(s)
		}
	})
	ch.Handle("+CCH_RECV_CLOSED:", func(u at.URC) {
		id, code, ok := idAndCode(u.Line, "+CCH_RECV_CLOSED:")
		if !ok {
			return
		}
		if s := d.session(id); s != nil {
			kind := sdk.EventRecvClosed
			if cchKind(code) == sdk.NetNoNetwork {
				kind = sdk.EventNetworkLost
			}
			s.end(sdk.SessionEvent{Kind: kind, Code: code, Detail: u.Line}, nil)
			d.release(s)
		}
	})
	// A failed CCHOPEN may be followed by +CCHCLOSE: <id>,<err>; a close we
	// asked for is consumed by its waiter, so one arriving here was not.
	ch.Handle("+CCHCLOSE:", func(u at.URC) {
		id, code, ok := idAndCode(u.Line, "+CCHCLOSE:")
		if !ok {
			return
		}
		if s := d.session(id); s != nil && s.isOpen() {
			s.end(sdk.SessionEvent{Kind: sdk.EventRecvClosed, Code: code, Detail: u.Line}, nil)
			d.release(s)
		}
	})
	ch.Handle("RDY", func(at.URC) { d.rebooted("RDY") })
}

// rebooted ends every session with a modem-rebooted event and marks the modem
// for a new bring-up, which the next Dial or Provision runs.
func (d *Driver) rebooted(why string) {
	d.mu.Lock()
	wasUp := d.up
	d.up = false
	d.started = false
	open := append([]*session(nil), d.sessions...)
	for i := range d.sessions {
		d.sessions[i] = nil
	}
	d.mu.Unlock()
	if wasUp {
		d.log.Warn("modem rebooted", "urc", why)
	}
	for _, s := range open {
		if s != nil {
			s.end(sdk.SessionEvent{Kind: sdk.EventModemRebooted, Detail: why}, nil)
		}
	}
}

// ready returns the channel, re-running the bring-up (and replaying the
// provisioned SSL contexts) if the modem rebooted since.
func (d *Driver) ready(ctx context.Context) (*at.Channel, error) {
	d.mu.Lock()
	ch, up, cfg, stopped := d.ch, d.up, d.cfg, d.stopped
	d.mu.Unlock()
	if ch == nil || stopped {
		return nil, &sdk.ModemError{Op: "use modem", Code: -1, Text: "modem not open: call Open first"}
	}
	if up {
		return ch, nil
	}
	d.bringup.Lock()
	defer d.bringup.Unlock()
	d.mu.Lock()
	up = d.up
	d.mu.Unlock()
	if up {
		return ch, nil
	}
	d.log.Info("bringing the modem up again after a reboot")
	info, err := d.bringUp(ctx, ch, cfg)
	if err != nil {
		return nil, d.modemErr("bring-up after reboot", err)
	}
	d.mu.Lock()
	bundles := make([]provisioned, 0, len(d.bundles))
	for _, b := range d.bundles {
		bundles = append(bundles, b)
	}
	d.mu.Unlock()
	for _, b := range bundles {
		if err := d.configureContext(ctx, ch, b, info.ClockSynced); err != nil {
			return nil, d.modemErr("restore SSL context after reboot", err)
		}
	}
	d.mu.Lock()
	d.info = info
	d.up = true
	d.mu.Unlock()
	return ch, nil
}

// Stop closes every session, stops the CCH service and closes the port. It is
// idempotent; errors from a modem that is already gone are logged, not
// returned, because the port is closed either way.
func (d *Driver) Stop(ctx context.Context) error {
	d.mu.Lock()
	ch, started, stopped := d.ch, d.started, d.stopped
	open := append([]*session(nil), d.sessions...)
	d.stopped = true
	d.mu.Unlock()
	if ch == nil || stopped {
		return nil
	}
	for _, s := range open {
		if s != nil {
			if err := s.Close(ctx); err != nil {
				d.log.Warn("close session on stop", "session", s.id, "err", err)
			}
		}
	}
	if started {
		if err := d.deferred(ctx, ch, "stop CCH service", "AT+CCHSTOP", "+CCHSTOP:", 10*time.Second); err != nil {
			d.log.Warn("stop CCH service", "err", err)
		}
	}
	err := ch.Close()
	d.mu.Lock()
	d.ch = nil
	d.up = false
	d.started = false
	d.mu.Unlock()
	if err != nil && !errors.Is(err, io.EOF) {
		d.log.Debug("close AT channel", "err", err)
	}
	return nil
}

// deferred runs a command whose real result is a "+XXX: <err>" line that may
// come before or after OK, and waits for it up to wait.
func (d *Driver) deferred(ctx context.Context, ch *at.Channel, op, cmd, prefix string, wait time.Duration) error {
	w := ch.Expect(at.Prefix(prefix))
	defer w.Cancel()
	cctx, cancel := context.WithTimeout(ctx, defaultStepTimeout)
	_, err := ch.Command(cctx, cmd)
	cancel()
	if err != nil {
		return &stepError{Op: op, Cmd: cmd, Cause: err}
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	line, err := w.Wait(wctx)
	if err != nil {
		return &stepError{Op: op, Cmd: cmd, Cause: fmt.Errorf("waiting for %s: %w", prefix, err)}
	}
	v := strings.TrimSpace(strings.TrimPrefix(at.Normalize(line), prefix))
	code, err := strconv.Atoi(lastField(v))
	if err != nil {
		return &stepError{Op: op, Cmd: cmd, Cause: fmt.Errorf("malformed result %q", line)}
	}
	if code != 0 {
		return cchError(strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(prefix, "+CCH"), ":")), -1, code)
	}
	return nil
}

// config returns the ModemConfig of the last Open; Open may run again
// (after Stop) while sessions of the old run still finish.
func (d *Driver) config() sdk.ModemConfig {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// negotiateTime is the TLS handshake bound of the last Open's options, or
// the profile's before any Open.
func (d *Driver) negotiateTime() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.opts.negotiateTime > 0 {
		return d.opts.negotiateTime
	}
	return d.profile.NegotiateTime
}

// modemErr turns errors from the AT layer into the contract's typed errors so
// they cross the plugin boundary intact; typed sdk errors pass through.
func (d *Driver) modemErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var (
		me  *sdk.ModemError
		ne  *sdk.NetError
		se  *sdk.SerialError
		te  *sdk.TimeoutError
		be  *sdk.BundleError
		oe  *sdk.OptionError
		mm  *sdk.ModelMismatchError
		cme *at.CMEError
		cms *at.CMSError
		ae  *at.Error
		st  *stepError
	)
	switch {
	case errors.As(err, &me), errors.As(err, &ne), errors.As(err, &se), errors.As(err, &te),
		errors.As(err, &be), errors.As(err, &oe), errors.As(err, &mm):
		return err
	}
	cause := err
	if errors.As(err, &st) {
		op = op + ": " + st.Op
		cause = st.Cause
	}
	var na *noAnswerError
	if errors.As(err, &na) {
		return &sdk.TimeoutError{Op: op, After: na.after}
	}
	switch {
	// ModemError.Text is the modem's words as it printed them; its Error
	// method adds the code when the words do not end with it.
	case errors.As(err, &cme):
		return &sdk.ModemError{Op: op, Code: cme.Code, Text: codedText("+CME ERROR: ", cme.Code, cme.Text)}
	case errors.As(err, &cms):
		return &sdk.ModemError{Op: op, Code: cms.Code, Text: codedText("+CMS ERROR: ", cms.Code, cms.Text)}
	case errors.As(err, &ae):
		return &sdk.ModemError{Op: op, Code: -1, Text: ae.Final}
	case errors.Is(err, context.DeadlineExceeded):
		return &sdk.TimeoutError{Op: op}
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", op, err)
	case errors.Is(err, at.ErrClosed):
		return &sdk.SerialError{Op: op, Port: d.config().Port, Err: cause.Error()}
	}
	d.mu.Lock()
	ch := d.ch
	d.mu.Unlock()
	if ch != nil {
		select {
		case <-ch.Done():
			return &sdk.SerialError{Op: op, Port: d.config().Port, Err: cause.Error()}
		default:
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// codedText is a +CME/+CMS ERROR final result as the modem's words: the
// tag, then its text, or its number when it gave no text.
func codedText(tag string, code int, text string) string {
	if text == "" && code >= 0 {
		return tag + strconv.Itoa(code)
	}
	return tag + text
}

// --- small parsers for the modem's answers ---

// field returns the value after prefix in the first response line that has it.
func field(r *at.Response, prefix string) (string, bool) {
	for _, l := range r.Lines {
		n := at.Normalize(l)
		if strings.HasPrefix(n, prefix) {
			return strings.TrimSpace(strings.TrimPrefix(n, prefix)), true
		}
	}
	return "", false
}

func firstLine(r *at.Response) string {
	for _, l := range r.Lines {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

func splitFields(v string) []string {
	parts := strings.Split(v, ",")
	for i := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(parts[i]), `"`)
	}
	return parts
}

func lastField(v string) string {
	parts := splitFields(v)
	return parts[len(parts)-1]
}

func twoInts(v string) (int, int, error) {
	parts := splitFields(v)
	if len(parts) < 2 {
		return 0, 0, errors.New("want two numbers")
	}
	a, err := strconv.Atoi(parts[0])
	if err != nil {
		return 0, 0, err
	}
	b, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, 0, err
	}
	return a, b, nil
}

// idAndCode parses "<prefix> <id>,<code>".
func idAndCode(line, prefix string) (int, int, bool) {
	n := at.Normalize(line)
	if !strings.HasPrefix(n, prefix) {
		return 0, 0, false
	}
	a, b, err := twoInts(strings.TrimPrefix(n, prefix))
	return a, b, err == nil
}

// sessionID parses the session id that follows prefix.
func sessionID(line, prefix string) (int, bool) {
	n := at.Normalize(line)
	p := at.Normalize(prefix)
	if !strings.HasPrefix(n, p) {
		return 0, false
	}
	parts := splitFields(strings.TrimPrefix(n, p))
	id, err := strconv.Atoi(parts[0])
	return id, err == nil
}

// quote renders s as an AT string argument. AT strings have no escapes, so a
// double quote or a control character cannot be sent at all.
func quote(s string) string { return `"` + s + `"` }

func validATString(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] < 0x20 || s[i] == 0x7f {
			return fmt.Errorf("byte %d of %q cannot be sent in an AT string", i, s)
		}
	}
	return nil
}
