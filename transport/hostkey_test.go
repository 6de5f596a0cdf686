package transport

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/internal/devpki"
	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk"
)

// TestHostTLSDecryptsAnEncryptedKey: host TLS presents a key that openssl
// encrypted (PKCS#8 and legacy PEM), decrypted in memory with the bundle's
// password, and a server requiring client certificates accepts it; a wrong
// password is a CredentialError on "key" that does not show the password.
func TestHostTLSDecryptsAnEncryptedKey(t *testing.T) {
	const pw = "host-tls key password"
	pki, err := devpki.New(devpki.P256)
	if err != nil {
		t.Fatal(err)
	}
	for _, legacy := range []bool{false, true} {
		name := map[bool]string{false: "PKCS#8", true: "legacy PEM"}[legacy]
		t.Run(name, func(t *testing.T) {
			key := testutil.EncryptKeyPEM(t, pki.Client.KeyPEM, pw, legacy)
			b := sdk.Bundle{CA: pki.CA.CertPEM, Cert: pki.Client.CertPEM, Key: key, KeyPassword: pw}
			c, err := HostTLSConfig(b, "127.0.0.1")
			if err != nil {
				t.Fatalf("HostTLSConfig: %v", err)
			}
			handshake(t, pki, c)

			b.KeyPassword = "not " + pw
			_, err = HostTLSConfig(b, "127.0.0.1")
			var ce *CredentialError
			if !errors.As(err, &ce) || ce.Field != "key" || !errors.Is(err, sdk.ErrKeyPassword) {
				t.Fatalf("wrong password: %v, want a CredentialError on key wrapping sdk.ErrKeyPassword", err)
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

// handshake runs c against a server of pki that requires a client
// certificate and fails t unless both sides complete.
func handshake(t *testing.T, pki *devpki.PKI, c *tls.Config) {
	t.Helper()
	server := pki.ServerTLS()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		done <- conn.(*tls.Conn).Handshake()
	}()
	conn, err := tls.Dial("tcp", ln.Addr().(*net.TCPAddr).String(), c)
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	defer conn.Close()
	if err := <-done; err != nil {
		t.Fatalf("the server refused the client: %v", err)
	}
}
