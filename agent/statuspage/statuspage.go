// Package statuspage is the agent's local status page: one embedded HTML
// page (html/template, a small script, no external assets, readable on a
// phone) served at "/" of the status listener, and the short history it
// draws, served as JSON at "/v1/history".
//
// The page shows what /v1/status reports (the script fetches it every few
// seconds) and what the status document does not keep: readings per minute
// and signal over the last Window, sampled every Interval into a bounded
// ring in memory, and the data used over the air today and this month,
// totalled in a small file in StateDir so the totals survive restarts. Days
// and months roll over at midnight UTC.
//
// The package imports nothing of the agent: the agent hands it a Sample
// function and mounts the Page on its status listener.
package statuspage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Sample is what the agent reports each Interval.
type Sample struct {
	// Time is when the sample was taken; it decides the day and month the
	// bytes count towards. The zero Time means now.
	Time time.Time
	// ReadingsAccepted is the number of readings all inputs accepted this
	// run (cumulative).
	ReadingsAccepted uint64
	// SignalDBM is the modem's signal in dBm; nil means unknown.
	SignalDBM *int
	// BytesAirTx and BytesAirRx are the bytes sent and received over the
	// air this run (cumulative). A value lower than the previous sample's
	// means the counter restarted: its new value is added, nothing is
	// subtracted.
	BytesAirTx, BytesAirRx uint64
	// LinkUp says the uplink is connected.
	LinkUp bool
}

// Options configure a Page.
type Options struct {
	// Sample is called every Interval from Run's goroutine, and once more
	// when Run's context ends; it must stay callable until Run returns.
	Sample func() Sample
	// Interval is the sampling period: 1 minute when zero.
	Interval time.Duration
	// Window is how much history the page keeps and draws: 1 hour when
	// zero. The ring holds Window/Interval points.
	Window time.Duration
	// StateDir is where the day and month usage totals persist (the
	// file UsageFile); the agent passes its spool directory. It must exist.
	StateDir string
	// Logger receives failures to persist the totals; slog.Default when nil.
	Logger *slog.Logger
}

// Default sampling period and history window.
const (
	DefaultInterval = time.Minute
	DefaultWindow   = time.Hour
)

// maxPoints bounds the ring whatever Window/Interval says, so a tiny
// Interval in a test or a typo in a config cannot grow memory without end.
const maxPoints = 10_000

// Page samples the agent and serves the status page and its history. Its
// methods are safe for concurrent use; Run is called once.
type Page struct {
	opts   Options
	logger *slog.Logger

	mu       sync.Mutex // guards the fields below: Run writes, ServeHTTP reads
	hist     *ring
	usage    *usage
	warnings []Warning
	// persistFailed is set while writing UsageFile fails, so the page
	// warns once per failure streak, not every Interval.
	persistFailed bool
}

// New checks o and returns a Page that serves an empty history until Run
// samples. It loads the usage totals from o.StateDir: a missing file is a
// fresh start; a malformed one is renamed aside (the page warns, naming
// the file and the byte or field at fault) and the totals start from zero;
// one that cannot be read is an error naming the file.
func New(o Options) (*Page, error) {
	if o.Sample == nil {
		return nil, errors.New("statuspage: Options.Sample is nil")
	}
	if o.Interval < 0 || o.Window < 0 {
		return nil, fmt.Errorf("statuspage: interval %s and window %s must not be negative", o.Interval, o.Window)
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.Window < o.Interval {
		return nil, fmt.Errorf("statuspage: window %s is shorter than the interval %s", o.Window, o.Interval)
	}
	if o.StateDir == "" {
		return nil, errors.New("statuspage: Options.StateDir is empty")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	u, setAside, err := loadUsage(o.StateDir)
	if err != nil {
		return nil, fmt.Errorf("statuspage: %w", err)
	}
	n := min(int(o.Window/o.Interval), maxPoints)
	p := &Page{opts: o, logger: o.Logger, hist: newRing(n), usage: u}
	if setAside != "" {
		p.warn(time.Now(), setAside)
	}
	return p, nil
}

// Run samples at once, then every Interval until ctx ends, then once more
// so the bytes of the last interval are counted, and returns nil. Failing
// to persist the usage totals is logged, not fatal: the page is not worth
// stopping the agent for.
func (p *Page) Run(ctx context.Context) error {
	t := time.NewTicker(p.opts.Interval)
	defer t.Stop()
	p.record(p.opts.Sample())
	for {
		select {
		case <-ctx.Done():
			p.record(p.opts.Sample())
			return nil
		case <-t.C:
			p.record(p.opts.Sample())
		}
	}
}

// record adds s to the history and the usage totals, notes link and signal
// changes among the warnings, and persists the totals when they changed.
func (p *Page) record(s Sample) {
	if s.Time.IsZero() {
		s.Time = time.Now()
	}
	p.mu.Lock()
	p.noteChanges(s)
	p.hist.add(s)
	var data []byte
	if p.usage.add(s) {
		data = p.usage.encode()
	}
	p.mu.Unlock()
	if data == nil {
		return
	}
	err := writeUsage(p.opts.StateDir, data)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err != nil && !p.persistFailed:
		p.warn(s.Time, fmt.Sprintf("usage totals not saved (kept in memory, retried every sample): %v", err))
	case err == nil && p.persistFailed:
		p.recovered(s.Time, "usage totals saved again")
	}
	p.persistFailed = err != nil
}

// noteChanges warns when the link or the signal is lost or back, compared
// with the previous sample. Page.mu must be held.
func (p *Page) noteChanges(s Sample) {
	if !p.hist.hasPrev {
		return
	}
	prev := p.hist.prev
	switch {
	case prev.LinkUp && !s.LinkUp:
		p.warn(s.Time, "uplink down")
	case !prev.LinkUp && s.LinkUp:
		p.recovered(s.Time, "uplink up again")
	}
	switch {
	case prev.SignalDBM != nil && s.SignalDBM == nil:
		p.warn(s.Time, "signal lost (unknown or no signal)")
	case prev.SignalDBM == nil && s.SignalDBM != nil:
		p.recovered(s.Time, fmt.Sprintf("signal back (%d dBm)", *s.SignalDBM))
	}
}

// ServeHTTP serves GET "/" (the page) and GET "/v1/history" (JSON); any
// other path is 404 and any other method 405.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/", "/v1/history":
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/v1/history" {
		p.serveHistory(w, r)
		return
	}
	p.servePage(w, r)
}
