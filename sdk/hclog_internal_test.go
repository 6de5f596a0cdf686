package sdk

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A plugin line that go-plugin re-logs (its attributes, then "timestamp" in
// hclog.TimeFormat) comes out with one time key, the plugin's time, and the
// plugin's attributes once each.
func TestForwardedPluginLineHasOneTimeKey(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil)).With("part", "plugin")
	hc := newSlogHCLog(log, "plugin").Named("cellgate-plugin-sim7600")

	hc.Info("modem ready", "modem", "sim7600", "rssi", 21, "timestamp", "2026-11-24T09:00:00.123+0000")

	keys := jsonKeys(t, buf.Bytes())
	for k, n := range keys {
		if n != 1 {
			t.Errorf("key %q appears %d times in %s", k, n, buf.String())
		}
	}
	if keys["timestamp"] != 0 {
		t.Errorf("timestamp kept beside time: %s", buf.String())
	}
	var line struct {
		Time   time.Time `json:"time"`
		Logger string    `json:"logger"`
		Modem  string    `json:"modem"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 11, 24, 9, 0, 0, 123e6, time.UTC); !line.Time.Equal(want) {
		t.Errorf("time = %v, want the plugin's %v", line.Time, want)
	}
	if line.Logger != "plugin.cellgate-plugin-sim7600" || line.Modem != "sim7600" {
		t.Errorf("line = %+v", line)
	}
}

// A host-side record, and a "timestamp" that is not go-plugin's, are left
// alone: the record happens now and keeps its attributes.
func TestOtherRecordsKeepTheirAttributes(t *testing.T) {
	var buf bytes.Buffer
	hc := newSlogHCLog(slog.New(slog.NewJSONHandler(&buf, nil)), "plugin")
	before := time.Now()
	hc.Warn("odd", "timestamp", "yesterday")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if line["timestamp"] != "yesterday" {
		t.Errorf("timestamp = %v, want kept", line["timestamp"])
	}
	if ts, _ := time.Parse(time.RFC3339Nano, line["time"].(string)); ts.Before(before.Add(-time.Second)) {
		t.Errorf("time = %v, want now", line["time"])
	}
}

// jsonKeys counts the top-level keys of one JSON object, duplicates included
// (encoding/json would keep only the last).
func jsonKeys(t *testing.T, b []byte) map[string]int {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", b)
	}
	keys := map[string]int{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys[tok.(string)]++
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}
