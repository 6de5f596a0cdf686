package atkit_test

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/atkit"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

var testStore = atkit.Store{Prefix: "cg", MaxFileBytes: 4096, Profiles: 6}

func TestStoreCheckNamesFilesAfterTheirContent(t *testing.T) {
	pki := plugintest.NewPKI(t, plugintest.P256)
	b := sdk.Bundle{Profile: 5, CA: pki.CA.CertPEM, Cert: pki.Client.CertPEM, Key: pki.Client.KeyPEM}
	c, err := testStore.Check(b, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := []atkit.File{
		{Kind: atkit.KindCA, Name: sdk.ContentName("cgca", b.CA), Data: b.CA},
		{Kind: atkit.KindCert, Name: sdk.ContentName("cgcrt", b.Cert), Data: b.Cert},
		{Kind: atkit.KindKey, Name: sdk.ContentName("cgkey", b.Key), Data: b.Key},
	}
	got := c.Files()
	if len(got) != 3 || c.Checked.Cert == nil {
		t.Fatalf("Files() = %d files, Checked %+v; want CA, cert, key", len(got), c.Checked)
	}
	for i := range want {
		if got[i].Kind != want[i].Kind || got[i].Name != want[i].Name || string(got[i].Data) != string(want[i].Data) {
			t.Errorf("file %d = %s %s, want %s %s", i, got[i].Kind, got[i].Name, want[i].Kind, want[i].Name)
		}
		if !testStore.Owns(got[i].Name) || !c.Has(got[i].Name) {
			t.Errorf("%s: the store should own it and the credentials have it", got[i].Name)
		}
	}
	again, _ := testStore.Check(b, time.Now())
	if again.CA.Name != c.CA.Name {
		t.Fatal("equal content got different names")
	}
}

func TestStoreCheckRefusesBeforeTheModem(t *testing.T) {
	pki := plugintest.NewPKI(t, plugintest.P256)
	other := plugintest.NewPKI(t, plugintest.P256)
	encrypt := func(password string) []byte {
		block, _ := pem.Decode(pki.Client.KeyPEM)
		//lint:ignore SA1019 legacy PEM encryption is what such keys use
		enc, err := x509.EncryptPEMBlock(rand.Reader, block.Type, block.Bytes, []byte(password), x509.PEMCipherAES256) //nolint:staticcheck
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(enc)
	}
	encrypted, oddlyEncrypted := encrypt("pw"), encrypt(`a"b`)
	good := sdk.Bundle{CA: pki.CA.CertPEM, Cert: pki.Client.CertPEM, Key: pki.Client.KeyPEM}
	with := func(f func(*sdk.Bundle)) sdk.Bundle { b := good; f(&b); return b }
	tests := []struct {
		name  string
		store atkit.Store
		b     sdk.Bundle
		field string
		says  string
	}{
		{"profile out of range", testStore, with(func(b *sdk.Bundle) { b.Profile = 6 }), "profile", "out of range 0-5"},
		{"file over the modem's limit", testStore, with(func(b *sdk.Bundle) { b.CA = append(b.CA, make([]byte, 4096)...) }), "ca", "4096-byte file limit"},
		{"key of another certificate", testStore, with(func(b *sdk.Bundle) { b.Key = other.Client.KeyPEM }), "key", "does not match"},
		{"garbage CA", testStore, with(func(b *sdk.Bundle) { b.CA = []byte("not pem") }), "ca", "no PEM block"},
		{"encrypted key on a modem without key passwords", testStore, with(func(b *sdk.Bundle) { b.Key, b.KeyPassword = encrypted, "pw" }), "key", "cannot use an encrypted key"},
		{"encrypted key without password", atkit.Store{KeyPassword: true}, with(func(b *sdk.Bundle) { b.Key = encrypted }), "key", "no key password"},
		{"password the modem cannot take", atkit.Store{KeyPassword: true}, with(func(b *sdk.Bundle) { b.Key, b.KeyPassword = oddlyEncrypted, `a"b` }), "key_password", "cannot take"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.store.Check(tt.b, time.Now())
			var be *sdk.BundleError
			if !errors.As(err, &be) || be.Field != tt.field || !strings.Contains(be.Reason, tt.says) {
				t.Fatalf("Check = %v, want a BundleError on %s saying %q", err, tt.field, tt.says)
			}
		})
	}
	if _, err := (atkit.Store{KeyPassword: true}).Check(with(func(b *sdk.Bundle) { b.Key, b.KeyPassword = encrypted, "pw" }), time.Now()); err != nil {
		t.Fatalf("encrypted key with a password on a modem that takes one: %v", err)
	}
}

// TestStorePlansARotation: a second provisioning downloads nothing; a
// rotated client pair downloads only the new pair, and once the profile
// uses it the old pair is superseded, while a file the operator loaded and
// another profile's file survive.
func TestStorePlansARotation(t *testing.T) {
	pki := plugintest.NewPKI(t, plugintest.P256)
	c, err := testStore.Check(sdk.Bundle{CA: pki.CA.CertPEM, Cert: pki.Client.CertPEM, Key: pki.Client.KeyPEM}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	download, kept := testStore.Plan(c, nil, false)
	if len(download) != 3 || len(kept) != 0 {
		t.Fatalf("Plan on an empty store: download %d, kept %v", len(download), kept)
	}
	present := []string{c.CA.Name, c.Cert.Name, c.Key.Name, "operator.pem", "cgca-0123456789ab.pem"}
	if download, kept = testStore.Plan(c, present, false); len(download) != 0 || len(kept) != 3 {
		t.Fatalf("second Plan: download %d, kept %v; want nothing to download", len(download), kept)
	}
	if download, _ = testStore.Plan(c, present, true); len(download) != 3 {
		t.Fatalf("Plan on a suspect store: download %d, want every file again", len(download))
	}

	rotated := pki.NewClient(t, "rotated")
	r, err := testStore.Check(sdk.Bundle{CA: pki.CA.CertPEM, Cert: rotated.CertPEM, Key: rotated.KeyPEM}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	download, kept = testStore.Plan(r, present, false)
	if len(download) != 2 || download[0].Kind != atkit.KindCert || download[1].Kind != atkit.KindKey || !slices.Equal(kept, []string{c.CA.Name}) {
		t.Fatalf("Plan of the rotation: download %v, kept %v; want the new pair only", download, kept)
	}
	present = append(present, r.Cert.Name, r.Key.Name)
	inUse := map[string]bool{r.CA.Name: true, r.Cert.Name: true, r.Key.Name: true, "cgca-0123456789ab.pem": true}
	gone := testStore.Superseded(present, inUse)
	if want := []string{c.Cert.Name, c.Key.Name}; !slices.Equal(gone, want) {
		t.Fatalf("Superseded = %v, want the old pair %v only", gone, want)
	}
}

func TestStoreOwnsOnlyItsContentNames(t *testing.T) {
	for name, want := range map[string]bool{
		"cgca-0123456789ab.pem":  true,
		"cgkey-abcdefabcdef.pem": true,
		"cgca-0123456789ab.der":  false,
		"cgca-0123456789a.pem":   false,
		"cgca-0123456789zz.pem":  false,
		"xxca-0123456789ab.pem":  false,
		"operator.pem":           false,
	} {
		if got := testStore.Owns(name); got != want {
			t.Errorf("Owns(%q) = %v, want %v", name, got, want)
		}
	}
}
