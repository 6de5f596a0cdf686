package statuspage

import (
	"encoding/json"
	"net/http"
	"time"
)

// Point is one sample as the history keeps it.
type Point struct {
	Time time.Time `json:"time"`
	// ReadingsPerMinute is the rate of accepted readings since the
	// previous point; nil for the first point of a run, which has nothing
	// to compare with.
	ReadingsPerMinute *float64 `json:"readings_per_minute"`
	// SignalDBM is nil when the signal was unknown.
	SignalDBM *int `json:"signal_dbm"`
	LinkUp    bool `json:"link_up"`
}

// ring is the bounded history: the newest len(buf) points, oldest first
// when read. Page.mu guards it.
type ring struct {
	buf   []Point
	next  int // where the next point goes
	count int
	// prev is the last sample recorded, for the rate of the next one.
	prev    Sample
	hasPrev bool
}

func newRing(n int) *ring { return &ring{buf: make([]Point, max(n, 1))} }

// add derives the point for s and appends it, dropping the oldest when
// full. A counter lower than the previous sample's started again at zero
// (the agent's inputs were rebuilt): its value is what was accepted since.
func (r *ring) add(s Sample) Point {
	pt := Point{Time: s.Time, SignalDBM: s.SignalDBM, LinkUp: s.LinkUp}
	if r.hasPrev {
		if dt := s.Time.Sub(r.prev.Time); dt > 0 {
			rate := float64(counterDelta(r.prev.ReadingsAccepted, s.ReadingsAccepted)) / dt.Minutes()
			pt.ReadingsPerMinute = &rate
		}
	}
	r.prev, r.hasPrev = s, true
	r.buf[r.next] = pt
	r.next = (r.next + 1) % len(r.buf)
	r.count = min(r.count+1, len(r.buf))
	return pt
}

// points returns a copy of the history, oldest first.
func (r *ring) points() []Point {
	out := make([]Point, 0, r.count)
	start := (r.next - r.count + len(r.buf)) % len(r.buf)
	for i := range r.count {
		out = append(out, r.buf[(start+i)%len(r.buf)])
	}
	return out
}

// counterDelta is how much a cumulative counter grew from prev to cur; a
// counter that went backwards restarted from zero, so all of cur is new.
func counterDelta(prev, cur uint64) uint64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// History is the JSON document GET /v1/history answers.
type History struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	WindowSeconds   float64 `json:"window_seconds"`
	// Points are the samples of the last window, oldest first.
	Points []Point `json:"points"`
	// Usage is the data used over the air today and this month.
	Usage UsageTotals `json:"usage"`
	// Warnings are the page's own recent warnings (link and signal lost
	// and back, usage totals that could not be kept), newest last.
	Warnings []Warning `json:"warnings"`
}

// Warning is one line of the page's recent warnings.
type Warning struct {
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
}

// maxWarnings bounds the warnings the page keeps.
const maxWarnings = 20

// history returns the document /v1/history serves.
func (p *Page) history() History {
	p.mu.Lock()
	defer p.mu.Unlock()
	return History{
		IntervalSeconds: p.opts.Interval.Seconds(),
		WindowSeconds:   p.opts.Window.Seconds(),
		Points:          p.hist.points(),
		Usage:           p.usage.totals(),
		Warnings:        append([]Warning{}, p.warnings...),
	}
}

func (p *Page) serveHistory(w http.ResponseWriter, _ *http.Request) {
	body, err := json.Marshal(p.history())
	if err != nil {
		// History holds only plain fields; this cannot happen.
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(body, '\n'))
}

// warn adds line to the page's recent warnings and logs it as a warning.
// Page.mu must be held.
func (p *Page) warn(t time.Time, line string) {
	p.logger.Warn("status page: " + line)
	p.remember(t, line)
}

// recovered adds line, the end of a problem warn reported, to the page's
// recent warnings, so the page shows how long the problem lasted, and logs
// it at info: a recovery is not a warning. Page.mu must be held.
func (p *Page) recovered(t time.Time, line string) {
	p.logger.Info("status page: " + line)
	p.remember(t, line)
}

// remember appends line to the bounded list of recent warnings.
func (p *Page) remember(t time.Time, line string) {
	p.warnings = append(p.warnings, Warning{Time: t.UTC(), Message: line})
	if n := len(p.warnings) - maxWarnings; n > 0 {
		p.warnings = append(p.warnings[:0:0], p.warnings[n:]...)
	}
}
