package statuspage

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"html/template"
	"net/http"
	"strconv"
	"time"
)

var (
	//go:embed assets/page.html.tmpl
	pageHTML string
	//go:embed assets/page.css
	pageCSS string
	//go:embed assets/page.js
	pageJS string
)

var pageTemplate = template.Must(template.New("page").Parse(pageHTML))

// contentSecurityPolicy lets the page run only its own inline script and
// style (by hash) and fetch only from its own origin: nothing external
// loads even if a figure shown were hostile.
var contentSecurityPolicy = "default-src 'none'; script-src " + hashSource(pageJS) +
	"; style-src " + hashSource(pageCSS) + "; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func hashSource(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// DefaultRefresh is how often the page fetches /v1/status and /v1/history;
// a page opened as /?refresh=N refreshes every N seconds (1 to 300).
const DefaultRefresh = 3 * time.Second

// pageConfig is what the script reads from the page (JSON).
type pageConfig struct {
	StatusPath  string `json:"status_path"`
	HistoryPath string `json:"history_path"`
	RefreshMS   int64  `json:"refresh_ms"`
	TimeoutMS   int64  `json:"timeout_ms"`
	WindowText  string `json:"window_text"`
}

// pageData fills the template: the script fills the figures; the usage
// totals are rendered too, so the page says something without script.
type pageData struct {
	Style        template.CSS
	Script       template.JS
	Config       pageConfig
	WindowText   string
	IntervalText string
	Usage        UsageTotals
	DayBytes     uint64
	MonthBytes   uint64
	DayText      string
	MonthText    string
}

func (p *Page) servePage(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	refresh := DefaultRefresh
	if v := r.URL.Query().Get("refresh"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 300 {
			http.Error(w, "refresh: want a whole number of seconds from 1 to 300, got "+strconv.Quote(v), http.StatusBadRequest)
			return
		}
		refresh = time.Duration(n) * time.Second
	}
	p.mu.Lock()
	u := p.usage.totals()
	p.mu.Unlock()
	d := pageData{
		Style:  template.CSS(pageCSS),
		Script: template.JS(pageJS),
		// Relative paths, so the page also works behind a reverse proxy
		// that mounts the listener under a prefix.
		Config: pageConfig{StatusPath: "v1/status", HistoryPath: "v1/history", RefreshMS: refresh.Milliseconds(),
			TimeoutMS: max(10_000, 2*refresh.Milliseconds()), WindowText: humanDuration(p.opts.Window)},
		WindowText:   humanDuration(p.opts.Window),
		IntervalText: humanDuration(p.opts.Interval),
		Usage:        u,
		DayBytes:     u.DayTxBytes + u.DayRxBytes,
		MonthBytes:   u.MonthTxBytes + u.MonthRxBytes,
	}
	d.DayText, d.MonthText = formatBytes(d.DayBytes), formatBytes(d.MonthBytes)
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, d); err != nil {
		p.logger.Error("status page: render", "err", err)
		http.Error(w, "status page: render failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

// humanDuration writes d the way people say it: "hour", "2 hours",
// "minute", "30 seconds"; what is not a whole second stays Go's "250ms".
func humanDuration(d time.Duration) string {
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "hour"}, {time.Minute, "minute"}, {time.Second, "second"}} {
		if d%u.unit != 0 {
			continue
		}
		if n := d / u.unit; n != 1 {
			return strconv.FormatInt(int64(n), 10) + " " + u.name + "s"
		}
		return u.name
	}
	return d.String()
}

// formatBytes writes n in decimal units, as the script does.
func formatBytes(n uint64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	if n < 1000 {
		return strconv.FormatUint(n, 10) + " B"
	}
	f, i := float64(n), 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	prec := 1
	if f < 10 {
		prec = 2
	}
	return strconv.FormatFloat(f, 'f', prec, 64) + " " + units[i]
}
