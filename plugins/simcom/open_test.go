package simcom

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cellgate/cellgate/sdk"
	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// TestConfiguredModelMismatchNamesWhatTheModemReports: a config asking a
// sim7600 driver for a sim7800 is refused with the model the modem
// reported, not the configured one repeated.
func TestConfiguredModelMismatchNamesWhatTheModemReports(t *testing.T) {
	m, err := modemsim.Start(modemsim.Config{Model: "sim7600", Baud: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := testCtx(t)
	d := New(SIM7600, nil)
	defer d.Stop(ctx)
	_, err = d.Open(ctx, sdk.ModemConfig{Port: m.Path(), Model: "sim7800"})
	var mm *sdk.ModelMismatchError
	if !errors.As(err, &mm) || mm.Want != "sim7800" || !strings.Contains(mm.Got, "SIM7600") {
		t.Fatalf("Open = %v, want ModelMismatchError{Want: sim7800, Got: the modem's SIM7600 model}", err)
	}
	if !strings.Contains(err.Error(), "want sim7800, modem reports SIMCOM_SIM7600") {
		t.Errorf("error %q: want it to read want sim7800, modem reports SIMCOM_SIM7600...", err)
	}
}

// TestCertificateStoreWithoutNetwork: with ModemConfig.NoNetwork, Open on
// a modem that is searching or refused by the network returns what it
// found without waiting for RegistrationTimeout, the certificate store
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
			m, err := modemsim.Start(modemsim.Config{Model: "sim7600", Baud: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if err := m.Fault(modemsim.Fault{Kind: c.fault}); err != nil {
				t.Fatal(err)
			}
			ctx := testCtx(t)
			// A RegistrationTimeout beyond the test's context: an Open
			// that waited for the network would fail the test.
			cfg := sdk.ModemConfig{Port: m.Path(), NoNetwork: true, RegistrationTimeout: time.Hour}
			first := New(SIM7600, nil)
			info, err := first.Open(ctx, cfg)
			if err != nil {
				t.Fatalf("Open without network: %v", err)
			}
			if info.Registration != c.reg || info.SignalRSSI != 99 || !strings.Contains(info.Model, "SIM7600") {
				t.Errorf("Open found %+v; want registration %q, rssi 99, the model", info, c.reg)
			}
			p := plugintest.NewPKI(t, plugintest.P256)
			if _, err := first.Provision(ctx, sdk.Bundle{CA: p.CA.CertPEM, Cert: p.Client.CertPEM, Key: p.Client.KeyPEM}); err != nil {
				t.Fatalf("Provision without network: %v", err)
			}
			first.Stop(ctx)

			// As `cellgate modem certs list` and `delete` do: a fresh
			// driver, which did not put the files in use itself.
			d := New(SIM7600, nil)
			defer d.Stop(ctx)
			if _, err := d.Open(ctx, cfg); err != nil {
				t.Fatalf("second Open without network: %v", err)
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
			_, err = d.Dial(ctx, sdk.DialRequest{Host: "127.0.0.1", Port: 8883, Mode: sdk.DialModemTLS})
			var me *sdk.ModemError
			if !errors.As(err, &me) || !strings.Contains(me.Text, "without network") {
				t.Fatalf("Dial after an Open without network = %v, want a ModemError saying so", err)
			}
		})
	}
}
