package input

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// writeAccepted is a faster writeJSON for 202 answers: byte for byte the
// same answer, headers included, whatever the ids hold.
func TestWriteAcceptedMatchesWriteJSON(t *testing.T) {
	for _, ids := range [][]string{
		{"01JDQ4C8Y3ABCDEFGHJKMNPQRS"},
		{"a", "b-1", "c_2.x:y/z", "<&>", "with space", "~!@#$%^*()"},
		{`quo"te`},
		{`back\slash`},
		{"tab\there"},
		{"ünïcode"},
		{"line\u2028sep"},
		{"ctl\x01", "plain"},
		{},
		nil,
		{strings.Repeat("x", 70<<10)},
	} {
		fast, slow := httptest.NewRecorder(), httptest.NewRecorder()
		writeAccepted(fast, ids)
		writeJSON(slow, http.StatusAccepted, acceptedResponse{IDs: ids})
		if fast.Code != slow.Code || fast.Body.String() != slow.Body.String() {
			t.Errorf("ids %q: writeAccepted answered %d %q, writeJSON %d %q", ids, fast.Code, fast.Body, slow.Code, slow.Body)
		}
		for _, k := range []string{"Content-Type", "Content-Length"} {
			if f, s := fast.Header().Get(k), slow.Header().Get(k); f != s {
				t.Errorf("ids %q: %s %q, writeJSON's %q", ids, k, f, s)
			}
		}
	}
}

// Shared header values must survive an answer that changes its headers.
func TestJSONContentTypeIsNotChangedByAnswers(t *testing.T) {
	rec := httptest.NewRecorder()
	writeAccepted(rec, []string{"a"})
	rec.Header().Add("Content-Type", "text/plain")
	rec.Header().Set("Content-Type", "text/plain")
	if len(jsonContentType) != 1 || jsonContentType[0] != "application/json" {
		t.Fatalf("jsonContentType is now %q", jsonContentType)
	}
}
