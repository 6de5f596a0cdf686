package benchreport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Entry is one figure of bench/results.json. Figure, Baseline and Ratio
// are null when the run did not measure them, and Why says why.
type Entry struct {
	Figure     *float64 `json:"figure"`
	Unit       string   `json:"unit"`
	Baseline   *float64 `json:"baseline"`
	BaselineIs string   `json:"baseline_is"`
	Ratio      *float64 `json:"ratio"`
	Better     string   `json:"better"`
	Target     string   `json:"target,omitempty"`
	Source     string   `json:"source"`
	Why        string   `json:"why,omitempty"`
}

// ref names one metric of the bench output: a benchmark and a unit.
type ref struct{ bench, unit string }

func (r ref) String() string { return r.bench + " " + r.unit }

// find returns the metric r names and where it came from.
func (r ref) find(m Metrics) (float64, string, bool) {
	v, ok := m.Get(r.bench, r.unit)
	return v, r.String(), ok
}

// spec says where one key's figure and baseline come from.
type spec struct {
	key, unit, better, target string
	figure                    ref
	baseline                  *ref   // nil: derive or none
	baselineIs                string // what the baseline is
	derive                    func(m Metrics) (float64, bool)
	missing                   string // why, when the run has no such benchmark
	// or is another figure and baseline to take when figure is not in
	// the run (an older benchmark of the same thing).
	or *spec
}

var (
	airBench  = "BenchmarkAirBytes"
	footprint = "BenchmarkForwardingFootprint"
)

func exact(bench, unit string) ref   { return ref{bench: bench, unit: unit} }
func exactP(bench, unit string) *ref { r := exact(bench, unit); return &r }

// Specs are the keys of bench/results.json in order.
var Specs = []spec{
	{key: "serial_efficiency", unit: "payload/line", better: "higher", target: ">= 0.95",
		figure: exact("BenchmarkUploadEfficiency", "payload/line"), baseline: exactP("BenchmarkRawLineBaseline", "payload/line"),
		baselineIs: "raw AT+CCERTDOWN line rate, same run"},
	{key: "drain_utilisation_0ms", unit: "utilisation", better: "higher",
		figure: exact("BenchmarkDrain", "drain_utilisation_0ms"), baseline: exactP("BenchmarkDrain", "drain_utilisation_0ms_baseline"),
		baselineIs: "the same drain with one batch in flight", missing: "no drain benchmark in this run (goal 1, BenchmarkDrain)"},
	{key: "drain_utilisation_600ms", unit: "utilisation", better: "higher", target: ">= 0.80",
		figure: exact("BenchmarkDrain", "drain_utilisation_600ms"), baseline: exactP("BenchmarkDrain", "drain_utilisation_600ms_baseline"),
		baselineIs: "the same drain with one batch in flight", missing: "no drain benchmark in this run (goal 1, BenchmarkDrain)"},
	{key: "drain_utilisation_2000ms", unit: "utilisation", better: "higher", target: ">= 0.60",
		figure: exact("BenchmarkDrain", "drain_utilisation_2000ms"), baseline: exactP("BenchmarkDrain", "drain_utilisation_2000ms_baseline"),
		baselineIs: "the same drain with one batch in flight", missing: "no drain benchmark in this run (goal 1, BenchmarkDrain)"},
	{key: "https_drain_utilisation_0ms", unit: "utilisation", better: "higher",
		figure: exact("BenchmarkDrainHTTPS", "https_drain_utilisation_0ms"), baseline: exactP("BenchmarkDrainHTTPS", "https_drain_utilisation_0ms_baseline"),
		baselineIs: "the same drain with one request at a time", missing: "no HTTPS drain benchmark in this run (BenchmarkDrainHTTPS)"},
	{key: "https_drain_utilisation_600ms", unit: "utilisation", better: "higher",
		figure: exact("BenchmarkDrainHTTPS", "https_drain_utilisation_600ms"), baseline: exactP("BenchmarkDrainHTTPS", "https_drain_utilisation_600ms_baseline"),
		baselineIs: "the same drain with one request at a time", missing: "no HTTPS drain benchmark in this run (BenchmarkDrainHTTPS)"},
	{key: "https_drain_utilisation_2000ms", unit: "utilisation", better: "higher",
		figure: exact("BenchmarkDrainHTTPS", "https_drain_utilisation_2000ms"), baseline: exactP("BenchmarkDrainHTTPS", "https_drain_utilisation_2000ms_baseline"),
		baselineIs: "the same drain with one request at a time", missing: "no HTTPS drain benchmark in this run (BenchmarkDrainHTTPS)"},
	{key: "bytes_per_reading_json", unit: "B/reading", better: "lower",
		figure: exact(airBench, "json-B/reading"), baseline: exactP(airBench, "baseline-B/reading"),
		baselineIs: "mosquitto_pub -l, one QoS 1 publish per reading, through the same relay"},
	{key: "bytes_per_reading_compact", unit: "B/reading", better: "lower", target: "<= 0.04x baseline",
		figure: exact(airBench, "compact-B/reading"), baseline: exactP(airBench, "baseline-B/reading"),
		baselineIs: "mosquitto_pub -l, one QoS 1 publish per reading, through the same relay"},
	{key: "bytes_per_reading_baseline", unit: "B/reading", better: "lower",
		figure: exact(airBench, "baseline-B/reading"), baseline: exactP(airBench, "baseline-B/reading"),
		baselineIs: "itself, mosquitto_pub -l measured through the relay in this run"},
	{key: "handshake_bytes", unit: "B", better: "lower",
		figure: exact(airBench, "handshake-B"), baseline: exactP(airBench, "baseline-handshake-B"),
		baselineIs: "mosquitto_pub connect and disconnect through the same relay"},
	{key: "ingest_http_batch", unit: "readings/s", better: "higher",
		figure: exact("BenchmarkHTTPIngestBatch/durable", "readings/s"), baseline: exactP("BenchmarkHTTPIngestBatch/nosync", "readings/s"),
		baselineIs: "the same ingest without fsync",
		or:         &spec{figure: exact("BenchmarkHTTPIngest/durable", "readings/s"), baseline: exactP("BenchmarkHTTPIngest/nosync", "readings/s")}},
	{key: "ingest_http_single", unit: "readings/s", better: "higher", target: ">= 20000",
		figure: exact("BenchmarkHTTPIngestSingle/durable", "readings/s"), baseline: exactP("BenchmarkHTTPIngestSingle/nosync", "readings/s"),
		baselineIs: "the same ingest without fsync",
		or:         &spec{figure: exact("BenchmarkHTTPIngestOnePerRequest/durable", "readings/s"), baseline: exactP("BenchmarkHTTPIngestOnePerRequest/nosync", "readings/s")}},
	{key: "ingest_udp", unit: "readings/s", better: "higher", target: ">= 70000",
		figure: exact("BenchmarkDatagramIngest/durable", "readings/s"), baseline: exactP("BenchmarkDatagramIngest/nosync", "readings/s"),
		baselineIs: "the same ingest without fsync"},
	{key: "plugin_boundary", unit: "MB/s", better: "higher",
		figure: exact("BenchmarkSessionEcho/plugin", "MB/s"), baseline: exactP("BenchmarkSessionEcho/net.Pipe_baseline", "MB/s"),
		baselineIs: "net.Pipe echo in process"},
	{key: "rss_agent_mib", unit: "MiB", better: "lower", target: "<= 30",
		figure: exact(footprint, "agent-MiB"), baselineIs: "the idle agent (no input), same run",
		derive: func(m Metrics) (float64, bool) {
			a, ok1 := m.Get(footprint, "agent-MiB")
			r, ok2 := m.Get(footprint, "agent/idle")
			return a / r, ok1 && ok2 && r > 0
		}},
	{key: "rss_plugin_mib", unit: "MiB", better: "lower", target: "<= 20",
		figure: exact(footprint, "plugin-MiB"), baselineIs: "none measured in-run; the design target is 20 MiB"},
	{key: "recovery_s_peer_close", unit: "s", better: "lower",
		figure: exact("BenchmarkRecovery", "peer_close-s"), baseline: exactP("BenchmarkRecovery", "healthy-s"),
		baselineIs: "post-to-ack time of a reading on a healthy link, same run",
		missing:    "no BenchmarkRecovery in this run (time to deliver again after the broker closing the connection)"},
	{key: "recovery_s_reboot", unit: "s", better: "lower",
		figure: exact("BenchmarkRecovery", "reboot-s"), baseline: exactP("BenchmarkRecovery", "healthy-s"),
		baselineIs: "post-to-ack time of a reading on a healthy link, same run",
		missing:    "no BenchmarkRecovery in this run (time to deliver again after a modem reboot)"},
	{key: "recovery_s_plugin_kill", unit: "s", better: "lower",
		figure: exact("BenchmarkRecovery", "plugin_kill-s"), baseline: exactP("BenchmarkRecovery", "healthy-s"),
		baselineIs: "post-to-ack time of a reading on a healthy link, same run",
		missing:    "no BenchmarkRecovery in this run (time to deliver again after the plugin being killed)"},
	{key: "startup_s", unit: "s", better: "lower",
		figure: exact("BenchmarkRecovery", "startup-s"), baseline: exactP("BenchmarkRecovery", "healthy-s"),
		baselineIs: "post-to-ack time of a reading on a healthy link, same run",
		missing:    "no BenchmarkRecovery in this run (time to deliver again after a start)"},
	{key: "month_mb_1per10s", unit: "MB/month", better: "lower", target: "<= 5 (60 s budget)",
		figure: exact(airBench, "compact-month-MB-60s"), baseline: exactP(airBench, "baseline-month-MB"),
		baselineIs: "one QoS 1 publish per reading (mosquitto_pub parts), same model"},
	{key: "month_mb_1per10s_max_delay_2s", unit: "MB/month", better: "lower",
		figure: exact(airBench, "compact-month-MB-2s"), baseline: exactP(airBench, "baseline-month-MB"),
		baselineIs: "one QoS 1 publish per reading (mosquitto_pub parts), same model"},
	{key: "month_mb_1per10s_5min", unit: "MB/month", better: "lower", target: "<= 2 (5 min budget)",
		figure: exact(airBench, "compact-month-MB-5min"), baseline: exactP(airBench, "baseline-month-MB"),
		baselineIs: "one QoS 1 publish per reading (mosquitto_pub parts), same model"},
	{key: "month_mb_1per10s_host_tls", unit: "MB/month", better: "lower", target: "<= 5 (60 s budget)",
		figure: exact(airBench, "compact-host-month-MB-60s"), baseline: exactP(airBench, "baseline-month-MB"),
		baselineIs: "one QoS 1 publish per reading (mosquitto_pub parts), same model"},
	{key: "month_mb_1per10s_5min_host_tls", unit: "MB/month", better: "lower", target: "<= 2 (5 min budget)",
		figure: exact(airBench, "compact-host-month-MB-5min"), baseline: exactP(airBench, "baseline-month-MB"),
		baselineIs: "one QoS 1 publish per reading (mosquitto_pub parts), same model"},
}

// Report is bench/results.json: key to entry, in Specs order when written.
type Report struct {
	Keys    []string
	Entries map[string]Entry
}

// Build makes the report of one run's metrics.
func Build(m Metrics) Report {
	r := Report{Entries: map[string]Entry{}}
	for _, s := range Specs {
		r.Keys = append(r.Keys, s.key)
		r.Entries[s.key] = s.entry(m)
	}
	return r
}

func (s spec) entry(m Metrics) Entry {
	e := Entry{Unit: s.unit, Better: s.better, Target: s.target, BaselineIs: s.baselineIs}
	v, src, ok := s.figure.find(m)
	if !ok && s.or != nil {
		if _, _, found := s.or.figure.find(m); found {
			alt := s
			alt.figure, alt.baseline, alt.or = s.or.figure, s.or.baseline, nil
			return alt.entry(m)
		}
	}
	if !ok {
		e.Source = s.figure.String()
		e.Why = s.missing
		if e.Why == "" {
			e.Why = "not in this run's bench output: " + s.figure.String()
		}
		return e
	}
	e.Figure, e.Source = round(v), src
	switch {
	case s.baseline != nil:
		if b, _, ok := s.baseline.find(m); ok {
			e.Baseline = round(b)
		} else {
			e.Why = "baseline not in this run's bench output: " + s.baseline.String()
		}
	case s.derive != nil:
		if b, ok := s.derive(m); ok {
			e.Baseline = round(b)
		}
	case strings.HasPrefix(s.baselineIs, "itself"):
		e.Baseline = round(v)
	}
	if e.Baseline != nil && *e.Baseline != 0 {
		e.Ratio = round(v / *e.Baseline)
	}
	return e
}

// round keeps four significant digits: more is noise on this machine.
func round(v float64) *float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return &v
	}
	p := math.Pow(10, 3-math.Floor(math.Log10(math.Abs(v))))
	r := math.Round(v*p) / p
	return &r
}

// MarshalJSON writes the entries in Specs order, one a line. Call it
// directly for that layout: json.Marshal compacts what it returns.
func (r Report) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("{\n")
	for i, k := range r.Keys {
		var e bytes.Buffer
		enc := json.NewEncoder(&e)
		enc.SetEscapeHTML(false) // ">= 0.95" reads better than "\u003e= 0.95"
		if err := enc.Encode(r.Entries[k]); err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "  %q: %s", k, bytes.TrimSpace(e.Bytes()))
		if i < len(r.Keys)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("}\n")
	return b.Bytes(), nil
}

// Markers delimit the generated table in README.md.
const (
	BeginMarker = "<!-- bench:begin -->"
	EndMarker   = "<!-- bench:end -->"
)

// Table renders the report as the README's Markdown table.
func (r Report) Table() string {
	var b strings.Builder
	b.WriteString("| figure | measured | in-run baseline | ratio | target |\n|---|---:|---:|---:|---|\n")
	for _, k := range r.Keys {
		e := r.Entries[k]
		if e.Figure == nil {
			fmt.Fprintf(&b, "| `%s` | not measured: %s | | | %s |\n", k, e.Why, e.Target)
			continue
		}
		fmt.Fprintf(&b, "| `%s` | %s %s | %s | %s | %s |\n", k, num(e.Figure), e.Unit, baselineCell(e), num(e.Ratio), e.Target)
	}
	return b.String()
}

func baselineCell(e Entry) string {
	if e.Baseline == nil {
		return e.BaselineIs
	}
	return num(e.Baseline) + ": " + e.BaselineIs
}

func num(v *float64) string {
	if v == nil {
		return "–"
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.4f", *v), "0"), ".")
}

// UpdateREADME replaces what lies between BeginMarker and EndMarker in
// readme with table.
func UpdateREADME(readme []byte, table string) ([]byte, error) {
	s := string(readme)
	i := strings.Index(s, BeginMarker)
	j := strings.Index(s, EndMarker)
	switch {
	case i < 0 || j < 0:
		return nil, fmt.Errorf("README: no %s ... %s markers", BeginMarker, EndMarker)
	case j < i:
		return nil, errors.New("README: " + EndMarker + " comes before " + BeginMarker)
	}
	return []byte(s[:i+len(BeginMarker)] + "\n" + table + s[j:]), nil
}
