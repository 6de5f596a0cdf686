package conformance

import (
	"bytes"
	"strings"
	"sync"

	"github.com/cellgate/cellgate/sdk/modemsim"
)

// Modem is the modem under test, as every check needs it: the port the
// plugin opens. Close releases it (an emulator stops; a real port is left
// as it is). A modem may also be a FaultInjector, a CommandCounter and a
// RadioController; the checks that need those are not applicable to one
// that is not (the status check then checks less, and says so).
type Modem interface {
	// Port is the modem's device, for sdk.ModemConfig.Port.
	Port() string
	// Close releases the modem.
	Close() error
}

// FaultInjector is a modem under test that can be made to fail on demand.
type FaultInjector interface {
	// Reboot makes the modem reboot, as a power glitch would.
	Reboot() error
}

// CommandCounter is a modem under test that counts what reached it, in
// terms that hold for any AT dialect: the checks never name a vendor's
// command, the modem's adapter does.
type CommandCounter interface {
	// Commands counts every command the modem received.
	Commands() int64
	// CertificateWrites counts the commands that wrote a file into the
	// modem's certificate store.
	CertificateWrites() int64
	// RotationOrder finds, among the commands received since the last
	// ResetTrace, the position of the last one that pointed the TLS
	// profile at a client key and of the first one that deleted a
	// certificate file (-1 when none), so a check can tell that a rotation
	// switched the profile before it deleted the old files.
	RotationOrder() (lastKeyConfig, firstDelete int)
	// ResetTrace forgets the commands received so far, for RotationOrder.
	ResetTrace()
}

// certDialect names the commands of one AT dialect that move certificate
// files, so the neutral counters can be read off an emulator's
// per-command counts and transcript.
type certDialect struct {
	write  string // writes a file into the certificate store
	delete string // deletes one
}

// certDialects are the dialects the emulator speaks. A personality
// receives one dialect's commands only, so summing over all is exact.
var certDialects = []certDialect{
	{write: "AT+CCERTDOWN", delete: "AT+CCERTDELE"}, // SIMCom
	{write: "AT+QFUPL", delete: "AT+QFDEL"},         // Quectel
}

// keyConfigMark is how every dialect above names the client key setting of
// a TLS profile (AT+CSSLCFG="clientkey", AT+QSSLCFG="clientkey").
const keyConfigMark = "clientkey"

// Emulator is an sdk/modemsim personality as the modem under test: a real
// pseudo-terminal speaking the model's AT dialect, with reboots on demand
// and counted commands.
type Emulator struct {
	m     *modemsim.Modem
	trace *traceWatcher
}

// StartEmulator starts an emulated modem of model (modemsim.Models()),
// its serial line paced to baud (0 or less: unthrottled).
func StartEmulator(model string, baud int) (*Emulator, error) {
	if baud <= 0 {
		baud = -1
	}
	tw := &traceWatcher{lastKey: -1, firstDelete: -1}
	m, err := modemsim.Start(modemsim.Config{Model: model, Baud: baud, Trace: tw})
	if err != nil {
		return nil, err
	}
	return &Emulator{m: m, trace: tw}, nil
}

// Port is the emulator's pseudo-terminal.
func (e *Emulator) Port() string { return e.m.Path() }

// Close stops the emulator and removes its pseudo-terminal.
func (e *Emulator) Close() error { return e.m.Close() }

// Reboot reboots the emulated modem.
func (e *Emulator) Reboot() error { return e.m.Fault(modemsim.Fault{Kind: modemsim.FaultReboot}) }

// SetSignal makes the emulated cell's signal rssi,ber (+CSQ).
func (e *Emulator) SetSignal(rssi, ber int) error { return e.m.SetSignal(rssi, ber) }

// DenyRegistration makes the emulated network deny the modem's
// registration (+CREG: stat 3); open sessions end.
func (e *Emulator) DenyRegistration() error {
	return e.m.Fault(modemsim.Fault{Kind: modemsim.FaultRegistrationDenied})
}

// Commands counts every command the emulator received.
func (e *Emulator) Commands() int64 {
	var n int64
	for _, c := range e.m.Counters().Commands {
		n += c
	}
	return n
}

// CertificateWrites counts the commands that stored a certificate file.
func (e *Emulator) CertificateWrites() int64 {
	cmds := e.m.Counters().Commands
	var n int64
	for _, d := range certDialects {
		n += cmds[d.write]
	}
	return n
}

// RotationOrder reads the order of the rotation's commands off the
// emulator's transcript.
func (e *Emulator) RotationOrder() (lastKeyConfig, firstDelete int) { return e.trace.order() }

// ResetTrace forgets the transcript so far.
func (e *Emulator) ResetTrace() { e.trace.reset() }

// traceWatcher reads the emulator's transcript as it is written and keeps
// only what RotationOrder needs: the line numbers of the last client-key
// setting and of the first certificate deletion since the last reset.
type traceWatcher struct {
	mu          sync.Mutex
	partial     []byte // an unterminated last line
	line        int
	lastKey     int
	firstDelete int
}

func (w *traceWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.see(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
}

func (w *traceWatcher) see(line string) {
	w.line++
	if strings.Contains(line, keyConfigMark) {
		w.lastKey = w.line
	}
	for _, d := range certDialects {
		if strings.Contains(line, d.delete) && w.firstDelete < 0 {
			w.firstDelete = w.line
		}
	}
}

func (w *traceWatcher) order() (int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastKey, w.firstDelete
}

func (w *traceWatcher) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastKey, w.firstDelete = -1, -1
}

// RealPort is a modem on a real serial port: the plugin opens path. It
// can neither be rebooted on demand nor count commands, so the checks that
// need that are not applicable to it.
type RealPort string

// Port is the device path.
func (r RealPort) Port() string { return string(r) }

// Close leaves the port as it is.
func (r RealPort) Close() error { return nil }
