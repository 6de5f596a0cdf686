// Package bg96 is a cellgate modem driver for Quectel BG96 (and BG95)
// modules, written against the public SDK only: sdk (the contract), sdk/at
// (the AT channel) and sdk/atkit (serial port, bring-up steps, credential
// store naming). It speaks Quectel's own dialect: AT+QFUPL/AT+QFLST/AT+QFDEL
// for certificate files, AT+QSSLCFG for SSL contexts, AT+QICSGP/AT+QIACT for
// the packet data context, AT+QSSLOPEN/SEND/RECV/CLOSE/STATE for TLS
// sockets run by the modem, and AT+QIOPEN/QISEND/QIRD/QICLOSE for plain TCP
// sockets when the agent runs TLS itself.
//
// Driver implements sdk.SecureTransport; the plugin's main passes it to
// sdk.Serve. README.md in the module's root lists every command, the forms
// accepted where Quectel's documents are unsure, and how to certify it.
package bg96

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/at"
	"github.com/cellgate/cellgate/sdk/atkit"
)

// Bounds of the modem's answers, from Quectel's manuals.
const (
	cmdTimeout   = 10 * time.Second  // an ordinary command
	qiactTimeout = 150 * time.Second // AT+QIACT: "up to 150 s"
	openWait     = 150 * time.Second // +QSSLOPEN/+QIOPEN: 150 s network time, plus negotiatetime for TLS
	maxSend      = 1460              // AT+QSSLSEND/AT+QISEND payload limit
	maxRead      = 1500              // AT+QSSLRECV/AT+QIRD <readlen> limit
	maxSockets   = 12                // socket ids 0-11, shared by SSL and TCP
	sslContexts  = 6                 // SSL contexts 0-5
	bootWait     = 60 * time.Second  // SIM and registration after a reboot
)

// models are the model names the driver answers to, as ModemConfig.Model
// and as the modem's AT+CGMM spells them.
var models = map[string]string{"bg96": "BG96", "bg95": "BG95"}

// Driver drives one BG96 over its AT port. The zero value is not usable;
// call New.
type Driver struct {
	log *slog.Logger
	// openLine opens the modem's line; New sets atkit.OpenPort, tests a
	// pipe to a transcript player.
	openLine func(ctx context.Context, name string, baud int) (io.ReadWriteCloser, error)

	// slot is held for every exchange with the modem, one at a time: an
	// exchange can outlast its command (a read takes its payload from the
	// URC dispatcher after the command's OK), and no other exchange may
	// come in between.
	slot chan struct{}
	// initCh is held by the bring-up that follows a reboot.
	initCh chan struct{}
	// recvData hands the payload of the read in flight (+QSSLRECV: <n>,
	// +QIRD: <n>) from the channel's dispatcher to the reader that holds
	// the slot.
	recvData chan []byte
	// serial counts the bytes on the line since Open, for Status.
	serial atkit.SerialCounters

	mu       sync.Mutex // guards the fields below
	ch       *at.Channel
	port     string
	cfg      sdk.ModemConfig // what Open was given, for the bring-up after a reboot
	set      settings
	needInit bool               // the modem rebooted: bring it up again before the next use
	boot     context.Context    // ends when the modem reboots
	rebooted context.CancelFunc // ends boot
	sessions map[int]*session   // open sessions by socket id
	profiles map[int]sslProfile // provisioned SSL contexts, re-applied after a reboot
	sni      map[int]bool       // the "sni" setting of each SSL context
	reserved map[int]bool       // socket ids being opened
	clock    bool               // the modem's clock held network time at the last bring-up
	info     sdk.ModemInfo
}

// New returns a Driver that logs to log (nil discards).
func New(log *slog.Logger) *Driver {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{
		log: log,
		openLine: func(ctx context.Context, name string, baud int) (io.ReadWriteCloser, error) {
			return atkit.OpenPort(ctx, name, atkit.PortConfig{Baud: baud})
		},
		slot:     make(chan struct{}, 1),
		initCh:   make(chan struct{}, 1),
		recvData: make(chan []byte, 1),
	}
}

var _ sdk.SecureTransport = (*Driver)(nil)

// Open opens the port, checks that a BG96 (or the BG95 asked for) answers,
// waits for the SIM and the network, activates the PDP context and reports
// what it found. Sockets a previous driver left open are closed first.
func (d *Driver) Open(ctx context.Context, cfg sdk.ModemConfig) (_ sdk.ModemInfo, err error) {
	defer func() { err = honour(ctx, err) }()
	set, err := parseOptions(cfg.Options)
	if err != nil {
		return sdk.ModemInfo{}, err
	}
	want := cfg.Model
	if want == "" {
		want = "bg96"
	}
	if err := d.Stop(ctx); err != nil {
		d.log.Warn("closing the previous modem connection", "err", err)
	}
	line, err := d.openLine(ctx, cfg.Port, cfg.Baud)
	var se *sdk.SerialError
	switch {
	case errors.As(err, &se):
		return sdk.ModemInfo{}, se // atkit.OpenPort names the port once already
	case err != nil:
		return sdk.ModemInfo{}, &sdk.SerialError{Op: "open", Port: cfg.Port, Err: err.Error()}
	}
	d.serial.Reset() // the counts are since Open
	ch := at.New(d.serial.Wrap(line), at.WithLogger(d.log), at.WithUnsolicited(d.onUnsolicited))
	d.mu.Lock()
	d.ch, d.port, d.cfg, d.set = ch, cfg.Port, cfg, set
	d.sessions, d.profiles, d.sni = map[int]*session{}, map[int]sslProfile{}, map[int]bool{}
	d.reserved = map[int]bool{}
	d.boot, d.rebooted = context.WithCancel(context.Background())
	d.needInit = true
	d.mu.Unlock()
	d.registerURCs(ch)

	info, err := d.identify(ctx, ch, want)
	if err == nil {
		err = d.bringUp(ctx, cfg, true)
	}
	if err != nil {
		d.Stop(context.WithoutCancel(ctx))
		return sdk.ModemInfo{}, err
	}
	d.mu.Lock()
	info.ICCID, info.SignalRSSI, info.SignalBER = d.info.ICCID, d.info.SignalRSSI, d.info.SignalBER
	info.Registration, info.ClockSynced = d.info.Registration, d.clock
	d.info = info
	d.needInit = false
	d.mu.Unlock()
	d.log.Info("modem ready", "modem", info.Model, "revision", info.Revision, "registration", info.Registration, "rssi", info.SignalRSSI)
	return info, nil
}

// identify syncs with the modem and reads who it is.
func (d *Driver) identify(ctx context.Context, ch *at.Channel, want string) (sdk.ModemInfo, error) {
	var info sdk.ModemInfo
	err := d.exchange(ctx, func(ctx context.Context) error {
		// A driver that died mid-AT+QSSLSEND left the modem waiting for up
		// to 1460 payload bytes.
		if _, err := atkit.Sync(ctx, ch, atkit.SyncConfig{UnstickBytes: maxSend}); err != nil {
			return err
		}
		read := func(op, cmd string, into *string) atkit.Step {
			return atkit.Step{Op: op, Cmd: cmd, Check: func(r *at.Response) (bool, error) {
				*into = trimPrefixed(atkit.FirstLine(r))
				return true, nil
			}}
		}
		return atkit.Run(ctx, ch,
			atkit.Step{Op: "numeric errors", Cmd: "AT+CMEE=1"},
			read("read manufacturer", "AT+CGMI", &info.Manufacturer),
			read("read model", "AT+CGMM", &info.Model),
			read("read revision", "AT+CGMR", &info.Revision),
			read("read IMEI", "AT+CGSN", &info.IMEI),
		)
	})
	if err != nil {
		return info, atkit.SDKError("open", err, ch, d.port)
	}
	// A model this plugin does not drive is refused once the modem said
	// what it is, so the error names both.
	if marker, ok := models[want]; !ok || !containsFold(info.Model, marker) {
		return info, &sdk.ModelMismatchError{Want: want, Got: info.Model}
	}
	return info, nil
}

// Stop closes every session, deactivates the PDP context and closes the
// port. It is idempotent.
func (d *Driver) Stop(ctx context.Context) error {
	d.mu.Lock()
	ch, sessions, pdp := d.ch, d.sessions, d.set.pdp
	d.ch, d.sessions = nil, nil
	if d.rebooted != nil {
		d.rebooted()
	}
	d.mu.Unlock()
	if ch == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, s := range sessions {
		s.end(nil)
		if _, err := d.commandOn(ctx, ch, s.dl.closeCmd(s.id), cmdTimeout); err != nil {
			d.log.Debug("close session at stop", "session", s.id, "err", err)
		}
	}
	if _, err := d.commandOn(ctx, ch, fmt.Sprintf("AT+QIDEACT=%d", pdp), 40*time.Second); err != nil {
		d.log.Debug("deactivate PDP context at stop", "err", err)
	}
	for _, s := range sessions {
		s.wait()
	}
	return ch.Close()
}

// channel returns the open channel, or an error when Open has not run.
func (d *Driver) channel() (*at.Channel, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		return nil, &sdk.ModemError{Op: "modem", Code: -1, Text: "not open: call Open first"}
	}
	return d.ch, nil
}

// exchange runs fn while holding the slot, so no other exchange reaches
// the modem meanwhile.
func (d *Driver) exchange(ctx context.Context, fn func(ctx context.Context) error) error {
	select {
	case d.slot <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the modem: %w", ctx.Err())
	}
	defer func() { <-d.slot }()
	return fn(ctx)
}

// command sends one command, bounded by timeout and ctx.
func (d *Driver) command(ctx context.Context, cmd string, timeout time.Duration, opts ...at.CommandOption) (*at.Response, error) {
	ch, err := d.channel()
	if err != nil {
		return nil, err
	}
	return d.commandOn(ctx, ch, cmd, timeout, opts...)
}

func (d *Driver) commandOn(ctx context.Context, ch *at.Channel, cmd string, timeout time.Duration, opts ...at.CommandOption) (*at.Response, error) {
	var resp *at.Response
	err := d.exchange(ctx, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var err error
		resp, err = ch.Command(cctx, cmd, opts...)
		return err
	})
	return resp, err
}

// lastError asks the modem for the code of its last TCP/IP or SSL error
// (AT+QIGETERROR), -1 when it does not say.
func (d *Driver) lastError(ctx context.Context) (int, string) {
	resp, err := d.command(ctx, "AT+QIGETERROR", cmdTimeout)
	if err != nil {
		return -1, ""
	}
	v, ok := atkit.Field(resp, "+QIGETERROR:")
	if !ok {
		return -1, ""
	}
	f := atkit.Fields(v)
	code, err := atoi(f[0])
	if err != nil {
		return -1, ""
	}
	return code, "+QIGETERROR: " + v
}

// sdkError maps an error of an exchange to the contract's types.
func (d *Driver) sdkError(op string, err error) error {
	d.mu.Lock()
	ch, port := d.ch, d.port
	d.mu.Unlock()
	return atkit.SDKError(op, err, ch, port)
}

// honour makes err wrap ctx.Err() once ctx has ended, as the contract asks
// of every method, while keeping the typed error for errors.As.
func honour(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil || errors.Is(err, ctx.Err()) {
		return err
	}
	return fmt.Errorf("%w: %w", err, ctx.Err())
}

// errRebooted ends waits that a modem reboot made pointless.
var errRebooted = errors.New("the modem rebooted")
