package agent

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/transport"
	"github.com/cellgate/cellgate/transport/uplink"
)

// linkState follows the uplink's connection and publishes: the sessions the
// uplink holds through the plugin (connected, since when, reconnects, the
// bytes each way over the air), and every publish attempt the forwarder
// makes (outcome, retries, publish-to-ack latency, last error). The
// counters are atomics; the last error and the connection's start are under
// mu. Sessions and the forwarder write, the surfaces read.
type linkState struct {
	dials, dialFailures    atomic.Uint64
	open                   atomic.Int64 // sessions dialed and not yet ended
	airTx, airRx           atomic.Uint64
	acked, failed, refused atomic.Uint64
	retries                atomic.Uint64
	latency                prometheus.Histogram

	mu        sync.Mutex
	since     time.Time // when open last went from 0 to 1; zero while down
	lastErr   string
	lastErrAt time.Time
}

// latencyBuckets span a loopback broker (milliseconds) to a congested 2G
// link (a minute), in seconds.
var latencyBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

func newLinkState(device string) *linkState {
	return &linkState{latency: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "cellgate_uplink_publish_ack_seconds",
		Help:        "Time from handing a batch to the uplink to its acknowledgement by the upstream (acknowledged publishes only).",
		Buckets:     latencyBuckets,
		ConstLabels: prometheus.Labels{"device": device},
	})}
}

// meter returns d with every session it dials counted in l.
func (l *linkState) meter(d transport.SessionDialer) transport.SessionDialer {
	return meteredDialer{d: d, l: l}
}

// fail records err as the link's last error.
func (l *linkState) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastErr, l.lastErrAt = err.Error(), time.Now().UTC()
}

// published records one Send of the forwarder that took d and ended in err.
func (l *linkState) published(d time.Duration, err error) {
	var perm *uplink.PermanentError
	switch {
	case err == nil:
		l.acked.Add(1)
		l.latency.Observe(d.Seconds())
		return
	case errors.Is(err, context.Canceled):
		return // the agent stopping or holding, not the link failing
	case errors.As(err, &perm):
		l.refused.Add(1)
	default:
		l.failed.Add(1)
	}
	l.fail(err)
}

// sessionUp and sessionDown track the open sessions.
func (l *linkState) sessionUp() {
	if l.dials.Add(1); l.open.Add(1) == 1 {
		l.mu.Lock()
		l.since = time.Now().UTC()
		l.mu.Unlock()
	}
}

func (l *linkState) sessionDown() {
	if l.open.Add(-1) == 0 {
		l.mu.Lock()
		l.since = time.Time{}
		l.mu.Unlock()
	}
}

// LinkStatus is the link's share of UplinkStatus.
type LinkStatus struct {
	// Connected says a session to the upstream is open; Since is when the
	// current run of open sessions began.
	Connected bool       `json:"connected"`
	Since     *time.Time `json:"connected_since,omitempty"`
	// Reconnects counts the sessions dialed after the first.
	Reconnects uint64 `json:"reconnects"`
	// DialFailures counts sessions the plugin failed to open.
	DialFailures uint64 `json:"dial_failures"`
	// Publishes counts the uplink's Send calls by outcome: acked,
	// failed (worth retrying), refused (for good).
	Publishes map[string]uint64 `json:"publishes"`
	// Retries counts Sends of a batch after its first.
	Retries uint64 `json:"retries"`
	// LastError is the latest failure of a dial or a publish, and when.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// AirTxBytes and AirRxBytes count what the sessions sent and received
	// through the modem this run: the bytes it carries over the air
	// (TLS records in host-TLS mode, the TLS payload in modem-TLS mode).
	AirTxBytes uint64 `json:"air_tx_bytes"`
	AirRxBytes uint64 `json:"air_rx_bytes"`
}

// status reads l now.
func (l *linkState) status() LinkStatus {
	st := LinkStatus{
		Connected: l.open.Load() > 0, DialFailures: l.dialFailures.Load(),
		Publishes: map[string]uint64{"acked": l.acked.Load(), "failed": l.failed.Load(), "refused": l.refused.Load()},
		Retries:   l.retries.Load(), AirTxBytes: l.airTx.Load(), AirRxBytes: l.airRx.Load(),
	}
	if n := l.dials.Load(); n > 1 {
		st.Reconnects = n - 1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.since.IsZero() && st.Connected {
		t := l.since
		st.Since = &t
	}
	if l.lastErr != "" {
		st.LastError = l.lastErr
		t := l.lastErrAt
		st.LastErrorAt = &t
	}
	return st
}

// sessionDialer is the plugin host as the uplinks dial it: metered.
func (a *Agent) sessionDialer() transport.SessionDialer { return a.link.meter(a.host) }

// meteredDialer counts the sessions d dials and the bytes they carry.
type meteredDialer struct {
	d transport.SessionDialer
	l *linkState
}

func (m meteredDialer) Dial(ctx context.Context, req sdk.DialRequest) (sdk.Session, error) {
	s, err := m.d.Dial(ctx, req)
	if err != nil {
		if ctx.Err() == nil {
			m.l.dialFailures.Add(1)
			m.l.fail(err)
		}
		return nil, err
	}
	m.l.sessionUp()
	return &meteredSession{Session: s, l: m.l}, nil
}

// meteredSession is a session whose bytes are counted and whose end (the
// first failed Recv, an event, or Close) marks it down once.
type meteredSession struct {
	sdk.Session
	l    *linkState
	down sync.Once
}

func (s *meteredSession) Send(ctx context.Context, p []byte) error {
	err := s.Session.Send(ctx, p)
	if err == nil {
		s.l.airTx.Add(uint64(len(p)))
	}
	return err
}

func (s *meteredSession) Recv(ctx context.Context) (sdk.Frame, error) {
	f, err := s.Session.Recv(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		s.end()
	case f.Event != nil:
		s.l.fail(errors.New("session " + f.Event.Kind.String() + ": " + f.Event.Detail))
		s.end()
	default:
		s.l.airRx.Add(uint64(len(f.Data)))
	}
	return f, err
}

func (s *meteredSession) Close(ctx context.Context) error {
	s.end()
	return s.Session.Close(ctx)
}

func (s *meteredSession) end() { s.down.Do(s.l.sessionDown) }
