package agent

import (
	"encoding/json"
	"net/http"

	"github.com/cellgate/cellgate/agent/input"
)

// The agent's own HTTP surfaces, for operators: GET /v1/status (what
// `cellgate status` reads) and /metrics (Prometheus). They are mounted on
// the HTTP input's listener, beside the ingest (POST /v1/readings) and its
// /healthz; the input knows nothing of what they serve.

// mountSurfaces serves the agent's surfaces on the HTTP input's listener.
func (a *Agent) mountSurfaces(h *input.HTTP) {
	h.Handle("/v1/status", http.HandlerFunc(a.serveStatus))
	h.Handle("/metrics", newMetrics(a).handler())
	h.Handle("/v1/config", http.HandlerFunc(a.serveConfig)) // remoteconfig.go
}

// serveStatus answers GET /v1/status with the agent's Status as JSON.
func (a *Agent) serveStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		w.WriteHeader(http.StatusMethodNotAllowed)
		json.NewEncoder(w).Encode(map[string]string{"error": "use GET"})
		return
	}
	body, err := json.Marshal(a.status())
	if err != nil {
		// Status holds only plain fields; this cannot happen.
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Write(append(body, '\n'))
}
