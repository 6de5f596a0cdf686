package agent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cellgate/cellgate/agent/spool"
)

// metrics exports the agent's status as Prometheus metrics, read at scrape time from
// the parts that own the figures, so there is no second copy to keep in
// step.
type metrics struct {
	a *Agent

	pending, diskBytes, dropped          *prometheus.Desc
	ackedReadings, ackedBatches, lastAck *prometheus.Desc
	modemReady, rssi, restarts           *prometheus.Desc
	inputAccepted, inputRejected         *prometheus.Desc
	remotePushes, remoteVersion          *prometheus.Desc
}

func newMetrics(a *Agent) *metrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("cellgate_"+name, help, labels, prometheus.Labels{"device": a.cfg.DeviceID})
	}
	return &metrics{
		a:             a,
		pending:       d("spool_pending_readings", "Readings on disk not yet acknowledged upstream."),
		diskBytes:     d("spool_disk_bytes", "Size of the spool's segment files (bounded by spool.max_bytes)."),
		dropped:       d("spool_dropped_readings_total", "Readings answered as stored that will never be delivered, by cause: damaged, drop_oldest, refused_upstream (kept across restarts).", "cause"),
		ackedReadings: d("uplink_acked_readings_total", "Readings the upstream acknowledged since the agent started."),
		ackedBatches:  d("uplink_acked_batches_total", "Batches the upstream acknowledged since the agent started."),
		lastAck:       d("uplink_last_ack_timestamp_seconds", "When the upstream last acknowledged a batch (0: never)."),
		modemReady:    d("modem_ready", "1 when the plugin is up with the modem open."),
		rssi:          d("modem_signal_rssi", "AT+CSQ rssi at the last bring-up (0-31, 99 unknown)."),
		restarts:      d("plugin_restarts_total", "Plugin process restarts."),
		inputAccepted: d("input_accepted_readings_total", "Readings an input accepted (durable).", "input"),
		inputRejected: d("input_rejected_readings_total", "Readings an input refused (HTTP) or lost (datagram, demo), by reason; a refusal counts the readings read before it and at least one.", "input", "reason"),
		remotePushes:  d("remote_config_pushes_total", "Remote configuration pushes since the agent started, by outcome: committed, rolled_back, refused.", "outcome"),
		remoteVersion: d("remote_config_committed_version", "The committed remote configuration version (0: none yet)."),
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.pending, m.diskBytes, m.dropped, m.ackedReadings, m.ackedBatches, m.lastAck, m.modemReady, m.rssi, m.restarts, m.inputAccepted, m.inputRejected, m.remotePushes, m.remoteVersion} {
		ch <- d
	}
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
	gauge(m.pending, float64(st.Spool.Pending))
	gauge(m.diskBytes, float64(st.Spool.DiskBytes))
	for cause, n := range map[spool.Cause]uint64{spool.CauseDamaged: st.Spool.DroppedBy.Damaged,
		spool.CauseDropOldest: st.Spool.DroppedBy.DropOldest, spool.CauseRefusedUpstream: st.Spool.DroppedBy.RefusedUpstream} {
		counter(m.dropped, float64(n), string(cause))
	}
	counter(m.ackedReadings, float64(st.Uplink.AckedReadings))
	counter(m.ackedBatches, float64(st.Uplink.AckedBatches))
	last := 0.0
	if st.Uplink.LastAck != nil {
		last = float64(st.Uplink.LastAck.UnixNano()) / 1e9
	}
	gauge(m.lastAck, last)
	ready := 0.0
	if st.ModemReady {
		ready = 1
	}
	gauge(m.modemReady, ready)
	if st.Modem != nil {
		gauge(m.rssi, float64(st.Modem.SignalRSSI))
	}
	counter(m.restarts, float64(st.PluginRestarts))
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

// handler serves the agent's metrics and the Go runtime's.
func (m *metrics) handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
