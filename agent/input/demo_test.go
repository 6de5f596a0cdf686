package input

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/agent/reading"
	"github.com/cellgate/cellgate/agent/spool"
	"github.com/cellgate/cellgate/internal/testutil"
)

func TestDemoGeneratesPlausibleReadingsIntoTheSpool(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, spool.Options{Dir: dir})
	d, err := NewDemo(500, sp, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	testutil.Eventually(t, waitLimit, "70 demo readings", func() bool { return d.Stats().Accepted >= 70 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil when ctx ends", err)
	}
	stored := storedReadings(t, sp, dir)
	if uint64(len(stored)) != d.Stats().Accepted {
		t.Fatalf("spool holds %d readings, Stats says %d accepted", len(stored), d.Stats().Accepted)
	}
	ids := map[string]bool{}
	seen := map[string]bool{}
	for i, r := range stored {
		if ids[r.ID] {
			t.Fatalf("id %s repeated", r.ID)
		}
		ids[r.ID] = true
		if want := demoSensors[i%len(demoSensors)]; r.Sensor != want {
			t.Errorf("reading %d from %s, want %s (sensors in turn)", i, r.Sensor, want)
		}
		seen[r.Sensor] = true
		if r.Tags["source"] != "demo" {
			t.Errorf("reading %d tags %v", i, r.Tags)
		}
		checkDemoValue(t, r)
	}
	for _, s := range demoSensors {
		if !seen[s] {
			t.Errorf("no reading from %s among %d", s, len(stored))
		}
	}
}

// checkDemoValue checks that r's value is plausible for its demo sensor.
func checkDemoValue(t *testing.T, r reading.Reading) {
	t.Helper()
	switch r.Sensor {
	case "demo-temp":
		checkInRange(t, r.Sensor, demoNumber(t, r.Value), 15, 30)
	case "demo-humidity":
		checkInRange(t, r.Sensor, demoNumber(t, r.Value), 20, 80)
	case "demo-pressure":
		checkInRange(t, r.Sensor, demoNumber(t, r.Value), 980, 1040)
	case "demo-co2":
		checkInRange(t, r.Sensor, demoNumber(t, r.Value), 400, 2000)
		if strings.Contains(string(r.Value.(json.Number)), ".") {
			t.Errorf("CO2 %v is not whole ppm", r.Value)
		}
	case "demo-door":
		if _, ok := r.Value.(bool); !ok {
			t.Errorf("door value %v is not a bool", r.Value)
		}
	case "demo-gps":
		pos, ok := r.Value.(map[string]any)
		if !ok {
			t.Fatalf("gps value %v is not an object", r.Value)
		}
		checkInRange(t, "lat", demoNumber(t, pos["lat"]), 52.50, 52.54)
		checkInRange(t, "lon", demoNumber(t, pos["lon"]), 13.38, 13.42)
	case "demo-status":
		if s, _ := r.Value.(string); s != "ok" && s != "ventilate" {
			t.Errorf("status %v", r.Value)
		}
	}
}

// demoNumber returns the number v holds, failing t if it holds none.
func demoNumber(t *testing.T, v any) float64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("value %v is %T, want a number", v, v)
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// checkInRange fails t unless lo <= v <= hi; name names v.
func checkInRange(t *testing.T, name string, v, lo, hi float64) {
	t.Helper()
	if v < lo || v > hi || math.IsNaN(v) {
		t.Errorf("%s = %v, outside the plausible %v..%v", name, v, lo, hi)
	}
}

func TestDemoKeepsGoingWhenTheSinkFails(t *testing.T) {
	log, logs := testutil.Logger(t)
	d, err := NewDemo(1000, failingSink{errors.New("spool: write: no space left on device")}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	testutil.Eventually(t, waitLimit, "50 dropped demo readings", func() bool { return d.Stats().ByReason[ReasonUnavailable] >= 50 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if n := strings.Count(logs.String(), "demo readings dropped"); n < 1 || n > 10 {
		t.Errorf("%d drop warnings logged, want between 1 and 10 (rate-limited)", n)
	}
}

func TestDemoRefusesRatesOutOfRange(t *testing.T) {
	for _, rate := range []float64{0, -1, math.NaN(), math.Inf(1), 10001} {
		err := RunDemo(context.Background(), rate, failingSink{}, quiet)
		if err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("RunDemo(rate %v) = %v", rate, err)
		}
	}
	if _, err := NewDemo(10000, failingSink{}, quiet); err != nil {
		t.Errorf("rate 10000: %v", err)
	}
}

func TestRunDemoStopsWithItsContext(t *testing.T) {
	sp := openSpool(t, spool.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunDemo(ctx, 2000, sp, quiet) }()
	testutil.Eventually(t, waitLimit, "demo readings", func() bool { return sp.Stats().Appended > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunDemo = %v", err)
	}
}
