package cli

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/agent/pki"
	"github.com/cellgate/cellgate/agent/remote"
)

// TestPKIAndCertCommands: help and usage errors follow the conventions,
// pki init makes a CA once, cert sign makes a renewal request a gateway
// accepts, cert renew says when no agent answers.
func TestPKIAndCertCommands(t *testing.T) {
	for _, args := range [][]string{{"pki", "--help"}, {"pki", "init", "-h"}, {"pki", "serve", "--help"}, {"cert", "--help"}, {"cert", "renew", "--help"}, {"cert", "sign", "-h"}} {
		code, out, errOut := cellgate(t, "", args...)
		if code != 0 || errOut != "" || !strings.Contains(out, "Usage:") || !strings.Contains(out, "Examples:") {
			t.Errorf("cellgate %v: exit %d, stderr %q; want 0 and the help", args, code, errOut)
		}
	}
	dir := t.TempDir()
	for _, args := range [][]string{
		{"pki"}, {"pki", "frob"}, {"pki", "init"}, {"pki", "init", "--dir", dir, "--key-type", "p999"},
		{"pki", "serve", "--broker", "http://h:1", "--dir", dir}, {"pki", "serve", "--broker", "mqtts://h:1", "--dir", dir, "--validity", "400d"},
		{"cert"}, {"cert", "renew", "extra"}, {"cert", "sign", "--key", "k", "--key-id", "ops"},
	} {
		code, out, errOut := cellgate(t, "", args...)
		if code != 2 || out != "" || strings.Count(errOut, "\n") != 1 {
			t.Errorf("cellgate %v: exit %d, stdout %q, stderr %q; want exit 2 and one line", args, code, out, errOut)
		}
	}
	ca := filepath.Join(dir, "ca")
	if code, out, errOut := cellgate(t, "", "pki", "init", "--dir", ca, "--name", "test fleet"); code != 0 || !strings.Contains(out, "ca.key (secret, mode 0600)") {
		t.Fatalf("pki init: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := pki.Load(ca); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := cellgate(t, "", "pki", "init", "--dir", ca); code != 1 || !strings.Contains(errOut, "never overwritten") {
		t.Fatalf("a second pki init: exit %d, %q; want 1 and a refusal", code, errOut)
	}
	if code, _, errOut := cellgate(t, "", "cert", "renew", "--addr", "127.0.0.1:1", "--wait", "0"); code != 1 || !strings.Contains(errOut, "no agent answers at http://127.0.0.1:1") {
		t.Fatalf("cert renew without an agent: exit %d, %q", code, errOut)
	}
	key := filepath.Join(dir, "ops")
	if code, _, errOut := cellgate(t, "", "config", "keygen", "--out", key); code != 0 {
		t.Fatalf("keygen: %s", errOut)
	}
	code, out, errOut := cellgate(t, "", "cert", "sign", "--key", key+".key", "--key-id", "ops", "--version", "3", "--device", "gw-1")
	if code != 0 {
		t.Fatalf("cert sign: exit %d, %s", code, errOut)
	}
	pubText, _ := os.ReadFile(key + ".pub")
	pub, err := remote.ParsePublicKeyFile(pubText)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := remote.OpenRenewLog(filepath.Join(dir, "state"))
	e, err := log.Verify([]byte(out), remote.Policy{DeviceID: "gw-1", Trusted: map[string]ed25519.PublicKey{"ops": pub}, Now: time.Now()})
	if err != nil || e.Format != remote.RenewFormat || e.Version != 3 {
		t.Fatalf("the signed request: %v, %+v", err, e)
	}
}
