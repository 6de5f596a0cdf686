package modemsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Limits of the BG96's sockets (TCP/IP and SSL manuals; 1460 is what
// AT+QSSLSEND=? and every driver use).
const (
	qSSLContexts = 6
	qMaxSend     = 1460
	qMaxRead     = 1500
	// qPushFrame bounds one pushed "recv" frame (direct push mode).
	qPushFrame = 1024
	// qSendBuffer bounds bytes accepted with SEND OK that are not yet on
	// the socket; a send that does not fit answers SEND FAIL.
	qSendBuffer = 8 * qMaxSend
	// qLocalPortBase is where the module's (virtual) local ports start, as
	// AT+QSSLSTATE shows them: the manual's example shows 65344.
	qLocalPortBase = 65344
	// qTCPOpenTime bounds AT+QIOPEN's connect (150 s, TCP/IP manual).
	qTCPOpenTime = 150
)

// qssl is one SSL context (AT+QSSLCFG, 0-5). The settings the TLS engine
// uses are kept in the shared sslContext form: seclevel is its authmode
// (0 none, 1 server, 2 server and, when asked, client), sni its
// enableSNI, ciphersuite one code or 0xFFFF.
type qssl struct {
	sslContext
	ignoreCertChain int
}

func defaultQSSL() qssl {
	return qssl{sslContext: sslContext{version: 4, authMode: 0, ignoreLocalTime: 1, negotiateTime: 300, cipherSuites: cipherAll}}
}

// qCipherCodes are the codes AT+QSSLCFG="ciphersuite" accepts (BG96 SSL
// manual, Table 2).
var qCipherCodes = []int{0x0035, 0x002F, 0x0005, 0x0004, 0x000A, 0x003D, 0xC011, 0xC012, 0xC013, 0xC014, 0xC027, 0xC028, 0xC02F, 0xFFFF}

// qsslcfgTest is the AT+QSSLCFG=? answer of a BG96 on BG96MAR02A07M1G: the
// manual's list plus "sni", "checkhost" and "ignorecertchain".
var qsslcfgTest = []string{
	`+QSSLCFG: "sslversion",(0-5),(0-4)`,
	`+QSSLCFG: "ciphersuite",(0-5),(0X0035,0X002F,0X0005,0X0004,0X000A,0X003D,0XC011,0XC012,0XC013,0XC014,0XC027,0XC028,0XC02F,0XFFFF)`,
	`+QSSLCFG: "cacert",(0-5),<cacertpath>`,
	`+QSSLCFG: "clientcert",(0-5),<client_cert_path>`,
	`+QSSLCFG: "clientkey",(0-5),<client_key_path>`,
	`+QSSLCFG: "seclevel",(0-5),(0-2)`,
	`+QSSLCFG: "ignorelocaltime",(0-5),(0,1)`,
	`+QSSLCFG: "negotiatetime",(0-5),(10-300)`,
	`+QSSLCFG: "sni",(0-5),(0,1)`,
	`+QSSLCFG: "checkhost",(0-5),(0,1)`,
	`+QSSLCFG: "ignorecertchain",(0-5),(0,1)`,
}

// cmdQSSLCFG configures SSL contexts: AT+QSSLCFG="<item>",<ctx>[,<value>].
// Without <value> it reads: +QSSLCFG: "<item>",<ctx>,<value>. Item names
// are lower case only; a context with a socket opening or open refuses
// changes.
func cmdQSSLCFG(m *Modem, c atCommand, r *reply) string {
	q := m.q
	switch c.form {
	case formTest:
		return r.add(qsslcfgTest...)
	case formSet:
		args, ok := argsIn(c.args, 2, 3)
		if !ok || !args[0].quoted {
			return q.errOf(qBadParam)
		}
		ctx, ok := intIn(args[1], 0, qSSLContexts-1)
		if !ok {
			return q.errOf(qBadParam)
		}
		item := args[0].text
		if len(args) == 2 {
			line, ok := q.ssl[ctx].show(item)
			if !ok {
				return q.errOf(qBadParam)
			}
			q.lastErr = qOK
			return r.add(fmt.Sprintf(`+QSSLCFG: "%s",%d,%s`, item, ctx, line))
		}
		if q.sslCtxBusy(ctx) {
			return q.errOf(572)
		}
		next, ok := q.ssl[ctx].with(item, args[2])
		if !ok {
			return q.errOf(qBadParam)
		}
		q.ssl[ctx], q.lastErr = next, qOK
		return ""
	}
	return q.errOf(qBadParam)
}

// show is the value part of an item's read answer.
func (c qssl) show(item string) (string, bool) {
	switch item {
	case "sslversion":
		return strconv.Itoa(c.version), true
	case "ciphersuite":
		return fmt.Sprintf("0X%04X", c.cipherSuites), true
	case "cacert":
		return strconv.Quote(c.caCert), true
	case "clientcert":
		return strconv.Quote(c.clientCert), true
	case "clientkey":
		return strconv.Quote(c.clientKey), true
	case "seclevel":
		return strconv.Itoa(c.authMode), true
	case "ignorelocaltime":
		return strconv.Itoa(c.ignoreLocalTime), true
	case "negotiatetime":
		return strconv.Itoa(c.negotiateTime), true
	case "sni":
		return strconv.Itoa(c.enableSNI), true
	case "checkhost":
		return strconv.Itoa(c.checkHost), true
	case "ignorecertchain":
		return strconv.Itoa(c.ignoreCertChain), true
	}
	return "", false
}

// with returns c with item set to v, or false when the item is unknown or
// v is outside what AT+QSSLCFG=? states; c itself never changes.
func (c qssl) with(item string, v atArg) (qssl, bool) {
	var ok bool
	switch item {
	case "sslversion":
		c.version, ok = intIn(v, 0, 4)
	case "ciphersuite":
		c.cipherSuites, ok = parseQCipher(v)
	case "cacert", "clientcert", "clientkey":
		var p string
		if p, ok = quotedString(v, 0, ufsNameMax+4); ok {
			switch item {
			case "cacert":
				c.caCert = p
			case "clientcert":
				c.clientCert = p
			default:
				c.clientKey = p
			}
		}
	case "seclevel":
		c.authMode, ok = intIn(v, 0, 2)
	case "ignorelocaltime":
		c.ignoreLocalTime, ok = oneOf(v, 0, 1)
	case "negotiatetime":
		c.negotiateTime, ok = intIn(v, 10, 300)
	case "sni":
		c.enableSNI, ok = oneOf(v, 0, 1)
	case "checkhost":
		c.checkHost, ok = oneOf(v, 0, 1)
	case "ignorecertchain":
		c.ignoreCertChain, ok = oneOf(v, 0, 1)
	}
	return c, ok
}

// parseQCipher reads an unquoted hex cipher code, 0X or 0x, any case of the
// digits. A quoted code is an ERROR, as on a real BG96.
func parseQCipher(a atArg) (int, bool) {
	t := strings.ToLower(a.text)
	if !a.present || a.quoted || !strings.HasPrefix(t, "0x") {
		return 0, false
	}
	v, err := strconv.ParseUint(t[2:], 16, 16)
	if err != nil {
		return 0, false
	}
	for _, code := range qCipherCodes {
		if int(v) == code {
			return code, true
		}
	}
	return 0, false
}

// sslCtxBusy says whether a socket opening or open uses SSL context ctx.
func (q *quectel) sslCtxBusy(ctx int) bool {
	for _, s := range q.socks {
		if s.kind == qkindSSL && s.sslCtx == ctx && (s.state == qsOpening || s.state == qsConnected) {
			return true
		}
	}
	return false
}

// qkind says which command family a socket belongs to.
type qkind int

const (
	qkindTCP qkind = iota // AT+QIOPEN "TCP": plain, for TLS by the host
	qkindSSL              // AT+QSSLOPEN: TLS by the module
)

// Socket states as AT+QSSLSTATE and AT+QISTATE show them.
const (
	qsInitial   = 0
	qsOpening   = 1
	qsConnected = 2
	qsClosing   = 4 // closed by the peer or the network; AT+QSSLCLOSE/AT+QICLOSE frees it
)

// qsocket is one socket id (0-11), shared by TCP and SSL.
type qsocket struct {
	id       int
	kind     qkind
	state    int
	pdpCtx   int
	sslCtx   int
	host     string
	port     int
	access   int // 0 buffer access, 1 direct push
	run      *sessionRun
	cache    []byte // received bytes the host has not taken
	notified bool   // a "recv" URC is out and the buffer was not emptied since
	// closeURC waits for the cache to drain (direct push mode).
	closeURC  bool
	txPending int // bytes answered SEND OK, not yet on the socket
	sent      int // AT+QISEND=<id>,0 <total_send_length>
	acked     int // ... <ackedbytes>: written to the socket
	received  int // AT+QIRD=<id>,0 <total_receive_length>
	read      int // ... <have_read_length>
}

// The URC and result prefixes of each kind.
func (s *qsocket) urcPrefix() string {
	if s.kind == qkindSSL {
		return "+QSSLURC: "
	}
	return "+QIURC: "
}

func (s *qsocket) openPrefix() string {
	if s.kind == qkindSSL {
		return "+QSSLOPEN: "
	}
	return "+QIOPEN: "
}

// release frees the socket at once: its connection, if any, is dropped
// without a close_notify and without a URC.
func (q *quectel) release(s *qsocket) {
	if s.run != nil {
		s.run.abort()
	}
	q.socks[s.id] = &qsocket{id: s.id}
}

// takeCache removes n bytes the host took and lets the reader go on.
func (s *qsocket) takeCache(n int) {
	s.cache = s.cache[n:]
	if len(s.cache) == 0 {
		s.cache = nil
	}
	s.read += n
	if s.run != nil && len(s.cache) < recvCacheLimit {
		s.run.grant()
	}
}

// socketArg parses a <clientID>/<connectID> (0-11).
func (q *quectel) socketArg(a atArg) (*qsocket, bool) {
	id, ok := intIn(a, 0, qMaxSockets-1)
	if !ok {
		return nil, false
	}
	return q.socks[id], true
}

// openRequest is what AT+QSSLOPEN or AT+QIOPEN asked for.
type openRequest struct {
	kind   qkind
	pdpCtx int
	sslCtx int
	id     int
	host   string
	port   int
	access int
}

// cmdQSSLOPEN is AT+QSSLOPEN=<pdpctx>,<sslctx>,<clientID>,"<serveraddr>",
// <port>[,<access_mode>]: OK at once, +QSSLOPEN: <clientID>,<err> when the
// connect and handshake finish. Transparent access (2) is not emulated.
func cmdQSSLOPEN(m *Modem, c atCommand, r *reply) string {
	q := m.q
	switch c.form {
	case formTest:
		return r.add("+QSSLOPEN: (1-16),(0-5),(0-11),<serveraddr>,<server_port>[,(0-2)]")
	case formSet:
		args, ok := argsIn(c.args, 5, 6)
		if !ok {
			return q.errOf(qBadParam)
		}
		req := openRequest{kind: qkindSSL}
		var pdpOK, sslOK, idOK, hostOK, portOK, accOK bool
		req.pdpCtx, pdpOK = pdpArg(args[0])
		req.sslCtx, sslOK = intIn(args[1], 0, qSSLContexts-1)
		req.id, idOK = intIn(args[2], 0, qMaxSockets-1)
		req.host, hostOK = quotedString(args[3], 1, 150)
		req.port, portOK = intIn(args[4], 1, 65535)
		req.access, accOK = optionalInt(args, 5, 0, 2, 0)
		if !pdpOK || !sslOK || !idOK || !hostOK || !portOK || !accOK {
			return q.errOf(qBadParam)
		}
		return q.open(req, r)
	}
	return q.errOf(qBadParam)
}

// cmdQIOPEN is AT+QIOPEN=<ctx>,<connectID>,"TCP","<address>",<remote_port>
// [,<local_port>[,<access_mode>]]: OK, then +QIOPEN: <connectID>,<err>. Only
// TCP clients are emulated; <local_port> is accepted and not used.
func cmdQIOPEN(m *Modem, c atCommand, r *reply) string {
	q := m.q
	switch c.form {
	case formTest:
		return r.add(`+QIOPEN: (1-16),(0-11),"TCP/UDP/TCP LISTENER/UDP SERVICE","<IP_address>/<domain_name>",<remote_port>,<local_port>,(0-2)`)
	case formSet:
		args, ok := argsIn(c.args, 5, 7)
		if !ok {
			return q.errOf(qBadParam)
		}
		req := openRequest{kind: qkindTCP}
		var pdpOK, idOK, typeOK, hostOK, portOK, lportOK, accOK bool
		req.pdpCtx, pdpOK = pdpArg(args[0])
		req.id, idOK = intIn(args[1], 0, qMaxSockets-1)
		svc, typeOK := quotedString(args[2], 1, 16)
		req.host, hostOK = quotedString(args[3], 1, 150)
		req.port, portOK = intIn(args[4], 1, 65535)
		_, lportOK = optionalInt(args, 5, 0, 65535, 0)
		req.access, accOK = optionalInt(args, 6, 0, 2, 0)
		if !pdpOK || !idOK || !typeOK || !hostOK || !portOK || !lportOK || !accOK {
			return q.errOf(qBadParam)
		}
		if svc != "TCP" {
			return q.errOf(qNotSupported)
		}
		return q.open(req, r)
	}
	return q.errOf(qBadParam)
}

// open starts an open once its OK is queued. A busy id answers OK and
// +…OPEN: <id>,563 and leaves the socket that holds it alone.
func (q *quectel) open(req openRequest, r *reply) string {
	if req.access == 2 {
		return q.errOf(qNotSupported)
	}
	q.lastErr = qOK
	s := q.socks[req.id]
	if s.state != qsInitial {
		prefix := (&qsocket{kind: req.kind}).openPrefix()
		r.after = append(r.after, func() { q.m.urc(fmt.Sprintf("%s%d,%d", prefix, req.id, qIDInUse)) })
		return ""
	}
	s = &qsocket{id: req.id, kind: req.kind, state: qsOpening, pdpCtx: req.pdpCtx, sslCtx: req.sslCtx,
		host: req.host, port: req.port, access: req.access}
	q.socks[req.id] = s
	sr := newSessionRun(q.m.ctx, q, s.id, 150*time.Second)
	s.run = sr
	r.after = append(r.after, func() { q.startOpen(s, sr) })
	return ""
}

// startOpen checks what can be checked at once (context, certificate
// files) and starts the session goroutine.
func (q *quectel) startOpen(s *qsocket, sr *sessionRun) {
	m := q.m
	if s.run != sr {
		return
	}
	if !m.registered() || !q.pdp[s.pdpCtx].active {
		q.failOpen(s, qPDPFailed)
		return
	}
	p := dialParams{host: s.host, port: s.port, clientType: 1, rtcAtOpen: m.rtcNow(), openedAt: time.Now()}
	p.ssl.negotiateTime = qTCPOpenTime
	if s.kind == qkindSSL {
		ctx := q.ssl[s.sslCtx]
		mat, err := q.loadMaterial(ctx.sslContext)
		if err != nil {
			m.log.Info("session open refused", "modem", m.path, "session", s.id, "op", "open", "code", qConnectFailed, "err", err)
			q.failOpen(s, qConnectFailed)
			return
		}
		p.clientType, p.ssl, p.mat = 2, ctx.sslContext, mat
	}
	m.wg.Add(1)
	go m.runSession(sr, p)
}

// loadMaterial reads the UFS files the context's seclevel needs: cacert
// for 1 and 2, clientcert and clientkey for 2.
func (q *quectel) loadMaterial(c sslContext) (tlsMaterial, error) {
	var mat tlsMaterial
	need := func(item, name string) ([]byte, error) {
		if name == "" {
			return nil, fmt.Errorf("seclevel %d needs %s, which is not set", c.authMode, item)
		}
		return q.ufs.read(name)
	}
	var err error
	if c.authMode >= 1 {
		if mat.ca, err = need("cacert", c.caCert); err != nil {
			return mat, err
		}
	}
	if c.authMode == 2 {
		if mat.cert, err = need("clientcert", c.clientCert); err != nil {
			return mat, err
		}
		if mat.key, err = need("clientkey", c.clientKey); err != nil {
			return mat, err
		}
	}
	return mat, nil
}

// failOpen ends an open with +QSSLOPEN/+QIOPEN: <id>,<err>; the id is free
// again.
func (q *quectel) failOpen(s *qsocket, code int) {
	prefix := s.openPrefix()
	q.release(s)
	q.m.urc(fmt.Sprintf("%s%d,%d", prefix, s.id, code))
}

// qDialCode maps a failed dial to the TCP/IP manual's codes: 565 DNS,
// 569 timeout (negotiatetime), 566 anything else (refused, handshake,
// certificate).
func qDialCode(code int, err error) int {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return qTimeout
	case code == cchDNS:
		return qDNSFailed
	default:
		return qConnectFailed
	}
}

// openFailed implements sessionOwner.
func (q *quectel) openFailed(sr *sessionRun, code int) {
	if s := q.socks[sr.id]; s.run == sr && s.state == qsOpening {
		q.failOpen(s, qDialCode(code, sr.dialErr))
	}
}

// openSucceeded implements sessionOwner.
func (q *quectel) openSucceeded(sr *sessionRun, conn net.Conn, raw *netConn) bool {
	s := q.socks[sr.id]
	if s.run != sr || s.state != qsOpening {
		return false
	}
	sr.conn, sr.raw = conn, raw
	s.state = qsConnected
	q.m.counters.sessionsOpened.Add(1)
	q.m.urc(fmt.Sprintf("%s%d,%d", s.openPrefix(), s.id, qOK))
	return true
}

// sessionData implements sessionOwner: the bytes wait in the socket's
// buffer; in buffer access mode the first byte into a buffer the host
// emptied raises one "recv" URC.
func (q *quectel) sessionData(sr *sessionRun, b []byte) {
	s := q.socks[sr.id]
	if s.run != sr || s.state != qsConnected {
		return
	}
	s.cache = append(s.cache, b...)
	s.received += len(b)
	if s.access == 0 && !s.notified {
		s.notified = true
		q.m.urc(fmt.Sprintf(`%s"recv",%d`, s.urcPrefix(), s.id))
	}
	if len(s.cache) < recvCacheLimit {
		sr.grant()
	}
}

// sessionReadEnded implements sessionOwner: whatever ended the receive
// side (FIN, close_notify, reset, network error), the socket goes to
// "closing" with a "closed" URC.
func (q *quectel) sessionReadEnded(sr *sessionRun, err error) {
	s := q.socks[sr.id]
	if s.run != sr || s.state != qsConnected {
		return
	}
	q.m.log.Info("session ended by the network side", "modem", q.m.path, "session", s.id, "op", "recv", "err", err)
	q.closeByPeer(s)
}

// closeByPeer moves a connected socket to "closing": the connection is
// dropped, received data stays readable, and "closed" is reported (in
// direct push mode once the data is delivered).
func (q *quectel) closeByPeer(s *qsocket) {
	s.run.abort()
	s.run = nil
	s.state = qsClosing
	s.txPending = 0
	if s.access == 1 && len(s.cache) > 0 {
		s.closeURC = true
		return
	}
	q.m.urc(fmt.Sprintf(`%s"closed",%d`, s.urcPrefix(), s.id))
}

// sessionSent implements sessionOwner: SEND OK was given when the bytes
// were accepted, so a write is only accounted; a failed one ends the
// connection like a close by the peer.
func (q *quectel) sessionSent(sr *sessionRun, n, code int) {
	s := q.socks[sr.id]
	if s.run != sr {
		if _, flushing := q.closing[sr]; flushing && code == cchOK {
			q.m.counters.payloadTx.Add(int64(n))
		}
		return
	}
	s.txPending -= n
	if code != cchOK {
		if s.state == qsConnected {
			q.closeByPeer(s)
		}
		return
	}
	s.acked += n
	q.m.counters.payloadTx.Add(int64(n))
}

// sessionClosed implements sessionOwner: a background close finished.
func (q *quectel) sessionClosed(sr *sessionRun) {
	delete(q.closing, sr)
}

// pushFrame is the next received data frame of a socket in direct push
// mode, round robin: +QSSLURC: "recv",<id>,<len> (+QIURC for TCP), CR LF
// and the bytes; a pending "closed" follows the last frame.
func (q *quectel) pushFrame(m *Modem) (outItem, bool) {
	for k := range q.socks {
		i := (q.rr + k) % len(q.socks)
		s := q.socks[i]
		if s.access != 1 || len(s.cache) == 0 {
			continue
		}
		n := min(len(s.cache), qPushFrame)
		frame := fmt.Appendf(nil, "\r\n%s\"recv\",%d,%d\r\n", s.urcPrefix(), s.id, n)
		frame = append(frame, s.cache[:n]...)
		s.takeCache(n)
		m.counters.payloadRx.Add(int64(n))
		q.rr = i + 1
		if len(s.cache) == 0 && s.closeURC {
			s.closeURC = false
			m.urc(fmt.Sprintf(`%s"closed",%d`, s.urcPrefix(), s.id))
		}
		return outItem{data: frame}, true
	}
	return outItem{}, false
}

// networkLost is the network taking the contexts away: +QIURC:
// "pdpdeact",<ctx> for each active one, then opens on it fail with 570 and
// open sockets on it are closed ("closed" URC).
func (q *quectel) networkLost(m *Modem) {
	for ctx := 1; ctx <= qMaxPDP; ctx++ {
		if !q.pdp[ctx].active {
			continue
		}
		q.pdp[ctx].active = false
		m.urc(fmt.Sprintf(`+QIURC: "pdpdeact",%d`, ctx))
		for _, s := range q.socks {
			if s.pdpCtx != ctx {
				continue
			}
			switch s.state {
			case qsOpening:
				q.failOpen(s, qPDPBroken)
			case qsConnected:
				q.closeByPeer(s)
			}
		}
	}
}

// peerClose is the peer-close fault: socket id (or every connected one)
// is closed as if its server had.
func (q *quectel) peerClose(m *Modem, id int) error {
	closed := false
	for _, s := range q.socks {
		if s.state == qsConnected && (id == PeerCloseAll || s.id == id) {
			q.closeByPeer(s)
			closed = true
		}
	}
	switch {
	case closed:
		return nil
	case id == PeerCloseAll:
		return errors.New("fault peer-close: no session is open")
	}
	return fmt.Errorf("fault peer-close: session %d is not open", id)
}

// sendCommand serves AT+QSSLSEND and AT+QISEND for sockets of kind:
// =<id>,<len> prompts and takes exactly <len> bytes (1-1460); =<id> takes
// bytes up to Ctrl-Z (send) or ESC (cancel). The answer is SEND OK once the
// bytes are in the send buffer, SEND FAIL when it is full, ERROR when the
// socket is not connected. AT+QISEND=<id>,0 reports the totals instead.
func (q *quectel) sendCommand(kind qkind, c atCommand, r *reply) string {
	args, ok := argsIn(c.args, 1, 2)
	if !ok {
		return q.errOf(qBadParam)
	}
	s, ok := q.socketArg(args[0])
	if !ok {
		return q.errOf(qBadParam)
	}
	n := -1
	if len(args) == 2 {
		lo := 1
		if kind == qkindTCP {
			lo = 0
		}
		if n, ok = intIn(args[1], lo, qMaxSend); !ok {
			return q.errOf(qBadParam)
		}
	}
	if s.kind != kind || s.state != qsConnected {
		return q.errOf(qClosed)
	}
	q.lastErr = qOK
	if n == 0 {
		return r.add(fmt.Sprintf("+QISEND: %d,%d,%d", s.sent, s.acked, s.sent-s.acked))
	}
	sr := s.run
	done := func(data []byte) reply {
		if s.run != sr || s.state != qsConnected {
			q.lastErr = qClosed
			return reply{final: "ERROR"}
		}
		if s.txPending+len(data) > qSendBuffer {
			return reply{final: "SEND FAIL"}
		}
		if q.m.st.echo && q.qisde == 1 {
			q.m.send(bytes.Clone(data), 0, nil, nil)
		}
		s.txPending += len(data)
		s.sent += len(data)
		sr.tx.push(txItem{data: data})
		return reply{final: "SEND OK"}
	}
	p := &payloadWait{need: n, prompt: []byte("\r\n> "), done: done}
	if n < 0 {
		p.feed = q.ctrlZFeed(p)
	}
	r.prompt = p
	return ""
}

// Terminators of the variable-length send form.
const (
	ctrlZ = 0x1A
	esc   = 0x1B
)

// ctrlZFeed takes variable-length send data up to Ctrl-Z (send) or ESC
// (cancel: OK, nothing sent). More than 1460 bytes before the Ctrl-Z are
// an ERROR; the excess is discarded.
func (q *quectel) ctrlZFeed(p *payloadWait) func(in []byte) int {
	done, over := p.done, false
	return func(in []byte) int {
		i := bytes.IndexAny(in, "\x1a\x1b")
		take := in
		if i >= 0 {
			take = in[:i]
		}
		room := qMaxSend - len(p.buf)
		if len(take) > room {
			over = true
			take = take[:room]
		}
		p.buf = append(p.buf, take...)
		if i < 0 {
			return len(in)
		}
		switch {
		case in[i] == esc:
			p.done = func([]byte) reply { return reply{final: "OK"} }
		case over || len(p.buf) == 0:
			p.done = func([]byte) reply { q.lastErr = qBadParam; return reply{final: "ERROR"} }
		default:
			p.done = done
		}
		q.m.completePayload(p.buf)
		return i + 1
	}
}

func cmdQSSLSEND(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add(fmt.Sprintf("+QSSLSEND: (0-11)[,(1-%d)]", qMaxSend))
	case formSet:
		return m.q.sendCommand(qkindSSL, c, r)
	}
	return m.q.errOf(qBadParam)
}

func cmdQISEND(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add(fmt.Sprintf("+QISEND: (0-11),(0-%d)", qMaxSend))
	case formSet:
		return m.q.sendCommand(qkindTCP, c, r)
	}
	return m.q.errOf(qBadParam)
}

// recvCommand serves AT+QSSLRECV=<id>,<readlen> and AT+QIRD=<id>[,<len>]:
// +…: <n> CR LF and n raw bytes (at most the length asked), then OK; an
// empty buffer answers +…: 0. A socket the peer closed stays readable
// until it is closed. AT+QIRD=<id>,0 reports the totals instead.
func (q *quectel) recvCommand(kind qkind, name string, c atCommand, r *reply) string {
	args, ok := argsIn(c.args, 1, 2)
	if !ok || (kind == qkindSSL && len(args) != 2) {
		return q.errOf(qBadParam)
	}
	s, ok := q.socketArg(args[0])
	if !ok {
		return q.errOf(qBadParam)
	}
	lo := 1
	if kind == qkindTCP {
		lo = 0
	}
	limit, ok := optionalInt(args, 1, lo, qMaxRead, qMaxRead)
	if !ok {
		return q.errOf(qBadParam)
	}
	if s.kind != kind || (s.state != qsConnected && s.state != qsClosing) {
		return q.errOf(qClosed)
	}
	q.lastErr = qOK
	if limit == 0 {
		return r.add(fmt.Sprintf("%s: %d,%d,%d", name, s.received, s.read, s.received-s.read))
	}
	n := min(limit, len(s.cache))
	if n == 0 {
		return r.add(name + ": 0")
	}
	data := string(s.cache[:n])
	s.takeCache(n)
	if len(s.cache) == 0 {
		s.notified = false
	}
	q.m.counters.payloadRx.Add(int64(n))
	return r.add(fmt.Sprintf("%s: %d", name, n), data)
}

func cmdQSSLRECV(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add(fmt.Sprintf("+QSSLRECV: (0-11),(1-%d)", qMaxRead))
	case formSet:
		return m.q.recvCommand(qkindSSL, "+QSSLRECV", c, r)
	}
	return m.q.errOf(qBadParam)
}

func cmdQIRD(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add(fmt.Sprintf("+QIRD: (0-11),(0-%d)", qMaxRead))
	case formSet:
		return m.q.recvCommand(qkindTCP, "+QIRD", c, r)
	}
	return m.q.errOf(qBadParam)
}

// closeCommand serves AT+QSSLCLOSE and AT+QICLOSE=<id>[,<timeout>]: OK,
// and the id is free at once. An open connection flushes what it holds and
// closes (TLS with close_notify) in the background, for at most <timeout>
// seconds (default 10; 0 drops it at once); an open in progress is
// abandoned. An id that is already free answers OK too.
func (q *quectel) closeCommand(kind qkind, c atCommand) string {
	args, ok := argsIn(c.args, 1, 2)
	if !ok {
		return q.errOf(qBadParam)
	}
	s, ok := q.socketArg(args[0])
	if !ok {
		return q.errOf(qBadParam)
	}
	timeout, ok := optionalInt(args, 1, 0, 65535, 10)
	if !ok {
		return q.errOf(qBadParam)
	}
	if s.state != qsInitial && s.kind != kind {
		return q.errOf(572)
	}
	q.lastErr = qOK
	if s.state != qsConnected || timeout == 0 {
		q.release(s)
		return ""
	}
	sr := s.run
	q.closing[sr] = struct{}{}
	sr.tx.push(txItem{close: true})
	q.m.after(time.Duration(timeout)*time.Second, func() {
		if _, ok := q.closing[sr]; ok {
			sr.abort()
			delete(q.closing, sr)
		}
	})
	q.socks[s.id] = &qsocket{id: s.id}
	return ""
}

func cmdQSSLCLOSE(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add("+QSSLCLOSE: (0-11),(0-65535)")
	case formSet:
		return m.q.closeCommand(qkindSSL, c)
	}
	return m.q.errOf(qBadParam)
}

func cmdQICLOSE(m *Modem, c atCommand, r *reply) string {
	switch c.form {
	case formTest:
		return r.add("+QICLOSE: (0-11),(0-65535)")
	case formSet:
		return m.q.closeCommand(qkindTCP, c)
	}
	return m.q.errOf(qBadParam)
}

// stateLine is a socket's AT+QSSLSTATE or AT+QISTATE line. The address is
// the one the open named; the local port is the module's own (virtual)
// one; <serverID> repeats the id, as the manual's example does.
func (s *qsocket) stateLine() string {
	lport := qLocalPortBase + s.id
	if s.kind == qkindSSL {
		return fmt.Sprintf(`+QSSLSTATE: %d,"SSLClient","%s",%d,%d,%d,%d,%d,%d,"usbmodem",%d`,
			s.id, s.host, s.port, lport, s.state, s.pdpCtx, s.id, s.access, s.sslCtx)
	}
	return fmt.Sprintf(`+QISTATE: %d,"TCP","%s",%d,%d,%d,%d,%d,%d,"usbmodem"`,
		s.id, s.host, s.port, lport, s.state, s.pdpCtx, s.id, s.access)
}

// listStates adds the state line of every socket of kind that is not
// free and that keep accepts.
func (q *quectel) listStates(kind qkind, r *reply, keep func(*qsocket) bool) {
	for _, s := range q.socks {
		if s.kind == kind && s.state != qsInitial && keep(s) {
			r.add(s.stateLine())
		}
	}
}

func all(*qsocket) bool { return true }

// cmdQSSLSTATE lists SSL sockets: AT+QSSLSTATE all, AT+QSSLSTATE=<id> one;
// a free id is just OK.
func cmdQSSLSTATE(m *Modem, c atCommand, r *reply) string {
	q := m.q
	switch c.form {
	case formTest:
		return ""
	case formExec:
		q.listStates(qkindSSL, r, all)
		return ""
	case formSet:
		args, ok := argsIn(c.args, 1, 1)
		if !ok {
			return q.errOf(qBadParam)
		}
		id, ok := intIn(args[0], 0, qMaxSockets-1)
		if !ok {
			return q.errOf(qBadParam)
		}
		q.listStates(qkindSSL, r, func(s *qsocket) bool { return s.id == id })
		return ""
	}
	return q.errOf(qBadParam)
}

// cmdQISTATE lists TCP sockets: AT+QISTATE? and AT+QISTATE all of them,
// AT+QISTATE=0,<ctx> those of a context, AT+QISTATE=1,<id> one.
func cmdQISTATE(m *Modem, c atCommand, r *reply) string {
	q := m.q
	switch c.form {
	case formTest:
		return ""
	case formExec, formRead:
		q.listStates(qkindTCP, r, all)
		return ""
	case formSet:
		args, ok := argsIn(c.args, 2, 2)
		if !ok {
			return q.errOf(qBadParam)
		}
		typ, ok := intIn(args[0], 0, 1)
		if !ok {
			return q.errOf(qBadParam)
		}
		if typ == 0 {
			ctx, ok := pdpArg(args[1])
			if !ok {
				return q.errOf(qBadParam)
			}
			q.listStates(qkindTCP, r, func(s *qsocket) bool { return s.pdpCtx == ctx })
			return ""
		}
		id, ok := intIn(args[1], 0, qMaxSockets-1)
		if !ok {
			return q.errOf(qBadParam)
		}
		q.listStates(qkindTCP, r, func(s *qsocket) bool { return s.id == id })
		return ""
	}
	return q.errOf(qBadParam)
}
