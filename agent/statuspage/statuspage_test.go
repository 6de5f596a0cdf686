package statuspage

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cellgate/cellgate/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newPage returns a Page on a fresh state directory whose samples the test
// feeds through record.
func newPage(t *testing.T, o Options) *Page {
	t.Helper()
	if o.Sample == nil {
		o.Sample = func() Sample { return Sample{} }
	}
	if o.StateDir == "" {
		o.StateDir = t.TempDir()
	}
	if o.Logger == nil {
		o.Logger, _ = testutil.Logger(t)
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func dbm(v int) *int { return &v }

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

func TestNewRefusesBadOptions(t *testing.T) {
	dir := t.TempDir()
	sample := func() Sample { return Sample{} }
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no sample func", Options{StateDir: dir}, "Options.Sample is nil"},
		{"no state dir", Options{Sample: sample}, "Options.StateDir is empty"},
		{"negative interval", Options{Sample: sample, StateDir: dir, Interval: -time.Second}, "must not be negative"},
		{"window shorter than interval", Options{Sample: sample, StateDir: dir, Interval: time.Minute, Window: time.Second}, "window 1s is shorter than the interval 1m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestHistoryKeepsOnlyTheWindow(t *testing.T) {
	p := newPage(t, Options{Interval: time.Minute, Window: 5 * time.Minute})
	for i := range 12 {
		p.record(Sample{Time: t0.Add(time.Duration(i) * time.Minute), SignalDBM: dbm(-60 - i)})
	}
	pts := p.history().Points
	if len(pts) != 5 {
		t.Fatalf("history has %d points, want 5 (window/interval)", len(pts))
	}
	for i, pt := range pts {
		want := t0.Add(time.Duration(7+i) * time.Minute)
		if !pt.Time.Equal(want) || *pt.SignalDBM != -67-i {
			t.Errorf("point %d: %s %d dBm, want %s %d dBm", i, pt.Time, *pt.SignalDBM, want, -67-i)
		}
	}
}

func TestHistoryIsBoundedWhateverTheOptions(t *testing.T) {
	p := newPage(t, Options{Interval: time.Millisecond, Window: 24 * time.Hour})
	if n := len(p.hist.buf); n != maxPoints {
		t.Fatalf("ring holds %d points, want the bound %d", n, maxPoints)
	}
}

func TestReadingsPerMinuteFromCounterDeltas(t *testing.T) {
	p := newPage(t, Options{Interval: 30 * time.Second})
	for i, accepted := range []uint64{100, 110, 140, 140, 5} {
		p.record(Sample{Time: t0.Add(time.Duration(i) * 30 * time.Second), ReadingsAccepted: accepted})
	}
	// 100 is this run's count before the first point: no rate. 5 after
	// 140 means the counter restarted: 5 readings in 30 s.
	want := []float64{-1, 20, 60, 0, 10}
	for i, pt := range p.history().Points {
		switch {
		case want[i] < 0 && pt.ReadingsPerMinute != nil:
			t.Errorf("point %d: %v readings/min, want none (first point)", i, *pt.ReadingsPerMinute)
		case want[i] >= 0 && (pt.ReadingsPerMinute == nil || *pt.ReadingsPerMinute != want[i]):
			t.Errorf("point %d: %v readings/min, want %v", i, pt.ReadingsPerMinute, want[i])
		}
	}
}

func TestLinkAndSignalChangesAreWarnings(t *testing.T) {
	p := newPage(t, Options{})
	samples := []Sample{
		{LinkUp: true, SignalDBM: dbm(-70)},
		{LinkUp: false, SignalDBM: nil},
		{LinkUp: false, SignalDBM: nil},
		{LinkUp: true, SignalDBM: dbm(-81)},
	}
	for i, s := range samples {
		s.Time = t0.Add(time.Duration(i) * time.Minute)
		p.record(s)
	}
	var got []string
	for _, w := range p.history().Warnings {
		got = append(got, w.Time.Format("15:04")+" "+w.Message)
	}
	want := []string{"10:01 uplink down", "10:01 signal lost (unknown or no signal)", "10:03 uplink up again", "10:03 signal back (-81 dBm)"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestWarningsAreBounded(t *testing.T) {
	p := newPage(t, Options{})
	for i := range 3 * maxWarnings {
		p.record(Sample{Time: t0.Add(time.Duration(i) * time.Minute), LinkUp: i%2 == 0})
	}
	ws := p.history().Warnings
	if len(ws) != maxWarnings {
		t.Fatalf("%d warnings kept, want %d", len(ws), maxWarnings)
	}
	if last := ws[len(ws)-1]; !last.Time.Equal(t0.Add(time.Duration(3*maxWarnings-1) * time.Minute)) {
		t.Fatalf("newest warning is from %s, want the last sample's", last.Time)
	}
}

// readUsage returns the totals UsageFile holds in dir.
func readUsage(t *testing.T, dir string) usageState {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, UsageFile))
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseUsage(data)
	if err != nil {
		t.Fatalf("%s: %v", UsageFile, err)
	}
	return st
}

func TestUsageRollsOverAtUTCMidnightAndMonthStart(t *testing.T) {
	dir := t.TempDir()
	p := newPage(t, Options{StateDir: dir})
	// Times in a zone east of UTC: the day that counts is UTC's.
	tokyo := time.FixedZone("JST", 9*3600)
	steps := []struct {
		at     time.Time
		tx, rx uint64
		want   usageState
	}{
		{time.Date(2026, 11, 30, 23, 58, 0, 0, time.UTC).In(tokyo), 100, 10,
			usageState{usageVersion, "2026-11-30", 100, 10, "2026-11", 100, 10}},
		{time.Date(2026, 11, 30, 23, 59, 0, 0, time.UTC).In(tokyo), 150, 20,
			usageState{usageVersion, "2026-11-30", 150, 20, "2026-11", 150, 20}},
		// Past midnight UTC, a new month too: the bytes since the last
		// sample count towards the new day.
		{time.Date(2026, 12, 1, 0, 0, 30, 0, time.UTC).In(tokyo), 200, 25,
			usageState{usageVersion, "2026-12-01", 50, 5, "2026-12", 50, 5}},
		{time.Date(2026, 12, 2, 0, 0, 30, 0, time.UTC).In(tokyo), 210, 25,
			usageState{usageVersion, "2026-12-02", 10, 0, "2026-12", 60, 5}},
	}
	for i, s := range steps {
		p.record(Sample{Time: s.at, BytesAirTx: s.tx, BytesAirRx: s.rx})
		if got := readUsage(t, dir); got != s.want {
			t.Fatalf("step %d: file holds %+v, want %+v", i, got, s.want)
		}
		if got := p.history().Usage; got.Day != s.want.Day || got.MonthTxBytes != s.want.MonthTxBytes || got.Rollover != Rollover {
			t.Fatalf("step %d: history usage %+v, want %+v", i, got, s.want)
		}
	}
}

func TestUsageSurvivesRestartsAndCountsEveryRun(t *testing.T) {
	dir := t.TempDir()
	at := t0
	run := func(counters ...uint64) {
		p := newPage(t, Options{StateDir: dir})
		for _, c := range counters {
			at = at.Add(time.Minute)
			p.record(Sample{Time: at, BytesAirTx: c, BytesAirRx: c / 10})
		}
	}
	run(1000, 5000)
	// A new run counts from zero: its first 300 bytes are added, not
	// taken as 4700 going backwards.
	run(300, 900)
	// A run whose counter passes the previous run's last value at once:
	// all 8000 are new.
	run(8000)
	want := uint64(5000 + 900 + 8000)
	if st := readUsage(t, dir); st.DayTxBytes != want || st.MonthTxBytes != want || st.DayRxBytes != want/10 {
		t.Fatalf("after three runs: %+v, want %d bytes sent today and this month", st, want)
	}
}

func TestUsageCounterGoingBackwardsWithinARunAddsTheNewValue(t *testing.T) {
	dir := t.TempDir()
	p := newPage(t, Options{StateDir: dir})
	for i, c := range []uint64{400, 1000, 200, 250} {
		p.record(Sample{Time: t0.Add(time.Duration(i) * time.Minute), BytesAirTx: c})
	}
	if st := readUsage(t, dir); st.DayTxBytes != 1000+250 {
		t.Fatalf("day total %d, want 1250 (1000, then a restarted counter's 250)", st.DayTxBytes)
	}
}

func TestUsageNeverRollsBackWhenTheClockDoes(t *testing.T) {
	dir := t.TempDir()
	p := newPage(t, Options{StateDir: dir})
	p.record(Sample{Time: t0, BytesAirTx: 100})
	// A gateway without a battery clock may sample in 1970 before NTP.
	p.record(Sample{Time: time.Unix(0, 0), BytesAirTx: 150})
	p.record(Sample{Time: t0.Add(time.Minute), BytesAirTx: 170})
	if st := readUsage(t, dir); st.Day != "2026-12-06" || st.DayTxBytes != 170 || st.Month != "2026-12" {
		t.Fatalf("%+v, want all 170 bytes on 2026-12-06", st)
	}
}

func TestMalformedUsageFileIsSetAsideNamingTheFault(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		{"syntax", `{"version": 1, "day": "2026-12-06",, }`, "byte 36: invalid character ','"},
		{"type", `{"version": 1, "day_tx_bytes": -4}`, `field "day_tx_bytes"`},
		{"unknown field", `{"version": 1, "bytes": 4}`, `unknown field "bytes"`},
		{"version", `{"version": 7}`, `field "version": 7, this agent reads version 1`},
		{"day", `{"version": 1, "day": "6/12/2026"}`, `field "day": "6/12/2026" is not a date`},
		{"trailing", `{"version": 1} {}`, "byte 15: data after the JSON object"},
		{"empty", ``, "empty file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, UsageFile)
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			p := newPage(t, Options{StateDir: dir})
			ws := p.history().Warnings
			if len(ws) != 1 || !strings.Contains(ws[0].Message, path) || !strings.Contains(ws[0].Message, tc.want) {
				t.Fatalf("warnings %+v, want one naming %s and %q", ws, path, tc.want)
			}
			aside, _ := filepath.Glob(path + ".bad-*")
			if len(aside) != 1 {
				t.Fatalf("set-aside files %v, want one", aside)
			}
			if kept, err := os.ReadFile(aside[0]); err != nil || string(kept) != tc.content {
				t.Fatalf("set-aside file holds %q (%v), want the original bytes", kept, err)
			}
			if !strings.Contains(ws[0].Message, aside[0]) {
				t.Fatalf("warning %q does not say where the file went (%s)", ws[0].Message, aside[0])
			}
		})
	}
}

func TestUnreadableUsageFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, UsageFile), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := New(Options{Sample: func() Sample { return Sample{} }, StateDir: dir})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, UsageFile)) {
		t.Fatalf("New: %v, want an error naming %s", err, filepath.Join(dir, UsageFile))
	}
}

func TestUsagePersistFailureWarnsOnceAndRecovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := newPage(t, Options{StateDir: dir})
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		p.record(Sample{Time: t0.Add(time.Duration(i) * time.Minute), BytesAirTx: uint64(100 * (i + 1))})
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p.record(Sample{Time: t0.Add(3 * time.Minute), BytesAirTx: 400})
	var msgs []string
	for _, w := range p.history().Warnings {
		msgs = append(msgs, w.Message)
	}
	if len(msgs) != 2 || !strings.Contains(msgs[0], "usage totals not saved") || !strings.Contains(msgs[0], dir) || msgs[1] != "usage totals saved again" {
		t.Fatalf("warnings %q, want one failure naming %s, then saved again", msgs, dir)
	}
	if st := readUsage(t, dir); st.DayTxBytes != 400 {
		t.Fatalf("saved %d bytes, want all 400 (nothing lost while the file could not be written)", st.DayTxBytes)
	}
}

func TestRunSamplesEveryIntervalAndOnceMoreAtTheEnd(t *testing.T) {
	calls := make(chan struct{}, 1000)
	var n uint64
	p := newPage(t, Options{Interval: 5 * time.Millisecond, Window: time.Second, Sample: func() Sample {
		n++ // Run's goroutine only
		calls <- struct{}{}
		return Sample{BytesAirTx: n}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for range 3 {
		select {
		case <-calls:
		case <-time.After(time.Minute):
			t.Fatal("Run did not sample")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after its context ended")
	}
	h := p.history()
	if len(h.Points) < 4 || h.Usage.DayTxBytes != n {
		t.Fatalf("%d points, %d bytes today after %d samples; want every sample (at least 4, the last at the end) counted", len(h.Points), h.Usage.DayTxBytes, n)
	}
}

func TestHistoryJSON(t *testing.T) {
	p := newPage(t, Options{Interval: 30 * time.Second, Window: 10 * time.Minute})
	p.record(Sample{Time: t0, ReadingsAccepted: 3, BytesAirTx: 10, LinkUp: true})
	p.record(Sample{Time: t0.Add(30 * time.Second), ReadingsAccepted: 9, SignalDBM: dbm(-77), BytesAirTx: 30, BytesAirRx: 5, LinkUp: true})
	rec := get(t, p, "/v1/history")
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := `{"interval_seconds":30,"points":[{"link_up":true,"readings_per_minute":null,"signal_dbm":null,"time":"2026-12-06T10:00:00Z"},` +
		`{"link_up":true,"readings_per_minute":12,"signal_dbm":-77,"time":"2026-12-06T10:00:30Z"}],` +
		`"usage":{"day":"2026-12-06","day_rx_bytes":5,"day_tx_bytes":30,"month":"2026-12","month_rx_bytes":5,"month_tx_bytes":30,"rollover":"days and months start at 00:00 UTC"},` +
		`"warnings":[{"message":"signal back (-77 dBm)","time":"2026-12-06T10:00:30Z"}],"window_seconds":600}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Fatalf("/v1/history:\n%s\nwant\n%s", b, want)
	}
}
