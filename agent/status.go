package agent

import (
	"time"

	"github.com/cellgate/cellgate/agent/input"
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

// status reads each part's figures now. Every part exists once newAgent
// returned, and the surfaces serve only while the agent runs.
func (a *Agent) status() Status {
	st := Status{DeviceID: a.cfg.DeviceID, Uptime: time.Since(a.started).Round(time.Second).String()}
	ss := a.spool.Stats()
	st.Spool = SpoolStatus{Pending: ss.Pending, PendingBytes: ss.PendingBytes, DiskBytes: ss.DiskBytes, Dropped: ss.Dropped}
	if info, ok := a.host.Info(); ok {
		st.Modem = &info
	}
	st.ModemReady = a.host.IsReady()
	st.PluginPID = a.host.PID()
	st.PluginRestarts = a.host.Restarts()
	st.Uplink = a.fw.status()
	st.Uplink.Kind = a.cfg.Uplink.Kind()
	return st
}

// inputStats returns each input's statistics by name.
func (a *Agent) inputStats() map[string]input.Stats {
	out := make(map[string]input.Stats, len(a.inputs))
	for _, in := range a.inputs {
		out[in.name] = in.stats()
	}
	return out
}

// status is the forwarder's share of Status.
func (f *forwarder) status() UplinkStatus {
	st := UplinkStatus{AckedBatches: f.sentBatches.Load(), AckedReadings: f.sentReadings.Load()}
	if ns := f.lastAck.Load(); ns != 0 {
		t := time.Unix(0, ns).UTC()
		st.LastAck = &t
	}
	return st
}
