package agent

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/cellgate/cellgate/agent/input"
	"github.com/cellgate/cellgate/agent/pluginhost"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/sdk"
)

// Status is what GET /v1/status and `cellgate status` report: enough for an
// operator to tell where readings are stuck.
type Status struct {
	DeviceID string `json:"device_id"`
	Uptime   string `json:"uptime"`
	// ModemReady says the plugin is up with the modem open (and
	// provisioned in modem-TLS mode); Modem is what it reported last.
	ModemReady     bool           `json:"modem_ready"`
	Modem          *sdk.ModemInfo `json:"modem,omitempty"`
	PluginPID      int            `json:"plugin_pid,omitempty"`
	PluginRestarts int            `json:"plugin_restarts"`
	Spool          SpoolStatus    `json:"spool"`
	Uplink         UplinkStatus   `json:"uplink"`
}

// SpoolStatus is the spool's share of Status.
type SpoolStatus struct {
	Pending      uint64 `json:"pending_readings"`
	PendingBytes int64  `json:"pending_bytes"`
	DiskBytes    int64  `json:"disk_bytes"`
	Dropped      uint64 `json:"dropped_readings"`
}

// UplinkStatus is the uplink's share of Status: what the upstream has
// acknowledged since the agent started.
type UplinkStatus struct {
	Kind          string     `json:"kind"`
	AckedBatches  int64      `json:"acked_batches"`
	AckedReadings int64      `json:"acked_readings"`
	LastAck       *time.Time `json:"last_ack,omitempty"`
}

// board collects the parts Status reads; parts appear as Run starts them,
// and the HTTP input serves status from the start.
type board struct {
	deviceID string
	kind     string
	started  time.Time
	spool    *spool.Spool
	host     atomic.Pointer[pluginhost.Host]
	fw       atomic.Pointer[forwarder]
	// inputs are the inputs' statistics by name, registered before the
	// inputs start and read-only afterwards.
	inputs map[string]func() input.Stats
}

// inputStats returns each input's statistics.
func (b *board) inputStats() map[string]input.Stats {
	out := make(map[string]input.Stats, len(b.inputs))
	for name, f := range b.inputs {
		out[name] = f()
	}
	return out
}

// doneContext is already done: pluginhost's Ready with it is a probe.
var doneContext = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func (b *board) status() any {
	st := Status{DeviceID: b.deviceID, Uptime: time.Since(b.started).Round(time.Second).String()}
	ss := b.spool.Stats()
	st.Spool = SpoolStatus{Pending: ss.Pending, PendingBytes: ss.PendingBytes, DiskBytes: ss.DiskBytes, Dropped: ss.Dropped}
	if h := b.host.Load(); h != nil {
		if info, ok := h.Info(); ok {
			st.Modem = &info
		}
		st.ModemReady = h.Ready(doneContext) == nil
		st.PluginPID = h.PID()
		st.PluginRestarts = h.Restarts()
	}
	st.Uplink.Kind = b.kind
	if f := b.fw.Load(); f != nil {
		st.Uplink.AckedBatches = f.sentBatches.Load()
		st.Uplink.AckedReadings = f.sentReadings.Load()
		if ns := f.lastAck.Load(); ns != 0 {
			t := time.Unix(0, ns).UTC()
			st.Uplink.LastAck = &t
		}
	}
	return st
}
