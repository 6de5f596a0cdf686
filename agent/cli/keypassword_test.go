package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// TestProvisionKeyPasswordFile: `modem certs provision --key-password-file`
// reads the password by the agent's rule for tls.key_password_file
// (certcheck.ReadKeyPassword): a file group or others can read is refused
// naming it, one trailing newline is dropped and no more, and the password
// itself never shows.
func TestProvisionKeyPasswordFile(t *testing.T) {
	const password = "correct horse battery"
	m := startModem(t)
	dir := pkiFiles(t, plugintest.NewPKI(t, plugintest.P256))
	key := filepath.Join(dir, "client.key")
	testutil.EncryptKeyFile(t, key, password, false)
	provision := []string{"modem", "certs", "provision", "--json", "--model", "sim7600", "--port", m.Path(),
		"--ca", filepath.Join(dir, "ca.pem"), "--cert", filepath.Join(dir, "client.pem"), "--key", key}
	pwFile := func(t *testing.T, content string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "key.pw")
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name, content string
		mode          os.FileMode
		wantErr       string // empty: provisioning succeeds
	}{
		// A flag has no tls.allow_readable_key: the hint is chmod only.
		{"readable by others", password + "\n", 0o644, "mode 0644 is readable by group/others; chmod 600 it\n"},
		{"empty", "\n", 0o600, "is empty, want the key's password"},
		{"two trailing newlines", password + "\n\n", 0o600, "the key password does not decrypt the private key"},
		{"one trailing CRLF", password + "\r\n", 0o600, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := pwFile(t, c.content, c.mode)
			out, errOut, code := cellgate(t, "", append(provision, "--key-password-file", p)...)
			if strings.Contains(out+errOut, "battery") {
				t.Fatalf("the password shows: stdout %q, stderr %q", out, errOut)
			}
			if c.wantErr == "" {
				var r struct {
					Downloaded []string `json:"downloaded"`
					Kept       []string `json:"kept"`
				}
				if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || len(r.Downloaded)+len(r.Kept) != 3 {
					t.Fatalf("exit %d, stdout %q, stderr %q: want the bundle provisioned", code, out, errOut)
				}
				return
			}
			if code == 0 || !strings.Contains(errOut, c.wantErr) {
				t.Fatalf("exit %d, stderr %q: want an error containing %q", code, errOut, c.wantErr)
			}
			if c.mode != 0o600 && !strings.Contains(errOut, "--key-password-file: "+p+": ") {
				t.Errorf("stderr %q: want the flag and the path named", errOut)
			}
			if strings.Contains(errOut, "allow_readable_key") {
				t.Errorf("stderr %q suggests a configuration setting to a command-line user", errOut)
			}
		})
	}
}
