package plugintest

import (
	"strings"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/modemsim"
)

// modemUnderTest is the modem a check runs against, as the checks need it:
// its port, a reboot on demand, and what reached it, counted in neutral
// terms. The checks never name a vendor's command; this adapter does.
type modemUnderTest interface {
	// Path is the modem's port, for ModemConfig.Port.
	Path() string
	// Reboot makes the modem reboot, as a power glitch would.
	Reboot() error
	// Commands counts every command the modem received.
	Commands() int64
	// CertificateWrites counts the commands that wrote a file into the
	// modem's certificate store.
	CertificateWrites() int64
	// RotationOrder finds, in what the modem received since the last
	// ResetTrace, where the TLS profile was last pointed at a client key
	// and where the first certificate file was deleted (-1 when never),
	// so a check can tell that a rotation switched before it deleted.
	RotationOrder() (lastKeyConfig, firstDelete int)
	// ResetTrace forgets what the modem received so far, for RotationOrder.
	ResetTrace()
}

// certDialect names the commands of one AT dialect that move certificate
// files, so the neutral counters above can be read off an emulator's
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
// a TLS profile (AT+CSSLCFG="clientkey", AT+QSSLCFG="clientkey"). The
// transcript quotes each chunk Go-style, so the bare word is what matches.
const keyConfigMark = "clientkey"

// emulated is a modemsim personality as the modem under test.
type emulated struct {
	m     *modemsim.Modem
	trace *testutil.SyncBuffer // the emulator's transcript
}

func (e *emulated) Path() string { return e.m.Path() }

func (e *emulated) Reboot() error { return e.m.Fault(modemsim.Fault{Kind: modemsim.FaultReboot}) }

func (e *emulated) Commands() int64 {
	var n int64
	for _, c := range e.m.Counters().Commands {
		n += c
	}
	return n
}

func (e *emulated) CertificateWrites() int64 {
	cmds := e.m.Counters().Commands
	var n int64
	for _, d := range certDialects {
		n += cmds[d.write]
	}
	return n
}

func (e *emulated) RotationOrder() (lastKeyConfig, firstDelete int) {
	tr := e.trace.String()
	firstDelete = -1
	for _, d := range certDialects {
		if i := strings.Index(tr, d.delete); i >= 0 && (firstDelete < 0 || i < firstDelete) {
			firstDelete = i
		}
	}
	return strings.LastIndex(tr, keyConfigMark), firstDelete
}

func (e *emulated) ResetTrace() { e.trace.Reset() }
