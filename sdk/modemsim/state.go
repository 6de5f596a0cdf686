package modemsim

import (
	"fmt"
	"time"
)

// modemState is the module's settings and conditions, owned by the core.
type modemState struct {
	echo                  bool
	cmee                  int
	cregN, cgregN, ceregN int
	pdp                   map[int]*pdpContext // non-volatile: survives reboot
	rtcBase               time.Time           // RTC instant (UTC) at rtcSetAt
	rtcSetAt              time.Time           // Config.Clock reading when rtcBase was set
	rtcTZ                 int                 // quarter hours east of UTC
	simBusy               bool
	netLost               bool // an environment condition: survives reboot
	netDenied             bool // with netLost: the network refuses registration
	ssl                   [10]sslContext
	cchReport             int
	cchRecvMode           int
	cchMode               int
	cchStarted            bool
}

// pdpContext is one AT+CGDCONT definition.
type pdpContext struct {
	typ, apn, addr                    string
	dcomp, hcomp, ipv4Ctrl, emergency int
	wantActive                        bool // what AT+CGACT last asked for
}

// rtcEpoch is where an unsynchronised SIMCom RTC starts: AT+CCLK? answers
// "80/01/06,00:00:00+00" after boot.
var rtcEpoch = time.Date(1980, 1, 6, 0, 0, 0, 0, time.UTC)

// defaultState is the module right after power-up. The SIM7600 factory
// default of AT+CMEE is 2 (AT&V on a SIM7600G-H shows "+CMEE: 2").
func defaultState(now time.Time) modemState {
	st := modemState{
		echo:     true,
		cmee:     2,
		rtcBase:  rtcEpoch,
		rtcSetAt: now,
	}
	for i := range st.ssl {
		st.ssl[i] = defaultSSLContext()
	}
	return st
}

func defaultPDP() map[int]*pdpContext {
	return map[int]*pdpContext{
		1: {typ: "IP", addr: "0.0.0.0", wantActive: true},
	}
}

// powerOnState is the module's state right after power-up, with the
// personality's AT+CMEE default.
func (m *Modem) powerOnState() modemState {
	st := defaultState(m.clock())
	st.cmee = m.prof.cmeeDefault
	if m.cfg.NetworkTime {
		st.rtcBase = st.rtcSetAt.UTC()
	}
	return st
}

// registered says whether the module is attached to the (emulated) network.
func (m *Modem) registered() bool { return !m.st.simBusy && !m.st.netLost }

// regStat is the <stat> of +CREG/+CGREG/+CEREG: 1 registered (home), 2 not
// registered but searching (network lost), 3 registration denied, 0 not
// registered and not searching (SIM not ready yet).
func (m *Modem) regStat() int {
	switch {
	case m.st.simBusy:
		return 0
	case m.st.netLost && m.st.netDenied:
		return 3
	case m.st.netLost:
		return 2
	default:
		return 1
	}
}

// Location values shown with <n>=2; fixed, like a module that never moves.
const (
	emuLAC  = `"1A2B"`
	emuCell = `"01C2D3E4"`
)

// regLine is the read answer of AT+CREG?/AT+CGREG?/AT+CEREG?.
func (m *Modem) regLine(cmd string, n int) string {
	stat := m.regStat()
	s := fmt.Sprintf("+%s: %d,%d", cmd, n, stat)
	if n == 2 && stat == 1 {
		s += "," + emuLAC + "," + emuCell
		if cmd == "CEREG" {
			s += fmt.Sprintf(",%d", m.prof.lteAcT)
		}
	}
	return s
}

// setRegistration changes the conditions behind registration and prints
// the +CREG/+CGREG/+CEREG URCs the host enabled with <n> >= 1.
func (m *Modem) setRegistration(simBusy, netLost bool) {
	old := m.regStat()
	m.st.simBusy, m.st.netLost = simBusy, netLost
	stat := m.regStat()
	if stat == old {
		return
	}
	for _, r := range []struct {
		cmd string
		n   int
	}{{"CREG", m.st.cregN}, {"CGREG", m.st.cgregN}, {"CEREG", m.st.ceregN}} {
		switch {
		case r.n == 1 || (r.n == 2 && stat != 1):
			m.urc(fmt.Sprintf("+%s: %d", r.cmd, stat))
		case r.n == 2:
			s := fmt.Sprintf("+%s: %d,%s,%s", r.cmd, stat, emuLAC, emuCell)
			if r.cmd == "CEREG" {
				s += fmt.Sprintf(",%d", m.prof.lteAcT)
			}
			m.urc(s)
		}
	}
}

// rtcNow is the module's clock, running since it was last set.
func (m *Modem) rtcNow() time.Time {
	return m.st.rtcBase.Add(m.clock().Sub(m.st.rtcSetAt))
}

// boot finishes a power-up: RDY (when announced), then the SIM busy window
// if configured, then +CPIN: READY, SMS DONE and PB DONE (the
// personality's boot and SIM-ready URCs).
func (m *Modem) boot(announce bool) {
	if announce {
		m.urcs(m.prof.bootURCs)
	}
	if m.cfg.SIMBusy > 0 {
		m.startSIMBusy(m.cfg.SIMBusy, true)
		return
	}
	if announce {
		m.urcs(m.prof.simReadyURCs)
	}
}

// urcs queues each text as a URC, in order.
func (m *Modem) urcs(texts []string) {
	for _, t := range texts {
		m.urc(t)
	}
}

// startSIMBusy makes SIM-dependent commands answer "SIM busy" for d. At the
// end the module prints +CPIN: READY, and after a boot SMS DONE and PB DONE.
func (m *Modem) startSIMBusy(d time.Duration, boot bool) {
	m.simEpoch++
	epoch := m.simEpoch
	m.setRegistration(true, m.st.netLost)
	m.failSessionsForNetwork()
	m.after(d, func() {
		if m.simEpoch != epoch {
			return
		}
		m.setRegistration(false, m.st.netLost)
		if boot {
			m.urcs(m.prof.simReadyURCs)
		} else {
			m.urcs(m.prof.simReadyURCs[:1])
		}
	})
}

// networkLoss takes the network away for d (0: until restored): open
// sessions end with +CCH_RECV_CLOSED: <id>,9, opens in progress fail with
// +CCHOPEN: <id>,17, registration shows searching.
func (m *Modem) networkLoss(d time.Duration) {
	m.netEpoch++
	epoch := m.netEpoch
	m.setRegistration(m.st.simBusy, true)
	m.failSessionsForNetwork()
	if d > 0 {
		m.after(d, func() {
			if m.netEpoch == epoch {
				m.networkRestore()
			}
		})
	}
}

// networkRestore gives the network back.
func (m *Modem) networkRestore() {
	m.netEpoch++
	m.st.netDenied = false
	m.setRegistration(m.st.simBusy, false)
}

// failSessionsForNetwork ends every session because the module has no
// network: opening ones fail with 17 (no network), open ones report 9
// (network error).
func (m *Modem) failSessionsForNetwork() {
	for _, s := range m.sessions {
		switch s.state {
		case sessOpening:
			m.openFailed(s.run, cchNoNet)
		case sessOpen, sessClosing:
			m.endSession(s, fmt.Sprintf("+CCH_RECV_CLOSED: %d,%d", s.id, cchNetworkError))
		}
	}
	if m.q != nil {
		m.q.networkLost(m)
	}
}

// reboot resets the module: sessions vanish without a word, pending output
// and input are discarded, volatile settings return to their defaults,
// echo comes back on, and after RebootDelay the boot URCs follow.
// Certificates (flash), PDP definitions (NV) and the network condition
// (the world outside) survive.
func (m *Modem) reboot() {
	m.counters.reboots.Add(1)
	m.log.Info("modem rebooting", "modem", m.path)
	m.bootEpoch++
	epoch := m.bootEpoch
	for i, s := range m.sessions {
		if s.run != nil {
			s.run.abort()
		}
		m.sessions[i] = newSession(i)
	}
	m.transp = nil
	m.outQ = nil
	m.inBuf = nil
	m.line = nil
	m.payload = nil
	m.pending = nil
	m.dropNext, m.delayNext = false, 0
	m.mode = modeOff
	pdp, netLost, netDenied := m.st.pdp, m.st.netLost, m.st.netDenied
	m.st = m.powerOnState()
	m.st.pdp, m.st.netLost, m.st.netDenied = pdp, netLost, netDenied
	if m.q != nil {
		m.q.reboot()
	}
	m.simEpoch++ // a SIM busy window of the previous life ends silently
	finish := func() {
		if m.bootEpoch != epoch {
			return
		}
		m.mode = modeCommand
		m.boot(true)
	}
	if m.cfg.RebootDelay > 0 {
		m.after(m.cfg.RebootDelay, finish)
	} else {
		finish()
	}
}
