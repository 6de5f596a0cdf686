package agent

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadTokenFileRefusesWhatOthersCanRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name, body string
		mode       os.FileMode
		want       string // "" means the token is read
	}{
		{"good", "tok-123\n", 0o600, ""},
		{"owner-only-read", "tok-123", 0o400, ""},
		{"group-readable", "tok-123", 0o640, "has mode 0640: other users could read the token"},
		{"world-readable", "tok-123", 0o644, "has mode 0644"},
		{"empty", " \n", 0o600, "is empty"},
		{"two-words", "tok 123", 0o600, "holds more than one word (byte 3)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok, err := readTokenFile(write(c.name, c.body, c.mode))
			switch {
			case c.want == "" && (err != nil || string(tok) != "tok-123"):
				t.Fatalf("readTokenFile = %q, %v; want tok-123", tok, err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("readTokenFile = %q, %v; want an error saying %q", tok, err, c.want)
			}
		})
	}
	if _, err := readTokenFile(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("readTokenFile of a missing file succeeded")
	}
}

func TestBearerLetsOnlyTheTokenThrough(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := bearer([]byte("tok-123"), ok)
	for _, c := range []struct {
		header string
		want   int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer", http.StatusUnauthorized},
		{"Bearer tok-12", http.StatusUnauthorized},
		{"Bearer tok-1234", http.StatusUnauthorized},
		{"Basic dG9rLTEyMw==", http.StatusUnauthorized},
		{"Bearer tok-123", http.StatusTeapot},
	} {
		req := httptest.NewRequest(http.MethodGet, "/v1/status", nil)
		if c.header != "" {
			req.Header.Set("Authorization", c.header)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("Authorization %q: %d, want %d", c.header, rec.Code, c.want)
		}
		if rec.Code == http.StatusUnauthorized && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("401 without a Bearer challenge")
		}
	}
	if bearer(nil, ok) == nil {
		t.Fatal("bearer(nil) returned nil")
	}
	rec := httptest.NewRecorder()
	bearer(nil, ok).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusTeapot {
		t.Fatalf("without a token every request goes through; got %d", rec.Code)
	}
}
