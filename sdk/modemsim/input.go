package modemsim

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// reply is what executing a command line produced.
type reply struct {
	lines      []string
	traceLines []string // when set, the transcript shows these instead of lines
	final      string   // "OK", "ERROR", "+CME ERROR: …"; "" when a prompt follows
	prompt     *payloadWait
	pending    *pendingSend
	after      []func() // run once the response is queued: deferred URCs, dials
	onWritten  func()   // run once the response has been written (AT+CRESET)
}

// handler executes one command. It returns "" on success or the final
// result code that ends the command line.
type handler func(m *Modem, c atCommand, r *reply) string

// handlers maps command names (upper case, with their '+') to handlers.
var handlers map[string]handler

func init() {
	handlers = map[string]handler{
		"E": cmdEcho, "I": cmdInfo, "O": cmdOnline, "V": cmdVerbose, "Z": cmdReset, "&F": cmdReset,
		"+CMEE": cmdCMEE, "+CGMI": cmdCGMI, "+CGMM": cmdCGMM, "+CGMR": cmdCGMR,
		"+CGSN": cmdCGSN, "+CICCID": cmdCICCID, "+CPIN": cmdCPIN, "+CSQ": cmdCSQ,
		"+CREG": cmdReg, "+CGREG": cmdReg, "+CEREG": cmdReg,
		"+CGDCONT": cmdCGDCONT, "+CGACT": cmdCGACT, "+CGATT": cmdCGATT,
		"+CCLK": cmdCCLK, "+CPSI": cmdCPSI, "+CRESET": cmdCRESET,
		"+CCERTDOWN": cmdCCERTDOWN, "+CCERTLIST": cmdCCERTLIST, "+CCERTDELE": cmdCCERTDELE,
		"+CSSLCFG": cmdCSSLCFG,
		"+CCHSET":  cmdCCHSET, "+CCHMODE": cmdCCHMODE, "+CCHSTART": cmdCCHSTART,
		"+CCHSTOP": cmdCCHSTOP, "+CCHADDR": cmdCCHADDR, "+CCHSSLCFG": cmdCCHSSLCFG,
		"+CCHCFG": cmdCCHCFG, "+CCHOPEN": cmdCCHOPEN, "+CCHSEND": cmdCCHSEND,
		"+CCHRECV": cmdCCHRECV, "+CCHCLOSE": cmdCCHCLOSE,
	}
}

// commandSet is the handler table of the module's dialect.
func (m *Modem) commandSet() map[string]handler {
	if m.q != nil {
		return quectelHandlers
	}
	return handlers
}

// cmeText holds the 3GPP TS 27.007 §9.2 verbose texts of the codes the
// emulator uses.
var cmeText = map[int]string{
	3:   "operation not allowed",
	4:   "operation not supported",
	14:  "SIM busy",
	30:  "no network service",
	50:  "Incorrect parameters",
	100: "unknown",
}

// CME error codes used by the 27.007 commands.
const (
	cmeNotAllowed = 3
	cmeSIMBusy    = 14
	cmeNoNetwork  = 30
	cmeBadParam   = 50
)

// cme is the final result for a 27.007 error under the current AT+CMEE.
func (m *Modem) cme(code int) string {
	switch m.st.cmee {
	case 0:
		return "ERROR"
	case 1:
		return fmt.Sprintf("+CME ERROR: %d", code)
	default:
		return "+CME ERROR: " + cmeText[code]
	}
}

// processInput consumes buffered host bytes according to the input mode.
func (m *Modem) processInput() {
	for len(m.inBuf) > 0 && !m.inputBlocked() {
		switch m.mode {
		case modeOff:
			m.trace.record("host>modem(ignored, rebooting)", m.inBuf)
			m.inBuf = nil
		case modePayload:
			p := m.payload
			if p.feed != nil {
				n := p.feed(m.inBuf)
				m.inBuf = m.inBuf[n:]
				continue
			}
			take := min(p.need-len(p.buf), len(m.inBuf))
			p.buf = append(p.buf, m.inBuf[:take]...)
			m.inBuf = m.inBuf[take:]
			if len(p.buf) < p.need {
				continue
			}
			m.completePayload(p.buf)
		case modeData:
			m.transparentInput()
		default:
			m.commandInput()
		}
	}
}

// completePayload ends the payload stage with data: the command runs and
// its response is queued.
func (m *Modem) completePayload(data []byte) {
	p := m.payload
	if p.redact {
		m.trace.record("host>modem", []byte(fmt.Sprintf("<%d bytes of certificate file>", len(data))))
	} else {
		m.trace.record("host>modem", data)
	}
	m.payload = nil
	m.mode = modeCommand
	r := p.done(data)
	m.respond(r, p.drop, p.delay)
}

// commandInput accumulates a command line up to <CR>, echoing as it goes.
func (m *Modem) commandInput() {
	seg := m.inBuf
	end := bytes.IndexByte(seg, '\r')
	if end >= 0 {
		seg = seg[:end+1]
	}
	m.inBuf = m.inBuf[len(seg):]
	if m.st.echo {
		echo := bytes.Clone(seg)
		var traceAs []byte
		if containsFold(m.line, "keypwd") || containsFold(seg, "keypwd") {
			traceAs = []byte("<echo of a line holding a key password>")
		}
		m.send(echo, 0, traceAs, nil)
	}
	for _, c := range seg {
		switch c {
		case '\r':
		case '\n':
			// A <LF> after <CR> is not part of the next command.
		case 0x08:
			if len(m.line) > 0 {
				m.line = m.line[:len(m.line)-1]
			}
		default:
			if len(m.line) <= maxLine {
				m.line = append(m.line, c)
			}
		}
	}
	if end < 0 {
		return
	}
	line := string(m.line)
	m.line = m.line[:0]
	m.trace.record("host>modem", []byte(redactLine(line)+"\r"))
	if len(line) > maxLine {
		drop, delay := m.takeResponseFaults()
		m.counters.command("unknown")
		m.respond(reply{final: "ERROR"}, drop, delay)
		return
	}
	m.execLine(line)
}

func containsFold(b []byte, sub string) bool {
	return strings.Contains(strings.ToLower(string(b)), sub)
}

// redactLine hides the value of a "keypwd" parameter in a transcript.
func redactLine(line string) string {
	i := strings.Index(strings.ToLower(line), `"keypwd"`)
	if i < 0 {
		return line
	}
	return line[:i] + `"keypwd",<redacted>`
}

// takeResponseFaults consumes the one-shot drop/delay faults for the next
// response.
func (m *Modem) takeResponseFaults() (bool, time.Duration) {
	drop, delay := m.dropNext, m.cfg.CommandLatency+m.delayNext
	m.dropNext, m.delayNext = false, 0
	return drop, delay
}

// execLine executes one command line. Lines without an "AT" prefix are
// ignored, as modules do; a line of several commands stops at the first
// error, keeping the effects of those before it.
func (m *Modem) execLine(line string) {
	body, ok := findATPrefix(line)
	if !ok {
		return
	}
	drop, delay := m.takeResponseFaults()
	r := reply{final: "OK"}
	cmds, err := splitCommandLine(body)
	switch {
	case err != nil:
		m.counters.command("unknown")
		r.final = "ERROR"
	case len(cmds) == 0:
		m.counters.command("AT")
	}
	for _, c := range cmds {
		h := m.commandSet()[c.name]
		if h == nil {
			m.counters.command("unknown")
			r.final = "ERROR"
			break
		}
		m.counters.command(c.counterName())
		if e := h(m, c, &r); e != "" {
			r.final = e
			break
		}
		if r.prompt != nil || r.pending != nil {
			r.final = ""
			break
		}
	}
	m.respond(r, drop, delay)
}

// respond queues a reply: a prompt (the command continues with a
// payload), a deferred prompt, or information text and a final result.
// A dropped response is executed but never written.
func (m *Modem) respond(r reply, drop bool, delay time.Duration) {
	switch {
	case r.prompt != nil:
		// The prompt is never dropped: without it the host cannot deliver
		// the payload, and the command would not be executed at all.
		prompt := r.prompt.prompt
		if prompt == nil {
			prompt = []byte("\r\n>")
		}
		m.send(append(formatResponse(r.lines, ""), prompt...), delay, nil, nil)
		r.prompt.drop, r.prompt.delay = drop, m.cfg.CommandLatency
		m.payload = r.prompt
		m.mode = modePayload
	case r.pending != nil:
		r.pending.drop, r.pending.delay = drop, delay
		m.pending = r.pending
	default:
		if drop {
			m.log.Info("fault: response dropped", "modem", m.path, "final", r.final)
			if r.onWritten != nil {
				r.onWritten()
			}
		} else {
			var traceAs []byte
			if r.traceLines != nil {
				traceAs = formatResponse(r.traceLines, r.final)
			}
			if data := formatResponse(r.lines, r.final); len(data) > 0 {
				m.send(data, delay, traceAs, r.onWritten)
			} else if r.onWritten != nil {
				r.onWritten()
			}
		}
	}
	for _, f := range r.after {
		f()
	}
}
