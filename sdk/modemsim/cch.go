package modemsim

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// sessionArg parses a <session_id> (0 or 1).
func (m *Modem) sessionArg(a atArg) (*session, bool) {
	id, ok := oneOf(a, 0, 1)
	if !ok {
		return nil, false
	}
	return m.sessions[id], true
}

// sessionArgs parses the parameters of a CCH set command whose first one is
// a <session_id>. It reports false on a syntax error, a session id out of
// range, or unless there are between lo and hi parameters.
func (m *Modem) sessionArgs(text string, lo, hi int) (*session, []atArg, bool) {
	args, ok := argsIn(text, lo, hi)
	if !ok {
		return nil, nil, false
	}
	s, ok := m.sessionArg(args[0])
	return s, args, ok
}

// cmdCCHSET is AT+CCHSET=<report_send_result>[,<recv_mode>], accepted only
// before AT+CCHSTART. An omitted <recv_mode> means 0 (push received data).
func cmdCCHSET(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add("+CCHSET: (0,1),(0,1)")
	case formRead:
		return r.add(fmt.Sprintf("+CCHSET: %d,%d", m.st.cchReport, m.st.cchRecvMode))
	case formSet:
		args, ok := argsIn(c.args, 1, 2)
		if !ok || m.st.cchStarted {
			return "ERROR"
		}
		report, ok := oneOf(args[0], 0, 1)
		mode := 0
		if ok && len(args) == 2 {
			mode, ok = oneOf(args[1], 0, 1)
		}
		if !ok {
			return "ERROR"
		}
		m.st.cchReport, m.st.cchRecvMode = report, mode
		return ""
	}
	return "ERROR"
}

// cmdCCHMODE is AT+CCHMODE=<mode> (0 normal, 1 transparent), accepted only
// before AT+CCHSTART.
func cmdCCHMODE(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add("+CCHMODE: (0,1)")
	case formRead:
		return r.add(fmt.Sprintf("+CCHMODE: %d", m.st.cchMode))
	case formSet:
		mode, ok := singleInt(c.args, 0, 1)
		if !ok || m.st.cchStarted {
			return "ERROR"
		}
		m.st.cchMode = mode
		return ""
	}
	return "ERROR"
}

// cmdCCHSTART starts the SSL service: OK, then +CCHSTART: 0, or
// +CCHSTART: 17 when the module has no network. Starting twice is an
// ERROR.
func cmdCCHSTART(m *Modem, c atCommand, r *reply) string {
	if c.form != formExec || m.st.cchStarted {
		return "ERROR"
	}
	code := cchOK
	if m.registered() {
		m.st.cchStarted = true
	} else {
		code = cchNoNet
	}
	r.after = append(r.after, func() { m.urc(fmt.Sprintf("+CCHSTART: %d", code)) })
	return ""
}

// cmdCCHSTOP stops the SSL service: open sessions are dropped without
// their own URCs, then OK and +CCHSTOP: 0.
func cmdCCHSTOP(m *Modem, c atCommand, r *reply) string {
	if c.form != formExec || !m.st.cchStarted {
		return "ERROR"
	}
	for i, s := range m.sessions {
		if s.run != nil {
			s.run.abort()
		}
		m.sessions[i] = newSession(i)
	}
	if m.mode == modeData {
		m.mode = modeCommand
	}
	m.transp = nil
	m.st.cchStarted = false
	r.after = append(r.after, func() { m.urc("+CCHSTOP: 0") })
	return ""
}

// cmdCCHADDR reports the PDP address once the service is started.
func cmdCCHADDR(m *Modem, c atCommand, r *reply) string {
	if c.form != formExec || !m.st.cchStarted {
		return "ERROR"
	}
	return r.add("+CCHADDR: " + m.ipAddr)
}

// idleForConfig says whether a session accepts AT+CCHSSLCFG/AT+CCHCFG:
// after AT+CCHSTART and before AT+CCHOPEN.
func (m *Modem) idleForConfig(s *session) bool {
	return m.st.cchStarted && s.state == sessIdle
}

// cmdCCHSSLCFG is AT+CCHSSLCFG=<session_id>,<ssl_ctx_index>.
func cmdCCHSSLCFG(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add("+CCHSSLCFG: (0,1),(0-9)")
	case formRead:
		for _, s := range m.sessions {
			ctx := ""
			if s.sslCtx >= 0 {
				ctx = fmt.Sprint(s.sslCtx)
			}
			r.add(fmt.Sprintf("+CCHSSLCFG: %d,%s", s.id, ctx))
		}
		return ""
	case formSet:
		s, args, ok := m.sessionArgs(c.args, 2, 2)
		if !ok || !m.idleForConfig(s) {
			return "ERROR"
		}
		idx, ok := intIn(args[1], 0, 9)
		if !ok {
			return "ERROR"
		}
		s.sslCtx = idx
		return ""
	}
	return "ERROR"
}

// cmdCCHCFG is AT+CCHCFG="sendtimeout"|"sslctx",<session_id>,<value>.
func cmdCCHCFG(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add(`+CCHCFG: "sendtimeout",(0-1),(60-150)`, `+CCHCFG: "sslctx",(0-1),(0-9)`)
	case formRead:
		for _, s := range m.sessions {
			r.add(fmt.Sprintf("+CCHCFG: %d,%d,%d", s.id, s.sendTimeout, s.sslIndex()))
		}
		return ""
	case formSet:
		return m.setCCHCFG(c.args)
	}
	return "ERROR"
}

// setCCHCFG runs AT+CCHCFG=<args>; a value out of range changes nothing.
func (m *Modem) setCCHCFG(argText string) string {
	args, ok := argsIn(argText, 3, 3)
	if !ok || !args[0].quoted {
		return "ERROR"
	}
	s, ok := m.sessionArg(args[1])
	if !ok || !m.idleForConfig(s) {
		return "ERROR"
	}
	var v int
	switch strings.ToLower(args[0].text) {
	case "sendtimeout":
		if v, ok = intIn(args[2], 60, 150); ok {
			s.sendTimeout = v
		}
	case "sslctx":
		if v, ok = intIn(args[2], 0, 9); ok {
			s.sslCtx = v
		}
	default:
		ok = false
	}
	if !ok {
		return "ERROR"
	}
	return ""
}

// cmdCCHOPEN is AT+CCHOPEN=<session_id>,"<host>",<port>[,<client_type>
// [,<bind_port>]]: OK at once, +CCHOPEN: <id>,<err> when the dial and
// handshake finish. In transparent mode (session 0 only) the answer is
// CONNECT 115200 or CONNECT FAIL instead.
func cmdCCHOPEN(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add(`+CCHOPEN: (0,1),"ADDRESS",(1-65535)[,(1-2)[,(1-65535)]]`)
	case formRead:
		for _, s := range m.sessions {
			if s.state != sessOpen {
				r.add(fmt.Sprintf("+CCHOPEN: %d", s.id))
				continue
			}
			bind := ""
			if s.bindPort > 0 {
				bind = fmt.Sprint(s.bindPort)
			}
			r.add(fmt.Sprintf(`+CCHOPEN: %d,"%s",%d,%d,%s`, s.id, s.host, s.port, s.clientType, bind))
		}
		return ""
	case formSet:
		return m.setCCHOPEN(c.args, r)
	}
	return "ERROR"
}

// setCCHOPEN runs AT+CCHOPEN=<args>: it checks the parameters and the
// session, and leaves the dial to startOpen once the response is queued.
func (m *Modem) setCCHOPEN(argText string, r *reply) string {
	s, args, ok := m.sessionArgs(argText, 3, 5)
	if !ok || !m.st.cchStarted || s.state != sessIdle || s.closeURC != "" {
		return "ERROR"
	}
	host, hostOK := quotedString(args[1], 1, 256)
	port, portOK := intIn(args[2], 1, 65535)
	clientType, typeOK := optionalInt(args, 3, 1, 2, 2)
	bindPort, bindOK := optionalInt(args, 4, 1, 65535, 0)
	if !hostOK || !portOK || !typeOK || !bindOK {
		return "ERROR"
	}
	transparent := m.st.cchMode == 1
	if transparent && (s.id != 0 || m.transp != nil) {
		return "ERROR"
	}
	s.state = sessOpening
	s.host, s.port, s.clientType, s.bindPort = host, port, clientType, bindPort
	s.recvMode = m.st.cchRecvMode
	s.transparent = transparent
	s.cache = nil
	sc := m.st.ssl[s.sslIndex()]
	sr := newSessionRun(m.ctx, m, s.id, time.Duration(s.sendTimeout)*time.Second)
	s.run = sr
	if transparent {
		// No OK: the result code is CONNECT or CONNECT FAIL.
		r.final = ""
	}
	r.after = append(r.after, func() { m.startOpen(s, sr, sc) })
	return ""
}

// startOpen checks what can be checked at once (network, certificates)
// and starts the session goroutine.
func (m *Modem) startOpen(s *session, sr *sessionRun, sc sslContext) {
	if s.run != sr {
		return
	}
	if !m.registered() {
		m.openFailed(sr, cchNoNet)
		return
	}
	var mat tlsMaterial
	if s.clientType == 2 {
		var err error
		if mat, err = m.loadMaterial(sc); err != nil {
			m.log.Info("session open refused", "modem", m.path, "session", s.id, "op", "open", "code", cchNoCerts, "err", err)
			m.openFailed(sr, cchNoCerts)
			return
		}
	}
	p := dialParams{host: s.host, port: s.port, clientType: s.clientType, ssl: sc, mat: mat, rtcAtOpen: m.rtcNow(), openedAt: time.Now()}
	m.wg.Add(1)
	go m.runSession(sr, p)
}

// cmdCCHSEND is AT+CCHSEND=<session_id>,<len>: prompt, exactly <len>
// bytes, OK; +CCHSEND: <id>,<err> follows once they are on the socket if
// reports are on. When the send buffer is full the prompt waits.
func cmdCCHSEND(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add(fmt.Sprintf("+CCHSEND: (0,1),(1-%d)", m.prof.maxSend))
	case formRead:
		return r.add(fmt.Sprintf("+CCHSEND: 0,%d,1,%d", m.sessions[0].txPending, m.sessions[1].txPending))
	case formSet:
		s, args, ok := m.sessionArgs(c.args, 2, 2)
		if !ok || !m.st.cchStarted || s.state != sessOpen || s.transparent {
			return "ERROR"
		}
		n, ok := intIn(args[1], 1, m.prof.maxSend)
		if !ok {
			return "ERROR"
		}
		if s.txPending+n > sendBufferLimit {
			r.pending = &pendingSend{s: s, n: n}
		} else {
			r.prompt = m.sendPayload(s, n)
		}
		return ""
	}
	return "ERROR"
}

// sendPayload is the payload stage of AT+CCHSEND.
func (m *Modem) sendPayload(s *session, n int) *payloadWait {
	sr := s.run
	return &payloadWait{need: n, done: func(data []byte) reply {
		if s.run != sr || s.state != sessOpen {
			return reply{final: "ERROR"}
		}
		s.txPending += n
		sr.tx.push(txItem{data: data})
		return reply{final: "OK"}
	}}
}

// servePendingSend gives a waiting AT+CCHSEND its prompt once the buffer
// has room, or ERROR if the session went away meanwhile.
func (m *Modem) servePendingSend() {
	p := m.pending
	s := p.s
	switch {
	case s.state != sessOpen || s.run == nil:
		m.pending = nil
		m.respond(reply{final: "ERROR"}, p.drop, p.delay)
	case s.txPending+p.n <= sendBufferLimit:
		m.pending = nil
		m.respond(reply{prompt: m.sendPayload(s, p.n)}, p.drop, p.delay)
	default:
		return
	}
	m.processInput()
}

// cmdCCHRECV is the manual receive mode's pull: AT+CCHRECV? reports the
// cached lengths; AT+CCHRECV=<id>[,<max_recv_len>] answers OK, then the
// data frames, then +CCHRECV: <id>,0.
func cmdCCHRECV(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add("+CCHRECV: (0,1),(0-2048)")
	case formRead:
		lens := [2]int{}
		for i, s := range m.sessions {
			if s.recvMode == 1 && !s.transparent {
				lens[i] = len(s.cache)
			}
		}
		return r.add(fmt.Sprintf("+CCHRECV: LEN,%d,%d", lens[0], lens[1]))
	case formSet:
		return m.setCCHRECV(c.args, r)
	}
	return "ERROR"
}

// setCCHRECV runs AT+CCHRECV=<args>: the cached bytes, up to the limit, go
// out in frames once the OK is queued.
func (m *Modem) setCCHRECV(argText string, r *reply) string {
	s, args, ok := m.sessionArgs(argText, 1, 2)
	if !ok {
		return "ERROR"
	}
	limit := -1
	if len(args) == 2 {
		if limit, ok = intIn(args[1], 0, 2048); !ok {
			return "ERROR"
		}
		if limit == 0 {
			limit = 2048
		}
	}
	if !m.st.cchStarted || s.recvMode != 1 || s.transparent || len(s.cache) == 0 {
		r.add(fmt.Sprintf("+CCHRECV: %d,%d", s.id, cchStateError))
		return "ERROR"
	}
	n := len(s.cache)
	if limit >= 0 {
		n = min(n, limit)
	}
	data := bytes.Clone(s.cache[:n])
	s.takeCache(n)
	m.counters.payloadRx.Add(int64(n))
	r.after = append(r.after, func() {
		for len(data) > 0 {
			k := min(len(data), frameMax)
			frame := fmt.Appendf(nil, "\r\n+CCHRECV: DATA,%d,%d\r\n", s.id, k)
			m.send(append(frame, data[:k]...), 0, nil, nil)
			data = data[k:]
		}
		m.urc(fmt.Sprintf("+CCHRECV: %d,%d", s.id, cchOK))
	})
	return ""
}

// cmdCCHCLOSE is AT+CCHCLOSE=<session_id>: OK, then +CCHCLOSE: <id>,0 once
// queued data is flushed and the connection closed (CLOSED in transparent
// mode). A session that is not open or opening answers ERROR.
func cmdCCHCLOSE(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add("+CCHCLOSE: (0,1)")
	case formSet:
		s, _, ok := m.sessionArgs(c.args, 1, 1)
		if !ok || !m.st.cchStarted {
			return "ERROR"
		}
		return m.closeSession(s, r)
	}
	return "ERROR"
}

// closeSession runs AT+CCHCLOSE on s: an open that is still running is
// abandoned at once, an open session flushes its queued sends before it
// closes; a session in any other state answers ERROR.
func (m *Modem) closeSession(s *session, r *reply) string {
	switch s.state {
	case sessOpening:
		s.toIdle()
		transparent := s.transparent
		s.transparent = false
		r.after = append(r.after, func() {
			if transparent {
				m.urc("CLOSED")
			} else {
				m.urc(fmt.Sprintf("+CCHCLOSE: %d,%d", s.id, cchOK))
			}
		})
	case sessOpen:
		s.state = sessClosing
		s.cache = nil
		s.run.tx.push(txItem{close: true})
	default:
		return "ERROR"
	}
	return ""
}
