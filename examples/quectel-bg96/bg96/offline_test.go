package bg96

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// TestCertificateStoreWithoutNetwork: with ModemConfig.NoNetwork, Open on
// a BG96 that is searching or refused by the network returns what it
// found at once (not after RegistrationTimeout), the certificate store
// works, and Dial is refused until an Open with the network.
func TestCertificateStoreWithoutNetwork(t *testing.T) {
	for _, c := range []struct {
		fault modemsim.FaultKind
		reg   string
	}{
		{modemsim.FaultNetworkLoss, "searching"},
		{modemsim.FaultRegistrationDenied, "denied"},
	} {
		t.Run(string(c.fault), func(t *testing.T) {
			m, err := modemsim.Start(modemsim.Config{Model: "bg96", Baud: -1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			if err := m.Fault(modemsim.Fault{Kind: c.fault}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			d := New(nil)
			t.Cleanup(func() { d.Stop(context.Background()) })
			// A RegistrationTimeout longer than the test's context: an
			// Open that waited for the network would fail the test.
			info, err := d.Open(ctx, sdk.ModemConfig{Port: m.Path(), Model: "bg96", NoNetwork: true, RegistrationTimeout: time.Hour})
			if err != nil {
				t.Fatalf("Open without network: %v", err)
			}
			if info.Registration != c.reg || info.SignalRSSI != 99 {
				t.Errorf("Open found registration %q, rssi %d; want %q, 99", info.Registration, info.SignalRSSI, c.reg)
			}
			p := plugintest.NewPKI(t, plugintest.P256)
			if _, err := d.Provision(ctx, sdk.Bundle{CA: p.CA.CertPEM, Cert: p.Client.CertPEM, Key: p.Client.KeyPEM}); err != nil {
				t.Fatalf("Provision without network: %v", err)
			}
			names, err := d.ListCerts(ctx)
			if err != nil || len(names) != 3 {
				t.Fatalf("ListCerts = %v, %v; want the 3 provisioned files", names, err)
			}
			if err := d.DeleteCert(ctx, names[0]); err != nil {
				t.Fatalf("DeleteCert(%s): %v", names[0], err)
			}
			if after, err := d.ListCerts(ctx); err != nil || slices.Contains(after, names[0]) {
				t.Fatalf("ListCerts after delete = %v, %v", after, err)
			}
			_, err = d.Dial(ctx, sdk.DialRequest{Host: "127.0.0.1", Port: 8883, Mode: sdk.DialPlainTCP})
			var me *sdk.ModemError
			if !errors.As(err, &me) || !strings.Contains(me.Text, "without network") {
				t.Fatalf("Dial after an Open without network = %v, want a ModemError saying so", err)
			}
		})
	}
}

// TestConfiguredModelNamesWhatTheModemReports: a config asking this plugin
// for a model it does not drive is refused naming the modem's own model.
func TestConfiguredModelNamesWhatTheModemReports(t *testing.T) {
	m, err := modemsim.Start(modemsim.Config{Model: "bg96", Baud: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := New(nil)
	t.Cleanup(func() { d.Stop(context.Background()) })
	_, err = d.Open(ctx, sdk.ModemConfig{Port: m.Path(), Model: "sim7600"})
	var mm *sdk.ModelMismatchError
	if !errors.As(err, &mm) || mm.Want != "sim7600" || !strings.Contains(mm.Got, "BG96") {
		t.Fatalf("Open = %v, want ModelMismatchError{Want: sim7600, Got: the modem's BG96 model}", err)
	}
}
