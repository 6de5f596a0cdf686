package agent

import (
	"encoding/json"
	"time"

	"github.com/cellgate/cellgate/agent/input"
	"github.com/cellgate/cellgate/sdk"
)

// Status is what GET /v1/status and `cellgate status` report: enough for an
// operator to tell where readings are stuck.
type Status struct {
	DeviceID string `json:"device_id"`
	// Uptime is the seconds since the agent started, at StartedAt.
	Uptime    float64   `json:"uptime"`
	StartedAt time.Time `json:"started_at"`
	// Health is what GET /healthz answers now.
	Health Health `json:"health"`
	// ModemReady says the plugin is up with the modem open (and
	// provisioned in modem-TLS mode) and, when the plugin reports the
	// modem's state, registered; Modem is what its Open reported.
	ModemReady bool           `json:"modem_ready"`
	Modem      *sdk.ModemInfo `json:"modem,omitempty"`
	// ModemStatus is the modem's state at the latest poll (modem.poll);
	// absent before the first.
	ModemStatus    *ModemState  `json:"modem_status,omitempty"`
	PluginPID      int          `json:"plugin_pid,omitempty"`
	PluginRestarts int          `json:"plugin_restarts"`
	Spool          SpoolStatus  `json:"spool"`
	Uplink         UplinkStatus `json:"uplink"`
	// RemoteConfig is the committed remote configuration and any push
	// pending; absent when remote configuration is off.
	RemoteConfig *RemoteConfigStatus `json:"remote_config,omitempty"`
	// Cert is the client certificate and its rotation (rotation.go);
	// absent without a client certificate or an MQTT uplink.
	Cert *CertStatus `json:"cert,omitempty"`
}

// SpoolStatus is the spool's share of Status.
type SpoolStatus struct {
	Pending      uint64 `json:"pending_readings"`
	PendingBytes int64  `json:"pending_bytes"`
	DiskBytes    int64  `json:"disk_bytes"`
	// OldestTime is the measurement time ("ts") of the oldest reading
	// still waiting to be delivered, and OldestAgeSeconds how long before
	// this status that was; both absent when nothing waits.
	OldestTime       *time.Time `json:"oldest_time,omitempty"`
	OldestAgeSeconds *float64   `json:"oldest_age_seconds,omitempty"`
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
	LinkStatus
}

// ModemState is the modem's state as the latest poll found it: what the
// plugin reported (sdk.ModemStatus, inlined) with the signal in dBm, or why
// the poll got no answer.
type ModemState struct {
	// PolledAt is when the poll ended.
	PolledAt time.Time `json:"polled_at"`
	// PollError says why the poll got no answer; the fields below are then
	// empty.
	PollError string `json:"poll_error,omitempty"`
	// PluginUp says the plugin is up with the modem open.
	PluginUp bool `json:"plugin_up"`
	*sdk.ModemStatus
	// SignalDBM is SignalRSSI in dBm; absent when there is no signal.
	SignalDBM *int `json:"signal_dbm"`
}

// status reads each part's figures now. Every part exists once newAgent
// returned, and the surfaces serve only while the agent runs.
func (a *Agent) status() Status {
	st := Status{DeviceID: a.cfg.DeviceID, StartedAt: a.started.UTC(),
		Uptime: time.Since(a.started).Round(time.Millisecond).Seconds(), Health: a.health()}
	ss := a.spool.Stats()
	st.Spool = SpoolStatus{Pending: ss.Pending, PendingBytes: ss.PendingBytes, DiskBytes: ss.DiskBytes,
		Dropped: ss.Drops.Total(), DamagedUncounted: ss.Drops.DamagedUncounted,
		DroppedBy: DroppedReadings{Damaged: ss.Drops.Damaged, DropOldest: ss.Drops.DropOldest, RefusedUpstream: ss.Drops.RefusedUpstream}}
	st.Spool.OldestTime, st.Spool.OldestAgeSeconds = a.oldestPending(ss.Pending)
	if info, ok := a.host.Info(); ok {
		st.Modem = &info
	}
	pluginUp := a.host.IsReady()
	st.PluginPID = a.host.PID()
	st.PluginRestarts = a.host.Restarts()
	st.ModemStatus = a.modemState(pluginUp)
	st.ModemReady = pluginUp && a.unregisteredPoll() == nil
	st.Uplink = a.fw.status()
	st.Uplink.LinkStatus = a.link.status()
	st.Uplink.Kind = a.cfg.Uplink.Kind()
	st.RemoteConfig = a.remoteStatus()
	if a.rotation != nil {
		st.Cert = a.rotation.snapshot()
	}
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

// modemState is the latest poll as Status shows it; nil before the first.
func (a *Agent) modemState(ready bool) *ModemState {
	p := a.poller.latest()
	if p == nil {
		return nil
	}
	ms := &ModemState{PolledAt: p.At, PluginUp: ready}
	if p.Err != nil {
		ms.PollError = p.Err.Error()
		return ms
	}
	st := p.Status
	ms.ModemStatus = &st
	if dbm, ok := p.Status.SignalDBM(); ok {
		ms.SignalDBM = &dbm
	}
	return ms
}

// unregisteredPoll returns the latest poll when it found the modem open but
// neither home nor roaming (it cannot carry data, whatever the plugin
// says), and nil otherwise.
func (a *Agent) unregisteredPoll() *modemPoll {
	if p := a.poller.latest(); p != nil && p.Err == nil && p.Status.PortOpen && !registeredStates[p.Status.Registration] {
		return p
	}
	return nil
}

// oldestPending reads the measurement time of the oldest reading waiting in
// the spool. A status is best effort: a record that cannot be read or has
// no usable "ts" leaves both figures absent (the forwarder reports a bad
// record when it reaches it).
func (a *Agent) oldestPending(pending uint64) (*time.Time, *float64) {
	if pending == 0 {
		return nil, nil
	}
	rec, ok, err := a.spool.Oldest()
	if err != nil || !ok {
		return nil, nil
	}
	var r struct {
		TS time.Time `json:"ts"`
	}
	if json.Unmarshal(rec.Payload, &r) != nil || r.TS.IsZero() {
		return nil, nil
	}
	ts := r.TS.UTC()
	age := max(time.Since(ts).Round(time.Millisecond).Seconds(), 0)
	return &ts, &age
}
