package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Health says whether the agent can do its job now: GET /healthz answers
// 200 with it when OK and 503 otherwise, on the ingest and the status
// listener.
type Health struct {
	// Status is "ok" or "unhealthy".
	Status string `json:"status"`
	// Reasons say what is wrong, one sentence each; empty when OK.
	Reasons []string `json:"reasons,omitempty"`
}

// OK reports whether h is healthy.
func (h Health) OK() bool { return len(h.Reasons) == 0 }

// registeredStates are the registrations in which the modem carries data.
var registeredStates = map[string]bool{"home": true, "roaming": true}

// health judges the agent now: the spool is open, the plugin is up with
// the modem open, the modem (when the plugin reports its state) is
// registered, and the uplink had a publish acknowledged within
// health.max_ack_age, unless nothing waits to be sent.
func (a *Agent) health() Health {
	var reasons []string
	if !a.spoolOpen.Load() {
		reasons = append(reasons, "spool is not open")
	}
	switch {
	case a.host == nil:
		reasons = append(reasons, "plugin host is not running")
	case !a.host.IsReady():
		reasons = append(reasons, fmt.Sprintf("%s plugin is not ready (restarts: %d)", a.cfg.Modem.Model, a.host.Restarts()))
	}
	if p := a.unregisteredPoll(); p != nil {
		reasons = append(reasons, fmt.Sprintf("modem is not registered: %s (polled %s)", p.Status.Registration, p.At.Format(time.RFC3339)))
	}
	if r := a.ackAgeReason(); r != "" {
		reasons = append(reasons, r)
	}
	if len(reasons) == 0 {
		return Health{Status: "ok"}
	}
	return Health{Status: "unhealthy", Reasons: reasons}
}

// ackAgeReason says why the uplink is behind, or "" when it is not: readings
// wait and no publish was acknowledged within health.max_ack_age (counted
// from the start when none was yet).
func (a *Agent) ackAgeReason() string {
	if !a.spoolOpen.Load() {
		return ""
	}
	pending := a.spool.Stats().Pending
	if pending == 0 {
		return ""
	}
	maxAge := a.current().Health.MaxAckAge
	since, what := a.started, "since the agent started"
	if ns := a.fw.lastAck.Load(); ns != 0 {
		since, what = time.Unix(0, ns), "for"
	}
	age := time.Since(since)
	if age <= maxAge {
		return ""
	}
	reason := fmt.Sprintf("no publish acknowledged %s %s (health.max_ack_age %s) while %d readings wait",
		what, age.Round(time.Second), maxAge, pending)
	if ls := a.link.status(); ls.LastError != "" {
		reason += "; last uplink error: " + ls.LastError
	}
	return reason
}

// serveHealth answers GET /healthz: 200 and {"status":"ok"}, or 503 and
// {"status":"unhealthy","reasons":[…]}.
func (a *Agent) serveHealth(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	h := a.health()
	code := http.StatusOK
	if !h.OK() {
		code = http.StatusServiceUnavailable
	}
	writeJSONStatus(w, code, h)
}

// serveReady answers GET /readyz: 200 {"status":"ready"} once the agent
// takes readings (the spool is open, the inputs listen, the plugin process
// answered its handshake), 503 {"status":"starting"} before.
func (a *Agent) serveReady(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	if a.ready.Load() {
		writeJSONStatus(w, http.StatusOK, map[string]string{"status": "ready"})
		return
	}
	writeJSONStatus(w, http.StatusServiceUnavailable, map[string]string{"status": "starting"})
}

// allowGet answers 405 to anything but GET and HEAD and reports whether
// the request may go on.
func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeJSONStatus(w, http.StatusMethodNotAllowed, map[string]string{"error": fmt.Sprintf("method %s not allowed on %s (want GET)", r.Method, r.URL.Path)})
	return false
}

// writeJSONStatus answers code with v as JSON.
func writeJSONStatus(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only plain structs and maps are written; this cannot happen.
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}
