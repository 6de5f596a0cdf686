package simcom

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

const testKeyPassword = "k3y-pass for the module"

// encryptedBundle is a bundle whose key the real openssl CLI encrypted
// (PKCS#8, AES-256-CBC), with its password.
func encryptedBundle(t *testing.T, p *plugintest.PKI) sdk.Bundle {
	t.Helper()
	enc := testutil.EncryptKeyPEM(t, p.Client.KeyPEM, testKeyPassword, false)
	return sdk.Bundle{Profile: 0, CA: p.CA.CertPEM, Cert: p.Client.CertPEM, Key: enc, KeyPassword: testKeyPassword}
}

// startEncryptedKeyModem starts the emulated SIM7600, without keypwd when
// noKeyPwd, closed when the test ends, and returns it with a PKI and a
// bundle of it whose key openssl encrypted.
func startEncryptedKeyModem(t *testing.T, noKeyPwd bool) (*modemsim.Modem, *plugintest.PKI, sdk.Bundle) {
	t.Helper()
	m, err := modemsim.Start(modemsim.Config{Model: "sim7600", Baud: -1, NoKeyPwd: noKeyPwd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	p := plugintest.NewPKI(t, plugintest.P256)
	return m, p, encryptedBundle(t, p)
}

// mutualTLSServer accepts one connection on loopback and sends the result
// of its handshake, which requires a client certificate of p's CA.
func mutualTLSServer(t *testing.T, p *plugintest.PKI) (int, <-chan error) {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{p.Server.TLSCertificate(t)}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.CertPool()}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- c.(*tls.Conn).Handshake()
	}()
	return ln.Addr().(*net.TCPAddr).Port, done
}

// TestEncryptedKeyOnFirmwareWithoutKeyPwd: a module without keypwd refuses
// an encrypted key, naming the option, before it downloads anything; with
// decrypt_key_on_host the plugin downloads the key decrypted and the
// module's TLS presents it.
func TestEncryptedKeyOnFirmwareWithoutKeyPwd(t *testing.T) {
	m, p, b := startEncryptedKeyModem(t, true)
	ctx := testCtx(t)

	d := New(SIM7600, nil)
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: m.Path()}); err != nil {
		t.Fatal(err)
	}
	_, err := d.Provision(ctx, b)
	var be *sdk.BundleError
	if !errors.As(err, &be) || be.Field != "key_password" || !strings.Contains(err.Error(), "modem.options.decrypt_key_on_host") {
		t.Fatalf("Provision = %v, want a key_password BundleError naming the option", err)
	}
	if names, err := d.ListCerts(ctx); err != nil || len(names) != 0 {
		t.Fatalf("after the refusal the modem holds %v (%v), want nothing", names, err)
	}
	d.Stop(ctx)

	d = New(SIM7600, nil)
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: m.Path(), Options: map[string]string{OptionDecryptKeyOnHost: "true"}}); err != nil {
		t.Fatal(err)
	}
	defer d.Stop(ctx)
	rep, err := d.Provision(ctx, b)
	if err != nil {
		t.Fatalf("Provision with %s: %v", OptionDecryptKeyOnHost, err)
	}
	for _, name := range rep.Downloaded {
		if name == nameFor("key", b.Key) {
			t.Fatalf("the encrypted key %s was downloaded to a module that cannot open it", name)
		}
	}
	port, handshake := mutualTLSServer(t, p)
	sess, err := d.Dial(ctx, sdk.DialRequest{Host: "127.0.0.1", Port: port, Profile: 0, Mode: sdk.DialModemTLS})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer sess.Close(ctx)
	if err := <-handshake; err != nil {
		t.Fatalf("the server refused the module's client certificate: %v", err)
	}
}

// TestEncryptedKeyGoesEncryptedToFirmwareWithKeyPwd: a module with keypwd
// gets the key as the file has it, whatever decrypt_key_on_host says.
func TestEncryptedKeyGoesEncryptedToFirmwareWithKeyPwd(t *testing.T) {
	m, p, b := startEncryptedKeyModem(t, false)
	ctx := testCtx(t)
	d := New(SIM7600, nil)
	if _, err := d.Open(ctx, sdk.ModemConfig{Port: m.Path(), Options: map[string]string{OptionDecryptKeyOnHost: "true"}}); err != nil {
		t.Fatal(err)
	}
	defer d.Stop(ctx)
	rep, err := d.Provision(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, name := range rep.Downloaded {
		found = found || name == nameFor("key", b.Key)
	}
	if !found {
		t.Fatalf("downloaded %v, want the encrypted key %s", rep.Downloaded, nameFor("key", b.Key))
	}
	port, handshake := mutualTLSServer(t, p)
	sess, err := d.Dial(ctx, sdk.DialRequest{Host: "127.0.0.1", Port: port, Profile: 0, Mode: sdk.DialModemTLS})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer sess.Close(ctx)
	if err := <-handshake; err != nil {
		t.Fatalf("the server refused the module's client certificate: %v", err)
	}
}
