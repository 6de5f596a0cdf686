package remote

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/cellgate/cellgate/agent/config"
)

// The states of a push, as the status topic says them.
const (
	StateRefused    = "refused"
	StateApplying   = "applying"
	StateCommitted  = "committed"
	StateRolledBack = "rolled_back"
)

// Status is one outcome of a push, published on the status topic as JSON
// (retained, QoS 1) and logged:
//
//	{"version":43,"state":"refused","reason":"bad_signature: …","at":"2026-12-01T10:00:03Z"}
//
// Version is 0 when the envelope was too malformed to name one; Reason is
// empty for applying and committed, "<Reason>: <detail>" otherwise.
type Status struct {
	Version uint64    `json:"version"`
	State   string    `json:"state"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// Same reports whether s and o are one status (At compared as instants).
func (s Status) Same(o Status) bool {
	return s.Version == o.Version && s.State == o.State && s.Reason == o.Reason && s.At.Equal(o.At)
}

// Clock is the Manager's time: the wall clock in the agent, a hand-driven
// one in tests.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type wallClock struct{}

func (wallClock) Now() time.Time                         { return time.Now() }
func (wallClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Target is the running agent as the Manager drives it.
type Target interface {
	// Current returns the configuration in effect.
	Current() *config.Config
	// Candidate returns the configuration the agent would run with overlay
	// in place of the committed one: the same local layers, validated as
	// strictly as at start (problems located as name:line), and changing
	// only what the agent can change while it runs. An error is a refusal
	// (ReasonInvalid).
	Candidate(overlay []byte, name string) (*config.Config, error)
	// Apply makes cfg the configuration in effect, live. After a failure
	// the agent may be partly changed: Current says how, and applying the
	// previous configuration restores it.
	Apply(ctx context.Context, cfg *config.Config) error
	// Healthy reports whether, since since, the uplink is connected and
	// acknowledged a publish. changed is closed at the next event that may
	// change the answer.
	Healthy(since time.Time) (ok bool, changed <-chan struct{})
	// PublishStatus publishes st on the status topic, if there is one,
	// without blocking: a later status replaces one not yet published. The
	// Target calls Manager.Published once the broker acknowledged it.
	PublishStatus(st Status)
}

// ManagerConfig is what NewManager needs.
type ManagerConfig struct {
	Store    *Store
	DeviceID string
	Trusted  map[string]ed25519.PublicKey
	Allow    []string
	// Confirm is the confirm window (remote_config.confirm).
	Confirm time.Duration
	Target  Target
	// Clock defaults to the wall clock.
	Clock Clock
	Log   *slog.Logger
}

// Manager takes pushes one at a time through the checks, the apply and
// the confirm window. Run owns the Store and the Target's configuration;
// Submit, Offer and Snapshot are safe from any goroutine.
type Manager struct {
	cfg       ManagerConfig
	in        chan submission
	published chan Status // statuses the broker acknowledged, for the store

	mu   sync.Mutex // guards snap
	snap Snapshot
}

// Snapshot is the Manager's state for /v1/status and the metrics.
type Snapshot struct {
	Committed *Record `json:"committed,omitempty"`
	Pending   *Record `json:"pending,omitempty"`
	// ConfirmBy is when the pending push is rolled back unless healthy.
	ConfirmBy *time.Time `json:"confirm_by,omitempty"`
	Last      *Status    `json:"last,omitempty"`
	// Outcomes counts pushes since the agent started by final state:
	// committed, rolled_back, refused.
	Outcomes map[string]int64 `json:"outcomes"`
}

type submission struct {
	data   []byte
	source string
	reply  chan Status // capacity 1; nil when nobody waits
}

// submitQueue bounds pushes waiting for the Manager.
const submitQueue = 16

// NewManager returns a Manager over cfg.Store. A push the store still
// holds as pending was cut short by a stop inside its confirm window: the
// configuration loaded at start is the committed one, so the push is
// recorded as rolled back (ReasonRestarted), to be published by Run.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	if cfg.Store == nil || cfg.Target == nil || cfg.Confirm <= 0 {
		return nil, errors.New("remote config: manager needs a store, a target and a confirm window")
	}
	if cfg.Clock == nil {
		cfg.Clock = wallClock{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	m := &Manager{cfg: cfg, in: make(chan submission, submitQueue), published: make(chan Status, 4)}
	m.snap.Outcomes = map[string]int64{StateCommitted: 0, StateRolledBack: 0, StateRefused: 0}
	st := cfg.Store.State()
	if p := st.Pending; p != nil {
		committed := uint64(0)
		if st.Committed != nil {
			committed = st.Committed.Version
		}
		status := m.status(p.Version, StateRolledBack, refuse(ReasonRestarted,
			"the agent stopped inside the confirm window; it runs the committed version %d", committed))
		if err := cfg.Store.Abort(status); err != nil {
			return nil, err
		}
		m.snap.Outcomes[StateRolledBack]++
		m.logOutcome(status, "restart", p.KeyID)
	}
	m.syncSnapshot(nil)
	return m, nil
}

// Submit hands a push to the Manager and waits for its first answer: the
// refusal, or applying once the push passed every check and is being
// applied (its final state follows on the status topic and in Snapshot).
// It fails only when ctx ends first.
func (m *Manager) Submit(ctx context.Context, data []byte, source string) (Status, error) {
	s := submission{data: data, source: source, reply: make(chan Status, 1)}
	select {
	case m.in <- s:
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
	select {
	case st := <-s.reply:
		return st, nil
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
}

// Offer hands a push to the Manager without waiting (for MQTT's handler,
// which must not block). It reports false when the queue is full.
func (m *Manager) Offer(data []byte, source string) bool {
	select {
	case m.in <- submission{data: append([]byte(nil), data...), source: source}:
		return true
	default:
		return false
	}
}

// Published tells the Manager the broker acknowledged st, so a start need
// not publish it again. It does not block; a lost notice only means one
// more publish of a retained status.
func (m *Manager) Published(st Status) {
	select {
	case m.published <- st:
	default:
	}
}

func (m *Manager) markPublished(st Status) {
	if err := m.cfg.Store.MarkPublished(st); err != nil {
		m.cfg.Log.Warn("remote config: recording a published status failed", "version", st.Version, "err", err)
	}
}

// Snapshot returns the Manager's state now.
func (m *Manager) Snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.snap
	s.Outcomes = maps.Clone(m.snap.Outcomes)
	return s
}

// Run publishes the last outcome if the broker never acknowledged it (a
// stop cut it short, or the push was rolled back by this start), then
// takes pushes until ctx ends. It returns an error only when a rollback
// failed: the agent must then stop, and starts again on the committed
// configuration.
func (m *Manager) Run(ctx context.Context) error {
	if st := m.cfg.Store.State(); st.Last != nil && !st.LastPublished {
		m.cfg.Target.PublishStatus(*st.Last)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case st := <-m.published:
			m.markPublished(st)
		case s := <-m.in:
			if err := m.handle(ctx, s); err != nil {
				return err
			}
		}
	}
}

// handle takes one push through the checks, in the documented order, then
// applies it and runs its confirm window.
func (m *Manager) handle(ctx context.Context, s submission) error {
	env, err := m.check(s.data)
	if err == nil {
		name := fmt.Sprintf("remote config v%d", env.Version)
		var cand *config.Config
		if cand, err = m.cfg.Target.Candidate([]byte(env.Config), name); err == nil {
			return m.apply(ctx, s, env, cand)
		}
		if _, ok := ReasonOf(err); !ok {
			err = &Refusal{Reason: ReasonInvalid, Detail: oneLine(err)}
		}
	}
	m.refuse(s, env, err)
	return nil
}

// check runs Verify and the allow list: every check but the merged
// configuration's validation.
func (m *Manager) check(data []byte) (*Envelope, error) {
	committed := uint64(0)
	if c := m.cfg.Store.State().Committed; c != nil {
		committed = c.Version
	}
	env, err := Verify(data, Policy{DeviceID: m.cfg.DeviceID, Trusted: m.cfg.Trusted, Now: m.cfg.Clock.Now(), Committed: committed})
	if err != nil {
		return env, err
	}
	return env, CheckAllowed(env.Config, m.cfg.Allow)
}

// apply persists the push as pending, answers the submitter, applies it
// and waits for health.
func (m *Manager) apply(ctx context.Context, s submission, env *Envelope, cand *config.Config) error {
	prev := m.cfg.Target.Current()
	applying := m.status(env.Version, StateApplying, nil)
	rec := Record{Version: env.Version, KeyID: env.KeyID, At: applying.At, SHA256: env.ConfigSHA256()}
	if err := m.cfg.Store.Begin(rec, []byte(env.Config), applying); err != nil {
		m.refuse(s, env, &Refusal{Reason: ReasonStorage, Detail: err.Error()})
		return nil
	}
	confirmBy := applying.At.Add(m.cfg.Confirm)
	m.syncSnapshot(&confirmBy)
	m.answer(s, applying)
	m.logOutcome(applying, s.source, env.KeyID)

	if err := m.cfg.Target.Apply(ctx, cand); err != nil {
		return m.rollBack(ctx, prev, env, refuse(ReasonApplyFailed, "%v", err))
	}
	changed := m.cfg.Clock.Now()
	// Published after the change, so its acknowledgement is evidence too.
	m.cfg.Target.PublishStatus(applying)
	deadline := m.cfg.Clock.After(m.cfg.Confirm)
	for {
		ok, wake := m.cfg.Target.Healthy(changed)
		if ok {
			return m.commit(ctx, prev, env)
		}
		select {
		case <-wake:
		case <-deadline:
			return m.rollBack(ctx, prev, env, refuse(ReasonUnhealthy,
				"no publish acknowledged upstream within %s of the change", m.cfg.Confirm))
		case other := <-m.in:
			m.busy(other, env.Version)
		case st := <-m.published:
			m.markPublished(st)
		case <-ctx.Done():
			// The agent is stopping: the push stays pending on disk, and
			// the next start rolls it back and reports it.
			return nil
		}
	}
}

// busy answers a push that arrived inside another's confirm window: its
// own refusal if the envelope checks find one, ReasonBusy otherwise.
func (m *Manager) busy(s submission, pending uint64) {
	env, err := m.check(s.data)
	if err == nil {
		err = refuse(ReasonBusy, "version %d is in its confirm window; push again once it is committed or rolled back", pending)
	}
	m.refuse(s, env, err)
}

func (m *Manager) commit(ctx context.Context, prev *config.Config, env *Envelope) error {
	st := m.status(env.Version, StateCommitted, nil)
	if err := m.cfg.Store.Commit(st.At, st); err != nil {
		return m.rollBack(ctx, prev, env, refuse(ReasonCommitFailed, "%v", err))
	}
	m.finish(st, env.KeyID)
	return nil
}

// rollBack restores prev and records the push as rolled back. When prev
// cannot be restored the agent is in no known configuration: the error
// ends the run, and the next start runs the committed configuration.
func (m *Manager) rollBack(ctx context.Context, prev *config.Config, env *Envelope, why *Refusal) error {
	st := m.status(env.Version, StateRolledBack, why)
	restoreErr := m.cfg.Target.Apply(ctx, prev)
	if restoreErr != nil {
		st.Reason += fmt.Sprintf("; restoring the previous configuration failed too (%v): the agent restarts", restoreErr)
	}
	if err := m.cfg.Store.Abort(st); err != nil {
		m.cfg.Log.Error("remote config: recording the rollback failed", "version", env.Version, "err", err)
	}
	m.finish(st, env.KeyID)
	if restoreErr != nil {
		return fmt.Errorf("remote config: rolling back version %d: %w", env.Version, restoreErr)
	}
	return nil
}

// refuse answers, publishes, logs and counts a refusal; nothing else
// changes, on disk or in memory.
func (m *Manager) refuse(s submission, env *Envelope, err error) {
	version, keyID := uint64(0), ""
	if env != nil {
		version, keyID = env.Version, env.KeyID
	}
	var r *Refusal
	if !errors.As(err, &r) {
		r = &Refusal{Reason: ReasonInvalid, Detail: err.Error()}
	}
	st := m.status(version, StateRefused, r)
	m.mu.Lock()
	m.snap.Last = &st
	m.snap.Outcomes[StateRefused]++
	m.mu.Unlock()
	m.answer(s, st)
	m.cfg.Target.PublishStatus(st)
	m.logOutcome(st, s.source, keyID)
}

// finish publishes, logs and counts a final state the store recorded.
func (m *Manager) finish(st Status, keyID string) {
	m.mu.Lock()
	m.snap.Outcomes[st.State]++
	m.mu.Unlock()
	m.syncSnapshot(nil)
	m.cfg.Target.PublishStatus(st)
	m.logOutcome(st, "", keyID)
}

// oneLine renders a configuration error's problems on one line, each with
// its key path and line: a status reason is one line.
func oneLine(err error) string {
	var es *config.Errors
	if !errors.As(err, &es) {
		return err.Error()
	}
	parts := make([]string, len(es.Problems))
	for i, p := range es.Problems {
		parts[i] = p.Error()
	}
	return strings.Join(parts, "; ")
}

func (m *Manager) answer(s submission, st Status) {
	if s.reply != nil {
		s.reply <- st
	}
}

func (m *Manager) status(version uint64, state string, why *Refusal) Status {
	st := Status{Version: version, State: state, At: m.cfg.Clock.Now().UTC()}
	if why != nil {
		st.Reason = why.Error()
	}
	return st
}

// syncSnapshot copies the store's state into the snapshot.
func (m *Manager) syncSnapshot(confirmBy *time.Time) {
	st := m.cfg.Store.State()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snap.Committed, m.snap.Pending, m.snap.ConfirmBy = st.Committed, st.Pending, confirmBy
	if st.Last != nil {
		m.snap.Last = st.Last
	}
}

func (m *Manager) logOutcome(st Status, source, keyID string) {
	args := []any{"version", st.Version, "state", st.State}
	if keyID != "" {
		args = append(args, "key_id", keyID)
	}
	if source != "" {
		args = append(args, "source", source)
	}
	switch st.State {
	case StateRefused, StateRolledBack:
		m.cfg.Log.Warn("remote config: "+st.State, append(args, "reason", st.Reason)...)
	default:
		m.cfg.Log.Info("remote config: "+st.State, args...)
	}
}
