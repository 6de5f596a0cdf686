package remote_test

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/remote"
)

func TestRenewLogRefusesReplaysAcrossReopens(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	now := time.Now()
	policy := remote.Policy{DeviceID: "gw-1", Trusted: map[string]ed25519.PublicKey{"ops": pub}, Now: now}
	signed := func(format string, version uint64) []byte {
		e := remote.NewRenewEnvelope("gw-1", version, now, now.Add(time.Hour), "ops")
		e.Format = format
		e.Sign(key)
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	log, err := remote.OpenRenewLog(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := log.Verify(signed(remote.RenewFormat, 3), policy); err != nil {
		t.Fatalf("a good request: %v", err)
	}
	again, _ := remote.OpenRenewLog(dir)
	for name, tc := range map[string]struct {
		data []byte
		want remote.Reason
	}{
		"a replay after a reopen":    {signed(remote.RenewFormat, 3), remote.ReasonReplayed},
		"a configuration envelope":   {signed(remote.Format, 4), remote.ReasonFormat},
		"a request for another gate": {signedFor(t, key, "gw-2", 5), remote.ReasonDevice},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := again.Verify(tc.data, policy)
			if r, ok := remote.ReasonOf(err); !ok || r != tc.want {
				t.Fatalf("Verify: %v, want %s", err, tc.want)
			}
		})
	}
	if v, err := again.Last(); err != nil || v != 3 {
		t.Fatalf("Last = %d, %v; want 3", v, err)
	}
}

func signedFor(t *testing.T, key ed25519.PrivateKey, device string, version uint64) []byte {
	t.Helper()
	now := time.Now()
	e := remote.NewRenewEnvelope(device, version, now, now.Add(time.Hour), "ops")
	e.Sign(key)
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
