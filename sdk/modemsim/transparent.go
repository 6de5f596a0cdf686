package modemsim

import (
	"bytes"
	"time"
)

// Escape sequence timing (M3 §2.2.9): at least guardTime of silence before
// and after "+++", and less than plusGap between the '+' characters.
const (
	guardTime = time.Second
	plusGap   = 900 * time.Millisecond
)

// transparentState is the transparent-mode session 0 while it exists.
type transparentState struct {
	s         *session
	online    bool      // data mode; false after "+++" until ATO
	lastIn    time.Time // arrival of the last host byte in data mode
	lastPlus  time.Time
	plusCount int // '+' characters held back as a possible escape
	inEpoch   int // bumps on every input chunk, to expire guard timers
}

// enterData switches the line to data mode for a freshly connected
// transparent session.
func (m *Modem) enterData(s *session) {
	m.transp = &transparentState{s: s, online: true, lastIn: time.Now()}
	m.urc("CONNECT 115200")
	m.mode = modeData
}

// leaveData ends a transparent session: CLOSED, back to command mode.
func (m *Modem) leaveData(s *session) {
	s.transparent = false
	s.closeURC = ""
	s.cache = nil
	m.transp = nil
	if m.mode == modeData {
		m.mode = modeCommand
	}
	m.urc("CLOSED")
}

// inputBlocked says whether the core must leave host bytes in the pty: a
// prompt waits for buffer room, or transparent data has no room to go.
func (m *Modem) inputBlocked() bool {
	if m.pending != nil {
		return true
	}
	if m.mode == modeData && m.transp != nil && m.transp.s.txPending >= sendBufferLimit {
		return true
	}
	return false
}

// transparentInput forwards host bytes to the socket, holding back a
// possible "+++" escape until its guard time has passed.
func (m *Modem) transparentInput() {
	t := m.transp
	s := t.s
	now := time.Now()
	t.inEpoch++
	room := sendBufferLimit - s.txPending
	var out []byte
	i := 0
	for ; i < len(m.inBuf) && len(out) < room; i++ {
		b := m.inBuf[i]
		if b == '+' && t.plusCount < 3 &&
			((t.plusCount == 0 && now.Sub(t.lastIn) >= guardTime) ||
				(t.plusCount > 0 && now.Sub(t.lastPlus) < plusGap)) {
			t.plusCount++
			t.lastPlus = now
			continue
		}
		if t.plusCount > 0 {
			out = append(out, bytes.Repeat([]byte{'+'}, t.plusCount)...)
			t.plusCount = 0
		}
		out = append(out, b)
		t.lastIn = now
	}
	m.trace.record("host>modem", m.inBuf[:i])
	m.inBuf = m.inBuf[i:]
	if len(out) > 0 && s.run != nil && s.state == sessOpen {
		s.txPending += len(out)
		s.run.tx.push(txItem{data: out})
	}
	if t.plusCount > 0 {
		epoch := t.inEpoch
		m.after(guardTime, func() { m.escapeCheck(t, epoch) })
	}
}

// escapeCheck runs a guard time after held '+' characters: three of them
// and silence mean the escape (back to command mode, OK); fewer are data.
func (m *Modem) escapeCheck(t *transparentState, epoch int) {
	if m.transp != t || t.inEpoch != epoch || t.plusCount == 0 || !t.online {
		return
	}
	if t.plusCount == 3 {
		t.plusCount = 0
		t.online = false
		m.mode = modeCommand
		m.send([]byte("\r\nOK\r\n"), m.cfg.CommandLatency, nil, nil)
		return
	}
	data := bytes.Repeat([]byte{'+'}, t.plusCount)
	t.plusCount = 0
	t.lastIn = time.Now()
	if s := t.s; s.run != nil && s.state == sessOpen {
		s.txPending += len(data)
		s.run.tx.push(txItem{data: data})
	}
}

// transparentFrame is the next chunk of received data for the host in data
// mode, raw; once the cache is drained after a close, CLOSED follows.
func (m *Modem) transparentFrame() (outItem, bool) {
	t := m.transp
	if t == nil || !t.online {
		return outItem{}, false
	}
	s := t.s
	if len(s.cache) == 0 {
		if s.closeURC != "" {
			m.leaveData(s)
			it := m.outQ[0]
			m.outQ = m.outQ[1:]
			return it, true
		}
		return outItem{}, false
	}
	n := min(len(s.cache), frameMax)
	data := bytes.Clone(s.cache[:n])
	s.takeCache(n)
	m.counters.payloadRx.Add(int64(n))
	return outItem{data: data}, true
}

// cmdOnline is ATO: back to data mode on the transparent session.
func cmdOnline(m *Modem, c atCommand, r *reply) string {
	if c.form != formExec || (c.args != "" && c.args != "0") {
		return "ERROR"
	}
	t := m.transp
	if t == nil || t.s.state != sessOpen {
		if t == nil {
			return "ERROR"
		}
		return "NO CARRIER"
	}
	r.final = ""
	r.after = append(r.after, func() {
		m.urc("CONNECT 115200")
		t.online = true
		t.lastIn = time.Now()
		m.mode = modeData
	})
	return ""
}
