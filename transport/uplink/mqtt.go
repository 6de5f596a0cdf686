package uplink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"

	"github.com/cellgate/cellgate/internal/backoff"
	"github.com/cellgate/cellgate/internal/redact"
	"github.com/cellgate/cellgate/transport"
)

// MQTTConfig configures an MQTT v5 uplink. Zero durations take the defaults
// named on each field.
type MQTTConfig struct {
	// BrokerURL names the broker in logs and errors (with any password
	// redacted) and carries the CONNECT user name and password when it has
	// user info. The connection itself always comes from the Dialer.
	BrokerURL *url.URL
	// Topic is where messages are published; it may not hold wildcards.
	Topic string
	// QoS is 1 (Send waits for PUBACK: at-least-once, the default in the
	// agent's config), 2 (Send waits for PUBCOMP) or 0 (Send returns once
	// the PUBLISH is written: at-most-once, a reading can be lost).
	QoS byte
	// ClientID is fixed per gateway: the broker keeps the session, and
	// with it unacknowledged messages, under this ID.
	ClientID string
	// SessionExpiry is how long the broker keeps the session after the
	// connection drops (default 1h). It must be above zero so that an
	// in-flight QoS 1 message survives a reconnect.
	SessionExpiry time.Duration
	// KeepAlive is the MQTT keep-alive interval (default 4m). It also
	// bounds the wait for an acknowledgement on a dead link: paho pings
	// the broker whenever nothing went either way for KeepAlive, and drops
	// the connection when the PINGRESP has not come KeepAlive later. The
	// default is sized for cellular: longer than a 60 s batching budget,
	// so no ping goes while messages flow, and shorter than the idle
	// timeout of carriers' NATs (some drop an idle TCP flow after under
	// 5 minutes), so an idle connection survives (bench/README.md).
	KeepAlive time.Duration
	// ConnectTimeout bounds one connection attempt: the dial (the modem
	// session and TLS) plus CONNECT/CONNACK (default 30s).
	ConnectTimeout time.Duration
	// AckTimeout is how long an acknowledgement may take before the
	// uplink logs that it is still waiting, and again each AckTimeout
	// (default 60s). It does not end the wait: a slow acknowledgement on a
	// connection that answers its keep-alive is waited for, since giving
	// up would publish the message a second time on a live link.
	AckTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the jittered exponential backoff
	// between connection attempts (defaults 1s and 2m). The first attempt,
	// and the first after losing a connection that had been up for a
	// minute, are immediate.
	ReconnectMin, ReconnectMax time.Duration
}

// Defaults of MQTTConfig.
const (
	DefaultMQTTSessionExpiry  = time.Hour
	DefaultMQTTKeepAlive      = 4 * time.Minute
	DefaultMQTTConnectTimeout = 30 * time.Second
	DefaultMQTTAckTimeout     = 60 * time.Second
	DefaultMQTTReconnectMin   = time.Second
	DefaultMQTTReconnectMax   = 2 * time.Minute
)

// A connection that stayed up this long earns an immediate reconnect; one
// that dropped sooner waits, so a broker that accepts and then kicks the
// client (a duplicate client ID, say) cannot make it spin and burn data.
const mqttStableAfter = time.Minute

// mqttCloseGrace bounds the clean DISCONNECT in Close before the conn is cut.
const mqttCloseGrace = 5 * time.Second

// pahoPacketTimeout is paho's PacketTimeout, out of reach. paho gives up on
// an acknowledgement after it (the PUBLISH stays in its session and goes
// out again on the next connection) and Send would fail, so the agent
// would publish the batch again on a link that is alive. Send waits on
// instead, for as long as the connection lives (its keep-alive) or the
// session holds the message; CONNACK is bounded by ConnectTimeout.
const pahoPacketTimeout = 100 * 365 * 24 * time.Hour

// MQTT is an MQTT v5 uplink (paho.golang autopaho) over connections from a
// Dialer. It keeps one connection up in the background, reconnecting with
// backoff; Send waits for it. The session is kept across reconnects (clean
// start off, session expiry above zero), so a QoS 1 PUBLISH in flight when
// the link drops is sent again with DUP set and Send still returns on its
// PUBACK. When the broker comes back without the session (restarted
// without persistence, session expired), Send publishes the message again.
// Either way the upstream may see a message twice: at-least-once. Topic
// aliases are never used (paho.golang resends QoS 1 messages with an alias
// it no longer holds, upstream issue #276).
type MQTT struct {
	cfg    MQTTConfig
	broker string // BrokerURL with the password redacted, for logs and errors
	dial   transport.Dialer
	log    *slog.Logger
	cm     *autopaho.ConnectionManager
	life   context.Context // ends on Close (or the caller's ctx): stops autopaho
	stop   context.CancelFunc
	// session is paho's client-side session state, kept across
	// connections (autopaho would make one too; we watch ours).
	session *state.State

	// mu guards the fields below. autopaho's callbacks and paho's calls
	// into the session write them from their goroutines; Send and Close
	// read them.
	mu sync.Mutex
	// epoch is closed when paho discards its session state. A PUBLISH
	// that entered the state is acknowledged in that epoch or never: paho
	// forgets in-flight messages on discarding, without telling the
	// Publish calls waiting for them (paho.golang v0.23.0).
	epoch   chan struct{}
	live    bool      // between CONNACK and connection loss
	granted uint32    // session expiry in force on the current connection, seconds
	upSince time.Time // when the current or last connection came up
	lastErr error     // why the last connection attempt failed; nil once connected
	conn    net.Conn  // the latest conn handed to paho, for Close to cut

	// receiveMax is the broker's Receive Maximum from the last CONNACK
	// (65535 when it sent none); 0 before the first.
	receiveMax int
	// maxPacket is the broker's Maximum Packet Size from the last CONNACK
	// (0: none said).
	maxPacket uint32

	closeOnce sync.Once
	closeErr  error

	control mqttControl // topic changes, subscriptions, retained publishes: mqtt_control.go
	// conns counts connections (CONNACKs), for contexts: mqtt_context.go.
	conns    uint64
	contexts mqttContexts
}

// errSessionDiscarded is the cancel cause of a Publish whose session state
// paho discarded.
var errSessionDiscarded = errors.New("the session holding the message was discarded")

// NewMQTT checks cfg, fills its defaults and starts connecting in the
// background through dial; it does not wait for the broker, so a gateway
// without network can still start. ctx bounds the uplink's life: when it
// ends the connection is shut down as by Close, which must still be called
// to release everything. It fails only on an invalid cfg.
func NewMQTT(ctx context.Context, cfg MQTTConfig, dial transport.Dialer, log *slog.Logger) (*MQTT, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if dial == nil {
		return nil, errors.New("mqtt uplink: no dialer")
	}
	life, stop := context.WithCancel(ctx)
	m := &MQTT{
		cfg:    cfg,
		broker: redact.URLValue(cfg.BrokerURL),
		dial:   dial,
		log:    orDiscard(log).With("uplink", "mqtt", "broker", redact.URLValue(cfg.BrokerURL), "client_id", cfg.ClientID),
		life:   life,
		stop:   stop,
		epoch:  make(chan struct{}),
	}
	m.contexts.turn = make(chan struct{}, 1)
	m.session = state.NewInMemory()
	if cfg.QoS == 0 {
		m.log.Warn("QoS 0: the broker does not acknowledge, so Send cannot know a message arrived (at-most-once)")
	}
	// autopaho puts the server URL in its errors: give it one without the
	// password, which travels in CONNECT only.
	server := *cfg.BrokerURL
	server.User = nil
	cc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{&server},
		KeepAlive:                     uint16(cfg.KeepAlive / time.Second),
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         uint32(cfg.SessionExpiry / time.Second),
		ReconnectBackoff:              m.backoff,
		ConnectTimeout:                cfg.ConnectTimeout,
		AttemptConnection:             m.attemptConnection,
		OnConnectionUp:                m.onConnectionUp,
		OnConnectionDown:              m.onConnectionDown,
		OnConnectError:                m.onConnectError,
		Errors:                        pahoLogger{m.log},
		PahoErrors:                    pahoLogger{m.log},
		ClientConfig: paho.ClientConfig{
			ClientID:      cfg.ClientID,
			Session:       watchedSession{State: m.session, m: m},
			PacketTimeout: pahoPacketTimeout,
			OnClientError: func(err error) {
				m.log.Warn("connection failed", "err", err)
			},
			OnServerDisconnect: func(d *paho.Disconnect) {
				reason := ""
				if d.Properties != nil {
					reason = d.Properties.ReasonString
				}
				m.log.Warn("broker closed the connection", "code", fmt.Sprintf("0x%02x", d.ReasonCode), "reason", reason)
			},
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){m.control.received},
		},
	}
	if u := cfg.BrokerURL.User; u != nil {
		cc.ConnectUsername = u.Username()
		if p, ok := u.Password(); ok {
			cc.ConnectPassword = []byte(p)
		}
	}
	cm, err := autopaho.NewConnection(life, cc)
	if err != nil {
		stop()
		return nil, fmt.Errorf("mqtt uplink to %s: %w", m.broker, err)
	}
	m.cm = cm
	return m, nil
}

func (c *MQTTConfig) fill() error {
	switch {
	case c.BrokerURL == nil:
		return errors.New("mqtt uplink: no broker URL")
	case c.Topic == "" || strings.ContainsAny(c.Topic, "+#"):
		return fmt.Errorf("mqtt uplink: topic %q: want one topic name without wildcards", c.Topic)
	case c.QoS > 2:
		return fmt.Errorf("mqtt uplink: QoS %d: want 0, 1 or 2", c.QoS)
	case c.ClientID == "":
		return errors.New("mqtt uplink: no client ID: the broker keeps the session under a fixed one")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.SessionExpiry, DefaultMQTTSessionExpiry)
	def(&c.KeepAlive, DefaultMQTTKeepAlive)
	def(&c.ConnectTimeout, DefaultMQTTConnectTimeout)
	def(&c.AckTimeout, DefaultMQTTAckTimeout)
	def(&c.ReconnectMin, DefaultMQTTReconnectMin)
	def(&c.ReconnectMax, DefaultMQTTReconnectMax)
	switch {
	case c.SessionExpiry < time.Second || c.SessionExpiry > (1<<32-1)*time.Second:
		return fmt.Errorf("mqtt uplink: session expiry %s: want 1s to %s", c.SessionExpiry, (1<<32-1)*time.Second)
	case c.KeepAlive < 0 || c.KeepAlive > 65535*time.Second:
		return fmt.Errorf("mqtt uplink: keep-alive %s: want 0s to 65535s", c.KeepAlive)
	case c.ConnectTimeout < 0 || c.AckTimeout < 0:
		return errors.New("mqtt uplink: negative timeout")
	case c.ReconnectMin < 0 || c.ReconnectMax < c.ReconnectMin:
		return fmt.Errorf("mqtt uplink: reconnect backoff %s to %s: want 0 ≤ min ≤ max", c.ReconnectMin, c.ReconnectMax)
	}
	return nil
}

// Send publishes msg to the topic and returns once the broker acknowledged
// it (PUBACK for QoS 1, PUBCOMP for QoS 2, the write for QoS 0). It waits
// for the connection while ctx allows, so a Send issued during an outage
// completes after the reconnect. Once published, the message is waited for
// as long as the session holds it: on a live connection however slow the
// broker is to acknowledge (logged each AckTimeout), across reconnects that
// keep the session (paho sends it again, with DUP), and it is published
// again only when the session is lost. A dead connection is found by the
// keep-alive. Errors: ctx ended first (wrapping ctx.Err() and the last
// connection failure), a *PublishError when the broker's reason code is
// 0x80 or above (inside a *PermanentError for 0x99, payload format
// invalid), or ErrClosed.
func (m *MQTT) Send(ctx context.Context, msg Message) error {
	pub := &paho.Publish{
		QoS:        m.cfg.QoS,
		Topic:      m.Topic(),
		Payload:    msg.Payload,
		Properties: &paho.PublishProperties{ContentType: msg.ContentType},
	}
	if msg.ContentEncoding != "" {
		pub.Properties.User.Add("content-encoding", msg.ContentEncoding)
	}
	for {
		if m.life.Err() != nil {
			return fmt.Errorf("mqtt uplink to %s: %w", m.broker, ErrClosed)
		}
		if err := m.awaitConnection(ctx); err != nil {
			return err
		}
		if err := m.fits(pub); err != nil {
			return err
		}
		if msg.Context != nil {
			if err := m.ensureContext(ctx, msg.Context); err != nil {
				return err
			}
		}
		// The session paho is using now: a CONNACK that discards the old
		// one is processed before the connection counts as up.
		m.mu.Lock()
		epoch := m.epoch
		m.mu.Unlock()

		resp, cause, err := m.publish(ctx, epoch, pub, msg)
		if resp != nil && resp.ReasonCode >= 0x80 {
			// paho returns a refusing PUBREC (QoS 2) without an error.
			perr := &PublishError{ReasonCode: resp.ReasonCode}
			if resp.Properties != nil {
				perr.Reason = resp.Properties.ReasonString
			}
			m.log.Warn("broker refused a message", "code", fmt.Sprintf("0x%02x", resp.ReasonCode), "bytes", len(msg.Payload), "ids", idsForLog(msg.IDs))
			err := fmt.Errorf("mqtt uplink to %s: %w", m.broker, perr)
			if perr.ReasonCode == 0x99 || perr.ReasonCode == 0x95 {
				return &PermanentError{Err: err}
			}
			return err
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, autopaho.ConnectionDownError), errors.Is(err, session.ErrNoConnection):
			// The connection dropped before the message entered the session:
			// nothing was sent, so waiting for the next connection is safe.
			// autopaho may still count the dead connection as up for a
			// moment: pause rather than spin through it. A Close meanwhile
			// is reported at the top of the loop, after the pause.
			if err := backoff.Sleep(ctx, 50*time.Millisecond); err != nil {
				return fmt.Errorf("mqtt uplink: not connected to %s: %w", m.broker, err)
			}
			continue
		case errors.Is(cause, errSessionDiscarded):
			m.log.Info("broker came back without our session; publishing the message again", "bytes", len(msg.Payload), "ids", idsForLog(msg.IDs))
			continue
		case errors.Is(cause, ErrClosed):
			return fmt.Errorf("mqtt uplink to %s: closed while waiting for the acknowledgement: %w", m.broker, ErrClosed)
		case ctx.Err() != nil:
			return fmt.Errorf("mqtt uplink to %s: no acknowledgement for a %d-byte message: %w", m.broker, len(msg.Payload), ctx.Err())
		default:
			return fmt.Errorf("mqtt uplink to %s: publish %d bytes: %w", m.broker, len(msg.Payload), err)
		}
	}
}

// fits refuses, for good, a PUBLISH larger than the broker's Maximum
// Packet Size: a broker disconnects a client that sends one (reason
// 0x95), and the session would send it again on every connection. The
// size counted is an upper bound (the topic in full, the properties, the
// longest packet id and length fields).
func (m *MQTT) fits(pub *paho.Publish) error {
	m.mu.Lock()
	limit := m.maxPacket
	m.mu.Unlock()
	if limit == 0 {
		return nil
	}
	size := len(pub.Payload) + len(pub.Topic) + 64
	if pub.Properties != nil {
		size += len(pub.Properties.ContentType)
		for _, u := range pub.Properties.User {
			size += len(u.Key) + len(u.Value) + 5
		}
	}
	if size <= int(limit) {
		return nil
	}
	perr := &PublishError{ReasonCode: 0x95, Reason: fmt.Sprintf("a %d-byte payload does not fit the broker's Maximum Packet Size of %d bytes", len(pub.Payload), limit)}
	return &PermanentError{Err: fmt.Errorf("mqtt uplink to %s: %w", m.broker, perr)}
}

// publish runs one Publish that ends early when the uplink closes or
// paho discards the session state holding it; cause says which. While it
// waits for the acknowledgement it says so in the log each AckTimeout.
func (m *MQTT) publish(ctx context.Context, epoch <-chan struct{}, pub *paho.Publish, msg Message) (resp *paho.PublishResponse, cause, err error) {
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopOnClose := context.AfterFunc(m.life, func() { cancel(ErrClosed) })
	defer stopOnClose()
	start := time.Now()
	go func() {
		slow := time.NewTicker(m.cfg.AckTimeout)
		defer slow.Stop()
		for {
			select {
			case <-epoch:
				cancel(errSessionDiscarded)
				return
			case <-pctx.Done():
				return
			case <-slow.C:
				m.logSlowAck(time.Since(start), msg)
			}
		}
	}()
	resp, err = m.cm.Publish(pctx, pub)
	return resp, context.Cause(pctx), err
}

// logSlowAck says that a message has waited for its acknowledgement for
// waited, and what the wait now depends on.
func (m *MQTT) logSlowAck(waited time.Duration, msg Message) {
	m.mu.Lock()
	live := m.live
	m.mu.Unlock()
	state := "the connection answers its keep-alive; waiting on"
	if !live {
		state = "reconnecting; the session sends it again on the next connection"
	}
	m.log.Warn("no acknowledgement yet: "+state, "waited", waited.Round(time.Second), "bytes", len(msg.Payload), "ids", idsForLog(msg.IDs))
}

func (m *MQTT) awaitConnection(ctx context.Context) error {
	err := m.cm.AwaitConnection(ctx)
	if err == nil {
		return nil
	}
	if m.life.Err() != nil {
		return fmt.Errorf("mqtt uplink to %s: %w", m.broker, ErrClosed)
	}
	m.mu.Lock()
	last := m.lastErr
	m.mu.Unlock()
	if last == nil {
		return fmt.Errorf("mqtt uplink: not connected to %s: %w (no connection attempt has finished yet)", m.broker, err)
	}
	return fmt.Errorf("mqtt uplink: not connected to %s: %w; last attempt: %w", m.broker, err, last)
}

// attemptConnection dials through the Dialer. autopaho gives a custom dial
// no timeout of its own, hence ConnectTimeout here.
func (m *MQTT) attemptConnection(ctx context.Context, _ autopaho.ClientConfig, _ *url.URL) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, m.cfg.ConnectTimeout)
	defer cancel()
	conn, err := m.dial(dctx)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	m.mu.Lock()
	m.conn = conn
	m.mu.Unlock()
	// paho writes a packet as several Writes (net.Buffers) and holds the
	// conn's lock, if it has one, around them: without it a PINGREQ could
	// land inside a PUBLISH, even on a conn whose single Writes are atomic.
	// The lock also gathers the packet into one Write: one TLS record and
	// one modem send per packet (mqtt_coalesce.go).
	return newCoalescingConn(&refusalConn{Conn: conn}), nil
}

// refusalConn makes a refused TLS session say why. With TLS 1.3 the server
// checks the client certificate after the client's handshake is over, so a
// refusal surfaces on the client's first use of the conn: often as "connection
// reset" on writing CONNECT, while the server's alert ("unknown certificate
// authority") waits unread. When a write fails before anything was read
// (nobody else is reading then), refusalConn reads that alert and adds it.
type refusalConn struct {
	net.Conn
	read atomic.Bool // a Read has started: paho's reader owns the read side
}

func (c *refusalConn) Read(p []byte) (int, error) {
	c.read.Store(true)
	return c.Conn.Read(p)
}

func (c *refusalConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil && !c.read.Load() {
		c.Conn.SetReadDeadline(time.Now().Add(time.Second))
		if _, rerr := c.Conn.Read(make([]byte, 1)); rerr != nil && rerr.Error() != err.Error() {
			err = fmt.Errorf("%w; the peer had said: %v", err, rerr)
		}
	}
	return n, err
}

// watchedSession is paho's in-memory session state, watched so that the
// uplink learns the moment paho discards it.
type watchedSession struct {
	*state.State
	m *MQTT
}

// ConAckReceived: without a session at the broker, paho discards its own.
func (s watchedSession) ConAckReceived(w io.Writer, cp *packets.Connect, ca *packets.Connack) error {
	// Topic aliases up to what the broker grants, set before paho sends
	// the session's unacknowledged messages again (mqtt_coalesce.go).
	if c, ok := w.(*coalescingConn); ok && ca.Properties != nil && ca.Properties.TopicAliasMaximum != nil {
		c.setTopicAliasMaximum(*ca.Properties.TopicAliasMaximum)
	}
	granted := uint32(0)
	if cp.Properties != nil && cp.Properties.SessionExpiryInterval != nil {
		granted = *cp.Properties.SessionExpiryInterval
	}
	if ca.Properties != nil && ca.Properties.SessionExpiryInterval != nil {
		granted = *ca.Properties.SessionExpiryInterval
	}
	s.m.mu.Lock()
	if !ca.SessionPresent {
		s.m.endEpoch()
	}
	s.m.live, s.m.granted = true, granted
	s.m.mu.Unlock()
	return s.State.ConAckReceived(w, cp, ca)
}

// ConnectionLost: with no session expiry in force, paho discards its session.
func (s watchedSession) ConnectionLost(dp *packets.Disconnect) error {
	err := s.State.ConnectionLost(dp)
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if !s.m.live {
		return err // paho may report one loss more than once
	}
	s.m.live = false
	if dp != nil && dp.Properties != nil && dp.Properties.SessionExpiryInterval != nil {
		s.m.granted = *dp.Properties.SessionExpiryInterval
	}
	if s.m.granted == 0 {
		s.m.endEpoch()
	}
	return err
}

// endEpoch needs mu held.
func (m *MQTT) endEpoch() {
	close(m.epoch)
	m.epoch = make(chan struct{})
}

// KeepAlive is the keep-alive interval the uplink asks the broker for:
// after that long without sending anything it sends a PINGREQ.
func (m *MQTT) KeepAlive() time.Duration { return m.cfg.KeepAlive }

// InFlightLimit is the most QoS 1 publishes the broker takes unacknowledged
// at once (its Receive Maximum, from the last CONNACK); 0 until the first
// connection. paho holds further Sends back until a PUBACK frees a slot.
func (m *MQTT) InFlightLimit() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.receiveMax
}

func (m *MQTT) onConnectionUp(_ *autopaho.ConnectionManager, ca *paho.Connack) {
	m.mu.Lock()
	granted := m.granted
	m.upSince = time.Now()
	m.conns++
	m.receiveMax = 65535
	m.maxPacket = 0
	if ca.Properties != nil && ca.Properties.ReceiveMaximum != nil {
		m.receiveMax = int(*ca.Properties.ReceiveMaximum)
	}
	if ca.Properties != nil && ca.Properties.MaximumPacketSize != nil {
		m.maxPacket = *ca.Properties.MaximumPacketSize
	}
	m.lastErr = nil
	m.mu.Unlock()
	m.log.Info("connected", "session_present", ca.SessionPresent, "session_expiry_s", granted)
	m.control.resubscribe(m)
}

func (m *MQTT) onConnectionDown() bool {
	if m.life.Err() == nil {
		m.log.Warn("connection lost; reconnecting")
	}
	return true
}

func (m *MQTT) onConnectError(err error) {
	if m.life.Err() != nil {
		return
	}
	m.mu.Lock()
	m.lastErr = err
	m.mu.Unlock()
	m.log.Warn("connection attempt failed", "err", err)
}

// backoff is autopaho's ReconnectBackoff: the delay before attempt n (0 is
// the first attempt after losing a connection).
func (m *MQTT) backoff(attempt int) time.Duration {
	if attempt == 0 {
		m.mu.Lock()
		// upSince is zero only before the very first attempt.
		now := m.upSince.IsZero() || time.Since(m.upSince) >= mqttStableAfter
		m.mu.Unlock()
		if now {
			return 0
		}
		attempt = 1
	}
	// Attempts 0 (when not immediate) and 1 both wait about ReconnectMin.
	// Jitter, taking up to half of a wait, keeps a fleet that lost the same
	// broker from returning in step.
	reconnect := backoff.Policy{Initial: m.cfg.ReconnectMin, Max: m.cfg.ReconnectMax, Multiplier: 2, Jitter: 0.5}
	return reconnect.Delay(attempt - 1)
}

// Close disconnects cleanly (DISCONNECT), waits for autopaho's goroutines,
// and makes later Sends fail with ErrClosed; a Send waiting for an
// acknowledgement returns at once. If the clean disconnect does not finish
// within a few seconds (a stuck modem), Close cuts the conn. It returns an
// error only if the shutdown still does not finish.
func (m *MQTT) Close() error {
	m.closeOnce.Do(func() {
		m.stop()
		grace := time.NewTimer(mqttCloseGrace)
		defer grace.Stop()
		select {
		case <-m.cm.Done():
			m.session.Close()
			return
		case <-grace.C:
		}
		m.mu.Lock()
		conn := m.conn
		m.mu.Unlock()
		if conn != nil {
			conn.Close()
		}
		grace.Reset(mqttCloseGrace)
		select {
		case <-m.cm.Done():
			m.session.Close()
		case <-grace.C:
			m.closeErr = fmt.Errorf("mqtt uplink to %s: shutdown did not finish after cutting the connection", m.broker)
		}
	})
	return m.closeErr
}

// PublishError is a broker's refusal of a PUBLISH: a PUBACK (or PUBREC) with
// a reason code of 0x80 or above.
type PublishError struct {
	ReasonCode byte
	// Reason is the broker's reason string, often empty.
	Reason string
}

func (e *PublishError) Error() string {
	s := fmt.Sprintf("broker refused the message: reason code 0x%02x (%s)", e.ReasonCode, pubackReasons[e.ReasonCode])
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// pubackReasons names the PUBACK/PUBREC failure codes of MQTT v5 §3.4.2.1.
var pubackReasons = map[byte]string{
	0x80: "unspecified error",
	0x83: "implementation specific error",
	0x87: "not authorized",
	0x90: "topic name invalid",
	0x91: "packet identifier in use",
	0x97: "quota exceeded",
	0x99: "payload format invalid",
}

// pahoLogger passes paho's error logs to slog at debug level: the events
// that matter (connection up, lost, refused) are logged by the callbacks.
type pahoLogger struct{ log *slog.Logger }

func (l pahoLogger) Println(v ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(strings.TrimSpace(fmt.Sprintln(v...)), "lib", "paho")
	}
}

func (l pahoLogger) Printf(format string, v ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)), "lib", "paho")
	}
}
