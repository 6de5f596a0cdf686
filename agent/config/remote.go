package config

import (
	"cmp"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// This file holds the configuration's rules for remote configuration: the
// policy keys (remote_config.*) and the topics, checked like every other
// key. What a push may do with them is package agent/remote's.

// KeyIDPattern is what a key ID (remote_config.trusted_keys' names, an
// envelope's key_id) may be: it is signed as one line, so it can hold no
// line break.
var KeyIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// DeviceIDPattern is what device_id may be.
var DeviceIDPattern = deviceIDRE

// ParsePublicKey decodes a trusted key as remote_config.trusted_keys holds
// it: standard padded base64 of the raw 32-byte Ed25519 public key.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s is not base64 (standard alphabet, padded): want the raw 32-byte Ed25519 public key, as `cellgate config keygen` writes it", show(s))
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%s decodes to %d bytes: an Ed25519 public key is %d", show(s), len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// remoteConfig checks the remote configuration policy and its topics.
func (v *validator) remoteConfig(r RemoteConfig, m *MQTT) {
	const p = "remote_config."
	for _, id := range sortedMapKeys(r.TrustedKeys) {
		path := p + "trusted_keys." + id
		if !KeyIDPattern.MatchString(id) {
			v.failf(path, "%s is not a key ID (want 1 to 64 letters, digits, '.', '_' or '-')", show(id))
		}
		if _, err := ParsePublicKey(r.TrustedKeys[id]); err != nil {
			v.failf(path, "%v", err)
		}
	}
	if r.Enabled && len(r.TrustedKeys) == 0 {
		v.fail(p+"trusted_keys", []string{p + "enabled"}, "is required when remote_config.enabled is true: name at least one key (`cellgate config keygen` makes one)")
	}
	for _, pattern := range r.Allow {
		v.allowPattern(p+"allow", pattern)
	}
	if r.Confirm < time.Second || r.Confirm > time.Hour {
		v.failf(p+"confirm", "%s is out of range (want 1s to 1h)", formatDuration(r.Confirm))
	}
	if r.Enabled && r.Dir == "" {
		v.required(p+"dir", "name the directory that keeps the accepted remote configuration")
	}
	if m == nil {
		return
	}
	// A topic set while remote configuration is off would be a promise the
	// agent does not keep: it is refused rather than silently ignored.
	const up = "uplink.mqtt."
	for _, k := range []struct{ key, val string }{{"config_topic", m.ConfigTopic}, {"status_topic", m.StatusTopic}} {
		switch {
		case k.val == "":
		case !r.Enabled:
			v.fail(up+k.key, []string{p + "enabled"}, "is set but remote configuration is off; set remote_config.enabled: true, or leave it empty")
		default:
			v.topic(up+k.key, k.val, false)
		}
	}
	if r.Enabled && cmp.Or(m.ConfigTopic, DefaultConfigTopic) == cmp.Or(m.StatusTopic, DefaultStatusTopic) {
		v.failf(up+"status_topic", "%q is also uplink.mqtt.config_topic; the status needs its own topic", cmp.Or(m.StatusTopic, DefaultStatusTopic))
	}
}

// allowPattern checks one remote_config.allow entry: a key path, or a
// section path followed by ".*" for every key in it.
func (v *validator) allowPattern(path, pattern string) {
	want := "(want a key such as uplink.mqtt.topic, or a section's keys such as uplink.batch.*)"
	base, all := strings.CutSuffix(pattern, ".*")
	t, ok := typeAt(strings.Split(base, "."))
	switch {
	case base == "" || !ok:
		v.failf(path, "%s is not a configuration key %s", show(pattern), want)
		return
	case all:
		if _, isSection := sectionType(t); !isSection && !isStringMap(t) {
			v.failf(path, "%s: %s is a key, not a section %s", show(pattern), base, want)
			return
		}
	default:
		if _, isSection := sectionType(t); isSection {
			v.failf(path, "%s is a section: write %s.* to allow every key in it", show(pattern), pattern)
			return
		}
	}
	top, _, _ := strings.Cut(base, ".")
	if slices.Contains(NeverRemote, top) {
		v.warn(path, "%s has no effect: %s is never set remotely, whatever allow says", show(pattern), top)
	}
}
