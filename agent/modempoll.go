package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cellgate/cellgate/agent/pluginhost"
	"github.com/cellgate/cellgate/sdk"
)

// modemStatusSource is what the poller asks: the plugin host.
type modemStatusSource interface {
	// Ready waits until a plugin is up with the modem open.
	Ready(ctx context.Context) error
	Status(ctx context.Context) (sdk.ModemStatus, error)
}

// modemPoller asks the plugin for the modem's state every interval (the
// modem.poll key) and keeps the latest answer for the surfaces. It is the
// only writer of last; readers load it.
type modemPoller struct {
	src      modemStatusSource
	interval time.Duration
	log      *slog.Logger

	last atomic.Pointer[modemPoll]
}

// modemPoll is one poll's outcome.
type modemPoll struct {
	At     time.Time
	Status sdk.ModemStatus
	// Err is why the poll got no answer; Status is then the zero value.
	Err error
}

// pollTimeout bounds one poll: a healthy modem answers its seven queries in
// well under a second; a rebooting one times out each (simcom's
// statusCommandTimeout), so the poll gives up before the next is due.
func (p *modemPoller) pollTimeout() time.Duration { return max(p.interval, 10*time.Second) }

// run polls every interval until ctx ends. Each poll first waits for the
// plugin to be ready, so the first one comes as soon as the modem is up, and
// one after a plugin restart as soon as the new plugin is.
func (p *modemPoller) run(ctx context.Context) error {
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		if err := p.src.Ready(ctx); err == nil {
			p.poll(ctx)
		} else if ctx.Err() == nil {
			p.store(&modemPoll{At: time.Now().UTC(), Err: err}) // stopped for good
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// poll asks once and stores the outcome. A plugin that does not report
// status is said once, at debug level; the status then shows what Open
// reported.
func (p *modemPoller) poll(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, p.pollTimeout())
	defer cancel()
	st, err := p.src.Status(pctx)
	if ctx.Err() != nil {
		return
	}
	prev := p.store(&modemPoll{At: time.Now().UTC(), Status: st, Err: err})
	switch {
	case err == nil:
		if prev != nil && prev.Err == nil && prev.Status.Registration != st.Registration {
			p.log.Info("modem registration changed", "from", prev.Status.Registration, "to", st.Registration, "rssi", st.SignalRSSI)
		}
	case errors.Is(err, sdk.ErrStatusUnsupported):
		if prev == nil || !errors.Is(prev.Err, sdk.ErrStatusUnsupported) {
			p.log.Debug("the plugin does not report modem status; showing what Open reported", "err", err)
		}
	case errors.Is(err, pluginhost.ErrNotReady):
	default:
		if prev == nil || prev.Err == nil {
			p.log.Warn("modem status poll failed", "err", err)
		}
	}
}

// store makes next the latest poll, returning the one before.
func (p *modemPoller) store(next *modemPoll) (prev *modemPoll) {
	return p.last.Swap(next)
}

// latest returns the last poll, nil before the first.
func (p *modemPoller) latest() *modemPoll { return p.last.Load() }

// defaultModemPoll is modem.poll's default, for a Config built without
// config.Load.
const defaultModemPoll = 30 * time.Second
