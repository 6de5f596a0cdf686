package modemsim

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// sessState is where a CCH session is in its life.
type sessState int

const (
	sessIdle    sessState = iota // no connection
	sessOpening                  // AT+CCHOPEN answered OK, dial or handshake running
	sessOpen                     // connected
	sessClosing                  // AT+CCHCLOSE answered OK, flushing and closing
)

// session is a CCH session slot (0 or 1), owned by the core.
type session struct {
	id          int
	state       sessState
	sslCtx      int // AT+CCHSSLCFG / "sslctx"; -1 means "same as the session id"
	sendTimeout int // seconds, AT+CCHCFG="sendtimeout"
	host        string
	port        int
	clientType  int
	bindPort    int
	recvMode    int  // AT+CCHSET <recv_mode> in force when the session opened
	transparent bool // opened with AT+CCHMODE=1
	run         *sessionRun
	cache       []byte // received bytes the host has not been given yet
	closeURC    string // printed once the cache is delivered (auto mode)
	txPending   int    // bytes accepted by AT+CCHSEND, not yet on the socket
	endPending  string // the server closed; end once in-flight sends are reported
}

func newSession(id int) *session {
	return &session{id: id, sslCtx: -1, sendTimeout: 150}
}

// clearConnCfg forgets AT+CCHSSLCFG and AT+CCHCFG, as the module does
// after a close or a failed open.
func (s *session) clearConnCfg() {
	s.sslCtx, s.sendTimeout = -1, 150
}

// sslIndex is the AT+CSSLCFG context the session opens with.
func (s *session) sslIndex() int {
	if s.sslCtx < 0 {
		return s.id
	}
	return s.sslCtx
}

// toIdle aborts the session's connection attempt or connection, if any,
// and returns the slot to idle without its per-connection configuration.
func (s *session) toIdle() {
	if s.run != nil {
		s.run.abort()
		s.run = nil
	}
	s.state = sessIdle
	s.clearConnCfg()
}

// takeCache removes n delivered bytes and lets the reader go on when the
// cache has room again.
func (s *session) takeCache(n int) {
	s.cache = s.cache[n:]
	if len(s.cache) == 0 {
		s.cache = nil
	}
	if s.run != nil && len(s.cache) < recvCacheLimit {
		s.run.grant()
	}
}

// sessionOwner is the dialect that turns a connection's events into its
// own state and URCs. Every method runs on the core. The SIMCom dialect
// is the Modem itself (CCH sessions); the Quectel one is its *quectel
// state (sockets).
type sessionOwner interface {
	openFailed(sr *sessionRun, code int)
	openSucceeded(sr *sessionRun, conn net.Conn, raw *netConn) bool
	sessionData(sr *sessionRun, b []byte)
	sessionReadEnded(sr *sessionRun, err error)
	sessionSent(sr *sessionRun, n, code int)
	sessionClosed(sr *sessionRun)
}

// sessionRun is one connection attempt of a session and the goroutines
// serving it. The core owns conn and raw once the open succeeded.
type sessionRun struct {
	owner       sessionOwner
	dialErr     error // why the dial failed; set before openFailed is posted
	id          int
	ctx         context.Context
	cancel      context.CancelFunc
	conn        net.Conn // TLS or plain TCP
	raw         *netConn // the TCP socket under conn
	space       chan struct{}
	tx          txQueue
	sendTimeout time.Duration
}

func newSessionRun(parent context.Context, owner sessionOwner, id int, sendTimeout time.Duration) *sessionRun {
	ctx, cancel := context.WithCancel(parent)
	sr := &sessionRun{owner: owner, id: id, ctx: ctx, cancel: cancel, space: make(chan struct{}, 1), sendTimeout: sendTimeout}
	sr.tx.signal = make(chan struct{}, 1)
	sr.grant()
	return sr
}

// grant lets the reader do one more socket read.
func (sr *sessionRun) grant() {
	select {
	case sr.space <- struct{}{}:
	default:
	}
}

// abort ends the run at once: the socket is closed without a TLS
// close_notify, as when the module resets or loses the network.
func (sr *sessionRun) abort() {
	sr.cancel()
	if sr.raw != nil {
		sr.raw.Close()
	}
}

// txItem is one AT+CCHSEND payload, or the request to close gracefully.
type txItem struct {
	data  []byte
	close bool
}

// txQueue hands payloads from the core to the session's writer without
// ever blocking the core; the core bounds it by txPending.
type txQueue struct {
	mu     sync.Mutex
	items  []txItem
	signal chan struct{}
}

func (q *txQueue) push(it txItem) {
	q.mu.Lock()
	q.items = append(q.items, it)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *txQueue) pop() (txItem, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return txItem{}, false
	}
	it := q.items[0]
	q.items[0] = txItem{}
	q.items = q.items[1:]
	return it, true
}

// netConn is a session's TCP socket: it counts bytes each way and adds the
// configured network latency before each write.
type netConn struct {
	net.Conn
	m       *Modem
	latency time.Duration
	closed  chan struct{}
	once    sync.Once
}

func (c *netConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.m.counters.netRx.Add(int64(n))
	return n, err
}

func (c *netConn) Write(b []byte) (int, error) {
	if c.latency > 0 {
		t := time.NewTimer(c.latency)
		select {
		case <-t.C:
		case <-c.closed:
			t.Stop()
			return 0, net.ErrClosed
		}
	}
	n, err := c.Conn.Write(b)
	c.m.counters.netTx.Add(int64(n))
	return n, err
}

func (c *netConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// dialParams is everything a session goroutine needs, copied from the core.
type dialParams struct {
	host       string
	port       int
	clientType int
	ssl        sslContext
	mat        tlsMaterial
	rtcAtOpen  time.Time // the module's RTC when AT+CCHOPEN ran
	openedAt   time.Time // the wall clock at that moment
}

// runSession dials, hands the connection to the core and then serves its
// receive side; the send side runs in its own goroutine.
func (m *Modem) runSession(sr *sessionRun, p dialParams) {
	defer m.wg.Done()
	conn, raw, code, err := m.dial(sr.ctx, p)
	if code != cchOK {
		if sr.ctx.Err() == nil {
			m.log.Info("session open failed", "modem", m.path, "session", sr.id, "op", "open",
				"host", p.host, "port", p.port, "code", code, "err", err)
		}
		sr.dialErr = err
		m.post(func() { sr.owner.openFailed(sr, code) })
		return
	}
	accepted := false
	if !m.call(func() { accepted = sr.owner.openSucceeded(sr, conn, raw) }) || !accepted {
		raw.Close()
		return
	}
	m.log.Info("session open", "modem", m.path, "session", sr.id, "op", "open", "host", p.host, "port", p.port)
	m.wg.Add(1)
	go m.sessionWriter(sr, conn)
	m.sessionReader(sr, conn)
}

// dial resolves, connects and (client type 2) performs the TLS handshake,
// all within negotiatetime. It returns the CCH error code of the failing
// step: 13 DNS, 14 connect, 15 handshake.
func (m *Modem) dial(ctx context.Context, p dialParams) (net.Conn, *netConn, int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(p.ssl.negotiateTime)*time.Second)
	defer cancel()
	if err := sleepCtx(ctx, m.cfg.NetworkLatency); err != nil {
		return nil, nil, cchConnect, fmt.Errorf("network latency: %w", err)
	}
	ip, err := m.resolve(ctx, p.host)
	if err != nil {
		return nil, nil, cchDNS, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(p.port)))
	if err != nil {
		return nil, nil, cchConnect, fmt.Errorf("connect %s:%d: %w", ip, p.port, err)
	}
	if m.cfg.NetworkDelay > 0 || m.cfg.NetworkRate > 0 {
		// The SYN and SYN-ACK cross the link before the socket is open.
		if err := sleepCtx(ctx, 2*m.cfg.NetworkDelay); err != nil {
			c.Close()
			return nil, nil, cchConnect, fmt.Errorf("network delay: %w", err)
		}
		c = newDelayConn(c, m.cfg.NetworkDelay, m.cfg.NetworkRate)
	}
	raw := &netConn{Conn: c, m: m, latency: m.cfg.NetworkLatency, closed: make(chan struct{})}
	if p.clientType == 1 {
		return raw, raw, cchOK, nil
	}
	rtc := func() time.Time { return p.rtcAtOpen.Add(time.Since(p.openedAt)) }
	cfg, err := buildTLSConfig(p.ssl, p.mat, p.host, rtc)
	if err != nil {
		raw.Close()
		return nil, nil, cchHandshake, fmt.Errorf("tls setup: %w", err)
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, nil, cchHandshake, fmt.Errorf("tls handshake with %s:%d: %w", p.host, p.port, err)
	}
	return tc, raw, cchOK, nil
}

// resolve maps a host to an IP: literals as they are, then Config.Hosts,
// then the system resolver (IPv4 preferred, as the module's PDP is IPv4).
func (m *Modem) resolve(ctx context.Context, host string) (string, error) {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if net.ParseIP(h) != nil {
		return h, nil
	}
	for name, ip := range m.cfg.Hosts {
		if strings.EqualFold(name, host) {
			return ip, nil
		}
	}
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", host, err)
	}
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip != nil && ip.To4() != nil {
			return a, nil
		}
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("resolve %q: no addresses", host)
	}
	return addrs[0], nil
}

// sessionReader reads the socket whenever the core has room for more.
func (m *Modem) sessionReader(sr *sessionRun, conn net.Conn) {
	buf := make([]byte, 4*frameMax)
	for {
		select {
		case <-sr.space:
		case <-sr.ctx.Done():
			return
		}
		n, err := conn.Read(buf)
		if n > 0 {
			data := bytes.Clone(buf[:n])
			if !m.post(func() { sr.owner.sessionData(sr, data) }) {
				return
			}
		}
		if err != nil {
			m.post(func() { sr.owner.sessionReadEnded(sr, err) })
			return
		}
	}
}

// sessionWriter writes queued payloads in order and reports each; after
// a failure the rest fail with the same code. A close item flushes, then
// closes with a TLS close_notify.
func (m *Modem) sessionWriter(sr *sessionRun, conn net.Conn) {
	defer m.wg.Done()
	broken := cchOK
	for {
		select {
		case <-sr.tx.signal:
		case <-sr.ctx.Done():
			return
		}
		for {
			it, ok := sr.tx.pop()
			if !ok {
				break
			}
			if it.close {
				if broken == cchOK {
					conn.Close()
				} else {
					sr.raw.Close()
				}
				m.post(func() { sr.owner.sessionClosed(sr) })
				return
			}
			code := broken
			if code == cchOK {
				conn.SetWriteDeadline(time.Now().Add(sr.sendTimeout))
				if _, err := conn.Write(it.data); err != nil {
					code = writeErrCode(err)
					broken = code
					m.log.Info("session send failed", "modem", m.path, "session", sr.id, "op", "send", "code", code, "err", err)
				}
			}
			n := len(it.data)
			if !m.post(func() { sr.owner.sessionSent(sr, n, code) }) {
				return
			}
		}
	}
}

func writeErrCode(err error) int {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return cchSendTimeout
	case errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET):
		return cchPeerClosed
	default:
		return cchNetworkError
	}
}

// peerClosed says whether a read error means the server closed the
// connection (FIN, close_notify or reset) rather than a network failure.
func peerClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// openFailed ends an open attempt with +CCHOPEN: <id>,<code> (CONNECT FAIL
// in transparent mode) and forgets the per-connection configuration.
func (m *Modem) openFailed(sr *sessionRun, code int) {
	s := m.sessions[sr.id]
	if s.run != sr {
		return
	}
	s.toIdle()
	if s.transparent {
		s.transparent = false
		m.urc("CONNECT FAIL")
		return
	}
	m.urc(fmt.Sprintf("+CCHOPEN: %d,%d", s.id, code))
}

// openSucceeded adopts the connection if the attempt is still wanted.
func (m *Modem) openSucceeded(sr *sessionRun, conn net.Conn, raw *netConn) bool {
	s := m.sessions[sr.id]
	if s.run != sr || s.state != sessOpening {
		return false
	}
	sr.conn, sr.raw = conn, raw
	s.state = sessOpen
	m.counters.sessionsOpened.Add(1)
	if s.transparent {
		m.enterData(s)
		return true
	}
	m.urc(fmt.Sprintf("+CCHOPEN: %d,%d", s.id, cchOK))
	return true
}

// sessionData caches received bytes; in manual mode the first byte into an
// empty cache raises +CCHEVENT.
func (m *Modem) sessionData(sr *sessionRun, b []byte) {
	s := m.sessions[sr.id]
	if s.run != sr || s.state != sessOpen {
		return
	}
	wasEmpty := len(s.cache) == 0
	s.cache = append(s.cache, b...)
	if s.recvMode == 1 && !s.transparent && wasEmpty {
		m.urc(fmt.Sprintf("+CCHEVENT: %d,RECV EVENT", s.id))
	}
	if len(s.cache) < recvCacheLimit {
		sr.grant()
	}
}

// sessionReadEnded turns the end of the receive side into the URC the
// module prints: +CCH_PEER_CLOSED when the server closed, otherwise
// +CCH_RECV_CLOSED: <id>,9.
func (m *Modem) sessionReadEnded(sr *sessionRun, err error) {
	s := m.sessions[sr.id]
	if s.run != sr || s.state != sessOpen {
		return
	}
	urc := fmt.Sprintf("+CCH_PEER_CLOSED: %d", s.id)
	if !peerClosed(err) {
		urc = fmt.Sprintf("+CCH_RECV_CLOSED: %d,%d", s.id, cchNetworkError)
	}
	m.log.Info("session ended by the network side", "modem", m.path, "session", s.id, "op", "recv", "err", err)
	if s.txPending > 0 {
		// Sends already on their way are reported before the close, as
		// the module does; the writer's next report finishes the end.
		s.endPending = urc
		return
	}
	m.endSession(s, urc)
}

// endSession ends a session from the network side. In auto receive mode
// the URC waits until the bytes already received are delivered; in manual
// mode the cache stays readable with AT+CCHRECV.
func (m *Modem) endSession(s *session, urc string) {
	wasClosing := s.state == sessClosing
	s.toIdle()
	s.endPending = ""
	s.txPending = 0
	if wasClosing {
		// The host already asked to close; this completes it.
		s.cache = nil
		urc = fmt.Sprintf("+CCHCLOSE: %d,%d", s.id, cchOK)
	}
	if s.transparent {
		s.closeURC = "CLOSED"
		if len(s.cache) == 0 || m.transp == nil || !m.transp.online {
			m.leaveData(s)
		}
		return
	}
	if s.recvMode == 0 && len(s.cache) > 0 {
		s.closeURC = urc
		return
	}
	m.urc(urc)
}

// sessionSent accounts a payload written to the socket and reports it
// when AT+CCHSET enabled send reports.
func (m *Modem) sessionSent(sr *sessionRun, n, code int) {
	s := m.sessions[sr.id]
	if s.run != sr {
		return
	}
	s.txPending -= n
	if code == cchOK {
		m.counters.payloadTx.Add(int64(n))
	}
	if m.st.cchReport == 1 && !s.transparent {
		m.urc(fmt.Sprintf("+CCHSEND: %d,%d", s.id, code))
	}
	if s.endPending != "" && s.txPending == 0 && s.state == sessOpen {
		m.endSession(s, s.endPending)
	}
}

// sessionClosed completes AT+CCHCLOSE.
func (m *Modem) sessionClosed(sr *sessionRun) {
	s := m.sessions[sr.id]
	if s.run != sr {
		return
	}
	s.toIdle()
	s.cache = nil
	s.closeURC = ""
	s.txPending = 0
	s.endPending = ""
	m.log.Info("session closed", "modem", m.path, "session", s.id, "op", "close")
	if s.transparent {
		s.transparent = false
		m.transp = nil
		m.urc("CLOSED")
		return
	}
	m.urc(fmt.Sprintf("+CCHCLOSE: %d,%d", s.id, cchOK))
}
