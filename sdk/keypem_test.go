package sdk_test

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk"
)

// openssl runs the real openssl CLI: encrypted keys must be what OpenSSL
// writes, not what our own code thinks it writes.
func openssl(t *testing.T, dir, out string, args ...string) []byte {
	t.Helper()
	return testutil.OpenSSL(t, dir, out, args...)
}

func publicOf(t *testing.T, keyPEM []byte) crypto.PublicKey {
	t.Helper()
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatalf("no PEM block in %q", keyPEM)
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		return k.(crypto.Signer).Public()
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k.Public()
	}
	k, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("decrypted key does not parse: %v", err)
	}
	return k.Public()
}

func TestDecryptKeyPEMReadsWhatOpenSSLWrites(t *testing.T) {
	const pw = "correct horse battery staple"
	dir := t.TempDir()
	ec := openssl(t, dir, "ec.pem", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
	rsa := openssl(t, dir, "rsa.pem", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
	cases := []struct {
		name  string
		plain []byte
		args  []string
		want  string // the PEM type the encrypted file has
	}{
		{"genpkey -aes256 (PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC)", nil,
			[]string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-aes256", "-pass", "pass:" + pw}, "ENCRYPTED PRIVATE KEY"},
		{"pkcs8 -topk8 -v2 aes256", ec, []string{"pkcs8", "-topk8", "-v2", "aes256", "-in", "ec.pem", "-passout", "pass:" + pw}, "ENCRYPTED PRIVATE KEY"},
		{"pkcs8 -topk8 -v2 aes128 -v2prf hmacWithSHA1", rsa,
			[]string{"pkcs8", "-topk8", "-v2", "aes128", "-v2prf", "hmacWithSHA1", "-in", "rsa.pem", "-passout", "pass:" + pw}, "ENCRYPTED PRIVATE KEY"},
		{"pkcs8 -topk8 -v2 aes192 -v2prf hmacWithSHA512", ec,
			[]string{"pkcs8", "-topk8", "-v2", "aes192", "-v2prf", "hmacWithSHA512", "-in", "ec.pem", "-passout", "pass:" + pw}, "ENCRYPTED PRIVATE KEY"},
		{"pkcs8 -topk8 -v2 des3", ec, []string{"pkcs8", "-topk8", "-v2", "des3", "-in", "ec.pem", "-passout", "pass:" + pw}, "ENCRYPTED PRIVATE KEY"},
		{"legacy PEM: ec -aes128", ec, []string{"ec", "-in", "ec.pem", "-aes128", "-passout", "pass:" + pw}, "EC PRIVATE KEY"},
		{"legacy PEM: rsa -aes256 -traditional", rsa, []string{"rsa", "-in", "rsa.pem", "-aes256", "-traditional", "-passout", "pass:" + pw}, "RSA PRIVATE KEY"},
		{"legacy PEM: rsa -des3 -traditional", rsa, []string{"rsa", "-in", "rsa.pem", "-des3", "-traditional", "-passout", "pass:" + pw}, "RSA PRIVATE KEY"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			enc := openssl(t, dir, "enc"+string(rune('a'+i))+".pem", tc.args...)
			if block, _ := pem.Decode(enc); block == nil || block.Type != tc.want {
				t.Fatalf("openssl wrote %q, want a %s block", enc, tc.want)
			}
			if !sdk.KeyPEMEncrypted(enc) {
				t.Fatal("KeyPEMEncrypted = false for an encrypted key")
			}
			plain, err := sdk.DecryptKeyPEM(enc, pw)
			if err != nil {
				t.Fatalf("DecryptKeyPEM: %v", err)
			}
			if sdk.KeyPEMEncrypted(plain) {
				t.Fatalf("DecryptKeyPEM returned an encrypted key:\n%s", plain)
			}
			if tc.plain == nil {
				// genpkey made the key encrypted: openssl decrypts it
				// for the comparison.
				os.WriteFile(filepath.Join(dir, "pw"), []byte(pw), 0o600)
				tc.plain = openssl(t, dir, "dec.pem", "pkey", "-in", "enca.pem", "-passin", "file:pw")
			}
			got := publicOf(t, plain).(interface{ Equal(crypto.PublicKey) bool })
			if !got.Equal(publicOf(t, tc.plain)) {
				t.Fatal("the decrypted key is not the key openssl encrypted")
			}
			const wrong = "Tr0ub4dor&3"
			_, err = sdk.DecryptKeyPEM(enc, wrong)
			if !errors.Is(err, sdk.ErrKeyPassword) {
				t.Fatalf("wrong password: err = %v, want ErrKeyPassword", err)
			}
			if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), pw) {
				t.Fatalf("error shows a password: %v", err)
			}
		})
	}
}

func TestDecryptKeyPEMRefusesWhatItCannotRead(t *testing.T) {
	dir := t.TempDir()
	openssl(t, dir, "ec.pem", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
	scrypt := openssl(t, dir, "scrypt.pem", "pkcs8", "-topk8", "-scrypt", "-in", "ec.pem", "-passout", "pass:pw")
	plain, err := os.ReadFile(filepath.Join(dir, "ec.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, pw string
		key      []byte
		want     string
	}{
		{"scrypt is named", "pw", scrypt, "scrypt key derivation is not supported"},
		{"no password for an encrypted key", "", scrypt, "no key password was given"},
		{"not PEM", "pw", []byte("junk"), "no PEM block found"},
		{"damaged structure", "pw", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), "not an EncryptedPrivateKeyInfo"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sdk.DecryptKeyPEM(tc.key, tc.pw)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
	t.Run("a plain key comes back as it is", func(t *testing.T) {
		got, err := sdk.DecryptKeyPEM(plain, "ignored")
		if err != nil || string(got) != string(plain) {
			t.Fatalf("DecryptKeyPEM(plain) = %q, %v", got, err)
		}
	})
}
