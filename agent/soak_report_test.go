package agent_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

// soakReport is soak-report.json.
type soakReport struct {
	Seed     uint64 `json:"seed"`
	Duration string `json:"duration"`
	// Accepted: HTTP readings answered 202 (by id), UDP readings the
	// agent counted accepted (cellgate_input_accepted_readings_total,
	// summed over its restarts and reloads).
	Accepted  soakCounts `json:"accepted"`
	Delivered soakCounts `json:"delivered"` // distinct accepted ids the subscriber received
	// Missing: accepted and never received; HTTP by id, UDP by count
	// (accepted less delivered: the agent does not say which UDP ids it
	// took).
	Missing    soakCounts     `json:"missing"`
	Accounting soakAccounting `json:"accounting"`
	// Lost is what is missing and no drop the agent reported explains
	// (soakAccounting); it must be 0.
	Lost        int                          `json:"lost"`
	LostIDs     []string                     `json:"lost_http_ids,omitempty"` // the first 50
	Duplicates  int                          `json:"duplicates"`
	Messages    int                          `json:"messages_received"`
	UDPSent     int                          `json:"udp_sent"`
	HTTPRefused map[string]int               `json:"http_refused"` // by status; conn: no answer (agent restarting)
	Faults      map[string]*soakFaultFigures `json:"faults"`
	Unavailable map[string]string            `json:"unavailable_faults"`
	AgentExits  []string                     `json:"agent_exits"` // exits not caused by the soak's SIGKILL; the harness restarts it
	Memory      soakMemory                   `json:"agent"`
	DropPhases  []soakDropPhase              `json:"drop_oldest_phases"`
	Timeline    []soakFaultEvent             `json:"timeline"`
}

type soakCounts struct {
	HTTP  int `json:"http"`
	UDP   int `json:"udp"`
	Total int `json:"total"`
}

// soakAccounting says how the missing readings are explained, each at most
// once, in this order:
//  1. damaged by id: a missing HTTP id found in the bytes the spool set
//     aside as damaged (*.torn, *.corrupt in the spool directory), as far
//     as the agent's damaged count covers them;
//  2. drop_oldest: a missing reading accepted before a drop_oldest phase
//     ended (still undelivered when it began, since it never was), as
//     far as that phase's drop_oldest count covers it (attributed per
//     phase; UDP readings by count, from the UDP readings accepted before
//     the phase ended);
//  3. damaged and refused_upstream by count: what the agent's damaged
//     count (less step 1) and refused_upstream count still cover, not
//     attributed by id.
//
// Anything missing beyond that is lost.
type soakAccounting struct {
	DropOldestReported uint64 `json:"drop_oldest_reported"`
	DropOldestHTTP     int    `json:"drop_oldest_http"`
	DropOldestUDP      int    `json:"drop_oldest_udp"`
	// DropOldestUnused: reported drops no missing reading needed (a
	// reading dropped after it was delivered, its PUBACK lost with the
	// network, or drops outside the phases booked).
	DropOldestUnused        uint64 `json:"drop_oldest_unused"`
	DamagedReported         uint64 `json:"damaged_reported"`
	DamagedUncountedRegions uint64 `json:"damaged_uncounted_regions"`
	DamagedByID             int    `json:"damaged_by_id"`
	DamagedByCount          int    `json:"damaged_by_count"`
	QuarantinedIDs          int    `json:"quarantined_ids"` // ids readable in the *.torn and *.corrupt files
	RefusedReported         uint64 `json:"refused_upstream_reported"`
	RefusedByCount          int    `json:"refused_upstream_by_count"`
	// UDPCountShort is set when the subscriber received more distinct UDP
	// ids than the agent counted accepted: the count missed what an
	// agent that exited by itself accepted after the last sample.
	UDPCountShort int `json:"udp_count_short,omitempty"`
}

// soakDropPhase is one drop_oldest phase's account.
type soakDropPhase struct {
	At       float64 `json:"at_s"`
	Reported uint64  `json:"dropped_reported"`
	HTTP     int     `json:"attributed_http"`
	UDP      int     `json:"attributed_udp"`
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

// lossInput is what the reconciliation weighs: what is missing, and every
// drop the agent reported.
type lossInput struct {
	missingHTTP []acceptedID // accepted, never delivered, in the order accepted
	missingUDP  int          // UDP readings accepted and never delivered
	phases      []lossPhase
	quarantined map[string]bool // ids readable in the damaged bytes set aside
	damaged     uint64
	refused     uint64
}

// lossPhase is a drop_oldest phase as the reconciliation sees it.
type lossPhase struct {
	drops     uint64
	httpPosts int // HTTP requests numbered below it may have had readings dropped
	// udpMissing is how many UDP readings accepted before the phase ended
	// were never delivered.
	udpMissing int
}

type lossResult struct {
	dropHTTP, dropUDP []int // per phase
	damagedByID       int
	damagedByCount    int
	refusedByCount    int
	lost              int
	lostIDs           []string
}

// attributeLosses explains missing readings by the drops the agent
// reported, each drop explaining at most one reading (soakAccounting
// gives the order). A missing reading is eligible for every phase that
// ended after it was accepted; taking phases in order, each taking what
// is eligible up to its count, explains as many as any assignment can.
func attributeLosses(in lossInput) lossResult {
	var out lossResult
	damagedLeft := in.damaged
	var rest []acceptedID
	for _, a := range in.missingHTTP {
		if in.quarantined[a.id] && damagedLeft > 0 {
			out.damagedByID++
			damagedLeft--
			continue
		}
		rest = append(rest, a)
	}
	udpLeft, udpEligible, udpPrev := in.missingUDP, 0, 0
	httpNext, httpEligible := 0, []acceptedID{}
	out.dropHTTP, out.dropUDP = make([]int, len(in.phases)), make([]int, len(in.phases))
	for i, p := range in.phases {
		for httpNext < len(rest) && rest[httpNext].post < p.httpPosts {
			httpEligible = append(httpEligible, rest[httpNext])
			httpNext++
		}
		if u := min(max(p.udpMissing, udpPrev), in.missingUDP); u > udpPrev {
			udpEligible += u - udpPrev
			udpPrev = u
		}
		left := p.drops
		take := min(left, uint64(len(httpEligible)))
		httpEligible = httpEligible[take:]
		out.dropHTTP[i] = int(take)
		left -= take
		takeUDP := min(left, uint64(udpEligible))
		udpEligible -= int(takeUDP)
		udpLeft -= int(takeUDP)
		out.dropUDP[i] = int(takeUDP)
	}
	unexplained := append(httpEligible, rest[httpNext:]...)
	n := len(unexplained) + udpLeft
	out.damagedByCount = min(n, int(damagedLeft))
	n -= out.damagedByCount
	out.refusedByCount = min(n, int(in.refused))
	n -= out.refusedByCount
	out.lost = n
	if n > 0 {
		for _, a := range unexplained[:min(50, len(unexplained))] {
			out.lostIDs = append(out.lostIDs, a.id)
		}
	}
	return out
}

// quarantineID finds the id at the start of a stored reading (canonical
// JSON) in damaged bytes.
var quarantineID = regexp.MustCompile(`\{"id":"([^"\\]{1,64})"`)

// quarantinedIDs returns the ids readable in the bytes the spool set
// aside as damaged: <segment>.<offset>.torn and .corrupt in its
// directory. A reading cut inside its id is not found.
func quarantinedIDs(dir string) (map[string]bool, error) {
	ids := map[string]bool{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ids, err
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".torn") && !strings.HasSuffix(e.Name(), ".corrupt") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return ids, err
		}
		for _, m := range quarantineID.FindAllSubmatch(b, -1) {
			ids[string(m[1])] = true
		}
	}
	return ids, nil
}

// reconcile sets r's counts and accounting from the books, the
// subscriber and the agent's status now.
func (s *soak) reconcile(r *soakReport) error {
	st, err := s.status()
	if err != nil {
		return err
	}
	quarantined, err := quarantinedIDs(s.spoolDir)
	if err != nil {
		return err
	}
	s.mu.Lock()
	accepted := s.accepted
	udpAcc := int(s.udpAcc.total())
	phases := slices.Clone(s.drops)
	s.mu.Unlock()

	in := lossInput{quarantined: quarantined, damaged: st.Spool.Dropped.Damaged, refused: st.Spool.Dropped.RefusedUpstream}
	var udpDelivered []int // the delivered UDP ids' numbers, sorted
	s.sub.mu.Lock()
	for _, a := range accepted {
		if s.sub.seen[a.id] == 0 {
			in.missingHTTP = append(in.missingHTTP, a)
		}
	}
	for id := range s.sub.seen {
		if n, ok := strings.CutPrefix(id, soakUDPPrefix); ok {
			v, _ := strconv.Atoi(n)
			udpDelivered = append(udpDelivered, v)
		}
	}
	s.sub.mu.Unlock()
	slices.Sort(udpDelivered)

	httpDelivered := len(accepted) - len(in.missingHTTP)
	r.Accepted = soakCounts{HTTP: len(accepted), UDP: udpAcc, Total: len(accepted) + udpAcc}
	r.Delivered = soakCounts{HTTP: httpDelivered, UDP: len(udpDelivered), Total: httpDelivered + len(udpDelivered)}
	in.missingUDP = max(0, udpAcc-len(udpDelivered))
	r.Missing = soakCounts{HTTP: len(in.missingHTTP), UDP: in.missingUDP, Total: len(in.missingHTTP) + in.missingUDP}
	for _, p := range phases {
		deliveredBefore, _ := slices.BinarySearch(udpDelivered, p.udpSent+1)
		in.phases = append(in.phases, lossPhase{drops: p.drops, httpPosts: p.httpPosts, udpMissing: p.udpAccepted - deliveredBefore})
	}
	res := attributeLosses(in)

	a := soakAccounting{
		DropOldestReported: st.Spool.Dropped.DropOldest,
		DamagedReported:    st.Spool.Dropped.Damaged, DamagedUncountedRegions: st.Spool.DamagedUncounted,
		DamagedByID: res.damagedByID, DamagedByCount: res.damagedByCount, QuarantinedIDs: len(quarantined),
		RefusedReported: st.Spool.Dropped.RefusedUpstream, RefusedByCount: res.refusedByCount,
		UDPCountShort: max(0, len(udpDelivered)-udpAcc),
	}
	r.DropPhases = r.DropPhases[:0]
	for i, p := range phases {
		a.DropOldestHTTP += res.dropHTTP[i]
		a.DropOldestUDP += res.dropUDP[i]
		r.DropPhases = append(r.DropPhases, soakDropPhase{At: p.start.Sub(s.warmEnd).Seconds(), Reported: p.drops, HTTP: res.dropHTTP[i], UDP: res.dropUDP[i]})
	}
	a.DropOldestUnused = a.DropOldestReported - uint64(a.DropOldestHTTP+a.DropOldestUDP)
	r.Accounting = a
	r.Lost, r.LostIDs = res.lost, res.lostIDs
	return nil
}

// stallLimit is how long the drain may go without the spool's backlog
// shrinking before the soak takes a goroutine dump of the agent: longer
// than the uplink's longest reconnect backoff (2 minutes) and its write
// timeout for a stalled packet, so that it fires only on an agent stuck
// with a link it believes is up.
const stallLimit = 200 * time.Second

// stallWatch notices a drain that stopped making progress. The dump
// (SIGQUIT: the Go runtime prints every goroutine and exits) is logged in
// full by revive, which restarts the agent as systemd would; the report
// counts the exit.
type stallWatch struct {
	since   time.Time
	pending int
	dumped  bool
}

func (w *stallWatch) observe(s *soak, pending int) {
	if pending == 0 || pending < w.pending || w.pending == 0 {
		w.since, w.pending = time.Now(), pending
		return
	}
	if w.dumped || time.Since(w.since) < stallLimit {
		return
	}
	w.dumped = true
	s.t.Logf("%s  STALL: the spool held %d readings for %s without draining; taking a goroutine dump of the agent",
		time.Now().Format("15:04:05.000"), pending, time.Since(w.since).Round(time.Second))
	s.currentAgent().cmd.Process.Signal(syscall.SIGQUIT)
}

// report waits for the spool to drain, reconciles, prints the table,
// writes the JSON and fails the test if a reading was lost.
func (s *soak) report(t *testing.T, seed uint64, length time.Duration, kinds []*faultKind, perKind int) {
	var r soakReport
	var last time.Time
	var reconcileErr error
	stall := stallWatch{since: time.Now()}
	drained := testutil.WaitFor(5*time.Minute, func() bool {
		s.revive()
		st, err := s.status()
		if err == nil {
			stall.observe(s, st.Spool.Pending)
		}
		// The reconciliation reads every id: at most twice a second.
		if err != nil || st.Spool.Pending != 0 || time.Since(last) < 500*time.Millisecond {
			return false
		}
		last = time.Now()
		reconcileErr = s.reconcile(&r)
		return reconcileErr == nil && r.Lost == 0
	})
	if err := s.reconcile(&r); err != nil {
		t.Errorf("reconcile: %v", err)
	}

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
		t.Errorf("%d accepted readings lost: %d missing (%d HTTP, %d UDP), explained: %d drop_oldest, %d damaged by id, %d damaged by count, %d refused_upstream; seed %d; lost HTTP ids: %s",
			r.Lost, r.Missing.Total, r.Missing.HTTP, r.Missing.UDP, r.Accounting.DropOldestHTTP+r.Accounting.DropOldestUDP,
			r.Accounting.DamagedByID, r.Accounting.DamagedByCount, r.Accounting.RefusedByCount, seed, strings.Join(r.LostIDs, " "))
	}
	if short := r.Accounting.UDPCountShort; short > 0 && len(r.AgentExits) == 0 {
		t.Errorf("the subscriber received %d more UDP readings than the agent counted accepted, with no agent exit to explain it: the soak's UDP count is wrong", short)
	}
	if !drained {
		t.Errorf("the spool did not drain, or readings stayed missing, within 5 minutes after the chaos (last reconciliation error: %v)", reconcileErr)
	}
	for _, k := range kinds {
		n := r.Faults[k.name].Count
		switch {
		case n == 0:
			t.Errorf("fault %s was never applied", k.name)
		case length >= 10*time.Minute && n < 30:
			t.Errorf("fault %s applied %d times: a 10-minute run promises at least 30 of each (aimed at %d)", k.name, n, perKind)
		}
	}
}

// TestAttributeLosses runs without SOAK: the reconciliation's rules on
// small books.
func TestAttributeLosses(t *testing.T) {
	ids := func(posts ...int) []acceptedID {
		var out []acceptedID
		for _, p := range posts {
			out = append(out, acceptedID{id: fmt.Sprintf("h%d", p), post: p})
		}
		return out
	}
	for _, c := range []struct {
		name string
		in   lossInput
		want lossResult
	}{
		{"a reading accepted before a phase is covered by its drops",
			lossInput{missingHTTP: ids(1, 2), phases: []lossPhase{{drops: 5, httpPosts: 3}}},
			lossResult{dropHTTP: []int{2}, dropUDP: []int{0}}},
		{"a reading accepted after the last phase is lost, whatever drops are left",
			lossInput{missingHTTP: ids(1, 7), phases: []lossPhase{{drops: 5, httpPosts: 3}}},
			lossResult{dropHTTP: []int{1}, dropUDP: []int{0}, lost: 1, lostIDs: []string{"h7"}}},
		{"a phase explains no more than it dropped",
			lossInput{missingHTTP: ids(1, 2, 3), phases: []lossPhase{{drops: 2, httpPosts: 9}}},
			lossResult{dropHTTP: []int{2}, dropUDP: []int{0}, lost: 1, lostIDs: []string{"h3"}}},
		{"a later phase covers what an earlier one could not",
			lossInput{missingHTTP: ids(1, 4), phases: []lossPhase{{drops: 1, httpPosts: 2}, {drops: 1, httpPosts: 5}}},
			lossResult{dropHTTP: []int{1, 1}, dropUDP: []int{0, 0}}},
		{"an earlier phase cannot cover a reading accepted after it",
			lossInput{missingHTTP: ids(4, 5), phases: []lossPhase{{drops: 3, httpPosts: 2}, {drops: 1, httpPosts: 6}}},
			lossResult{dropHTTP: []int{0, 1}, dropUDP: []int{0, 0}, lost: 1, lostIDs: []string{"h5"}}},
		{"UDP by count, from what was accepted before the phase ended",
			lossInput{missingUDP: 4, phases: []lossPhase{{drops: 9, udpMissing: 3}}},
			lossResult{dropHTTP: []int{0}, dropUDP: []int{3}, lost: 1}},
		{"quarantined ids are damaged as far as the damaged count goes",
			lossInput{missingHTTP: ids(1, 2), quarantined: map[string]bool{"h1": true, "h2": true}, damaged: 1},
			lossResult{dropHTTP: []int{}, dropUDP: []int{}, damagedByID: 1, lost: 1, lostIDs: []string{"h2"}}},
		{"the damaged count left over covers readings not found by id",
			lossInput{missingHTTP: ids(1, 2), missingUDP: 1, quarantined: map[string]bool{"h1": true}, damaged: 2, refused: 1},
			lossResult{dropHTTP: []int{}, dropUDP: []int{}, damagedByID: 1, damagedByCount: 1, refusedByCount: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := attributeLosses(c.in)
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("attributeLosses = %+v, want %+v", got, c.want)
			}
		})
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
	fmt.Fprintf(&b, "  %-28s %10d %10d %10d\n", "missing", r.Missing.HTTP, r.Missing.UDP, r.Missing.Total)
	a := r.Accounting
	fmt.Fprintf(&b, "  %-28s %10d %10d %10d   (%d reported, %d needed by no missing reading)\n", "explained: drop_oldest",
		a.DropOldestHTTP, a.DropOldestUDP, a.DropOldestHTTP+a.DropOldestUDP, a.DropOldestReported, a.DropOldestUnused)
	fmt.Fprintf(&b, "  %-28s %10d %10s %10d   (by id, in the quarantined bytes)\n", "explained: damaged", a.DamagedByID, "", a.DamagedByID)
	fmt.Fprintf(&b, "  %-28s %32d   (not attributed by id; %d reported damaged, %d regions uncounted)\n", "explained: damaged by count", a.DamagedByCount, a.DamagedReported, a.DamagedUncountedRegions)
	fmt.Fprintf(&b, "  %-28s %32d   (%d reported)\n", "explained: refused_upstream", a.RefusedByCount, a.RefusedReported)
	fmt.Fprintf(&b, "  %-28s %32d\n", "LOST", r.Lost)
	fmt.Fprintf(&b, "  %-28s %32d\n", "duplicates", r.Duplicates)
	codes := make([]string, 0, len(r.HTTPRefused))
	for c, n := range r.HTTPRefused {
		codes = append(codes, fmt.Sprintf("%s: %d", c, n))
	}
	slices.Sort(codes)
	fmt.Fprintf(&b, "  %-28s %32s\n", "HTTP refused (by status)", strings.Join(codes, ", "))
	fmt.Fprintf(&b, "  %-28s %32d\n", "agent exits (restarted)", len(r.AgentExits))
	if a.UDPCountShort > 0 {
		fmt.Fprintf(&b, "  %-28s %32d   (UDP delivered beyond the count: what exited agents took after their last sample)\n", "UDP count short", a.UDPCountShort)
	}
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
