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
// It is built on the driver kit sdk/atkit, which opens and locks the port,
// gets in sync with the modem, runs the bring-up steps (SIM, signal,
// registration), checks and names certificate bundles and maps errors to
// the contract's; what is here is SIMCom's dialect.
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
	"github.com/cellgate/cellgate/sdk/atkit"
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

	// serial counts the bytes on the port, for Status (status.go).
	serial atkit.SerialCounters
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
			return atkit.OpenPort(ctx, name, atkit.PortConfig{Baud: baud})
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
// With cfg.NoNetwork it stops after the SIM (sdk.ModemConfig.NoNetwork): the
// certificate store works, Dial does not.
func (d *Driver) Open(ctx context.Context, cfg sdk.ModemConfig) (sdk.ModemInfo, error) {
	d.bringup.Lock()
	defer d.bringup.Unlock()

	if cfg.Port == "" {
		return sdk.ModemInfo{}, &sdk.SerialError{Op: "open", Err: "no serial port configured"}
	}
	if err := atkit.CheckString(cfg.APN); err != nil {
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
		var se *sdk.SerialError
		switch {
		case errors.As(err, &se):
			return sdk.ModemInfo{}, se // names the port once already
		case err != nil:
			return sdk.ModemInfo{}, &sdk.SerialError{Op: "open", Port: cfg.Port, Err: err.Error()}
		}
		ch = at.New(d.serial.Wrap(rw), at.WithLogger(d.log))
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
// With cfg.NoNetwork it stops after the SIM, reading signal and registration
// once without requiring them.
func (d *Driver) bringUp(ctx context.Context, ch *at.Channel, cfg sdk.ModemConfig) (sdk.ModemInfo, error) {
	regWait := cfg.RegistrationTimeout
	if regWait <= 0 {
		regWait = 90 * time.Second
	}
	if cfg.NoNetwork {
		regWait = 0 // one reading each, below
	}
	if err := d.sync(ctx, ch); err != nil {
		return sdk.ModemInfo{}, err
	}
	var (
		info             sdk.ModemInfo
		signal           atkit.Signal
		creg, cgreg, ceg atkit.RegStat
	)
	steps := d.identifySteps(cfg.Model, &info)
	steps = append(steps,
		// Right after boot the SIM is busy for a few seconds; SIMCom's
		// checklist allows 20 s before calling it broken.
		atkit.CheckSIM(30*time.Second),
		atkit.Step{Op: "read ICCID", Cmd: "AT+CICCID", Optional: true, Check: func(r *at.Response) (bool, error) {
			if v, ok := atkit.Field(r, "+ICCID:"); ok {
				info.ICCID = v
			}
			return true, nil
		}},
	)
	network := []atkit.Step{
		atkit.WaitSignal(regWait, &signal),
		atkit.WaitRegistered("AT+CREG?", regWait, &creg),
		optional(atkit.WaitRegistered("AT+CGREG?", 0, &cgreg)),
		optional(atkit.WaitRegistered("AT+CEREG?", 0, &ceg)),
	}
	if cfg.NoNetwork {
		for _, s := range network {
			steps = append(steps, optional(s))
		}
		steps = append(steps, clockStep(&info))
	} else {
		steps = append(steps, network...)
		steps = append(steps, dataSteps(&info, cfg.APN)...)
	}
	err := atkit.Script{Steps: steps, OnSkip: func(s atkit.Step, err error) {
		d.log.Debug("optional bring-up step failed", "op", s.Op, "err", err)
	}}.Run(ctx, ch)
	if err != nil {
		return sdk.ModemInfo{}, err
	}
	info.SignalRSSI, info.SignalBER = signal.RSSI, signal.BER
	info.Registration = creg.String()
	return info, nil
}

func optional(s atkit.Step) atkit.Step {
	s.Optional = true
	return s
}

// identifySteps is the first part of the bring-up script (after Sync turned
// echo off): verbose errors, then what the modem is, into info. A modem that
// is not of the driver's model fails it, and so does a configured model
// (want, when not empty) other than the driver's: either way the
// *sdk.ModelMismatchError names what the modem reported.
func (d *Driver) identifySteps(want string, info *sdk.ModemInfo) []atkit.Step {
	return []atkit.Step{
		{Op: "verbose errors", Cmd: "AT+CMEE=2"},
		{Op: "identify model", Cmd: "AT+CGMM", Check: func(r *at.Response) (bool, error) {
			model := atkit.FirstLine(r)
			if !d.profile.matches(model) {
				return false, &sdk.ModelMismatchError{Want: d.profile.Name, Got: model}
			}
			if want != "" && !strings.EqualFold(want, d.profile.Name) {
				return false, &sdk.ModelMismatchError{Want: want, Got: model}
			}
			info.Model = model
			return true, nil
		}},
		{Op: "identify", Cmd: "ATI", Check: func(r *at.Response) (bool, error) {
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
		{Op: "read revision", Cmd: "AT+CGMR", Optional: true, Check: func(r *at.Response) (bool, error) {
			if v, ok := atkit.Field(r, "+CGMR:"); ok && info.Revision == "" {
				info.Revision = v
			}
			return true, nil
		}},
		{Op: "read IMEI", Cmd: "AT+CGSN", Optional: true, Check: func(r *at.Response) (bool, error) {
			if l := atkit.FirstLine(r); l != "" && info.IMEI == "" {
				info.IMEI = l
			}
			return true, nil
		}},
	}
}

// dataSteps is the last part of the bring-up script: the APN when one is
// configured, PDP context 1 activated, and whether the network has set the
// clock, into info.
func dataSteps(info *sdk.ModemInfo, apn string) []atkit.Step {
	var steps []atkit.Step
	if apn != "" {
		steps = append(steps, atkit.Step{Op: "set APN", Cmd: `AT+CGDCONT=1,"IP",` + atkit.Quote(apn)})
	}
	return append(steps,
		atkit.Step{Op: "activate PDP context", Cmd: "AT+CGACT=1,1", Timeout: 30 * time.Second},
		clockStep(info),
	)
}

// clockStep reads whether the network has set the clock, into info.
func clockStep(info *sdk.ModemInfo) atkit.Step {
	return atkit.Step{Op: "read clock", Cmd: "AT+CCLK?", Optional: true, Check: func(r *at.Response) (bool, error) {
		if v, ok := atkit.Field(r, "+CCLK:"); ok {
			info.ClockSynced = clockSynced(v)
		}
		return true, nil
	}}
}

// sync waits until the modem answers and turns echo off (atkit.Sync). Silence
// can mean the modem is collecting payload bytes for an AT+CCHSEND or
// AT+CCERTDOWN whose sender died between command and payload (a plugin
// killed with SIGKILL): the kit then sends filler to complete it, and the
// certificate store is marked suspect, since a download completed with
// filler leaves a file whose name no longer matches its content.
//
// The probe is AT+CGMM rather than AT because its answer carries a line: a
// stale OK left in the line by the previous owner cannot pass for it.
func (d *Driver) sync(ctx context.Context, ch *at.Channel) error {
	res, err := atkit.Sync(ctx, ch, atkit.SyncConfig{
		Probe: atkit.Step{Op: "sync", Cmd: "AT+CGMM", Check: func(r *at.Response) (bool, error) {
			return atkit.FirstLine(r) != "", nil
		}},
		UnstickBytes: d.profile.MaxCertBytes,
	})
	if res.Unstuck {
		d.log.Warn("modem was silent; completed a payload a previous driver may have left it waiting for", "op", "sync", "bytes", d.profile.MaxCertBytes)
		d.mu.Lock()
		d.storeSuspect = true
		d.mu.Unlock()
	}
	return err
}

// registrationName names a <stat> of +CREG, +CGREG or +CEREG.
func registrationName(stat int) string { return atkit.RegStat(stat).String() }

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

// withoutNetwork reports whether the last Open asked for no network
// (sdk.ModemConfig.NoNetwork): no PDP context to dial over.
func (d *Driver) withoutNetwork() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.NoNetwork
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
	line, err := atkit.Await(ctx, ch, atkit.Step{Op: op, Cmd: cmd}, at.Prefix(prefix), wait)
	if err != nil {
		return err
	}
	v := strings.TrimSpace(strings.TrimPrefix(at.Normalize(line), prefix))
	parts := atkit.Fields(v)
	code, err := strconv.Atoi(parts[len(parts)-1])
	if err != nil {
		return &atkit.StepError{Op: op, Cmd: cmd, Err: fmt.Errorf("malformed result %q", line)}
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

// modemErr turns errors from the AT layer into the contract's typed errors
// (atkit.SDKError) so they cross the plugin boundary intact.
func (d *Driver) modemErr(op string, err error) error {
	return atkit.SDKError(op, err, d.channel(), d.config().Port)
}

// --- small parsers for the modem's answers ---

func field(r *at.Response, prefix string) (string, bool) { return atkit.Field(r, prefix) }

func splitFields(v string) []string { return atkit.Fields(v) }

func twoInts(v string) (int, int, error) {
	parts := atkit.Fields(v)
	if len(parts) < 2 {
		return 0, 0, errors.New("want two numbers")
	}
	a, err := strconv.Atoi(parts[0])
	if err != nil {
		return 0, 0, err
	}
	b, err := strconv.Atoi(parts[1])
	return a, b, err
}

// idAndCode parses "<prefix> <id>,<code>".
func idAndCode(line, prefix string) (int, int, bool) {
	v, ok := strings.CutPrefix(at.Normalize(line), prefix)
	if !ok {
		return 0, 0, false
	}
	a, b, err := twoInts(v)
	return a, b, err == nil
}

// sessionID parses the session id that follows prefix.
func sessionID(line, prefix string) (int, bool) {
	v, ok := strings.CutPrefix(at.Normalize(line), at.Normalize(prefix))
	if !ok {
		return 0, false
	}
	id, err := strconv.Atoi(atkit.Fields(v)[0])
	return id, err == nil
}
