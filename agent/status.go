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
	// RemoteConfig is the committed remote configuration and any push
	// pending; absent when remote configuration is off.
	RemoteConfig *RemoteConfigStatus `json:"remote_config,omitempty"`
}

// SpoolStatus is the spool's share of Status.
type SpoolStatus struct {
	Pending      uint64 `json:"pending_readings"`
	PendingBytes int64  `json:"pending_bytes"`
	DiskBytes    int64  `json:"disk_bytes"`
	// Dropped counts every reading an input answered 2xx for (it was in
	// the spool) that will never be delivered: the sum of DroppedBy. The
	// counts are the spool directory's, kept on disk across restarts and
	// reloads (spool.Drops), not only this run's.
	Dropped uint64 `json:"dropped_readings"`
	// DroppedBy splits Dropped by cause:
	//   - damaged: lost to damage on disk that recovery found at a start
	//     (spool.Damage; the damaged bytes are kept in <spool.dir>/*.corrupt
	//     and *.torn), or a stored record that is not a usable reading
	//     (kept in refused/);
	//   - drop_oldest: dropped to make room under when_full: drop_oldest;
	//   - refused_upstream: refused for good by the upstream (HTTP 400, 413,
	//     415, 422, MQTT 0x99) and set aside in <spool.dir>/refused/; counted
	//     when set aside, not again when spool.refused_max_bytes removes
	//     the file.
	DroppedBy DroppedReadings `json:"dropped"`
	// DamagedUncounted is the number of damaged regions whose readings
	// could not all be counted (a header was gone): damaged is a lower
	// bound when it is not 0.
	DamagedUncounted uint64 `json:"damaged_uncounted_regions,omitempty"`
}

// DroppedReadings is SpoolStatus.Dropped by cause; the JSON names are the
// causes (spool.Causes) and the cause label of
// cellgate_spool_dropped_readings_total.
type DroppedReadings struct {
	Damaged         uint64 `json:"damaged"`
	DropOldest      uint64 `json:"drop_oldest"`
	RefusedUpstream uint64 `json:"refused_upstream"`
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
	st.Spool = SpoolStatus{Pending: ss.Pending, PendingBytes: ss.PendingBytes, DiskBytes: ss.DiskBytes,
		Dropped: ss.Drops.Total(), DamagedUncounted: ss.Drops.DamagedUncounted,
		DroppedBy: DroppedReadings{Damaged: ss.Drops.Damaged, DropOldest: ss.Drops.DropOldest, RefusedUpstream: ss.Drops.RefusedUpstream}}
	if info, ok := a.host.Info(); ok {
		st.Modem = &info
	}
	st.ModemReady = a.host.IsReady()
	st.PluginPID = a.host.PID()
	st.PluginRestarts = a.host.Restarts()
	st.Uplink = a.fw.status()
	st.Uplink.Kind = a.cfg.Uplink.Kind()
	st.RemoteConfig = a.remoteStatus()
	return st
}

// inputStats returns each input's statistics by name.
func (a *Agent) inputStats() map[string]input.Stats {
	a.mu.Lock() // reconfigure replaces inputs
	defer a.mu.Unlock()
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
