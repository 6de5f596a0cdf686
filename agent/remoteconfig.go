package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/remote"
	"github.com/cellgate/cellgate/transport/uplink"
)

// This file wires package remote into the agent: pushes arrive on the MQTT
// config topic or on POST /v1/config (`cellgate config apply`) and go to
// one remote.Manager, which drives the agent through the remote.Target the
// agent implements here; outcomes go to the status topic, /v1/status and
// the metrics.

// remoteConfig is the agent's remote configuration, when enabled.
type remoteConfig struct {
	a   *Agent
	m   *remote.Manager
	log *slog.Logger

	// next is the latest status not yet published, for publishLoop; a newer
	// one replaces it (statuses are retained: only the last one matters).
	mu   sync.Mutex
	next *remote.Status
	wake chan struct{} // capacity 1

	// statusAcked is when the broker last acknowledged a status (unix ns).
	statusAcked atomic.Int64
}

// statusPublishTimeout bounds one attempt to publish a status; a failed
// one is tried again until a newer status replaces it.
const statusPublishTimeout = 30 * time.Second

// newRemoteConfig opens the remote configuration's store and its Manager
// (which rolls back a push the last run left pending) and subscribes to
// the config topic; nil when remote_config.enabled is false.
func newRemoteConfig(a *Agent, log *slog.Logger) (*remoteConfig, error) {
	rc := a.cfg.RemoteConfig
	if !rc.Enabled {
		return nil, nil
	}
	store, err := remote.OpenStore(rc.Dir)
	if err != nil {
		return nil, err
	}
	trusted, err := remote.TrustedKeys(rc)
	if err != nil {
		return nil, err
	}
	r := &remoteConfig{a: a, log: log, wake: make(chan struct{}, 1)}
	r.m, err = remote.NewManager(remote.ManagerConfig{
		Store: store, DeviceID: a.cfg.DeviceID, Trusted: trusted, Allow: rc.Allow, Confirm: rc.Confirm,
		Target: r, Log: log,
	})
	if err != nil {
		return nil, err
	}
	r.attach(a.uplink, a.cfg)
	return r, nil
}

// attach subscribes to cfg's config topic on up, when up is MQTT.
func (r *remoteConfig) attach(up uplink.Uplink, cfg *config.Config) {
	m, ok := up.(*uplink.MQTT)
	if !ok || cfg.Uplink.MQTT == nil || cfg.Uplink.MQTT.ConfigTopic == "" {
		return
	}
	if err := m.Subscribe(cfg.Uplink.MQTT.ConfigTopic, 1, r.received); err != nil {
		r.log.Error("remote config: cannot subscribe to the config topic", "topic", cfg.Uplink.MQTT.ConfigTopic, "err", err)
	}
}

// received takes a push from the config topic. A retained push of a
// version already committed is the broker repeating itself on every
// connection, not news: it is dropped without a refusal on the status
// topic.
func (r *remoteConfig) received(in uplink.Incoming) {
	if in.Retained {
		if e, err := remote.ParseEnvelope(in.Payload); err == nil {
			if c := r.m.Snapshot().Committed; c != nil && e.Version <= c.Version {
				r.log.Debug("remote config: retained push of a committed version ignored", "version", e.Version)
				return
			}
		}
	}
	if !r.m.Offer(in.Payload, "mqtt") {
		r.log.Warn("remote config: push dropped, too many waiting", "bytes", len(in.Payload))
	}
}

// run runs the Manager and the status publisher until ctx ends. An error
// (a rollback that could not restore the configuration) ends the agent's
// run: the next start runs the committed configuration.
func (r *remoteConfig) run(ctx context.Context) error {
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.publishLoop(pctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	return r.m.Run(ctx)
}

// publishLoop publishes the latest status, retained, on the status topic,
// until it is acknowledged or a newer one replaces it.
func (r *remoteConfig) publishLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		for {
			r.mu.Lock()
			st := r.next
			r.next = nil
			r.mu.Unlock()
			if st == nil {
				break
			}
			err := r.publish(ctx, *st)
			if err == nil || ctx.Err() != nil {
				continue
			}
			r.log.Warn("remote config: status not published yet; trying again", "version", st.Version, "state", st.State, "err", err)
			r.mu.Lock()
			if r.next == nil {
				r.next = st
			}
			r.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			case <-r.wake:
			}
		}
	}
}

func (r *remoteConfig) publish(ctx context.Context, st remote.Status) error {
	cfg := r.a.current()
	m, ok := r.a.currentUplink().(*uplink.MQTT)
	if !ok || cfg.Uplink.MQTT == nil || cfg.Uplink.MQTT.StatusTopic == "" {
		return nil
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, statusPublishTimeout)
	defer cancel()
	if err := m.PublishRetained(pctx, cfg.Uplink.MQTT.StatusTopic, payload); err != nil {
		return err
	}
	r.statusAcked.Store(time.Now().UnixNano())
	r.a.fw.acked.notify()
	r.m.Published(st)
	return nil
}

// The agent as remote.Target.

// Current implements remote.Target.
func (r *remoteConfig) Current() *config.Config { return r.a.current() }

// Apply implements remote.Target.
func (r *remoteConfig) Apply(ctx context.Context, cfg *config.Config) error {
	return r.a.reconfigure(ctx, cfg)
}

// PublishStatus implements remote.Target.
func (r *remoteConfig) PublishStatus(st remote.Status) {
	r.mu.Lock()
	r.next = &st
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Healthy implements remote.Target: the uplink is connected and, since
// since, acknowledged a batch of readings, or, when no reading waits in
// the spool (an idle gateway), a status publish.
func (r *remoteConfig) Healthy(since time.Time) (bool, <-chan struct{}) {
	wake := r.a.fw.acked.wait() // first: an ack during the checks still wakes
	if m, ok := r.a.currentUplink().(*uplink.MQTT); ok && !m.Connected() {
		return false, wake
	}
	ns := since.UnixNano()
	if r.a.fw.lastAck.Load() > ns {
		return true, wake
	}
	return r.statusAcked.Load() > ns && r.a.spool.Stats().Pending == 0, wake
}

// Candidate implements remote.Target: the configuration's own layers
// loaded again with overlay in place of the committed one. What no push
// may change is carried over from the running configuration, which may
// differ from its file (TLS files that systemd handed over as
// credentials, a file edited since the start).
func (r *remoteConfig) Candidate(overlay []byte, name string) (*config.Config, error) {
	cur := r.a.current()
	opts := cur.LoadOptions()
	opts.Overlay, opts.OverlayYAML, opts.OverlayName = nil, overlay, name
	next, warnings, err := config.Load(opts)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		r.log.Warn("remote config: " + w.String())
	}
	start := r.a.cfg
	next.DeviceID, next.Modem, next.Plugins, next.TLS, next.RemoteConfig = start.DeviceID, start.Modem, start.Plugins, start.TLS, start.RemoteConfig
	if err := checkLive(cur, next); err != nil {
		return nil, err
	}
	return next, nil
}

// RemoteConfigStatus is the remote configuration's share of Status.
type RemoteConfigStatus struct {
	// CommittedVersion is the version in effect (0: none ever).
	CommittedVersion uint64     `json:"committed_version"`
	KeyID            string     `json:"key_id,omitempty"`
	CommittedAt      *time.Time `json:"committed_at,omitempty"`
	// Pending is a push in its confirm window.
	Pending *PendingPush `json:"pending,omitempty"`
	// Last is the last outcome, as published on the status topic.
	Last *remote.Status `json:"last,omitempty"`
	// Pushes counts pushes since the agent started, by outcome.
	Pushes map[string]int64 `json:"pushes"`
}

// PendingPush is a push applied and not yet confirmed.
type PendingPush struct {
	Version   uint64     `json:"version"`
	KeyID     string     `json:"key_id"`
	Since     time.Time  `json:"since"`
	ConfirmBy *time.Time `json:"confirm_by,omitempty"`
}

// remoteStatus is the remote configuration's share of Status; nil when it
// is off.
func (a *Agent) remoteStatus() *RemoteConfigStatus {
	if a.remote == nil {
		return nil
	}
	snap := a.remote.m.Snapshot()
	st := &RemoteConfigStatus{Last: snap.Last, Pushes: snap.Outcomes}
	if c := snap.Committed; c != nil {
		at := c.At
		st.CommittedVersion, st.KeyID, st.CommittedAt = c.Version, c.KeyID, &at
	}
	if p := snap.Pending; p != nil {
		st.Pending = &PendingPush{Version: p.Version, KeyID: p.KeyID, Since: p.At, ConfirmBy: snap.ConfirmBy}
	}
	return st
}

// serveConfig answers POST /v1/config, the door of `cellgate config apply`:
// the body is an envelope, taken through exactly the checks of a push from
// the config topic (same Manager). The answer is the first status: 202
// with applying (the final state follows in GET /v1/status and on the
// status topic), or 422 with the refusal. Only loopback clients are
// served: the envelope is signed, but applying one is an operator's act on
// the gateway itself.
func (a *Agent) serveConfig(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	fail := func(code int, msg string) {
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"error": msg})
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fail(http.StatusMethodNotAllowed, "use POST with an envelope")
		return
	}
	if host, _, err := net.SplitHostPort(req.RemoteAddr); err != nil || !net.ParseIP(host).IsLoopback() {
		fail(http.StatusForbidden, "POST /v1/config is served to loopback clients only")
		return
	}
	if a.remote == nil {
		fail(http.StatusNotFound, "remote configuration is off (remote_config.enabled: false)")
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, remote.MaxEnvelopeBytes+1))
	if err != nil {
		fail(http.StatusBadRequest, "reading the envelope: "+err.Error())
		return
	}
	st, err := a.remote.m.Submit(req.Context(), body, "local")
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return
		}
		fail(http.StatusServiceUnavailable, err.Error())
		return
	}
	code := http.StatusAccepted
	if st.State == remote.StateRefused {
		code = http.StatusUnprocessableEntity
	}
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(st)
}
