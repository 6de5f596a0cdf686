package modemsim

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// FaultKind names a fault the emulator can inject.
type FaultKind string

// The faults. Their effects are described in README.md; in short:
const (
	// FaultPeerClose closes session Session's TCP connection as if the
	// server had: +CCH_PEER_CLOSED: <id> (CLOSED in transparent mode);
	// on a Quectel model +QSSLURC: "closed",<id> or +QIURC: "closed",<id>.
	// Session PeerCloseAll closes every open session.
	FaultPeerClose FaultKind = "peer-close"
	// FaultNetworkLoss takes the network away for Duration (0: until
	// FaultNetworkRestore): open sessions end with +CCH_RECV_CLOSED:
	// <id>,9, opens fail with 17, registration shows searching.
	FaultNetworkLoss FaultKind = "network-loss"
	// FaultRegistrationDenied is a network loss in which the network
	// refuses the module: registration shows denied (<stat> 3) until
	// FaultNetworkRestore.
	FaultRegistrationDenied FaultKind = "registration-denied"
	// FaultNetworkRestore ends a network loss (or a denial).
	FaultNetworkRestore FaultKind = "network-restore"
	// FaultReboot resets the module, as AT+CRESET does.
	FaultReboot FaultKind = "reboot"
	// FaultGarbage writes Bytes random bytes to the host now.
	FaultGarbage FaultKind = "garbage"
	// FaultDropResponse executes the next command but never sends its
	// response (a prompt is still sent; the OK after the payload is not).
	FaultDropResponse FaultKind = "drop-response"
	// FaultDelayResponse holds the next command response back by Duration.
	FaultDelayResponse FaultKind = "delay-response"
	// FaultSIMBusy makes the SIM busy for Duration, then +CPIN: READY.
	FaultSIMBusy FaultKind = "sim-busy"
	// FaultClockJump moves the module's clock by Duration (negative: back);
	// see clock.go.
	FaultClockJump FaultKind = "clock-jump"
)

// PeerCloseAll is the Fault.Session of a peer close of every open session
// ("peer-close all").
const PeerCloseAll = -1

// maxGarbage bounds one garbage burst.
const maxGarbage = 1 << 20

// Fault is one fault request. Only the field its Kind uses matters.
type Fault struct {
	Kind     FaultKind
	Session  int           // FaultPeerClose: 0 or 1, or PeerCloseAll
	Duration time.Duration // FaultNetworkLoss (0: until restored), FaultDelayResponse, FaultSIMBusy, FaultClockJump (signed)
	Bytes    int           // FaultGarbage: 1..1048576
}

// String renders f in the control protocol's syntax, e.g.
// "network-loss 5s"; ParseFault reads it back.
func (f Fault) String() string {
	switch f.Kind {
	case FaultPeerClose:
		if f.Session == PeerCloseAll {
			return string(f.Kind) + " all"
		}
		return fmt.Sprintf("%s %d", f.Kind, f.Session)
	case FaultNetworkLoss:
		if f.Duration == 0 {
			return string(f.Kind)
		}
		return fmt.Sprintf("%s %s", f.Kind, f.Duration)
	case FaultDelayResponse, FaultSIMBusy, FaultClockJump:
		return fmt.Sprintf("%s %s", f.Kind, f.Duration)
	case FaultGarbage:
		return fmt.Sprintf("%s %d", f.Kind, f.Bytes)
	}
	return string(f.Kind)
}

// ParseFault parses the control protocol's fault syntax: "peer-close
// <id>|all", "network-loss [<duration>]", "network-restore", "reboot",
// "garbage <n>", "drop-response", "delay-response <duration>",
// "sim-busy <duration>", "clock-jump <duration>". Durations use Go syntax
// (5s, 250ms; clock-jump takes a sign: -3h). It fails naming the part that
// is wrong.
func ParseFault(s string) (Fault, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return Fault{}, errors.New("empty fault")
	}
	f := Fault{Kind: FaultKind(fields[0])}
	args := fields[1:]
	want := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("fault %s takes %d argument(s), got %d", f.Kind, n, len(args))
		}
		return nil
	}
	dur := func(a string) (time.Duration, error) {
		d, err := time.ParseDuration(a)
		if err != nil {
			return 0, fmt.Errorf("fault %s: bad duration %q: %w", f.Kind, a, err)
		}
		return d, nil
	}
	var err error
	switch f.Kind {
	case FaultPeerClose:
		if err = want(1); err == nil && args[0] == "all" {
			f.Session = PeerCloseAll
		} else if err == nil {
			if f.Session, err = strconv.Atoi(args[0]); err != nil {
				err = fmt.Errorf("fault peer-close: bad session %q", args[0])
			}
		}
	case FaultNetworkLoss:
		if len(args) > 1 {
			err = want(1)
		} else if len(args) == 1 {
			f.Duration, err = dur(args[0])
		}
	case FaultNetworkRestore, FaultReboot, FaultDropResponse, FaultRegistrationDenied:
		err = want(0)
	case FaultDelayResponse, FaultSIMBusy, FaultClockJump:
		if err = want(1); err == nil {
			f.Duration, err = dur(args[0])
		}
	case FaultGarbage:
		if err = want(1); err == nil {
			if f.Bytes, err = strconv.Atoi(args[0]); err != nil {
				err = fmt.Errorf("fault garbage: bad byte count %q", args[0])
			}
		}
	default:
		err = fmt.Errorf("unknown fault %q (known: peer-close, network-loss, registration-denied, network-restore, reboot, garbage, drop-response, delay-response, sim-busy, clock-jump)", f.Kind)
	}
	if err != nil {
		return Fault{}, err
	}
	return f, f.validate()
}

func (f Fault) validate() error {
	switch f.Kind {
	case FaultPeerClose:
		if f.Session != PeerCloseAll && (f.Session < 0 || f.Session > 1) {
			return fmt.Errorf("fault peer-close: session %d is not 0 or 1", f.Session)
		}
	case FaultNetworkLoss:
		if f.Duration < 0 {
			return fmt.Errorf("fault network-loss: negative duration %v", f.Duration)
		}
	case FaultDelayResponse, FaultSIMBusy:
		if f.Duration <= 0 {
			return fmt.Errorf("fault %s: duration %v must be positive", f.Kind, f.Duration)
		}
	case FaultClockJump:
		if f.Duration == 0 {
			return errors.New("fault clock-jump: a jump of 0 moves nothing")
		}
	case FaultGarbage:
		if f.Bytes < 1 || f.Bytes > maxGarbage {
			return fmt.Errorf("fault garbage: %d bytes is outside 1..%d", f.Bytes, maxGarbage)
		}
	case FaultNetworkRestore, FaultReboot, FaultDropResponse, FaultRegistrationDenied:
	default:
		return fmt.Errorf("unknown fault %q", f.Kind)
	}
	return nil
}

// Fault injects f now. It fails if f is malformed, if it does not apply
// (peer-close of a session that is not open, network-restore without a
// loss, a clock jump beyond what AT+CCLK can show) or if the modem is
// closed.
func (m *Modem) Fault(f Fault) error {
	if err := f.validate(); err != nil {
		return err
	}
	var err error
	if !m.call(func() { err = m.fault(f) }) {
		return errors.New("modemsim: modem is closed")
	}
	if err == nil {
		m.log.Info("fault injected", "modem", m.path, "fault", f.String())
	}
	return err
}

// fault applies f on the core.
func (m *Modem) fault(f Fault) error {
	switch f.Kind {
	case FaultPeerClose:
		if m.q != nil {
			return m.q.peerClose(m, f.Session)
		}
		if f.Session == PeerCloseAll {
			return m.peerCloseAll()
		}
		s := m.sessions[f.Session]
		if s.state != sessOpen && s.state != sessClosing {
			return fmt.Errorf("fault peer-close: session %d is not open", f.Session)
		}
		m.endSession(s, fmt.Sprintf("+CCH_PEER_CLOSED: %d", s.id))
	case FaultNetworkLoss:
		m.networkLoss(f.Duration)
	case FaultRegistrationDenied:
		m.st.netDenied = true
		m.networkLoss(0)
	case FaultNetworkRestore:
		if !m.st.netLost {
			return errors.New("fault network-restore: the network is not lost")
		}
		m.networkRestore()
	case FaultReboot:
		m.reboot()
	case FaultGarbage:
		b := make([]byte, f.Bytes)
		rand.Read(b)
		m.outQ = append([]outItem{{data: b}}, m.outQ...)
	case FaultDropResponse:
		m.dropNext = true
	case FaultDelayResponse:
		m.delayNext += f.Duration
	case FaultSIMBusy:
		m.startSIMBusy(f.Duration, false)
	case FaultClockJump:
		return m.clockJump(f.Duration)
	}
	return nil
}

// peerCloseAll closes every open CCH session as if its server had.
func (m *Modem) peerCloseAll() error {
	closed := false
	for _, s := range m.sessions {
		if s.state == sessOpen || s.state == sessClosing {
			m.endSession(s, fmt.Sprintf("+CCH_PEER_CLOSED: %d", s.id))
			closed = true
		}
	}
	if !closed {
		return errors.New("fault peer-close: no session is open")
	}
	return nil
}
