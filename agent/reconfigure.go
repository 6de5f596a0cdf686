package agent

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/input"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/transport/uplink"
)

// This file changes the running agent's configuration in place: what a
// remote configuration may change, without a restart and without losing or
// sending twice a reading in the spool. The plugin host, the modem session
// under the uplink (unless the uplink is rebuilt), the spool and its
// readings all stay.

// current returns the configuration in effect.
func (a *Agent) current() *config.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.live
}

// currentUplink returns the uplink in use.
func (a *Agent) currentUplink() uplink.Uplink {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.uplink
}

// checkLive refuses a next configuration that changes what reconfigure
// cannot change while the agent runs. The keys no remote configuration may
// set (config.NeverRemote) are not compared: the caller carries them over
// from the running configuration.
func checkLive(cur, next *config.Config) error {
	var problems []string
	if next.Spool.Dir != cur.Spool.Dir {
		problems = append(problems, "spool.dir cannot change while the agent runs (the spool would be left behind)")
	}
	if next.Uplink.Kind() != cur.Uplink.Kind() {
		problems = append(problems, fmt.Sprintf("the uplink cannot change from %s to %s while the agent runs", cur.Uplink.Kind(), next.Uplink.Kind()))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// changes says which parts a new configuration touches.
type changes struct {
	inputs      []string // the inputs to rebuild, by name
	spoolLimits bool
	rebuild     bool // uplink settings other than the topic: a new connection
	topic       bool // the MQTT topic alone: the next publish
	batch       bool
	logLevel    bool
	logFormat   bool
}

func diff(cur, next *config.Config) changes {
	var c changes
	if cur.Inputs.HTTP != next.Inputs.HTTP {
		c.inputs = append(c.inputs, inputHTTP)
	}
	if cur.Inputs.UDP != next.Inputs.UDP {
		c.inputs = append(c.inputs, inputDatagram)
	}
	if cur.Inputs.Demo != next.Inputs.Demo {
		c.inputs = append(c.inputs, inputDemo)
	}
	c.spoolLimits = cur.Spool.MaxBytes != next.Spool.MaxBytes || cur.Spool.WhenFull != next.Spool.WhenFull ||
		cur.Spool.RefusedMaxBytes != next.Spool.RefusedMaxBytes
	c.batch = cur.Uplink.Batch != next.Uplink.Batch || cur.Uplink.MaxInFlight != next.Uplink.MaxInFlight
	cu, nu := cur.Uplink, next.Uplink
	cu.Batch, nu.Batch = config.Batch{}, config.Batch{}
	cu.MaxInFlight, nu.MaxInFlight = 0, 0
	if cu.MQTT != nil && nu.MQTT != nil {
		cm, nm := *cu.MQTT, *nu.MQTT
		c.topic = cm.Topic != nm.Topic
		cm.Topic, nm.Topic = "", ""
		c.rebuild = cm != nm
	} else {
		c.rebuild = !reflect.DeepEqual(cu, nu)
	}
	if c.rebuild {
		c.topic = false // the new uplink takes the new topic
	}
	c.logLevel = cur.Log.Level != next.Log.Level
	c.logFormat = cur.Log.Format != next.Log.Format
	return c
}

func (c changes) forwarder() bool { return c.rebuild || c.topic || c.batch }

// reconfigure makes next the configuration in effect, changing only the
// parts whose settings differ:
//
//   - inputs (listen addresses, body limit, demo rate): a moved input
//     listens at its new address before the old one closes; one that keeps
//     its address closes first. Requests in progress finish: a reading
//     answered 202 is on disk.
//   - spool.max_bytes and spool.when_full: from the next append;
//     spool.refused_max_bytes from the next batch set aside.
//   - uplink.batch.* and uplink.max_in_flight: from the next batch.
//   - uplink.mqtt.topic: from the next publish, on the same connection.
//   - any other uplink setting (keepalive): a new uplink, over a new modem
//     session, after the old one is closed.
//   - log.level: at once when Options.LogLevel was given; log.format at the
//     next start (the handler is the caller's).
//
// A rebuild aborts a certificate rotation in its trial (which rolls back
// to the old set and says why) or waits for one committing, so the trial
// is never proven by a connection made with the old set. The forwarder
// holds between batches first when the uplink or batching changes: the batch in flight is acknowledged (and acked in the spool, so
// it is not sent twice) or abandoned (it stays in the spool and goes
// again), before anything it uses changes.
//
// On failure the parts changed so far stay changed and current() says
// what is in effect: reconfiguring to the previous configuration restores
// it.
func (a *Agent) reconfigure(ctx context.Context, next *config.Config) (err error) {
	cur := a.current()
	c := diff(cur, next)
	applied := *cur // what is in effect, part by part
	defer func() {
		a.mu.Lock()
		if err == nil {
			a.live = next
		} else {
			a.live = &applied
		}
		a.mu.Unlock()
	}()
	if c.rebuild && a.rotation != nil {
		// Before the forwarder holds (a rollback swaps the uplink under
		// it): a certificate rotation's trial must not take an
		// acknowledgement on an uplink rebuilt with the old set.
		release, err := a.rotation.exclusive(ctx)
		if err != nil {
			return err
		}
		defer release()
	}
	if c.forwarder() {
		release, err := a.fw.hold(ctx)
		if err != nil {
			return fmt.Errorf("hold the forwarder: %w", err)
		}
		defer release()
	}
	for _, name := range c.inputs {
		running, err := a.replaceInput(name, cur.Inputs, next.Inputs)
		setInput(&applied.Inputs, name, running)
		if err != nil {
			return err
		}
	}
	if c.spoolLimits {
		policy, err := spool.ParsePolicy(next.Spool.WhenFull)
		if err != nil {
			return fmt.Errorf("spool.when_full: %w", err)
		}
		if err := a.spool.SetLimits(spool.Limits{MaxBytes: int64(next.Spool.MaxBytes), WhenFull: policy}); err != nil {
			return err
		}
		a.fw.refusedMax.Store(int64(next.Spool.RefusedMaxBytes)) // from the next batch set aside
		applied.Spool = next.Spool
	}
	if err := a.reconfigureUplink(c, &applied, next); err != nil {
		return err
	}
	if c.batch {
		if err := a.fw.setBatch(next.Uplink.Batch); err != nil {
			return err
		}
		applied.Uplink.Batch = next.Uplink.Batch
		a.fw.maxInFlight = next.Uplink.MaxInFlight // the forwarder holds
		applied.Uplink.MaxInFlight = next.Uplink.MaxInFlight
	}
	if c.logLevel && a.logLevel != nil {
		a.logLevel.Set(next.Log.SlogLevel())
	}
	if c.logFormat {
		a.log.Info("log.format changed: it takes effect at the next start", "format", next.Log.Format)
	}
	return nil
}

// reconfigureUplink changes the topic, or builds a new uplink, as c says;
// the forwarder holds.
func (a *Agent) reconfigureUplink(c changes, applied, next *config.Config) error {
	switch {
	case c.topic:
		m, ok := a.currentUplink().(*uplink.MQTT)
		if !ok {
			return errors.New("bug: an MQTT topic change without an MQTT uplink")
		}
		if err := m.SetTopic(next.Uplink.MQTT.Topic); err != nil {
			return err
		}
		mq := *applied.Uplink.MQTT
		mq.Topic = next.Uplink.MQTT.Topic
		applied.Uplink.MQTT = &mq
	case c.rebuild:
		old := a.currentUplink()
		if err := old.Close(); err != nil {
			a.log.Warn("reconfigure: the old uplink did not close cleanly", "err", err)
		}
		// Until the new one exists there is none: a failure leaves
		// applied saying so, and the rollback builds one again.
		batch := applied.Uplink.Batch
		applied.Uplink = config.Uplink{Batch: batch}
		up, err := newUplink(a.gctx, next, a.sessionDialer(), a.log.With("part", "uplink"))
		if err != nil {
			return fmt.Errorf("build the new uplink: %w", err)
		}
		a.mu.Lock()
		a.uplink = up
		a.mu.Unlock()
		a.fw.uplink = up
		applied.Uplink = next.Uplink
		applied.Uplink.Batch = batch
		if a.remote != nil {
			a.remote.attach(up, next)
		}
		if a.rotation != nil {
			a.rotation.attach(up)
		}
	}
	return nil
}

// replaceInput stops the input name and starts it as next says, and
// returns the settings of what runs afterwards (zero: nothing).
func (a *Agent) replaceInput(name string, cur, next config.Inputs) (config.Inputs, error) {
	a.mu.Lock()
	i := slices.IndexFunc(a.inputs, func(in *inputPart) bool { return in.name == name })
	var old *inputPart
	if i >= 0 {
		old = a.inputs[i]
	}
	a.mu.Unlock()
	// The same address cannot be bound twice: the old listener goes first.
	sameAddr := old != nil && inputAddr(name, cur) == inputAddr(name, next) && inputAddr(name, next) != ""
	if sameAddr {
		a.removeInput(old)
		cur, old = config.Inputs{}, nil
	}
	p, _, err := a.buildInput(name, next)
	if err != nil {
		return cur, err
	}
	if old != nil {
		a.removeInput(old)
	}
	if p == nil {
		a.log.Info("reconfigure: input off", "input", name)
		return next, nil
	}
	a.carryStats(p)
	a.mu.Lock()
	a.inputs = append(a.inputs, p)
	a.mu.Unlock()
	a.startInput(p)
	a.log.Info("reconfigure: input restarted", "input", name, "addr", inputAddr(name, next))
	return next, nil
}

// removeInput stops in and forgets it, keeping what it counted.
func (a *Agent) removeInput(in *inputPart) {
	stopInput(in)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inputs = slices.DeleteFunc(a.inputs, func(p *inputPart) bool { return p == in })
	a.retired = addStats(a.retired, in.name, in.stats())
}

// carryStats makes p count on from what the inputs of its name counted
// before it, so its counters never go back.
func (a *Agent) carryStats(p *inputPart) {
	a.mu.Lock()
	base := a.retired[p.name]
	delete(a.retired, p.name)
	a.mu.Unlock()
	inner := p.stats
	p.stats = func() input.Stats { return inner().Add(base) }
}

func addStats(m map[string]input.Stats, name string, s input.Stats) map[string]input.Stats {
	if m == nil {
		m = map[string]input.Stats{}
	}
	m[name] = s.Add(m[name])
	return m
}

// inputAddr is where the input name listens under in ("" for the demo,
// or when off).
func inputAddr(name string, in config.Inputs) string {
	switch name {
	case inputHTTP:
		return in.HTTP.Listen
	case inputDatagram:
		return in.UDP.Listen
	}
	return ""
}

// setInput copies the settings of input name from from into to.
func setInput(to *config.Inputs, name string, from config.Inputs) {
	switch name {
	case inputHTTP:
		to.HTTP = from.HTTP
	case inputDatagram:
		to.UDP = from.UDP
	case inputDemo:
		to.Demo = from.Demo
	}
}
