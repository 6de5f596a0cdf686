package agent_test

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// soakReport is soak-report.json.
type soakReport struct {
	Seed     uint64 `json:"seed"`
	Duration string `json:"duration"`
	// Accepted: HTTP readings answered 202 (by id), UDP readings the
	// agent counted accepted (cellgate_input_accepted_readings_total,
	// summed over its restarts).
	Accepted    soakCounts                   `json:"accepted"`
	Delivered   soakCounts                   `json:"delivered"` // distinct accepted ids the subscriber received
	Missing     int                          `json:"missing"`   // accepted and never received
	DropOldest  uint64                       `json:"dropped_drop_oldest"`
	Damaged     uint64                       `json:"dropped_damaged"`
	Refused     uint64                       `json:"dropped_refused_upstream"`
	Lost        int                          `json:"lost"` // missing less the drop_oldest drops the agent accounted for
	Duplicates  int                          `json:"duplicates"`
	Messages    int                          `json:"messages_received"`
	UDPSent     int                          `json:"udp_sent"`
	HTTPRefused map[string]int               `json:"http_refused"` // by status; conn: no answer (agent restarting)
	Faults      map[string]*soakFaultFigures `json:"faults"`
	Unavailable map[string]string            `json:"unavailable_faults"`
	AgentExits  []string                     `json:"agent_exits"` // exits not caused by the soak's SIGKILL; the harness restarts it
	Memory      soakMemory                   `json:"agent"`
	Timeline    []soakFaultEvent             `json:"timeline"`
}

type soakCounts struct {
	HTTP  int `json:"http"`
	UDP   int `json:"udp"`
	Total int `json:"total"`
}

// soakFaultFigures are one kind's figures; recovery runs from the fault's
// end (its instant, or when a lasting fault was lifted) to the first
// delivery of an HTTP reading accepted after it.
type soakFaultFigures struct {
	Count          int     `json:"count"`
	Triggered      int     `json:"triggered"`
	Recovered      int     `json:"recovered"`
	RecoveryMedian float64 `json:"recovery_median_s"`
	RecoveryMax    float64 `json:"recovery_max_s"`
}

type soakFaultEvent struct {
	Kind      string  `json:"kind"`
	At        float64 `json:"at_s"`
	Detail    string  `json:"detail"`
	Triggered bool    `json:"triggered"`
	Recovery  float64 `json:"recovery_s"` // -1: none seen
}

type soakMemory struct {
	PeakRSSKiB     int64   `json:"peak_rss_kib"`
	PeakGoroutines int     `json:"peak_goroutines"`
	Samples        int     `json:"rss_samples"`
	Lives          int     `json:"processes"` // the agent's lives (restarts + 1)
	TrendKiBPerMin float64 `json:"rss_trend_kib_per_min"`
	TrendSamples   int     `json:"rss_trend_samples"`
	TrendNote      string  `json:"rss_trend_note"`
}

// report waits for the spool to drain, reconciles, prints the table,
// writes the JSON and fails the test if a reading was lost.
func (s *soak) report(t *testing.T, seed uint64, length time.Duration, kinds []*faultKind) {
	var r soakReport
	reconcile := func() {
		s.mu.Lock()
		accepted := s.accepted
		udpAcc := int(s.udpAcc.total())
		s.mu.Unlock()
		s.sub.mu.Lock()
		missing, udpDelivered, httpDelivered := 0, 0, 0
		for _, a := range accepted {
			if s.sub.seen[a.id] > 0 {
				httpDelivered++
			} else {
				missing++
			}
		}
		for id := range s.sub.seen {
			if strings.HasPrefix(id, soakUDPPrefix) {
				udpDelivered++
			}
		}
		s.sub.mu.Unlock()
		r.Accepted = soakCounts{HTTP: len(accepted), UDP: udpAcc, Total: len(accepted) + udpAcc}
		r.Delivered = soakCounts{HTTP: httpDelivered, UDP: udpDelivered, Total: httpDelivered + udpDelivered}
		r.Missing = missing + max(0, udpAcc-udpDelivered)
		if st, err := s.status(); err == nil {
			r.DropOldest, r.Damaged, r.Refused = st.Spool.Dropped.DropOldest, st.Spool.Dropped.Damaged, st.Spool.Dropped.RefusedUpstream
		}
		r.Lost = max(0, r.Missing-int(r.DropOldest))
	}
	drained := pollUntil(5*time.Minute, func() bool {
		s.revive()
		reconcile()
		st, err := s.status()
		return err == nil && st.Spool.Pending == 0 && r.Lost == 0
	})
	reconcile()

	total, distinct := s.sub.counts()
	r.Seed, r.Duration = seed, length.String()
	r.Duplicates, r.Messages = total-distinct, len(s.sub.sizes)
	s.mu.Lock()
	r.UDPSent = s.udpSent
	r.HTTPRefused = s.refused
	r.AgentExits = s.exits
	r.Faults = map[string]*soakFaultFigures{}
	for _, k := range kinds {
		r.Faults[k.name] = &soakFaultFigures{}
	}
	recoveries := map[string][]time.Duration{}
	begin := s.warmEnd
	for _, f := range s.faults {
		fig := r.Faults[f.kind]
		fig.Count++
		if f.triggered {
			fig.Triggered++
		}
		ev := soakFaultEvent{Kind: f.kind, At: f.start.Sub(begin).Seconds(), Detail: f.detail, Triggered: f.triggered, Recovery: -1}
		if f.recovery >= 0 {
			fig.Recovered++
			recoveries[f.kind] = append(recoveries[f.kind], f.recovery)
			ev.Recovery = f.recovery.Seconds()
		}
		r.Timeline = append(r.Timeline, ev)
	}
	for kind, ds := range recoveries {
		slices.Sort(ds)
		r.Faults[kind].RecoveryMedian = ds[len(ds)/2].Seconds()
		r.Faults[kind].RecoveryMax = ds[len(ds)-1].Seconds()
	}
	r.Memory = memoryFigures(s.samples, s.warmEnd)
	r.Memory.PeakGoroutines = s.peakGor
	s.mu.Unlock()
	r.Unavailable = s.unavailableFaults()

	printSoakTable(&r)
	path := os.Getenv("SOAK_REPORT")
	if path == "" {
		path = "soak-report.json"
	}
	b, _ := json.MarshalIndent(&r, "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Errorf("write %s: %v", path, err)
	} else {
		fmt.Printf("soak: report written to %s\n", path)
	}

	if r.Lost > 0 {
		t.Errorf("%d accepted readings lost (%d never delivered, %d accounted for as drop_oldest drops); seed %d", r.Lost, r.Missing, r.DropOldest, seed)
	}
	if !drained {
		t.Errorf("the spool did not drain within 5 minutes after the chaos")
	}
	for _, k := range kinds {
		if r.Faults[k.name].Count == 0 {
			t.Errorf("fault %s was never applied", k.name)
		}
	}
}

// memoryFigures takes the peak RSS over all samples, and the RSS trend
// after warm-up: the least-squares slope within each agent process
// (samples 10 s or more after it started), pooled, so that a restart's
// fresh heap does not read as a fall.
func memoryFigures(samples []memSample, warmEnd time.Time) soakMemory {
	var m soakMemory
	m.Samples = len(samples)
	type acc struct{ n, sx, sy, sxx, sxy float64 }
	byPid := map[int]*acc{}
	lives := map[int]bool{}
	for _, sm := range samples {
		m.PeakRSSKiB = max(m.PeakRSSKiB, sm.rssKiB)
		lives[sm.pid] = true
		if sm.at.Before(warmEnd) || sm.at.Sub(sm.since) < 10*time.Second {
			continue
		}
		a := byPid[sm.pid]
		if a == nil {
			a = &acc{}
			byPid[sm.pid] = a
		}
		x, y := sm.at.Sub(warmEnd).Minutes(), float64(sm.rssKiB)
		a.n++
		a.sx += x
		a.sy += y
		a.sxx += x * x
		a.sxy += x * y
	}
	m.Lives = len(lives)
	var num, den float64
	for _, a := range byPid {
		if a.n < 3 {
			continue
		}
		m.TrendSamples += int(a.n)
		num += a.sxy - a.sx*a.sy/a.n
		den += a.sxx - a.sx*a.sx/a.n
	}
	if den > 0 {
		m.TrendKiBPerMin = num / den
	}
	m.TrendNote = "least-squares slope of VmRSS within each agent process, from 10 s after its start and after warm-up, pooled over processes"
	return m
}

func printSoakTable(r *soakReport) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nsoak %s, seed %d\n", r.Duration, r.Seed)
	fmt.Fprintf(&b, "  %-28s %10s %10s %10s\n", "readings", "http", "udp", "total")
	fmt.Fprintf(&b, "  %-28s %10d %10d %10d\n", "accepted", r.Accepted.HTTP, r.Accepted.UDP, r.Accepted.Total)
	fmt.Fprintf(&b, "  %-28s %10d %10d %10d\n", "delivered (distinct)", r.Delivered.HTTP, r.Delivered.UDP, r.Delivered.Total)
	fmt.Fprintf(&b, "  %-28s %32d\n", "missing", r.Missing)
	fmt.Fprintf(&b, "  %-28s %32d\n", "dropped: drop_oldest", r.DropOldest)
	fmt.Fprintf(&b, "  %-28s %32d\n", "dropped: damaged", r.Damaged)
	fmt.Fprintf(&b, "  %-28s %32d\n", "LOST", r.Lost)
	fmt.Fprintf(&b, "  %-28s %32d\n", "duplicates", r.Duplicates)
	codes := make([]string, 0, len(r.HTTPRefused))
	for c, n := range r.HTTPRefused {
		codes = append(codes, fmt.Sprintf("%s: %d", c, n))
	}
	slices.Sort(codes)
	fmt.Fprintf(&b, "  %-28s %32s\n", "HTTP refused (by status)", strings.Join(codes, ", "))
	fmt.Fprintf(&b, "  %-28s %32d\n", "agent exits (restarted)", len(r.AgentExits))
	fmt.Fprintf(&b, "\n  %-26s %6s %9s %9s %12s %11s\n", "fault", "count", "triggered", "recovered", "recovery p50", "recovery max")
	names := make([]string, 0, len(r.Faults))
	for k := range r.Faults {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		f := r.Faults[k]
		fmt.Fprintf(&b, "  %-26s %6d %9d %9d %11.2fs %10.2fs\n", k, f.Count, f.Triggered, f.Recovered, f.RecoveryMedian, f.RecoveryMax)
	}
	for k, why := range r.Unavailable {
		fmt.Fprintf(&b, "  %-26s %6s  not available: %s\n", k, "-", why)
	}
	m := r.Memory
	fmt.Fprintf(&b, "\n  agent: peak RSS %.1f MiB, peak goroutines %d, %d processes, RSS trend after warm-up %+.1f KiB/min (%d samples)\n",
		float64(m.PeakRSSKiB)/1024, m.PeakGoroutines, m.Lives, m.TrendKiBPerMin, m.TrendSamples)
	fmt.Print(b.String())
}
