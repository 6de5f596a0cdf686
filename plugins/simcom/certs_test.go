package simcom

import (
	"slices"
	"testing"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// TestRotationAfterRestartKeepsOtherContextsFiles: a driver that starts
// fresh (an agent or plugin restart) and rotates profile 0 must delete
// profile 0's old files only: profile 1's files, which this process never
// provisioned, are still in use on the modem.
func TestRotationAfterRestartKeepsOtherContextsFiles(t *testing.T) {
	m, err := modemsim.Start(modemsim.Config{Model: "sim7600", Baud: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := testCtx(t)
	a, b := plugintest.NewPKI(t, plugintest.P256), plugintest.NewPKI(t, plugintest.P256)
	bundleA := sdk.Bundle{Profile: 0, CA: a.CA.CertPEM, Cert: a.Client.CertPEM, Key: a.Client.KeyPEM}
	bundleB := sdk.Bundle{Profile: 1, CA: b.CA.CertPEM, Cert: b.Client.CertPEM, Key: b.Client.KeyPEM}

	first := New(SIM7600, nil)
	if _, err := first.Open(ctx, sdk.ModemConfig{Port: m.Path()}); err != nil {
		t.Fatal(err)
	}
	for _, bu := range []sdk.Bundle{bundleA, bundleB} {
		if _, err := first.Provision(ctx, bu); err != nil {
			t.Fatal(err)
		}
	}
	first.Stop(ctx)

	second := New(SIM7600, nil)
	if _, err := second.Open(ctx, sdk.ModemConfig{Port: m.Path()}); err != nil {
		t.Fatal(err)
	}
	defer second.Stop(ctx)
	rotated := a.NewClient(t, "rotated")
	bundleA.Cert, bundleA.Key = rotated.CertPEM, rotated.KeyPEM
	r, err := second.Provision(ctx, bundleA)
	if err != nil {
		t.Fatal(err)
	}
	oldA := []string{nameFor("crt", a.Client.CertPEM), nameFor("key", a.Client.KeyPEM)}
	slices.Sort(oldA)
	deleted := slices.Clone(r.Deleted)
	slices.Sort(deleted)
	if !slices.Equal(deleted, oldA) {
		t.Fatalf("rotation deleted %v, want exactly profile 0's old pair %v", r.Deleted, oldA)
	}
	names, err := second.ListCerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{nameFor("ca", b.CA.CertPEM), nameFor("crt", b.Client.CertPEM), nameFor("key", b.Client.KeyPEM)} {
		if !slices.Contains(names, f) {
			t.Fatalf("profile 1's %s was deleted (modem holds %v)", f, names)
		}
	}
}
