package ipstack

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// encryptedClientKey returns pki's client key encrypted with password by
// the real openssl (PKCS#8 PBES2 AES-256, or legacy PEM when legacy).
func encryptedClientKey(t *testing.T, pki *plugintest.PKI, password string, legacy bool) []byte {
	t.Helper()
	enc := testutil.EncryptKeyPEM(t, pki.Client.KeyPEM, password, legacy)
	if !sdk.KeyPEMEncrypted(enc) {
		t.Fatalf("openssl left the key unencrypted:\n%s", enc)
	}
	return enc
}

// TestEncryptedKeyCarriesAMutualTLSSession: with Bundle.KeyPassword (what
// tls.key_password_file gives) an encrypted client key is decrypted in
// memory and presented: a server that requires the client certificate
// echoes data back, which it would not do for a session without it.
func TestEncryptedKeyCarriesAMutualTLSSession(t *testing.T) {
	const password = "netstack pass phrase"
	pki := plugintest.NewPKI(t, plugintest.P256)
	srv := plugintest.StartServer(t, plugintest.MutualTLS(pki, 0), plugintest.Echo)
	host, port := srv.HostPort()
	for _, legacy := range []bool{false, true} {
		name := map[bool]string{false: "PKCS#8", true: "legacy PEM"}[legacy]
		t.Run(name, func(t *testing.T) {
			tr := newTransport(t, "")
			b := sdk.Bundle{CA: pki.CA.CertPEM, Cert: pki.Client.CertPEM, Key: encryptedClientKey(t, pki, password, legacy), KeyPassword: password}
			if _, err := tr.Provision(ctxFor(t), b); err != nil {
				t.Fatalf("Provision with the right password: %v", err)
			}
			sess, err := tr.Dial(ctxFor(t), sdk.DialRequest{Host: host, Port: port})
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer sess.Close(ctxFor(t))
			msg := []byte("proved by an encrypted key")
			if err := sess.Send(ctxFor(t), msg); err != nil {
				t.Fatal(err)
			}
			var got []byte
			for len(got) < len(msg) {
				f, err := sess.Recv(ctxFor(t))
				if err != nil || f.Event != nil {
					t.Fatalf("Recv after %d bytes = %+v, %v (the server refused the client certificate?)", len(got), f, err)
				}
				got = append(got, f.Data...)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("echo = %q, want %q", got, msg)
			}
		})
	}
}

// TestEncryptedKeyRefusals: a wrong or missing password is a BundleError on
// key_password that never contains the password, and the refused bundle
// stores nothing.
func TestEncryptedKeyRefusals(t *testing.T) {
	const password = "the right one"
	pki := plugintest.NewPKI(t, plugintest.P256)
	enc := encryptedClientKey(t, pki, password, false)
	for _, tc := range []struct{ name, password, want string }{
		{"wrong password", "not the right one", "does not decrypt"},
		{"no password", "", "no password was given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTransport(t, "")
			_, err := tr.Provision(ctxFor(t), sdk.Bundle{CA: pki.CA.CertPEM, Cert: pki.Client.CertPEM, Key: enc, KeyPassword: tc.password})
			var be *sdk.BundleError
			if !errors.As(err, &be) || be.Field != "key_password" {
				t.Fatalf("Provision = %v, want a *sdk.BundleError on key_password", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if tc.password != "" && strings.Contains(err.Error(), tc.password) {
				t.Errorf("error %q contains the password", err)
			}
			if files, err := tr.ListCerts(ctxFor(t)); err != nil || len(files) != 0 {
				t.Errorf("after a refused bundle the plugin holds %v (%v), want nothing", files, err)
			}
		})
	}
}
