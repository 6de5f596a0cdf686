package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// OpenSSL runs the real openssl CLI in dir with args and returns the file
// it wrote to out (passed as -out), for tests that need what OpenSSL makes
// (encrypted keys) rather than what our own code believes it makes. It
// fails t when openssl is missing (scripts/deps.sh installs it) or fails.
func OpenSSL(t testing.TB, dir, out string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl not installed: run make deps")
	}
	cmd := exec.Command("openssl", append(args, "-out", out)...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	data, err := os.ReadFile(filepath.Join(dir, out))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// EncryptKeyFile replaces the PEM private key at path by the same key
// encrypted with password by openssl, mode 0600: PKCS#8 with PBES2 and
// AES-256-CBC (`openssl pkcs8 -topk8 -v2 aes256`), or, when legacy is
// true, legacy PEM encryption (`openssl pkey -aes256 -traditional`,
// "Proc-Type: 4,ENCRYPTED").
func EncryptKeyFile(t testing.TB, path, password string, legacy bool) {
	t.Helper()
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"pkcs8", "-topk8", "-v2", "aes256"}
	if legacy {
		args = []string{"pkey", "-aes256", "-traditional"}
	}
	enc := OpenSSL(t, dir, "enc.pem", append(args, "-in", path, "-passout", "file:"+pw)...)
	if err := os.WriteFile(path, enc, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
}

// EncryptKeyPEM returns the PEM private key keyPEM encrypted with password
// by openssl, as EncryptKeyFile writes it, for tests that need the bytes
// rather than a file.
func EncryptKeyPEM(t testing.TB, keyPEM []byte, password string, legacy bool) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "client.key")
	if err := os.WriteFile(path, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	EncryptKeyFile(t, path, password, legacy)
	enc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}
