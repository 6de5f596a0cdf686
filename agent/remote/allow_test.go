package remote

import (
	"slices"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/agent/config"
)

func TestAllowed(t *testing.T) {
	allow := config.DefaultRemoteAllow
	for path, want := range map[string]bool{
		"inputs.http.listen":        true,
		"inputs":                    true, // the section itself, set to nothing
		"uplink.batch.max_readings": true,
		"uplink.mqtt.topic":         true,
		"uplink.mqtt.keepalive":     true,
		"uplink.mqtt.broker":        false,
		"uplink.mqtt":               false,
		"spool.max_bytes":           true,
		"spool.dir":                 false,
		"log.level":                 true,
		"logging.level":             false,
		"inputsx.http":              false,
	} {
		if got := Allowed(path, allow); got != want {
			t.Errorf("Allowed(%q) = %v, want %v", path, got, want)
		}
	}
	// The never-allowed keys win over any allow list.
	wide := []string{"device_id", "modem.*", "plugins.*", "plugins.sha256.*", "tls.*", "tls.ca", "remote_config.*", "uplink.*"}
	for _, path := range []string{"device_id", "modem.port", "plugins.sha256.sim7600", "tls.ca", "remote_config.trusted_keys.evil"} {
		if Allowed(path, wide) {
			t.Errorf("Allowed(%q) with %v: a never-allowed key got through", path, wide)
		}
	}
	if !Allowed("uplink.mqtt.broker", wide) {
		t.Error("uplink.* does not allow uplink.mqtt.broker")
	}
}

func TestOverlayKeys(t *testing.T) {
	got := OverlayKeys("uplink:\n  batch: {max_readings: 7, max_delay: 1s}\n  mqtt: {topic: t}\ninputs: {}\nlog: ~\n1: x\n")
	want := []string{"1", "inputs", "log", "uplink.batch.max_delay", "uplink.batch.max_readings", "uplink.mqtt.topic"}
	if !slices.Equal(got, want) {
		t.Fatalf("OverlayKeys = %v, want %v", got, want)
	}
	if got := OverlayKeys("[not, a, section]"); got != nil {
		t.Fatalf("OverlayKeys of a list = %v, want nil (validation reports it)", got)
	}
}

// A disallowed key refuses the push and names every offending key.
func TestCheckAllowed(t *testing.T) {
	if err := CheckAllowed(overlay, config.DefaultRemoteAllow); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ overlay, mention string }{
		{"tls: {ca: /tmp/evil.pem}\n", "tls.ca may never be set remotely"},
		{"plugins:\n  sha256: {sim7600: " + strings.Repeat("0", 64) + "}\n", "plugins.sha256.sim7600 may never be set remotely"},
		{"uplink: {mqtt: {broker: 'mqtts://evil:8883'}}\n", "uplink.mqtt.broker not in remote_config.allow"},
		{"remote_config: {enabled: false}\nspool: {dir: /tmp}\n", "remote_config.enabled may never be set remotely; spool.dir not in remote_config.allow"},
	} {
		err := CheckAllowed(tc.overlay, config.DefaultRemoteAllow)
		if r, _ := ReasonOf(err); r != ReasonNotAllowed || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("CheckAllowed(%q) = %v, want not_allowed mentioning %q", tc.overlay, err, tc.mention)
		}
	}
}
