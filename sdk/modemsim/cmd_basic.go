package modemsim

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// add appends lines to the response and returns "", so that a form which
// only prints reads as one statement.
func (r *reply) add(lines ...string) string {
	r.lines = append(r.lines, lines...)
	return ""
}

// argsIn parses the parameters of a set command. It reports false on a
// syntax error or unless there are between lo and hi of them.
func argsIn(text string, lo, hi int) ([]atArg, bool) {
	args, err := parseArgs(text)
	if err != nil || len(args) < lo || len(args) > hi {
		return nil, false
	}
	return args, true
}

// singleInt parses the parameters of a set command that takes one
// unquoted number, lo <= v <= hi.
func singleInt(text string, lo, hi int) (int, bool) {
	args, ok := argsIn(text, 1, 1)
	if !ok {
		return 0, false
	}
	return intIn(args[0], lo, hi)
}

// singleQuoted parses the parameters of a set command that takes one
// quoted string of lo to hi bytes.
func singleQuoted(text string, lo, hi int) (string, bool) {
	args, ok := argsIn(text, 1, 1)
	if !ok {
		return "", false
	}
	return quotedString(args[0], lo, hi)
}

// optionalInt parses args[i] with intIn when it is given; one that is left
// out (missing or empty) is def.
func optionalInt(args []atArg, i, lo, hi, def int) (int, bool) {
	if i >= len(args) || !args[i].present {
		return def, true
	}
	return intIn(args[i], lo, hi)
}

// cmdEcho is ATE[<n>]: 0 (or no digit, per V.250) off, 1 on.
func cmdEcho(m *Modem, c atCommand, r *reply) string {
	if c.form != formExec {
		return "ERROR"
	}
	switch c.args {
	case "", "0":
		m.st.echo = false
	case "1":
		m.st.echo = true
	default:
		return "ERROR"
	}
	return ""
}

// cmdVerbose is ATV[<n>]: only verbose result codes (V1) are emulated.
func cmdVerbose(m *Modem, c atCommand, r *reply) string {
	if c.form != formExec || c.args != "1" {
		return "ERROR"
	}
	return ""
}

// cmdReset is ATZ / AT&F: the volatile interface settings return to their
// defaults (sessions and network state are untouched).
func cmdReset(m *Modem, c atCommand, r *reply) string {
	if c.form != formExec || (c.args != "" && c.args != "0") {
		return "ERROR"
	}
	m.st.echo, m.st.cmee = true, 2
	m.st.cregN, m.st.cgregN, m.st.ceregN = 0, 0, 0
	return ""
}

// cmdInfo is ATI: product identification.
func cmdInfo(m *Modem, c atCommand, r *reply) string {
	if c.form != formExec || (c.args != "" && c.args != "0") {
		return "ERROR"
	}
	r.lines = append(r.lines,
		"Manufacturer: "+m.prof.manufacturer,
		"Model: "+m.prof.model,
		"Revision: "+m.prof.revision,
		"IMEI: "+m.imei,
		"+GCAP: +CGSM")
	return ""
}

// ident answers an identification command: exec prints the value, test
// answers OK, anything else is an error.
func ident(c atCommand, r *reply, line string) string {
	switch c.form {
	case formExec:
		r.lines = append(r.lines, line)
		return ""
	case formTest:
		return ""
	}
	return "ERROR"
}

func cmdCGMI(m *Modem, c atCommand, r *reply) string { return ident(c, r, m.prof.manufacturer) }
func cmdCGMM(m *Modem, c atCommand, r *reply) string { return ident(c, r, m.prof.model) }
func cmdCGMR(m *Modem, c atCommand, r *reply) string { return ident(c, r, "+CGMR: "+m.prof.cgmr) }
func cmdCGSN(m *Modem, c atCommand, r *reply) string { return ident(c, r, m.imei) }

// cmdCICCID reads the SIM's ICCID; the SIM must be ready.
func cmdCICCID(m *Modem, c atCommand, r *reply) string {
	if c.form == formExec && m.st.simBusy {
		return m.cme(cmeSIMBusy)
	}
	return ident(c, r, "+ICCID: "+m.iccid)
}

// modeSetting serves a command whose one parameter is a mode 0-2 kept in
// *mode (AT+CMEE, AT+CREG and its kin): the test form prints the range,
// the read form readLine; a set form stores a valid mode or answers
// +CME ERROR.
func (m *Modem) modeSetting(c atCommand, r *reply, mode *int, readLine string) string {
	switch c.form {
	case formTest:
		return r.add(c.name + ": (0-2)")
	case formRead:
		return r.add(readLine)
	case formSet:
		v, ok := singleInt(c.args, 0, 2)
		if !ok {
			return m.cme(cmeBadParam)
		}
		*mode = v
		return ""
	}
	return "ERROR"
}

// cmdCMEE is AT+CMEE: 0 plain ERROR, 1 numeric, 2 verbose.
func cmdCMEE(m *Modem, c atCommand, r *reply) string {
	return m.modeSetting(c, r, &m.st.cmee, fmt.Sprintf("+CMEE: %d", m.st.cmee))
}

// cmdCPIN is AT+CPIN. The emulated SIM has no PIN: it is READY once SIM
// initialisation (the SIM busy window) is over.
func cmdCPIN(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return ""
	case formRead:
		if m.st.simBusy {
			return m.cme(cmeSIMBusy)
		}
		return r.add("+CPIN: READY")
	case formSet:
		if m.st.simBusy {
			return m.cme(cmeSIMBusy)
		}
		return m.cme(cmeNotAllowed)
	}
	return "ERROR"
}

// emuRSSI is the signal the emulated cell gives (about -69 dBm).
const emuRSSI = 22

// cmdCSQ is AT+CSQ: 99,99 (unknown) until registered, then the emulated
// cell's signal or what SetSignal chose.
func cmdCSQ(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add("+CSQ: (0-31,99),(0-7,99)")
	case formExec:
		rssi, ber := m.csq()
		return r.add(fmt.Sprintf("+CSQ: %d,%d", rssi, ber))
	}
	return "ERROR"
}

// cmdReg serves AT+CREG, AT+CGREG and AT+CEREG with <n> 0-2.
func cmdReg(m *Modem, c atCommand, r *reply) string {
	name := strings.TrimPrefix(c.name, "+")
	var n *int
	switch name {
	case "CREG":
		n = &m.st.cregN
	case "CGREG":
		n = &m.st.cgregN
	default:
		n = &m.st.ceregN
	}
	return m.modeSetting(c, r, n, m.regLine(name, *n))
}

// pdpTypes are the <PDP_type> values AT+CGDCONT accepts.
var pdpTypes = []string{"IP", "PPP", "IPV6", "IPV4V6"}

func validCID(cid int) bool { return (cid >= 1 && cid <= 24) || (cid >= 100 && cid <= 179) }

// definedCIDs lists the defined PDP contexts in ascending order.
func (m *Modem) definedCIDs() []int {
	cids := make([]int, 0, len(m.st.pdp))
	for cid := range m.st.pdp {
		cids = append(cids, cid)
	}
	sort.Ints(cids)
	return cids
}

// cmdCGDCONT defines PDP contexts: AT+CGDCONT=<cid>[,<type>[,<apn>[,<addr>
// [,<d_comp>[,<h_comp>[,<ipv4_ctrl>[,<emergency>]]]]]]]; <cid> alone
// undefines it.
func cmdCGDCONT(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		for _, t := range pdpTypes {
			r.add(fmt.Sprintf(`+CGDCONT: (1-24,100-179),"%s",,,(0-2),(0-4),(0-1),(0-1)`, t))
		}
		return ""
	case formRead:
		for _, cid := range m.definedCIDs() {
			p := m.st.pdp[cid]
			r.add(fmt.Sprintf(`+CGDCONT: %d,"%s","%s","%s",%d,%d,%d,%d`,
				cid, p.typ, p.apn, p.addr, p.dcomp, p.hcomp, p.ipv4Ctrl, p.emergency))
		}
		return ""
	case formSet:
		return m.setPDPContext(c.args)
	}
	return "ERROR"
}

// setPDPContext runs AT+CGDCONT=<args>. A redefined context keeps what
// AT+CGACT last asked of it; a bad parameter changes nothing.
func (m *Modem) setPDPContext(argText string) string {
	args, ok := argsIn(argText, 1, 8)
	if !ok {
		return m.cme(cmeBadParam)
	}
	cid, ok := intIn(args[0], 0, 1000)
	if !ok || !validCID(cid) {
		return m.cme(cmeBadParam)
	}
	if len(args) == 1 {
		delete(m.st.pdp, cid)
		return ""
	}
	p, ok := parsePDPContext(args)
	if !ok {
		return m.cme(cmeBadParam)
	}
	if old, ok := m.st.pdp[cid]; ok {
		p.wantActive = old.wantActive
	}
	m.st.pdp[cid] = p
	return ""
}

// parsePDPContext reads the parameters of AT+CGDCONT after <cid> (args[0]),
// filling in the module's defaults for those left out. It reports false
// when one is out of range.
func parsePDPContext(args []atArg) (*pdpContext, bool) {
	p := &pdpContext{typ: "IP"}
	if args[1].present {
		t, ok := quotedString(args[1], 1, 10)
		if !ok {
			return nil, false
		}
		t = strings.ToUpper(t)
		found := false
		for _, k := range pdpTypes {
			found = found || k == t
		}
		if !found {
			return nil, false
		}
		p.typ = t
	}
	if len(args) > 2 && args[2].present {
		var ok bool
		if p.apn, ok = quotedString(args[2], 0, 99); !ok {
			return nil, false
		}
	}
	p.addr = "0.0.0.0"
	if p.typ == "IPV6" || p.typ == "IPV4V6" {
		p.addr = "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0"
	}
	if len(args) > 3 && args[3].present {
		a, ok := quotedString(args[3], 0, 63)
		if !ok {
			return nil, false
		}
		if a != "" {
			p.addr = a
		}
	}
	ranges := []struct {
		dst *int
		hi  int
	}{{&p.dcomp, 2}, {&p.hcomp, 4}, {&p.ipv4Ctrl, 1}, {&p.emergency, 1}}
	for i, rg := range ranges {
		var ok bool
		if *rg.dst, ok = optionalInt(args, 4+i, 0, rg.hi, 0); !ok {
			return nil, false
		}
	}
	return p, true
}

// cmdCGACT activates or deactivates PDP contexts: AT+CGACT=<state>[,<cid>
// [,<cid>…]]; without <cid> all defined contexts. A context shows active
// only while the module is registered.
func cmdCGACT(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add("+CGACT: (0,1)")
	case formRead:
		for _, cid := range m.definedCIDs() {
			state := 0
			if m.st.pdp[cid].wantActive && m.registered() {
				state = 1
			}
			r.add(fmt.Sprintf("+CGACT: %d,%d", cid, state))
		}
		return ""
	case formSet:
		return m.setCGACT(c.args)
	}
	return "ERROR"
}

// setCGACT runs AT+CGACT=<args>; activation needs a ready SIM and the
// network. A bad parameter changes nothing.
func (m *Modem) setCGACT(argText string) string {
	args, err := parseArgs(argText)
	if err != nil {
		return m.cme(cmeBadParam)
	}
	state, ok := intIn(args[0], 0, 1)
	if !ok {
		return m.cme(cmeBadParam)
	}
	var cids []int
	for _, a := range args[1:] {
		cid, ok := intIn(a, 0, 1000)
		if !ok || m.st.pdp[cid] == nil {
			return m.cme(cmeBadParam)
		}
		cids = append(cids, cid)
	}
	if len(args) == 1 {
		cids = m.definedCIDs()
	}
	if state == 1 {
		if m.st.simBusy {
			return m.cme(cmeSIMBusy)
		}
		if m.st.netLost {
			return m.cme(cmeNoNetwork)
		}
	}
	for _, cid := range cids {
		m.st.pdp[cid].wantActive = state == 1
	}
	return ""
}

// cmdCGATT reads the packet-domain attach state.
func cmdCGATT(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add("+CGATT: (0,1)")
	case formRead:
		att := 0
		if m.registered() {
			att = 1
		}
		return r.add(fmt.Sprintf("+CGATT: %d", att))
	}
	return "ERROR"
}

// cmdCCLK reads and sets the RTC: "yy/MM/dd,hh:mm:ss±zz", zz in quarter
// hours. Years 80-99 are 1980-1999 (the RTC's unsynchronised epoch reads
// "80"); 00-79 are 2000-2079.
func cmdCCLK(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return ""
	case formRead:
		return r.add(`+CCLK: "` + formatCCLK(m.rtcNow(), m.st.rtcTZ) + `"`)
	case formSet:
		s, ok := singleQuoted(c.args, 17, 20)
		if !ok {
			return m.cme(cmeBadParam)
		}
		t, tz, err := parseCCLK(s)
		if err != nil {
			return m.cme(cmeBadParam)
		}
		m.st.rtcBase, m.st.rtcSetAt, m.st.rtcTZ = t, m.clock(), tz
		return ""
	}
	return "ERROR"
}

func formatCCLK(instant time.Time, tz int) string {
	local := instant.Add(time.Duration(tz) * 15 * time.Minute).UTC()
	sign := '+'
	if tz < 0 {
		sign, tz = '-', -tz
	}
	return fmt.Sprintf("%02d/%02d/%02d,%02d:%02d:%02d%c%02d",
		local.Year()%100, int(local.Month()), local.Day(), local.Hour(), local.Minute(), local.Second(), sign, tz)
}

// parseCCLK parses "yy/MM/dd,hh:mm:ss±zz" into the UTC instant and the
// zone in quarter hours (-48..+56).
func parseCCLK(s string) (time.Time, int, error) {
	var yy, mo, dd, hh, mi, ss, tz int
	var sign byte
	if len(s) < 20 {
		return time.Time{}, 0, errSyntax
	}
	if _, err := fmt.Sscanf(s, "%2d/%2d/%2d,%2d:%2d:%2d%c%d", &yy, &mo, &dd, &hh, &mi, &ss, &sign, &tz); err != nil {
		return time.Time{}, 0, err
	}
	if (sign != '+' && sign != '-') || s[2] != '/' || s[5] != '/' || s[8] != ',' || s[11] != ':' || s[14] != ':' {
		return time.Time{}, 0, errSyntax
	}
	if sign == '-' {
		tz = -tz
	}
	year := 2000 + yy
	if yy >= 80 {
		year = 1900 + yy
	}
	local := time.Date(year, time.Month(mo), dd, hh, mi, ss, 0, time.UTC)
	if local.Month() != time.Month(mo) || local.Day() != dd || hh > 23 || mi > 59 || ss > 59 || tz < -48 || tz > 56 {
		return time.Time{}, 0, errSyntax
	}
	return local.Add(-time.Duration(tz) * 15 * time.Minute), tz, nil
}

// cmdCPSI reports the serving cell: an LTE cell while registered, NO
// SERVICE otherwise.
func cmdCPSI(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formRead:
		if m.registered() {
			return r.add("+CPSI: LTE,Online,460-00,0x1A2B,29545444,301,EUTRAN-BAND3,1650,5,5,-94,-850,-600,15")
		}
		return r.add("+CPSI: NO SERVICE,Online")
	case formTest:
		return r.add("+CPSI: (0-255)")
	}
	return "ERROR"
}

// cmdCRESET answers OK and reboots once the OK is on the line.
func cmdCRESET(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return ""
	case formExec:
		r.onWritten = m.reboot
		return ""
	}
	return "ERROR"
}
