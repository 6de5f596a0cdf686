// Package remote is cellgate's remote configuration: signed, versioned
// overlays of the configuration (pushes), checked in a fixed order,
// applied live by the agent and kept only if the uplink proves healthy
// within a confirm window. docs/remote-config.md is the public description
// of the envelope and its signature; this package is its one
// implementation in Go.
//
// The parts, in the order a push meets them: ParseEnvelope and Verify (the
// envelope, its signature and its version), CheckAllowed (which keys it
// sets), the Target's validation of the merged configuration, then the
// Manager's apply and confirm window, with the Store keeping the committed
// version, the accepted overlay (remote.yaml) and any pending push on disk.
package remote

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Format is the envelope format this package reads and writes.
const Format = "cellgate-config/1"

// MaxEnvelopeBytes bounds an envelope: larger ones are refused unread.
const MaxEnvelopeBytes = 64 << 10

// MaxClockSkew is how far in the future of the gateway's clock an
// envelope's issued_at may be: gateways' clocks drift, and a gateway that
// just booted without network may not have synchronised yet.
const MaxClockSkew = 5 * time.Minute

// AnyDevice in device_id addresses every gateway that trusts the key.
const AnyDevice = "*"

// Envelope is one push, as JSON:
//
//	{"format":"cellgate-config/1","device_id":"gw-0001","version":42,
//	 "issued_at":"2026-12-01T10:00:00Z","expires_at":"2026-12-08T10:00:00Z",
//	 "key_id":"ops-2026","config":"<YAML overlay>","signature":"<base64>"}
//
// Every field is required and no other is allowed. The times are RFC 3339
// and are signed exactly as written.
type Envelope struct {
	Format    string `json:"format"`
	DeviceID  string `json:"device_id"`
	Version   uint64 `json:"version"`
	IssuedAt  string `json:"issued_at"`
	ExpiresAt string `json:"expires_at"`
	KeyID     string `json:"key_id"`
	// Config is the YAML text of the overlay: the keys it sets, nested as
	// in the configuration file.
	Config string `json:"config"`
	// Signature is Ed25519 over SignedBytes, standard base64 with padding.
	Signature string `json:"signature"`

	// issued and expires are IssuedAt and ExpiresAt parsed by ParseEnvelope.
	issued, expires time.Time
}

// SignedBytes returns what the signature covers: the lines format,
// device_id, version (decimal), issued_at, expires_at and key_id, each
// followed by "\n", then the lowercase hex SHA-256 of config's UTF-8
// bytes (no newline after it). A device_id or key_id that holds a line
// break can never pass Verify (it must equal this gateway's ID or "*",
// and name a trusted key), so the lines cannot be shifted.
func (e *Envelope) SignedBytes() []byte {
	sum := sha256.Sum256([]byte(e.Config))
	var b bytes.Buffer
	for _, line := range []string{e.Format, e.DeviceID, strconv.FormatUint(e.Version, 10), e.IssuedAt, e.ExpiresAt, e.KeyID} {
		b.WriteString(line)
		b.WriteByte('\n')
	}
	b.WriteString(hex.EncodeToString(sum[:]))
	return b.Bytes()
}

// ConfigSHA256 returns the lowercase hex SHA-256 of the overlay, the last
// line of SignedBytes; the Store records it.
func (e *Envelope) ConfigSHA256() string {
	sum := sha256.Sum256([]byte(e.Config))
	return hex.EncodeToString(sum[:])
}

// Sign sets e.Signature with key over e.SignedBytes().
func (e *Envelope) Sign(key ed25519.PrivateKey) {
	e.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, e.SignedBytes()))
}

// Marshal renders e as the JSON of the format, fields in their documented
// order.
func (e *Envelope) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// NewEnvelope returns an unsigned envelope issued at issued and valid until
// expires, the times written in UTC to the second as RFC 3339
// ("2026-12-01T10:00:00Z").
func NewEnvelope(deviceID string, version uint64, issued, expires time.Time, keyID, config string) *Envelope {
	const layout = "2006-01-02T15:04:05Z"
	e := &Envelope{
		Format: Format, DeviceID: deviceID, Version: version,
		IssuedAt: issued.UTC().Format(layout), ExpiresAt: expires.UTC().Format(layout),
		KeyID: keyID, Config: config,
	}
	e.issued, e.expires = issued.UTC().Truncate(time.Second), expires.UTC().Truncate(time.Second)
	return e
}

// Issued and Expires are the envelope's times, parsed.
func (e *Envelope) Issued() time.Time  { return e.issued }
func (e *Envelope) Expires() time.Time { return e.expires }

// Reason is the stable first word of a refusal or rollback, for fleets to
// act on; the status topic's reason is "<Reason>: <detail>".
type Reason string

// The reasons, in the order Verify checks (then the Manager's).
const (
	ReasonTooLarge   Reason = "too_large"          // over MaxEnvelopeBytes
	ReasonMalformed  Reason = "malformed"          // not the JSON object of the format
	ReasonFormat     Reason = "unsupported_format" // format is not Format
	ReasonDevice     Reason = "wrong_device"       // device_id is another gateway's
	ReasonUnknownKey Reason = "unknown_key"        // key_id is not in remote_config.trusted_keys
	ReasonSignature  Reason = "bad_signature"      // the signature does not verify
	ReasonExpired    Reason = "expired"            // expires_at has passed
	ReasonFuture     Reason = "issued_in_future"   // issued_at is more than MaxClockSkew ahead
	ReasonReplayed   Reason = "replayed"           // version is not above the committed one
	ReasonNotAllowed Reason = "not_allowed"        // the overlay sets a key the policy does not allow
	ReasonInvalid    Reason = "invalid"            // the merged configuration does not validate
	ReasonBusy       Reason = "busy"               // another push is in its confirm window
	ReasonStorage    Reason = "storage"            // the push could not be written to disk

	// Rollbacks.
	ReasonUnhealthy    Reason = "unhealthy"     // no publish acknowledged within the confirm window
	ReasonApplyFailed  Reason = "apply_failed"  // the agent could not take the configuration
	ReasonCommitFailed Reason = "commit_failed" // the commit could not be written to disk
	ReasonRestarted    Reason = "restarted"     // the agent stopped inside the confirm window
)

// Refusal is why a push was refused (or rolled back): a Reason and the
// details an operator needs. Its Error text is the status's reason.
type Refusal struct {
	Reason Reason
	Detail string
}

func (r *Refusal) Error() string { return string(r.Reason) + ": " + r.Detail }

func refuse(reason Reason, format string, args ...any) *Refusal {
	return &Refusal{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the Reason of err, if it is (or wraps) a *Refusal.
func ReasonOf(err error) (Reason, bool) {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason, true
	}
	return "", false
}

var versionRE = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)

// envelopeFields are the fields of the format, in order.
var envelopeFields = []string{"format", "device_id", "version", "issued_at", "expires_at", "key_id", "config", "signature"}

// ParseEnvelope reads an envelope: at most MaxEnvelopeBytes of UTF-8, one
// JSON object with exactly the fields of the format, each once and of its
// type (version a whole number from 1, the times RFC 3339), and nothing
// after it. It fails with a *Refusal (ReasonTooLarge or ReasonMalformed).
func ParseEnvelope(data []byte) (*Envelope, error) {
	if len(data) > MaxEnvelopeBytes {
		return nil, refuse(ReasonTooLarge, "the envelope is %d bytes; the limit is %d", len(data), MaxEnvelopeBytes)
	}
	if !utf8.Valid(data) {
		return nil, refuse(ReasonMalformed, "the envelope is not UTF-8")
	}
	raw, err := objectFields(data)
	if err != nil {
		return nil, refuse(ReasonMalformed, "%v", err)
	}
	var e Envelope
	strs := map[string]*string{"format": &e.Format, "device_id": &e.DeviceID, "issued_at": &e.IssuedAt,
		"expires_at": &e.ExpiresAt, "key_id": &e.KeyID, "config": &e.Config, "signature": &e.Signature}
	for _, name := range envelopeFields {
		v, ok := raw[name]
		if !ok {
			return nil, refuse(ReasonMalformed, "%s is missing", name)
		}
		if name == "version" {
			if !versionRE.Match(v) {
				return nil, refuse(ReasonMalformed, "version: %s is not a whole number from 1 (written without sign, fraction or exponent)", clip(string(v)))
			}
			if e.Version, err = strconv.ParseUint(string(v), 10, 64); err != nil {
				return nil, refuse(ReasonMalformed, "version: %v", err)
			}
			continue
		}
		if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, strs[name]) != nil {
			return nil, refuse(ReasonMalformed, "%s: want a string, found %s", name, clip(string(v)))
		}
	}
	for name := range raw {
		if _, known := strs[name]; !known && name != "version" {
			return nil, refuse(ReasonMalformed, "unknown field %q (the format has %s)", clip(name), strings.Join(envelopeFields, ", "))
		}
	}
	if e.issued, err = time.Parse(time.RFC3339, e.IssuedAt); err != nil {
		return nil, refuse(ReasonMalformed, "issued_at: %q is not an RFC 3339 time such as 2026-12-01T10:00:00Z", clip(e.IssuedAt))
	}
	if e.expires, err = time.Parse(time.RFC3339, e.ExpiresAt); err != nil {
		return nil, refuse(ReasonMalformed, "expires_at: %q is not an RFC 3339 time such as 2026-12-08T10:00:00Z", clip(e.ExpiresAt))
	}
	return &e, nil
}

// objectFields splits one JSON object into its fields' raw values,
// refusing duplicates (parsers disagree on which one wins) and anything
// after the object.
func objectFields(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not JSON: %v", err)
		}
		name, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("not JSON: %v", err)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("field %q appears twice", clip(name))
		}
		out[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("not JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return out, nil
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// Policy is what Verify checks an envelope against.
type Policy struct {
	// DeviceID is this gateway's device_id.
	DeviceID string
	// Trusted are the keys of remote_config.trusted_keys, by key ID.
	Trusted map[string]ed25519.PublicKey
	// Now is the gateway's clock.
	Now time.Time
	// Committed is the version last committed (0: none yet).
	Committed uint64
	// Format is the format expected; empty means Format. A renewal
	// request (renew.go) is checked by the same rules as RenewFormat.
	Format string
}

// Verify runs the checks that need nothing but the envelope and the
// policy, in this order, stopping at the first that fails: size and JSON
// shape, format, device_id (this gateway's or "*"), key_id (trusted),
// signature, expiry and issued_at (at most MaxClockSkew ahead), version
// (above the committed one). It returns the envelope, or a *Refusal; a
// refused envelope is returned too when it could be parsed, so the
// refusal can name its version.
func Verify(data []byte, p Policy) (*Envelope, error) {
	e, err := ParseEnvelope(data)
	if err != nil {
		return nil, err
	}
	if want := cmp.Or(p.Format, Format); e.Format != want {
		return e, refuse(ReasonFormat, "format %q is not %s", clip(e.Format), want)
	}
	if e.DeviceID != p.DeviceID && e.DeviceID != AnyDevice {
		return e, refuse(ReasonDevice, "device_id %q is not this gateway (%s) nor %q", clip(e.DeviceID), p.DeviceID, AnyDevice)
	}
	key, ok := p.Trusted[e.KeyID]
	if !ok {
		return e, refuse(ReasonUnknownKey, "key_id %q is not in remote_config.trusted_keys", clip(e.KeyID))
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(e.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return e, refuse(ReasonSignature, "the signature is not %d bytes of standard, padded base64", ed25519.SignatureSize)
	}
	if !ed25519.Verify(key, e.SignedBytes(), sig) {
		return e, refuse(ReasonSignature, "the signature does not verify with key %s", e.KeyID)
	}
	if !p.Now.Before(e.expires) {
		return e, refuse(ReasonExpired, "expired at %s; the gateway's clock says %s", e.ExpiresAt, p.Now.UTC().Format(time.RFC3339))
	}
	if e.issued.After(p.Now.Add(MaxClockSkew)) {
		return e, refuse(ReasonFuture, "issued_at %s is more than %s ahead of the gateway's clock (%s)", e.IssuedAt, MaxClockSkew, p.Now.UTC().Format(time.RFC3339))
	}
	if e.Version <= p.Committed {
		return e, refuse(ReasonReplayed, "version %d is not above the committed version %d", e.Version, p.Committed)
	}
	return e, nil
}
