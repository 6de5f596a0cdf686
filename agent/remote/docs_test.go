package remote

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/testutil"
)

const docsFile = "../../docs/remote-config.md"

// The worked example of docs/remote-config.md is right byte for byte: the
// key files, the signed bytes, the envelope and its signature are what
// this package makes of them, and the envelope verifies.
func TestDocsWorkedExample(t *testing.T) {
	block := func(name string) string { return testutil.DocBlock(t, docsFile, name) }
	key := testKey(t) // RFC 8032 test 1, as the page says
	pemKey, err := MarshalPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if got := block("example-private-key"); got != string(pemKey) {
		t.Errorf("private key file:\n%s\nwant\n%s", got, pemKey)
	}
	parsed, err := ParsePrivateKey([]byte(block("example-private-key")))
	if err != nil || !parsed.Equal(key) {
		t.Errorf("the documented private key does not parse to the test key: %v", err)
	}
	pub := EncodePublicKey(key.Public().(ed25519.PublicKey))
	if got := strings.TrimSpace(block("example-public-key")); got != pub {
		t.Errorf("public key %q, want %q", got, pub)
	}

	want := &Envelope{Format: Format, DeviceID: "gw-0001", Version: 42, IssuedAt: "2026-12-01T10:00:00Z",
		ExpiresAt: "2026-12-08T10:00:00Z", KeyID: "ops-2026", Config: block("example-overlay")}
	if got := strings.TrimSuffix(block("example-signed-bytes"), "\n"); got != string(want.SignedBytes()) {
		t.Errorf("signed bytes:\n%q\nwant\n%q", got, want.SignedBytes())
	}
	want.Sign(key)
	data, err := want.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	envelope := strings.TrimSuffix(block("example-envelope"), "\n")
	if envelope != string(data) {
		t.Errorf("envelope:\n%s\nwant\n%s", envelope, data)
	}
	p := Policy{DeviceID: "gw-0001", Trusted: map[string]ed25519.PublicKey{"ops-2026": key.Public().(ed25519.PublicKey)},
		Now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), Committed: 41}
	if _, err := Verify([]byte(envelope), p); err != nil {
		t.Errorf("the documented envelope does not verify: %v", err)
	}
}

// The documented Python snippet (the cryptography package) signs an
// envelope this package accepts; it stays within 20 lines.
func TestDocsPythonSnippetSigns(t *testing.T) {
	script := testutil.DocBlock(t, docsFile, "sign.py")
	if n := strings.Count(script, "\n"); n > 20 {
		t.Errorf("the Python snippet is %d lines, the page promises at most 20", n)
	}
	dir := t.TempDir()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pemKey, _ := MarshalPrivateKey(key)
	keyFile, overlayFile := filepath.Join(dir, "ops.key"), filepath.Join(dir, "overlay.yaml")
	// Non-ASCII, quotes and a backslash: the hash is over the UTF-8 bytes.
	overlay := "uplink:\n  mqtt: {topic: \"cellgate/{device_id}/mesures-é\\\\\"}\n"
	if err := os.WriteFile(keyFile, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(overlayFile, []byte(overlay), 0o600); err != nil {
		t.Fatal(err)
	}
	out := testutil.RunPython(t, script, keyFile, "ops-2026", "43", "gw-0001", overlayFile)
	p := Policy{DeviceID: "gw-0001", Trusted: map[string]ed25519.PublicKey{"ops-2026": key.Public().(ed25519.PublicKey)}, Now: time.Now(), Committed: 42}
	e, err := Verify([]byte(strings.TrimSpace(string(out))), p)
	if err != nil {
		t.Fatalf("the Python-signed envelope is refused: %v\n%s", err, out)
	}
	if e.Version != 43 || e.Config != overlay || e.Expires().Sub(e.Issued()) != 7*24*time.Hour {
		t.Fatalf("the Python-signed envelope reads as %+v", e)
	}
}
