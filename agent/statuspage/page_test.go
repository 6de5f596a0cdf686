package statuspage

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec
}

func TestPageIsSelfContainedAndReadableOnAPhone(t *testing.T) {
	p := newPage(t, Options{Interval: time.Minute, Window: time.Hour})
	p.record(Sample{Time: t0, BytesAirTx: 1500, BytesAirRx: 500})
	rec := get(t, p, "/")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	body := rec.Body.String()
	for _, want := range []string{
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		`@media (max-width: 600px)`,
		`data-field="link-state"`, `data-field="signal-dbm"`, `data-field="signal-bars"`,
		`data-field="modem-imei"`, `data-field="spool-depth"`, `data-field="spool-oldest-age"`,
		`data-field="chart-readings"`, `data-field="chart-signal"`, `data-field="config-version"`,
		`data-field="warnings"`,
		// The usage totals are rendered by the server too.
		`data-field="usage-today" data-value="2000">2.00 kB<`,
		`Last hour`, `one point every minute`, Rollover,
		`"refresh_ms":3000`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Nothing is loaded from elsewhere: no src= or href= but the empty
	// data: icon (which spares the browser asking for /favicon.ico), and
	// the policy forbids it anyway.
	if m := regexp.MustCompile(`(?i)\s(src|href)\s*=\s*"?[^d"]`).FindString(body); m != "" || strings.Count(body, `href="data:,"`) != 1 {
		t.Errorf("page loads an asset (%q): it must be self-contained", m)
	}
	csp := rec.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

func TestPagePolicyAllowsExactlyTheEmbeddedScriptAndStyle(t *testing.T) {
	p := newPage(t, Options{})
	rec := get(t, p, "/")
	body, csp := rec.Body.String(), rec.Header().Get("Content-Security-Policy")
	// The browser hashes the inline element's text as served: if the
	// template escaped a byte of it, the hash would not match and the
	// browser would refuse to run it.
	for _, re := range []string{`(?s)<script>(.*?)</script>`, `(?s)<style>(.*?)</style>`} {
		m := regexp.MustCompile(re).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("page has no %s", re)
		}
		if h := hashSource(m[1]); !strings.Contains(csp, h) {
			t.Errorf("inline text hashing to %s is not allowed by %q", h, csp)
		}
	}
}

func TestPageRefreshParameter(t *testing.T) {
	p := newPage(t, Options{})
	if body := get(t, p, "/?refresh=1").Body.String(); !strings.Contains(body, `"refresh_ms":1000`) {
		t.Errorf("?refresh=1 does not set a 1 s refresh")
	}
	for _, bad := range []string{"0", "301", "x", "1.5"} {
		rec := get(t, p, "/?refresh="+bad)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "refresh: want a whole number of seconds from 1 to 300") {
			t.Errorf("?refresh=%s: %d %q, want 400 saying what is allowed", bad, rec.Code, rec.Body)
		}
	}
}

func TestServeHTTPRoutes(t *testing.T) {
	p := newPage(t, Options{})
	for _, tc := range []struct {
		method, target string
		code           int
	}{
		{http.MethodGet, "/", http.StatusOK},
		{http.MethodHead, "/", http.StatusOK},
		{http.MethodGet, "/v1/history", http.StatusOK},
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/v1/history", http.StatusMethodNotAllowed},
		{http.MethodGet, "/index.html", http.StatusNotFound},
		{http.MethodGet, "/v1/history/x", http.StatusNotFound},
	} {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, nil))
		if rec.Code != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.target, rec.Code, tc.code)
		}
	}
}

func TestGuard(t *testing.T) {
	const token = "s3cret-token"
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("through")) })
	g := Guard(token, next, "/healthz", "/readyz")
	cookie := &http.Cookie{Name: TokenCookie, Value: cookieValue(token)}
	for _, tc := range []struct {
		name     string
		target   string
		header   string
		cookie   *http.Cookie
		code     int
		location string
	}{
		{"no token", "/v1/status", "", nil, http.StatusUnauthorized, ""},
		{"bearer", "/v1/status", "Bearer " + token, nil, http.StatusOK, ""},
		{"bearer, any case", "/metrics", "bearer " + token, nil, http.StatusOK, ""},
		{"wrong bearer", "/v1/status", "Bearer nope", nil, http.StatusUnauthorized, ""},
		{"wrong bearer and a good cookie", "/v1/status", "Bearer nope", cookie, http.StatusUnauthorized, ""},
		{"basic scheme", "/v1/status", "Basic " + token, nil, http.StatusUnauthorized, ""},
		{"cookie", "/v1/history", "", cookie, http.StatusOK, ""},
		{"the token as cookie value", "/v1/status", "", &http.Cookie{Name: TokenCookie, Value: token}, http.StatusUnauthorized, ""},
		{"open path", "/healthz", "", nil, http.StatusOK, ""},
		{"exchange", "/?token=" + token + "&refresh=2", "", nil, http.StatusSeeOther, "/?refresh=2"},
		{"exchange, wrong token", "/?token=nope", "", nil, http.StatusUnauthorized, ""},
		{"token in query of another path", "/v1/status?token=" + token, "", nil, http.StatusUnauthorized, ""},
		{"page without anything", "/", "", nil, http.StatusUnauthorized, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tc.target, nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			if tc.cookie != nil {
				req.AddCookie(tc.cookie)
			}
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, req)
			if rec.Code != tc.code {
				t.Fatalf("%d %q, want %d", rec.Code, rec.Body, tc.code)
			}
			if strings.Contains(rec.Body.String(), token) || strings.Contains(rec.Header().Get("Location"), token) {
				t.Fatalf("the answer repeats the token: %q %v", rec.Body, rec.Header())
			}
			if tc.code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
			if tc.code != http.StatusSeeOther {
				if len(rec.Result().Cookies()) != 0 {
					t.Errorf("cookie set on %d", rec.Code)
				}
				return
			}
			if loc := rec.Header().Get("Location"); loc != tc.location {
				t.Errorf("Location %q, want %q", loc, tc.location)
			}
			cs := rec.Result().Cookies()
			if len(cs) != 1 || cs[0].Name != TokenCookie || cs[0].Value != cookie.Value || !cs[0].HttpOnly ||
				cs[0].SameSite != http.SameSiteStrictMode || cs[0].Path != "/" || cs[0].Secure {
				t.Errorf("cookies %+v, want one HttpOnly SameSite=Strict %s on / (not Secure over plain HTTP)", cs, TokenCookie)
			}
		})
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour: "hour", 2 * time.Hour: "2 hours", time.Minute: "minute", 90 * time.Minute: "90 minutes",
		30 * time.Second: "30 seconds", time.Second: "second", 250 * time.Millisecond: "250ms",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestGuardWithoutATokenIsTheHandler(t *testing.T) {
	next := http.NotFoundHandler()
	if g := Guard("", next); g == nil || get(t, g, "/x").Code != http.StatusNotFound {
		t.Fatal("Guard with an empty token does not pass everything through")
	}
}
