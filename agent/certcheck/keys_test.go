package certcheck_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/agent/certcheck"
)

// TestReadablePasswordFileHintFitsTheCaller: a key password file group or
// others can read is refused by both readers, naming the path and mode;
// the configuration's reader suggests the setting that allows it, and the
// strict reader (command-line flags, which have no such setting) suggests
// only chmod 600.
func TestReadablePasswordFileHintFitsTheCaller(t *testing.T) {
	p := filepath.Join(t.TempDir(), "key.pw")
	if err := os.WriteFile(p, []byte("secret words\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		read func() (string, error)
		want string
	}{
		{"configuration", func() (string, error) { return certcheck.ReadKeyPassword(p, false) },
			p + ": mode 0640 is readable by group/others; chmod 600 it or set tls.allow_readable_key: true"},
		{"command-line flag", func() (string, error) { return certcheck.ReadStrictKeyPassword(p) },
			p + ": mode 0640 is readable by group/others; chmod 600 it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pw, err := c.read()
			if err == nil || err.Error() != c.want || pw != "" {
				t.Fatalf("reading a 0640 password file = %q, %v; want the error %q", pw, err, c.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
	// The operator's setting lets the configuration's reader use the file.
	if pw, err := certcheck.ReadKeyPassword(p, true); err != nil || pw != "secret words" {
		t.Fatalf("ReadKeyPassword with allowReadable = %q, %v; want the password", pw, err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if pw, err := certcheck.ReadStrictKeyPassword(p); err != nil || pw != "secret words" {
		t.Fatalf("ReadStrictKeyPassword of a 0600 file = %q, %v; want the password", pw, err)
	}
}
