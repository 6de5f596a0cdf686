package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cellgate runs Main in-process and returns the exit status, stdout and
// stderr.
func cellgate(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(args, Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut})
	return code, out.String(), errOut.String()
}

// The operator's round trip without a gateway: keygen, sign, verify; and
// what each refuses.
func TestConfigKeygenSignVerify(t *testing.T) {
	dir := t.TempDir()
	ops, intruder := filepath.Join(dir, "ops"), filepath.Join(dir, "intruder")
	for _, name := range []string{ops, intruder} {
		if code, out, errOut := cellgate(t, "", "config", "keygen", "--out", name); code != 0 || !strings.Contains(out, "trusted_keys:") {
			t.Fatalf("keygen: %d\n%s%s", code, out, errOut)
		}
	}
	for name, want := range map[string]os.FileMode{ops + ".key": 0o600, ops + ".pub": 0o644} {
		fi, err := os.Stat(name)
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v, mode %v, want %v", name, err, fi.Mode().Perm(), want)
		}
	}
	if code, _, errOut := cellgate(t, "", "config", "keygen", "--out", ops); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("keygen over an existing key: %d %s", code, errOut)
	}

	overlay := filepath.Join(dir, "overlay.yaml")
	if err := os.WriteFile(overlay, []byte("uplink: {batch: {max_readings: 7}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sign := func(key, overlayFile string) (int, string, string) {
		return cellgate(t, "", "config", "sign", "--key", key, "--key-id", "ops-2026", "--version", "43", "--device", "gw-0001", "--expires", "2d", overlayFile)
	}
	code, envelope, errOut := sign(ops+".key", overlay)
	if code != 0 || !strings.HasPrefix(envelope, `{"format":"cellgate-config/1","device_id":"gw-0001","version":43,`) {
		t.Fatalf("sign: %d\n%s%s", code, envelope, errOut)
	}
	if code, out, errOut := cellgate(t, envelope, "config", "verify", "--trusted", ops+".pub", "-"); code != 0 || !strings.Contains(out, "ok: version 43 for gw-0001 signed by ops-2026") || !strings.Contains(out, "uplink.batch.max_readings") {
		t.Fatalf("verify: %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := cellgate(t, envelope, "config", "verify", "--trusted", intruder+".pub", "-"); code != 1 || !strings.Contains(errOut, "bad_signature: ") {
		t.Fatalf("verify with another key: %d %s", code, errOut)
	}
	if code, _, errOut := cellgate(t, envelope, "config", "verify", "--trusted", ops+".pub", "--device", "gw-0002", "-"); code != 1 || !strings.Contains(errOut, "wrong_device: ") {
		t.Fatalf("verify for another gateway: %d %s", code, errOut)
	}

	// Signing what every gateway would refuse is refused at once.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("tls: {ca: /tmp/evil.pem}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := sign(ops+".key", bad); code != 1 || !strings.Contains(errOut, "tls.ca may never be set remotely") {
		t.Fatalf("sign tls.ca: %d %s", code, errOut)
	}
	for _, args := range [][]string{
		{"config", "sign", "--key", ops + ".key", "--key-id", "ops 2026", "--version", "1", "--device", "gw", overlay},
		{"config", "sign", "--key", ops + ".key", "--key-id", "ops", "--device", "gw", overlay},
		{"config", "sign", "--key", ops + ".key", "--key-id", "ops", "--version", "1", "--device", "gw", "--expires", "soon", overlay},
		{"config"},
		{"config", "frobnicate"},
	} {
		if code, _, _ := cellgate(t, "", args...); code != 2 {
			t.Errorf("cellgate %v: exit %d, want 2 (usage)", args, code)
		}
	}
}
