package statuspage

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// TokenCookie is the cookie a browser gets from the token exchange (see
// Guard). Its value is derived from the token, not the token itself.
const TokenCookie = "cellgate_status"

// Guard puts the status listener's bearer token in front of next, in a way
// a browser can follow:
//
//   - a request with "Authorization: Bearer <token>" (the CLI, Prometheus,
//     curl) passes;
//   - a browser opens the page once as /?token=<token>: Guard checks the
//     token, sets TokenCookie (HttpOnly, SameSite=Strict, Secure when the
//     request came over TLS) and redirects to the same address without the
//     token, so the token leaves the address bar and the browser history;
//     the page's own requests then carry the cookie, which passes;
//   - a path in open (e.g. "/healthz", "/readyz") passes without a token;
//   - anything else is 401 with a WWW-Authenticate challenge.
//
// Comparisons are constant-time. Guard logs nothing, so the token cannot
// reach a log from here; a front proxy that logs query strings should not
// be given ?token= addresses. An empty token means no token is required:
// Guard returns next unchanged.
func Guard(token string, next http.Handler, open ...string) http.Handler {
	if token == "" {
		return next
	}
	g := &guard{token: sha256.Sum256([]byte(token)), cookie: sha256.Sum256([]byte(cookieValue(token))), next: next, open: map[string]bool{}}
	for _, p := range open {
		g.open[p] = true
	}
	return g
}

type guard struct {
	// token and cookie are hashed: comparing fixed-size digests takes the
	// same time whatever the candidate's length.
	token  [sha256.Size]byte
	cookie [sha256.Size]byte
	next   http.Handler
	open   map[string]bool
}

// cookieValue derives the cookie from the token: a cookie copied out of a
// browser is not the bearer token the CLI and scrapers use.
func cookieValue(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("cellgate status page cookie v1"))
	return hex.EncodeToString(m.Sum(nil))
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.open[r.URL.Path] {
		g.next.ServeHTTP(w, r)
		return
	}
	if q := r.URL.Query(); r.URL.Path == "/" && q.Has("token") && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		g.exchange(w, r, q)
		return
	}
	if g.authorized(r) {
		g.next.ServeHTTP(w, r)
		return
	}
	unauthorized(w, "this listener needs the bearer token of status.token_file (Authorization: Bearer <token>); a browser opens the page once as /?token=<token>")
}

// unauthorized answers 401 with a JSON error, as the agent's other
// surfaces answer errors.
func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="cellgate status"`)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	body, _ := json.Marshal(map[string]string{"error": msg})
	w.Write(append(body, '\n'))
}

func (g *guard) authorized(r *http.Request) bool {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		return ok && strings.EqualFold(scheme, "Bearer") && matches(strings.TrimSpace(tok), g.token)
	}
	c, err := r.Cookie(TokenCookie)
	return err == nil && matches(c.Value, g.cookie)
}

// matches says whether candidate hashes to want, in constant time.
func matches(candidate string, want [sha256.Size]byte) bool {
	got := sha256.Sum256([]byte(candidate))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// exchange turns ?token= into the cookie and a redirect to the address
// without it; a wrong token is 401 and sets nothing.
func (g *guard) exchange(w http.ResponseWriter, r *http.Request, q url.Values) {
	if !matches(q.Get("token"), g.token) {
		unauthorized(w, "the token in the address is not the status token")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: TokenCookie, Value: cookieValue(q.Get("token")), Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	q.Del("token")
	to := url.URL{Path: "/", RawQuery: q.Encode()}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, to.String(), http.StatusSeeOther)
}
