package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/cellgate/cellgate/agent/config"
	"github.com/cellgate/cellgate/agent/input"
	"github.com/cellgate/cellgate/agent/statuspage"
)

// The agent's own HTTP surfaces, for operators. The status listener
// (status.listen) serves GET /v1/status (what `cellgate status` reads),
// /metrics (Prometheus), /healthz, /readyz, POST /v1/config (`cellgate
// config apply`, remoteconfig.go) and the status page (/ and /v1/history,
// agent/statuspage), all but /healthz and /readyz behind the bearer token
// of status.token_file when one is set. The ingest listener
// (inputs.http.listen) serves only the ingest, /healthz and /readyz: the
// status shows the modem's IMEI and the SIM's ICCID, which whoever may send
// readings need not see.

// mountSurfaces serves the agent's health on the HTTP input's listener.
func (a *Agent) mountSurfaces(h *input.HTTP) {
	h.HandleHealth(http.HandlerFunc(a.serveHealth))
	h.Handle("/readyz", http.HandlerFunc(a.serveReady))
}

// statusServer is the status listener, bound by newAgent and served by run.
type statusServer struct {
	ln  net.Listener
	srv *http.Server
}

// Timeouts of the status listener: its clients are scrapers and browsers
// on the gateway or the operator's network, and a slow one must not hold a
// connection for long.
const (
	statusReadTimeout     = 10 * time.Second
	statusWriteTimeout    = 30 * time.Second
	statusShutdownTimeout = 5 * time.Second
)

// buildStatusListener binds status.listen, or returns nil when it is empty.
// The token, when status.token_file is set, is read once here.
func (a *Agent) buildStatusListener(cfg config.Status) (*statusServer, error) {
	if cfg.Listen == "" {
		return nil, nil
	}
	var token []byte
	if cfg.TokenFile != "" {
		var err error
		if token, err = readTokenFile(cfg.TokenFile); err != nil {
			return nil, fmt.Errorf("status.token_file: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("status.listen %s: %w", cfg.Listen, err)
	}
	guarded := http.NewServeMux()
	guarded.HandleFunc("/v1/status", a.serveStatus)
	guarded.Handle("/metrics", newMetrics(a).handler())
	guarded.HandleFunc("/v1/config", a.serveConfig)        // remoteconfig.go
	guarded.HandleFunc("/v1/cert/renew", a.serveCertRenew) // rotation.go
	if a.page != nil {
		guarded.Handle("/v1/history", a.page)
		guarded.Handle("/{$}", a.page)
	}
	guarded.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONStatus(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no endpoint %s (GET /, /v1/status, /v1/history, /metrics, /healthz, /readyz; POST /v1/config)", r.URL.Path)})
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", a.serveHealth)
	mux.HandleFunc("/readyz", a.serveReady)
	mux.Handle("/", bearer(token, guarded))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: statusReadTimeout, ReadTimeout: statusReadTimeout, WriteTimeout: statusWriteTimeout}
	return &statusServer{ln: ln, srv: srv}, nil
}

// serve runs the status listener until ctx ends.
func (s *statusServer) serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), statusShutdownTimeout)
		defer cancel()
		if err := s.srv.Shutdown(sctx); err != nil {
			s.srv.Close()
		}
	})
	defer stop()
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// close releases the listener; harmless after serve returned.
func (s *statusServer) close(context.Context) error { return s.srv.Close() }

// readTokenFile reads a bearer token from path, refusing a file other users
// may read or write (the token guards the IMEI and ICCID and the remote
// configuration door) and an empty one.
func readTokenFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o: other users could read the token (want 0600: chmod 600 %s)", path, perm, path)
	}
	buf := make([]byte, 4097)
	n, err := f.Read(buf)
	if err != nil && n == 0 {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if n > 4096 {
		return nil, fmt.Errorf("%s is larger than 4 KiB: not a token", path)
	}
	token := strings.TrimSpace(string(buf[:n]))
	if token == "" {
		return nil, fmt.Errorf("%s is empty", path)
	}
	if strings.ContainsAny(token, " \t\r\n") {
		return nil, fmt.Errorf("%s holds more than one word (byte %d): a token is one", path, strings.IndexAny(token, " \t\r\n"))
	}
	return []byte(token), nil
}

// bearer serves next only to requests carrying "Authorization: Bearer
// <token>", or the cookie a browser gets by opening the status page once
// as /?token=<token> (statuspage.Guard: the one token rule), answering 401
// otherwise; a nil token lets every request through. The comparison takes
// the same time whatever the candidate.
func bearer(token []byte, next http.Handler) http.Handler {
	return statuspage.Guard(string(token), next)
}

// serveStatus answers GET /v1/status with the agent's Status as JSON.
func (a *Agent) serveStatus(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeJSONStatus(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET"})
		return
	}
	writeJSONStatus(w, http.StatusOK, a.status())
}

// newStatusPage builds the status page, sampling the agent every interval
// (0: statuspage.DefaultInterval) and keeping its usage totals in the
// spool directory.
func newStatusPage(a *Agent, interval time.Duration) (*statuspage.Page, error) {
	p, err := statuspage.New(statuspage.Options{
		Sample: a.pageSample, Interval: interval, StateDir: a.cfg.Spool.Dir, Logger: a.log.With("part", "status page"),
	})
	if err != nil {
		return nil, fmt.Errorf("status page: %w", err)
	}
	return p, nil
}

// pageSample is what the status page charts: readings accepted by every
// input, the signal, the bytes over the air and the link.
func (a *Agent) pageSample() statuspage.Sample {
	s := statuspage.Sample{Time: time.Now()}
	for _, st := range a.inputStats() {
		s.ReadingsAccepted += st.Accepted
	}
	if p := a.poller.latest(); p != nil && p.Err == nil {
		if dbm, ok := p.Status.SignalDBM(); ok {
			s.SignalDBM = &dbm
		}
	}
	ls := a.link.status()
	s.BytesAirTx, s.BytesAirRx, s.LinkUp = ls.AirTxBytes, ls.AirRxBytes, ls.Connected
	return s
}
