package modemsim

import (
	"fmt"
	"path/filepath"
	"strings"
)

// The Quectel personality ("bg96"): a BG96 speaking Quectel's own AT
// dialect, as written in the project's Quectel reference
// (shared/reference/quectel-ssl.md) and Quectel's BG96 AT, TCP/IP, SSL and
// FILE manuals. It shares the emulator's engine with the SIMCom models
// (pty, pacing, faults, counters, trace, real sockets and crypto/tls
// handshakes configured the module's way) and has its own command set:
// basic and 3GPP commands here, the file system in quectel_files.go, PDP
// contexts, sockets and SSL in quectel_ssl.go. Every pick where the
// sources are UNSURE is listed in README.md.

// bg96Profile is a BG96 as a RAK5010 reports it (ATI and AT+CGMR of
// firmware BG96MAR02A07M1G); the manual's factory default of AT+CMEE is 1
// and the LTE access technology of a BG96 is Cat-M1 (<AcT> 8).
var bg96Profile = profile{
	manufacturer: "Quectel",
	model:        "BG96",
	revision:     "BG96MAR02A07M1G",
	cgmr:         "BG96MAR02A07M1G",
	imeiPrefix:   "86681503047123",
	maxSend:      qMaxSend,
	dialect:      dialectQuectel,
	cmeeDefault:  1,
	lteAcT:       8,
	bootURCs:     []string{"RDY", "APP RDY", "+CFUN: 1"},
	simReadyURCs: []string{"+CPIN: READY", "+QIND: SMS DONE", "+QIND: PB DONE"},
}

// emuIMSI is the emulated SIM's IMSI, on the test network 001-01.
const emuIMSI = "001010123456789"

// quectelHandlers maps command names to the Quectel dialect's handlers.
var quectelHandlers map[string]handler

func init() {
	quectelHandlers = map[string]handler{
		"E": cmdEcho, "V": cmdVerbose, "I": cmdQInfo, "O": cmdQOnline, "Z": cmdQReset, "&F": cmdQReset,
		"+CMEE": cmdCMEE, "+CPIN": cmdCPIN, "+CSQ": cmdCSQ,
		"+CREG": cmdReg, "+CGREG": cmdReg, "+CEREG": cmdReg, "+CGATT": cmdCGATT, "+CCLK": cmdCCLK,
		"+GMI": cmdQGMI, "+CGMI": cmdQGMI, "+GMM": cmdQGMM, "+CGMM": cmdQGMM,
		"+GMR": cmdQGMR, "+CGMR": cmdQGMR, "+GSN": cmdQGSN, "+CGSN": cmdQGSN,
		"+CIMI": cmdCIMI, "+QCCID": cmdQCCID, "+CFUN": cmdCFUN,
		"+QFLDS": cmdQFLDS, "+QFLST": cmdQFLST, "+QFDEL": cmdQFDEL, "+QFUPL": cmdQFUPL, "+QFDWL": cmdQFDWL,
		"+QICSGP": cmdQICSGP, "+QIACT": cmdQIACT, "+QIDEACT": cmdQIDEACT, "+QIDNSCFG": cmdQIDNSCFG,
		"+QIGETERROR": cmdQIGETERROR, "+QISDE": cmdQISDE,
		"+QIOPEN": cmdQIOPEN, "+QISEND": cmdQISEND, "+QIRD": cmdQIRD, "+QICLOSE": cmdQICLOSE, "+QISTATE": cmdQISTATE,
		"+QSSLCFG": cmdQSSLCFG, "+QSSLOPEN": cmdQSSLOPEN, "+QSSLSEND": cmdQSSLSEND, "+QSSLRECV": cmdQSSLRECV,
		"+QSSLCLOSE": cmdQSSLCLOSE, "+QSSLSTATE": cmdQSSLSTATE,
	}
	// The FILE manual's +CME ERROR codes (chapter 4), for AT+CMEE=2.
	for code, text := range map[int]string{
		400: "invalid input value", 401: "larger than the size of the file", 402: "read zero byte",
		403: "drive full", 405: "file not found", 406: "invalid file name", 407: "file already existed",
		409: "fail to write the file", 410: "fail to open the file", 411: "fail to read the file",
		413: "reach the max number of file allowed to be opened", 414: "the file read-only",
		416: "invalid file descriptor", 417: "fail to list the file", 418: "fail to delete the file",
		419: "fail to get disk info", 420: "no space", 421: "time out", 423: "file too large",
		425: "invalid parameter", 426: "file already opened",
	} {
		cmeText[code] = text
	}
}

// quectel is the Quectel dialect's module state, owned by the core like
// the rest of the Modem's state. It is also the sessionOwner of its
// sockets' connections.
type quectel struct {
	m       *Modem
	ufs     *ufsStore
	socks   [qMaxSockets]*qsocket
	pdp     [qMaxPDP + 1]qpdp // index 1-16
	ssl     [qSSLContexts]qssl
	lastErr int // AT+QIGETERROR: the last TCP/IP or SSL command's result
	qisde   int // AT+QISDE: echo AT+QISEND/AT+QSSLSEND data (with ATE1)
	rr      int // round-robin start for pushed data frames
	// closing holds connections AT+QSSLCLOSE/AT+QICLOSE let flush in the
	// background; their ids are free again already.
	closing map[*sessionRun]struct{}
}

func newQuectel(m *Modem) *quectel {
	q := &quectel{m: m, ufs: &ufsStore{dir: filepath.Join(m.stateDir, "ufs")}, closing: make(map[*sessionRun]struct{})}
	q.pdp[1].typ = 1 // context 1 is predefined: AT+QICSGP=1 reads 1,"","","",0
	q.powerOn()
	return q
}

// powerOn resets what a power cycle resets: sockets, active contexts, SSL
// contexts, the last error and AT+QISDE. AT+QICSGP definitions and files
// survive (module NV and flash).
func (q *quectel) powerOn() {
	for i := range q.socks {
		q.socks[i] = &qsocket{id: i}
	}
	for i := range q.pdp {
		q.pdp[i].active = false
	}
	for i := range q.ssl {
		q.ssl[i] = defaultQSSL()
	}
	q.lastErr, q.qisde = 0, 1
}

// reboot drops every connection without a word and powers on again.
func (q *quectel) reboot() {
	q.abortAll()
	q.powerOn()
}

// abortAll closes every socket the dialect holds, at once.
func (q *quectel) abortAll() {
	for _, s := range q.socks {
		if s.run != nil {
			s.run.abort()
			s.run = nil
		}
	}
	for sr := range q.closing {
		sr.abort()
		delete(q.closing, sr)
	}
}

// errOf records a TCP/IP or SSL command's error for AT+QIGETERROR and
// returns the final result those commands give: plain ERROR.
func (q *quectel) errOf(code int) string {
	q.lastErr = code
	return "ERROR"
}

// cmdQInfo is ATI: three lines, as a real BG96 prints them.
func cmdQInfo(m *Modem, c atCommand, r *reply) string {
	if c.form != formExec || (c.args != "" && c.args != "0") {
		return "ERROR"
	}
	return r.add(m.prof.manufacturer, m.prof.model, "Revision: "+m.prof.revision)
}

func cmdQGMI(m *Modem, c atCommand, r *reply) string { return ident(c, r, m.prof.manufacturer) }
func cmdQGMM(m *Modem, c atCommand, r *reply) string { return ident(c, r, m.prof.model) }
func cmdQGMR(m *Modem, c atCommand, r *reply) string { return ident(c, r, m.prof.cgmr) }
func cmdQGSN(m *Modem, c atCommand, r *reply) string { return ident(c, r, m.imei) }

// cmdCIMI reads the SIM's IMSI; the SIM must be ready.
func cmdCIMI(m *Modem, c atCommand, r *reply) string {
	if c.form == formExec && m.st.simBusy {
		return m.cme(cmeSIMBusy)
	}
	return ident(c, r, emuIMSI)
}

// cmdQCCID reads the ICCID. The manual gives plain ERROR for any failure.
func cmdQCCID(m *Modem, c atCommand, r *reply) string {
	if c.form == formExec && m.st.simBusy {
		return "ERROR"
	}
	return ident(c, r, "+QCCID: "+m.iccid)
}

// cmdQReset is ATZ / AT&F with the BG96's factory defaults (Table 7).
func cmdQReset(m *Modem, c atCommand, r *reply) string {
	if c.form != formExec || (c.args != "" && c.args != "0") {
		return "ERROR"
	}
	m.st.echo, m.st.cmee = true, m.prof.cmeeDefault
	m.st.cregN, m.st.cgregN, m.st.ceregN = 0, 0, 0
	return ""
}

// cmdQOnline is ATO. Transparent access mode is not emulated, so no
// connection ever left it: NO CARRIER, as the manual says for that case.
func cmdQOnline(m *Modem, c atCommand, r *reply) string {
	if c.form != formExec || (c.args != "" && c.args != "0") {
		return "ERROR"
	}
	return "NO CARRIER"
}

// cmdCFUN reads full functionality; AT+CFUN=1,1 resets the module: OK,
// POWERED DOWN, then the boot URCs. Minimum and flight mode (0, 4) are not
// emulated.
func cmdCFUN(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add("+CFUN: (0,1,4),(0,1)")
	case formRead:
		return r.add("+CFUN: 1")
	case formSet:
		args, ok := argsIn(c.args, 1, 2)
		if !ok {
			return m.cme(cmeBadParam)
		}
		fun, ok := intIn(args[0], 0, 4)
		rst, rstOK := optionalInt(args, 1, 0, 1, 0)
		switch {
		case !ok || !rstOK:
			return m.cme(cmeBadParam)
		case fun != 1:
			return m.cme(cmeNotSupported)
		case rst == 1:
			r.onWritten = func() { m.send([]byte("\r\nPOWERED DOWN\r\n"), 0, nil, m.reboot) }
		}
		return ""
	}
	return "ERROR"
}

// cmeNotSupported is 27.007's "operation not supported".
const cmeNotSupported = 4

// qErrorText is the TCP/IP and SSL manuals' result code table (chapter 4
// and 5), for AT+QIGETERROR, in the manual example's lower case.
var qErrorText = map[int]string{
	0: "operation successful", 550: "unknown error", 551: "operation blocked", 552: "invalid parameters",
	553: "memory not enough", 554: "create socket failed", 555: "operation not supported",
	556: "socket bind failed", 557: "socket listen failed", 558: "socket write failed",
	559: "socket read failed", 560: "socket accept failed", 561: "open PDP context failed",
	562: "close PDP context failed", 563: "socket identity has been used", 564: "DNS busy",
	565: "DNS parse failed", 566: "socket connect failed", 567: "socket has been closed",
	568: "operation busy", 569: "operation timeout", 570: "PDP context broken down",
	571: "cancel send", 572: "operation not allowed", 573: "APN not configured", 574: "port busy",
}

// Quectel TCP/IP and SSL result codes the emulator gives.
const (
	qOK            = 0
	qBadParam      = 552
	qNotSupported  = 555
	qPDPFailed     = 561
	qIDInUse       = 563
	qDNSFailed     = 565
	qConnectFailed = 566
	qClosed        = 567
	qTimeout       = 569
	qPDPBroken     = 570
)

// cmdQIGETERROR reports the last TCP/IP or SSL command's result in the
// manual example's form: "+QIGETERROR: 552, invalid parameters".
func cmdQIGETERROR(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return ""
	case formExec:
		return r.add(fmt.Sprintf("+QIGETERROR: %d, %s", m.q.lastErr, qErrorText[m.q.lastErr]))
	}
	return "ERROR"
}

// cmdQISDE controls the echo of send data (AT+QISEND, AT+QSSLSEND), which
// only shows while command echo (ATE1) is on too.
func cmdQISDE(m *Modem, c atCommand, r *reply) string {
	q := m.q
	switch c.form {
	case formTest:
		return r.add("+QISDE: (0,1)")
	case formRead:
		return r.add(fmt.Sprintf("+QISDE: %d", q.qisde))
	case formSet:
		v, ok := singleInt(c.args, 0, 1)
		if !ok {
			return q.errOf(qBadParam)
		}
		q.qisde, q.lastErr = v, qOK
		return ""
	}
	return "ERROR"
}

// qpdp is one TCP/IP context (AT+QICSGP, AT+QIACT).
type qpdp struct {
	typ             int // 0 undefined, 1 IPv4, 2 IPv6, 3 IPv4v6
	apn, user, pass string
	auth            int
	active          bool
	dnsPri, dnsSec  string
	dnsSet          bool
}

// Limits of the BG96's TCP/IP stack (TCP/IP manual).
const (
	qMaxPDP       = 16
	qMaxActivePDP = 3
	qMaxSockets   = 12
)

// pdpArg parses a <contextID> (1-16).
func pdpArg(a atArg) (int, bool) { return intIn(a, 1, qMaxPDP) }

// cmdQICSGP configures a context: AT+QICSGP=<ctx>[,<type>,"<apn>"[,
// "<user>","<pass>"[,<auth>]]]; <ctx> alone reads it, without echoing the
// id, as real BG96s do.
func cmdQICSGP(m *Modem, c atCommand, r *reply) string {
	q := m.q
	switch c.form {
	case formTest:
		return r.add("+QICSGP: (1-16),(1-3),<APN>,<username>,<password>,(0-3)")
	case formSet:
		args, ok := argsIn(c.args, 1, 6)
		if !ok {
			return q.errOf(qBadParam)
		}
		ctx, ok := pdpArg(args[0])
		if !ok || len(args) == 2 || len(args) == 4 {
			return q.errOf(qBadParam)
		}
		p := &q.pdp[ctx]
		if len(args) == 1 {
			q.lastErr = qOK
			return r.add(fmt.Sprintf(`+QICSGP: %d,"%s","%s","%s",%d`, p.typ, p.apn, p.user, p.pass, p.auth))
		}
		def := qpdp{}
		var typOK, apnOK, userOK, passOK, authOK bool
		def.typ, typOK = intIn(args[1], 1, 3)
		def.apn, apnOK = quotedString(args[2], 0, 99)
		userOK, passOK = true, true
		if len(args) >= 5 {
			def.user, userOK = quotedString(args[3], 0, 127)
			def.pass, passOK = quotedString(args[4], 0, 127)
		}
		def.auth, authOK = optionalInt(args, 5, 0, 3, 0)
		if !typOK || !apnOK || !userOK || !passOK || !authOK {
			return q.errOf(qBadParam)
		}
		p.typ, p.apn, p.user, p.pass, p.auth = def.typ, def.apn, def.user, def.pass, def.auth
		q.lastErr = qOK
		return ""
	}
	return "ERROR"
}

// pdpAddr is the address the network gives context ctx.
func (m *Modem) pdpAddr(ctx int) string {
	if ctx == 1 {
		return m.ipAddr
	}
	return fmt.Sprintf("10.71.156.%d", ctx)
}

// cmdQIACT activates a context (AT+QIACT=<ctx>) or lists the active ones
// (AT+QIACT?: nothing but OK when none is). Activation needs a ready SIM
// and the network; an active context, or a fourth one, is an ERROR.
func cmdQIACT(m *Modem, c atCommand, r *reply) string {
	q := m.q
	switch c.form {
	case formTest:
		return r.add("+QIACT: (1-16)")
	case formRead:
		for ctx := 1; ctx <= qMaxPDP; ctx++ {
			if p := q.pdp[ctx]; p.active {
				r.add(fmt.Sprintf(`+QIACT: %d,1,%d,"%s"`, ctx, max(p.typ, 1), m.pdpAddr(ctx)))
			}
		}
		return ""
	case formSet:
		args, ok := argsIn(c.args, 1, 1)
		if !ok {
			return q.errOf(qBadParam)
		}
		ctx, ok := pdpArg(args[0])
		if !ok {
			return q.errOf(qBadParam)
		}
		active := 0
		for _, p := range q.pdp {
			if p.active {
				active++
			}
		}
		if !m.registered() || q.pdp[ctx].active || active >= qMaxActivePDP {
			return q.errOf(qPDPFailed)
		}
		q.pdp[ctx].active = true
		q.lastErr = qOK
		return ""
	}
	return "ERROR"
}

// cmdQIDEACT deactivates a context and drops every socket on it without a
// URC, as the manual says.
func cmdQIDEACT(m *Modem, c atCommand, r *reply) string {
	q := m.q
	switch c.form {
	case formTest:
		return r.add("+QIDEACT: (1-16)")
	case formSet:
		args, ok := argsIn(c.args, 1, 1)
		if !ok {
			return q.errOf(qBadParam)
		}
		ctx, ok := pdpArg(args[0])
		if !ok {
			return q.errOf(qBadParam)
		}
		q.pdp[ctx].active = false
		for _, s := range q.socks {
			if s.state != qsInitial && s.pdpCtx == ctx {
				q.release(s)
			}
		}
		q.lastErr = qOK
		return ""
	}
	return "ERROR"
}

// Name servers a context reports until AT+QIDNSCFG sets its own.
const (
	emuDNSPri = "10.71.0.1"
	emuDNSSec = "10.71.0.2"
)

// cmdQIDNSCFG reads (AT+QIDNSCFG=<ctx>, ERROR before activation, as on a
// real BG96) or sets (AT+QIDNSCFG=<ctx>,"<pri>"[,"<sec>"]) a context's name
// servers. Sessions resolve with Config.Hosts and the host's resolver
// whatever is set.
func cmdQIDNSCFG(m *Modem, c atCommand, r *reply) string {
	q := m.q
	if c.form != formSet {
		return q.errOf(qBadParam)
	}
	args, ok := argsIn(c.args, 1, 3)
	if !ok {
		return q.errOf(qBadParam)
	}
	ctx, ok := pdpArg(args[0])
	if !ok {
		return q.errOf(qBadParam)
	}
	p := &q.pdp[ctx]
	if len(args) == 1 {
		if !p.active {
			return q.errOf(qPDPFailed)
		}
		pri, sec := emuDNSPri, emuDNSSec
		if p.dnsSet {
			pri, sec = p.dnsPri, p.dnsSec
		}
		q.lastErr = qOK
		return r.add(fmt.Sprintf(`+QIDNSCFG: %d,"%s","%s"`, ctx, pri, sec))
	}
	pri, ok := quotedString(args[1], 1, 63)
	sec := ""
	secOK := true
	if len(args) == 3 {
		sec, secOK = quotedString(args[2], 0, 63)
	}
	if !ok || !secOK || strings.ContainsAny(pri+sec, " ") {
		return q.errOf(qBadParam)
	}
	p.dnsPri, p.dnsSec, p.dnsSet = pri, sec, true
	q.lastErr = qOK
	return ""
}
