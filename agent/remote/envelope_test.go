package remote

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"
)

const overlay = "uplink:\n  batch:\n    max_readings: 7\n"

func TestVerifyAcceptsAValidPush(t *testing.T) {
	e, err := Verify(push(t, 42, overlay, nil, nil), testPolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	if e.Version != 42 || e.Config != overlay || e.KeyID != "ops-2026" {
		t.Fatalf("envelope read as %+v", e)
	}
	// "*" addresses every gateway that trusts the key.
	if _, err := Verify(push(t, 42, overlay, func(e *Envelope) { e.DeviceID = AnyDevice }, nil), testPolicy(t)); err != nil {
		t.Fatalf("device_id %q: %v", AnyDevice, err)
	}
	// Up to MaxClockSkew ahead of the gateway's clock is fine.
	if _, err := Verify(push(t, 42, overlay, func(e *Envelope) { *e = *reissue(e, testNow.Add(4*time.Minute)) }, nil), testPolicy(t)); err != nil {
		t.Fatalf("issued 4 minutes ahead: %v", err)
	}
}

// reissue returns e with issued_at set to at (and a week of validity).
func reissue(e *Envelope, at time.Time) *Envelope {
	return NewEnvelope(e.DeviceID, e.Version, at, at.Add(7*24*time.Hour), e.KeyID, e.Config)
}

// Each refusal names its reason, whatever else is wrong later in the
// order; the table holds one failure per row.
func TestVerifyRefusals(t *testing.T) {
	valid := string(push(t, 42, overlay, nil, nil))
	swap := func(old, new string) []byte {
		if !strings.Contains(valid, old) {
			t.Fatalf("the valid envelope has no %q: %s", old, valid)
		}
		return []byte(strings.Replace(valid, old, new, 1))
	}
	big := push(t, 42, "log: {level: info}\n#"+strings.Repeat("x", 65<<10), nil, nil)
	for _, tc := range []struct {
		name   string
		data   []byte
		reason Reason
		detail string
	}{
		{"65 KiB envelope", big, ReasonTooLarge, "limit is 65536"},
		{"malformed JSON", []byte(valid[:40]), ReasonMalformed, "not JSON"},
		{"not an object", []byte(`["cellgate-config/1"]`), ReasonMalformed, "not a JSON object"},
		{"trailing data", []byte(valid + "{}"), ReasonMalformed, "after the JSON object"},
		{"not UTF-8", append([]byte(valid[:len(valid)-1]), 0xff, '}'), ReasonMalformed, "UTF-8"},
		{"duplicate field", swap(`"version":42,`, `"version":42,"version":43,`), ReasonMalformed, "twice"},
		{"unknown field", swap(`"version":42,`, `"version":42,"comment":"hi",`), ReasonMalformed, `unknown field "comment"`},
		{"missing field", swap(`"key_id":"ops-2026",`, ``), ReasonMalformed, "key_id is missing"},
		{"version as text", swap(`"version":42,`, `"version":"42",`), ReasonMalformed, "version"},
		{"version with a fraction", swap(`"version":42,`, `"version":42.0,`), ReasonMalformed, "version"},
		{"version zero", swap(`"version":42,`, `"version":0,`), ReasonMalformed, "version"},
		{"config not text", swap(`"config":"`, `"config":7,"x":"`), ReasonMalformed, "config: want a string"},
		{"time not RFC 3339", push(t, 42, overlay, func(e *Envelope) { e.ExpiresAt = "next week" }, nil), ReasonMalformed, "expires_at"},
		{"another format", push(t, 42, overlay, func(e *Envelope) { e.Format = "cellgate-config/2" }, nil), ReasonFormat, "cellgate-config/2"},
		{"another device's id", push(t, 42, overlay, func(e *Envelope) { e.DeviceID = "gw-0002" }, nil), ReasonDevice, "gw-0002"},
		{"unknown key_id", push(t, 42, overlay, func(e *Envelope) { e.KeyID = "ops-2025" }, nil), ReasonUnknownKey, "ops-2025"},
		{"bad signature", push(t, 42, overlay, nil, otherKey(t)), ReasonSignature, "does not verify"},
		{"config changed after signing", swap(`max_readings: 7`, `max_readings: 9`), ReasonSignature, "does not verify"},
		{"version changed after signing", swap(`"version":42,`, `"version":43,`), ReasonSignature, "does not verify"},
		{"signature not base64", swap(`"signature":"`, `"signature":"!`), ReasonSignature, "base64"},
		{"expired", push(t, 42, overlay, func(e *Envelope) {
			*e = *NewEnvelope(e.DeviceID, 42, testNow.Add(-8*24*time.Hour), testNow.Add(-time.Second), e.KeyID, e.Config)
		}, nil), ReasonExpired, "expired at"},
		{"expires now", push(t, 42, overlay, func(e *Envelope) {
			*e = *NewEnvelope(e.DeviceID, 42, testNow.Add(-time.Hour), testNow, e.KeyID, e.Config)
		}, nil), ReasonExpired, "expired at"},
		{"issued in the future", push(t, 42, overlay, func(e *Envelope) { *e = *reissue(e, testNow.Add(6*time.Minute)) }, nil), ReasonFuture, "ahead"},
		{"replayed version", push(t, 41, overlay, nil, nil), ReasonReplayed, "not above the committed version 41"},
		{"older version", push(t, 3, overlay, nil, nil), ReasonReplayed, "not above"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.data, testPolicy(t))
			reason, ok := ReasonOf(err)
			if !ok || reason != tc.reason || !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("Verify = %v, want %s mentioning %q", err, tc.reason, tc.detail)
			}
			if !strings.HasPrefix(err.Error(), string(tc.reason)+": ") {
				t.Fatalf("reason text %q does not start with %q", err, tc.reason)
			}
		})
	}
}

// The checks run in the documented order: an envelope wrong in several
// ways is refused for the first.
func TestVerifyChecksInOrder(t *testing.T) {
	expired := func(e *Envelope) {
		*e = *NewEnvelope(e.DeviceID, e.Version, testNow.Add(-8*24*time.Hour), testNow.Add(-time.Hour), e.KeyID, e.Config)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want Reason
	}{
		{"format before device", push(t, 1, overlay, func(e *Envelope) { e.Format, e.DeviceID = "x", "gw-9" }, otherKey(t)), ReasonFormat},
		{"device before key", push(t, 1, overlay, func(e *Envelope) { e.DeviceID, e.KeyID = "gw-9", "nobody" }, otherKey(t)), ReasonDevice},
		{"key before signature", push(t, 1, overlay, func(e *Envelope) { e.KeyID = "nobody" }, otherKey(t)), ReasonUnknownKey},
		{"signature before time", push(t, 1, overlay, expired, otherKey(t)), ReasonSignature},
		{"time before version", push(t, 1, overlay, expired, nil), ReasonExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.data, testPolicy(t))
			if r, _ := ReasonOf(err); r != tc.want {
				t.Fatalf("Verify = %v, want %s first", err, tc.want)
			}
		})
	}
}

// The signed bytes are exactly the documented lines.
func TestSignedBytesLayout(t *testing.T) {
	e := &Envelope{Format: Format, DeviceID: "gw-0001", Version: 42, IssuedAt: "2026-12-01T10:00:00Z",
		ExpiresAt: "2026-12-08T10:00:00Z", KeyID: "ops-2026", Config: ""}
	want := "cellgate-config/1\ngw-0001\n42\n2026-12-01T10:00:00Z\n2026-12-08T10:00:00Z\nops-2026\n" +
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" // SHA-256 of nothing
	if got := string(e.SignedBytes()); got != want {
		t.Fatalf("signed bytes:\n%q\nwant\n%q", got, want)
	}
}

// Marshal writes the fields in the documented order, and what it writes
// parses back to the same envelope.
func TestMarshalRoundTrips(t *testing.T) {
	data := push(t, 42, "a: \"<&>\"\n", nil, nil)
	if !bytes.HasPrefix(data, []byte(`{"format":"cellgate-config/1","device_id":"gw-0001","version":42,"issued_at":`)) {
		t.Fatalf("field order: %s", data)
	}
	if !bytes.Contains(data, []byte(`<&>`)) {
		t.Fatalf("HTML characters escaped: %s", data)
	}
	e, err := ParseEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := e.Marshal()
	if !bytes.Equal(again, data) {
		t.Fatalf("round trip:\n%s\n%s", data, again)
	}
	if !ed25519.Verify(testKey(t).Public().(ed25519.PublicKey), e.SignedBytes(), mustB64(t, e.Signature)) {
		t.Fatal("signature does not verify after a round trip")
	}
}
