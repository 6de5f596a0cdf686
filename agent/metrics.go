package agent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/internal/buildinfo"
	"github.com/cellgate/cellgate/sdk"
)

// metrics exports the agent's status as Prometheus metrics, read at scrape
// time from the parts that own the figures, so there is no second copy to
// keep in step. Every series carries the device label. The list is in
// docs/metrics.md; packaging/monitoring has alert rules and a dashboard
// built on it.
type metrics struct {
	a *Agent

	buildInfo, healthy                        *prometheus.Desc
	pending, pendingBytes, diskBytes, dropped *prometheus.Desc
	ackedReadings, ackedBatches, lastAck      *prometheus.Desc
	publishes, retries, reconnects, connected *prometheus.Desc
	dialFailures, airBytes                    *prometheus.Desc
	modemReady, pluginUp, restarts            *prometheus.Desc
	rssi, signalDBM, registration, serial     *prometheus.Desc
	inputAccepted, inputRejected              *prometheus.Desc
	remotePushes, remoteVersion               *prometheus.Desc
}

// registrationStates are the values of cellgate_modem_registration_state's
// state label, one series each, so that a query can select one.
var registrationStates = []string{"home", "roaming", "searching", "denied", "sms only", "emergency only", "not registered", "unknown"}

func newMetrics(a *Agent) *metrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("cellgate_"+name, help, labels, prometheus.Labels{"device": a.cfg.DeviceID})
	}
	return &metrics{
		a:             a,
		buildInfo:     d("build_info", "Always 1: the agent's version, commit, Go version and plugin contract version as labels.", "version", "commit", "goversion", "contract"),
		healthy:       d("healthy", "1 when GET /healthz answers 200, 0 when 503."),
		pending:       d("spool_pending_readings", "Readings on disk not yet acknowledged upstream."),
		pendingBytes:  d("spool_pending_bytes", "On-disk size of the readings not yet acknowledged upstream."),
		diskBytes:     d("spool_disk_bytes", "Size of the spool's segment files (bounded by spool.max_bytes)."),
		dropped:       d("spool_dropped_readings_total", "Readings answered as stored that will never be delivered, by cause: damaged, drop_oldest, refused_upstream (kept across restarts).", "cause"),
		ackedReadings: d("uplink_acked_readings_total", "Readings the upstream acknowledged since the agent started."),
		ackedBatches:  d("uplink_acked_batches_total", "Batches the upstream acknowledged since the agent started."),
		lastAck:       d("uplink_last_ack_timestamp_seconds", "When the upstream last acknowledged a batch (0: never)."),
		publishes:     d("uplink_publishes_total", "Publishes (uplink sends of a batch) by outcome: acked, failed (retried), refused (set aside for good).", "outcome"),
		retries:       d("uplink_retries_total", "Publishes of a batch after its first attempt."),
		reconnects:    d("uplink_reconnects_total", "Sessions to the upstream opened after the first."),
		dialFailures:  d("uplink_dial_failures_total", "Sessions to the upstream the plugin failed to open."),
		connected:     d("uplink_connected", "1 while a session to the upstream is open."),
		airBytes:      d("uplink_air_bytes_total", "Bytes the uplink's sessions carried through the modem, by direction: tx (sent), rx (received).", "direction"),
		modemReady:    d("modem_ready", "1 when the plugin is up with the modem open (and provisioned in modem-TLS mode)."),
		pluginUp:      d("plugin_up", "1 when a plugin process runs (ready or still bringing the modem up)."),
		restarts:      d("plugin_restarts_total", "Plugin process restarts."),
		rssi:          d("modem_signal_rssi", "AT+CSQ rssi at the latest poll (bring-up before the first): 0-31, 99 no signal."),
		signalDBM:     d("modem_signal_dbm", "Signal strength in dBm at the latest poll; absent while the modem reports no signal."),
		registration:  d("modem_registration_state", "1 for the modem's registration at the latest poll (the best of CREG, CGREG, CEREG), 0 for the others.", "state"),
		serial:        d("modem_serial_bytes_total", "Bytes on the modem's serial line since the plugin opened it, by direction: tx (to the modem), rx (from it).", "direction"),
		inputAccepted: d("input_accepted_readings_total", "Readings an input accepted (durable).", "input"),
		inputRejected: d("input_rejected_readings_total", "Readings an input refused (HTTP) or lost (datagram, demo), by reason; a refusal counts the readings read before it and at least one.", "input", "reason"),
		remotePushes:  d("remote_config_pushes_total", "Remote configuration pushes since the agent started, by outcome: committed, rolled_back, refused.", "outcome"),
		remoteVersion: d("remote_config_committed_version", "The committed remote configuration version (0: none yet)."),
	}
}

// descs lists every Desc of m but the latency histogram's.
func (m *metrics) descs() []*prometheus.Desc {
	return []*prometheus.Desc{m.buildInfo, m.healthy, m.pending, m.pendingBytes, m.diskBytes, m.dropped,
		m.ackedReadings, m.ackedBatches, m.lastAck, m.publishes, m.retries, m.reconnects, m.dialFailures, m.connected, m.airBytes,
		m.modemReady, m.pluginUp, m.restarts, m.rssi, m.signalDBM, m.registration, m.serial,
		m.inputAccepted, m.inputRejected, m.remotePushes, m.remoteVersion}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.descs() {
		ch <- d
	}
	m.a.link.latency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.a.status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	bi := buildinfo.Get()
	gauge(m.buildInfo, 1, bi.Version, bi.Commit, bi.GoVersion, sdk.ContractVersion)
	gauge(m.healthy, boolValue(st.Health.OK()))
	m.collectSpool(st.Spool, gauge, counter)
	m.collectUplink(st.Uplink, gauge, counter)
	m.a.link.latency.Collect(ch)
	m.collectModem(st, gauge, counter)
	for name, s := range m.a.inputStats() {
		counter(m.inputAccepted, float64(s.Accepted), name)
		for reason, n := range s.ByReason {
			counter(m.inputRejected, float64(n), name, string(reason))
		}
	}
	if rc := st.RemoteConfig; rc != nil {
		for outcome, n := range rc.Pushes {
			counter(m.remotePushes, float64(n), outcome)
		}
		gauge(m.remoteVersion, float64(rc.CommittedVersion))
	}
}

// emit sends one constant metric.
type emit func(d *prometheus.Desc, v float64, labels ...string)

func (m *metrics) collectSpool(s SpoolStatus, gauge, counter emit) {
	gauge(m.pending, float64(s.Pending))
	gauge(m.pendingBytes, float64(s.PendingBytes))
	gauge(m.diskBytes, float64(s.DiskBytes))
	for cause, n := range map[spool.Cause]uint64{spool.CauseDamaged: s.DroppedBy.Damaged,
		spool.CauseDropOldest: s.DroppedBy.DropOldest, spool.CauseRefusedUpstream: s.DroppedBy.RefusedUpstream} {
		counter(m.dropped, float64(n), string(cause))
	}
}

func (m *metrics) collectUplink(u UplinkStatus, gauge, counter emit) {
	counter(m.ackedReadings, float64(u.AckedReadings))
	counter(m.ackedBatches, float64(u.AckedBatches))
	last := 0.0
	if u.LastAck != nil {
		last = float64(u.LastAck.UnixNano()) / 1e9
	}
	gauge(m.lastAck, last)
	for outcome, n := range u.Publishes {
		counter(m.publishes, float64(n), outcome)
	}
	counter(m.retries, float64(u.Retries))
	counter(m.reconnects, float64(u.Reconnects))
	counter(m.dialFailures, float64(u.DialFailures))
	gauge(m.connected, boolValue(u.Connected))
	counter(m.airBytes, float64(u.AirTxBytes), "tx")
	counter(m.airBytes, float64(u.AirRxBytes), "rx")
}

func (m *metrics) collectModem(st Status, gauge, counter emit) {
	gauge(m.modemReady, boolValue(st.ModemReady))
	gauge(m.pluginUp, boolValue(st.PluginPID != 0))
	counter(m.restarts, float64(st.PluginRestarts))
	rssi, reg := -1, ""
	if st.Modem != nil {
		rssi, reg = st.Modem.SignalRSSI, st.Modem.Registration
	}
	if ms := st.ModemStatus; ms != nil && ms.PollError == "" {
		rssi, reg = ms.SignalRSSI, ms.Registration
		counter(m.serial, float64(ms.SerialTxBytes), "tx")
		counter(m.serial, float64(ms.SerialRxBytes), "rx")
	}
	if rssi < 0 {
		return // nothing known yet
	}
	gauge(m.rssi, float64(rssi))
	if dbm, ok := sdk.RSSIToDBM(rssi); ok {
		gauge(m.signalDBM, float64(dbm))
	}
	for _, s := range registrationStates {
		gauge(m.registration, boolValue(s == reg), s)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// handler serves the agent's metrics and the Go runtime's.
func (m *metrics) handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
