package benchreport_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/internal/benchreport"
)

const sample = `goos: linux
pkg: github.com/cellgate/cellgate/agent
BenchmarkAirBytes-2   	       1	46654898461 ns/op	       187.8 baseline-B/reading	      4622 baseline-handshake-B	        48.22 baseline-month-MB	         8.641 compact-B/reading	         4.989 compact-month-MB-5min	        17.47 compact-month-MB-60s	      2658 handshake-B	       139.1 json-B/reading
BenchmarkRecovery-2 	 1	 8480068851 ns/op	 0.5120 healthy-s	 0.8649 peer_close-s	 0.5802 startup-s
BenchmarkForwardingFootprint-2 	 1	 30000000000 ns/op	 20.00 agent-MiB	 2.000 agent/idle	 12.50 plugin-MiB
BenchmarkDrain-2 	 1	 1 ns/op	 0.9000 drain_utilisation_0ms	 0.9000 drain_utilisation_0ms_baseline	 0.8100 drain_utilisation_600ms	 0.1000 drain_utilisation_600ms_baseline
BenchmarkHTTPIngest/durable-2 	 100	 5 ns/op	 400000 readings/s
BenchmarkHTTPIngest/nosync-2 	 100	 5 ns/op	 500000 readings/s
BenchmarkHTTPIngest/durable-2 	 100	 5 ns/op	 475000 readings/s
BenchmarkHTTPIngestSingle/durable-2 	 100	 5 ns/op	 21000 readings/s
BenchmarkHTTPIngestSingle/nosync-2 	 100	 5 ns/op	 42000 readings/s
BenchmarkHTTPIngestOnePerRequest/durable-2 	 100	 5 ns/op	 13000 readings/s
    BenchmarkAirBytes: a log line
PASS
`

func parse(t *testing.T, text string) benchreport.Report {
	t.Helper()
	m, err := benchreport.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return benchreport.Build(m)
}

func TestBuildTakesFiguresBaselinesAndRatios(t *testing.T) {
	r := parse(t, sample)
	for _, c := range []struct {
		key                     string
		figure, baseline, ratio float64
	}{
		{"bytes_per_reading_compact", 8.641, 187.8, 0.04601},
		{"bytes_per_reading_baseline", 187.8, 187.8, 1},
		{"handshake_bytes", 2658, 4622, 0.5751},
		{"month_mb_1per10s", 17.47, 48.22, 0.3623},
		{"rss_agent_mib", 20, 10, 2},
		{"recovery_s_peer_close", 0.8649, 0.512, 1.689},
		{"drain_utilisation_600ms", 0.81, 0.1, 8.1},
		{"ingest_http_batch", 475000, 500000, 0.95}, // the older benchmark; the last run of a name wins
		{"ingest_http_single", 21000, 42000, 0.5},   // the benchmark before the older one
	} {
		e := r.Entries[c.key]
		if e.Figure == nil || *e.Figure != c.figure || e.Baseline == nil || *e.Baseline != c.baseline || e.Ratio == nil || *e.Ratio != c.ratio {
			t.Errorf("%s: %+v, want figure %g baseline %g ratio %g", c.key, e, c.figure, c.baseline, c.ratio)
		}
	}
	// The 2 s drain and the recoveries were not in the run: null and why.
	for _, k := range []string{"drain_utilisation_2000ms", "recovery_s_reboot", "serial_efficiency"} {
		e := r.Entries[k]
		if e.Figure != nil || e.Ratio != nil || e.Why == "" {
			t.Errorf("%s: %+v, want a null figure and why", k, e)
		}
	}
	if e := r.Entries["rss_plugin_mib"]; e.Figure == nil || *e.Figure != 12.5 || e.Baseline != nil {
		t.Errorf("rss_plugin_mib: %+v, want 12.5 and no in-run baseline", e)
	}
}

func TestResultsJSONHasEveryKeyInOrder(t *testing.T) {
	r := parse(t, sample)
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]map[string]any
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("results.json does not parse: %v\n%s", err, data)
	}
	want := []string{"serial_efficiency", "drain_utilisation_0ms", "drain_utilisation_600ms", "drain_utilisation_2000ms",
		"bytes_per_reading_json", "bytes_per_reading_compact", "bytes_per_reading_baseline", "handshake_bytes",
		"ingest_http_batch", "ingest_http_single", "ingest_udp", "plugin_boundary", "rss_agent_mib", "rss_plugin_mib",
		"recovery_s_peer_close", "recovery_s_reboot", "recovery_s_plugin_kill", "startup_s", "month_mb_1per10s"}
	last := -1
	for _, k := range want {
		e, ok := back[k]
		if !ok {
			t.Errorf("results.json has no %s", k)
			continue
		}
		for _, f := range []string{"figure", "baseline", "ratio"} {
			if _, ok := e[f]; !ok {
				t.Errorf("%s has no %q (null when not measured)", k, f)
			}
		}
		at := strings.Index(string(data), `"`+k+`"`)
		if at < last {
			t.Errorf("%s out of order", k)
		}
		last = at
	}
}

func TestParseNamesTheBadLine(t *testing.T) {
	_, err := benchreport.Parse(strings.NewReader("PASS\nBenchmarkX-2 1 5 ns/op 7\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("err = %v, want one naming line 2", err)
	}
	_, err = benchreport.Parse(strings.NewReader("BenchmarkX-2 1 five ns/op\n"))
	if err == nil || !strings.Contains(err.Error(), "line 1") || !strings.Contains(err.Error(), "ns/op") {
		t.Fatalf("err = %v, want one naming line 1 and the unit", err)
	}
}

func TestUpdateREADMEReplacesOnlyBetweenMarkers(t *testing.T) {
	r := parse(t, sample)
	readme := "# x\n\nbefore\n" + benchreport.BeginMarker + "\nold table\n" + benchreport.EndMarker + "\nafter\n"
	got, err := benchreport.UpdateREADME([]byte(readme), r.Table())
	if err != nil {
		t.Fatal(err)
	}
	s := string(got)
	if strings.Contains(s, "old table") || !strings.HasPrefix(s, "# x\n\nbefore\n") || !strings.HasSuffix(s, benchreport.EndMarker+"\nafter\n") {
		t.Fatalf("README became:\n%s", s)
	}
	if !strings.Contains(s, "| `bytes_per_reading_compact` | 8.641 B/reading | 187.8: ") || !strings.Contains(s, "| `recovery_s_reboot` | not measured: ") {
		t.Fatalf("table lacks the rows:\n%s", s)
	}
	again, err := benchreport.UpdateREADME(got, r.Table())
	if err != nil || string(again) != s {
		t.Fatalf("a second update changed the README (err %v)", err)
	}
	if _, err := benchreport.UpdateREADME([]byte("no markers"), r.Table()); err == nil || !strings.Contains(err.Error(), benchreport.BeginMarker) {
		t.Fatalf("err = %v, want one naming the markers", err)
	}
}
