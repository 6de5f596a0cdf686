package modemsim

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/internal/devpki"
	"github.com/cellgate/cellgate/internal/testutil"
)

// opensslPKCS8 encrypts keyPEM with the real openssl CLI, as an operator
// would (`openssl pkcs8 -topk8 -v2 <cipher>`).
func opensslPKCS8(t *testing.T, keyPEM []byte, pwd string, args ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in.pem"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return testutil.OpenSSL(t, dir, "out.pem", append([]string{"pkcs8", "-topk8", "-in", "in.pem", "-passout", "pass:" + pwd}, args...)...)
}

// TestTLSEncryptedPKCS8Key: keypwd unlocks an encrypted PKCS#8 key as the
// module does, and a wrong or missing keypwd fails the open with the
// handshake error (15), as for legacy encrypted PEM.
func TestTLSEncryptedPKCS8Key(t *testing.T) {
	ca := newTestCA(t, "trusted CA")
	srv := startGoTLSServer(t, &tls.Config{Certificates: []tls.Certificate{issue(t, ca, devpki.Leaf{CommonName: "127.0.0.1"}).TLSCertificate()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.CertPool()})
	cli := issue(t, ca, devpki.Leaf{CommonName: "gw-1"})

	e := newTLSEnv(t, Config{})
	e.h.download("ca.pem", ca.CertPEM)
	e.h.download("cli.pem", cli.CertPEM)
	e.h.download("k_aes256.pem", opensslPKCS8(t, cli.KeyPEM, "s3cret", "-v2", "aes256"))
	e.h.download("k_aes128_sha1.pem", opensslPKCS8(t, cli.KeyPEM, "s3cret", "-v2", "aes128", "-v2prf", "hmacWithSHA1"))
	e.h.download("k_des3.pem", opensslPKCS8(t, cli.KeyPEM, "s3cret", "-v2", "des3"))
	e.h.download("k_scrypt.pem", opensslPKCS8(t, cli.KeyPEM, "s3cret", "-scrypt"))
	base := []string{`"cacert",0,"ca.pem"`, `"clientcert",0,"cli.pem"`, `"authmode",0,2`}

	e.openWithKeys(srv, base, []keyCase{
		{"AES-256-CBC, PBKDF2-HMAC-SHA256, right keypwd", "k_aes256.pem", "s3cret", "+CCHOPEN: 0,0"},
		{"AES-128-CBC, PBKDF2-HMAC-SHA1, right keypwd", "k_aes128_sha1.pem", "s3cret", "+CCHOPEN: 0,0"},
		{"DES-EDE3-CBC, right keypwd", "k_des3.pem", "s3cret", "+CCHOPEN: 0,0"},
		{"wrong keypwd", "k_aes256.pem", "s3cret!", "+CCHOPEN: 0,15"},
		{"no keypwd", "k_aes256.pem", "", "+CCHOPEN: 0,15"},
		{"scrypt, which the module cannot derive", "k_scrypt.pem", "s3cret", "+CCHOPEN: 0,15"},
	})
}

// TestNoKeyPwdFirmware: firmware without keypwd does not list it in
// AT+CSSLCFG=? and refuses to set it; the other settings still work.
func TestNoKeyPwdFirmware(t *testing.T) {
	_, h := newHostModem(t, Config{Model: "sim7600", NoKeyPwd: true})
	for _, l := range h.ok("AT+CSSLCFG=?") {
		if strings.Contains(l, "keypwd") {
			t.Fatalf("AT+CSSLCFG=? lists %q on firmware without keypwd", l)
		}
	}
	h.fails(`AT+CSSLCFG="keypwd",0,"s3cret"`, "ERROR")
	h.ok(`AT+CSSLCFG="authmode",0,2`)

	_, cur := newHostModem(t, Config{Model: "sim7600"})
	if !slices.ContainsFunc(cur.ok("AT+CSSLCFG=?"), func(l string) bool { return strings.Contains(l, `"keypwd"`) }) {
		t.Fatal("current firmware does not list keypwd")
	}
	cur.ok(`AT+CSSLCFG="keypwd",0,"s3cret"`)
}
