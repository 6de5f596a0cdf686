package cli_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/sdk/modemsim"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// TestModemInfoWithoutNetwork: a modem that answers but is not on the
// network is reported as found (SIM, registration, "no signal") with exit
// 1, within --registration-wait, not after --timeout; the error is one
// line in plain words, without gRPC's.
func TestModemInfoWithoutNetwork(t *testing.T) {
	for _, c := range []struct {
		fault modemsim.FaultKind
		reg   string
	}{
		{modemsim.FaultNetworkLoss, "searching"},
		{modemsim.FaultRegistrationDenied, "denied"},
	} {
		t.Run(c.reg, func(t *testing.T) {
			m := startModem(t)
			if err := m.Fault(modemsim.Fault{Kind: c.fault}); err != nil {
				t.Fatal(err)
			}
			// The helper kills cellgate after 2 minutes: a bring-up that
			// waited for --timeout 3m fails the test.
			conn := []string{"modem", "info", "--model", "sim7600", "--port", m.Path(), "--registration-wait", "3s"}
			out, errOut, code := cellgate(t, "", conn...)
			if code != 1 {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 1", code, out, errOut)
			}
			for _, want := range []string{"sim:          ready", "registration: " + c.reg, "signal:       no signal (rssi 99)"} {
				if !strings.Contains(out, want) {
					t.Errorf("stdout %q lacks %q", out, want)
				}
			}
			if strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "modem not on the network: SIM ready, registration "+c.reg+", no signal (rssi 99)") {
				t.Errorf("stderr %q: want one line naming the state", errOut)
			}
			if strings.Contains(errOut, "rpc error") || strings.Contains(errOut, "code =") {
				t.Errorf("stderr shows gRPC's words: %q", errOut)
			}
			out, _, code = cellgate(t, "", append(conn, "--json")...)
			var found struct {
				Registration string `json:"registration"`
				SIM          string `json:"sim"`
				RSSI         int    `json:"signal_rssi"`
				Online       *bool  `json:"online"`
			}
			if err := json.Unmarshal([]byte(out), &found); code != 1 || err != nil || found.Registration != c.reg || found.SIM != "ready" || found.RSSI != 99 || found.Online == nil || *found.Online {
				t.Errorf("--json: exit %d, %q (%v); want exit 1 and the state with online false", code, out, err)
			}
		})
	}
}

// TestSerialErrorsDoNotStutter: a port that cannot be opened is named once,
// with the system's words.
func TestSerialErrorsDoNotStutter(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "ttyNOPE")
	_, errOut, code := cellgate(t, "", "modem", "info", "--model", "sim7600", "--port", missing)
	if code != 1 || strings.Count(errOut, missing) != 1 || !strings.Contains(errOut, "serial port "+missing+": open: no such file or directory") {
		t.Fatalf("exit %d, stderr %q; want the port named once and the system's words", code, errOut)
	}
}

// TestModelMismatchNamesTheModem: a SIM7800 behind --model sim7600 is
// refused naming what the modem reported.
func TestModelMismatchNamesTheModem(t *testing.T) {
	m, err := modemsim.Start(modemsim.Config{Model: "sim7800", Baud: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	out, errOut, code := cellgate(t, "", "modem", "info", "--model", "sim7600", "--port", m.Path())
	if code != 1 || out != "" || !strings.Contains(errOut, "modem model mismatch: want sim7600, modem reports SIMCOM_SIM7800") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want the mismatch naming the modem's model", code, out, errOut)
	}
}

// TestCertsWithoutNetwork: the certificate store is in the modem's flash,
// so `modem certs` provision, list and delete work on a modem that is
// searching or refused by the network, in seconds: the plugin opens it
// without registration (sdk.ModemConfig.NoNetwork). --registration-wait
// and --timeout are left at their defaults (15s and 3m): a bring-up that
// still waited for the network would fail or outlast the helper's bound.
func TestCertsWithoutNetwork(t *testing.T) {
	for _, fault := range []modemsim.FaultKind{modemsim.FaultNetworkLoss, modemsim.FaultRegistrationDenied} {
		t.Run(string(fault), func(t *testing.T) {
			m := startModem(t)
			if err := m.Fault(modemsim.Fault{Kind: fault}); err != nil {
				t.Fatal(err)
			}
			dir := pkiFiles(t, plugintest.NewPKI(t, plugintest.P256))
			conn := []string{"--model", "sim7600", "--port", m.Path()}
			provision := append([]string{"modem", "certs", "provision", "--ca", filepath.Join(dir, "ca.pem"),
				"--cert", filepath.Join(dir, "client.pem"), "--key", filepath.Join(dir, "client.key")}, conn...)
			if _, errOut, code := cellgate(t, "", provision...); code != 0 {
				t.Fatalf("provision: exit %d: %s", code, errOut)
			}
			out, errOut, code := cellgate(t, "", append([]string{"modem", "certs", "list", "--json"}, conn...)...)
			var names []string
			if err := json.Unmarshal([]byte(out), &names); code != 0 || err != nil || len(names) != 3 {
				t.Fatalf("list: exit %d, stdout %q (%v), stderr %q: want the 3 provisioned files", code, out, err, errOut)
			}
			if _, errOut, code = cellgate(t, "", append([]string{"modem", "certs", "delete", names[0]}, conn...)...); code != 0 {
				t.Fatalf("delete %s: exit %d: %s", names[0], code, errOut)
			}
			out, errOut, code = cellgate(t, "", append([]string{"modem", "certs", "list"}, conn...)...)
			if code != 0 || strings.Contains(out, names[0]) || len(strings.Fields(out)) != 2 {
				t.Fatalf("list after delete: exit %d, stdout %q, stderr %q: want the 2 others", code, out, errOut)
			}
			// The network is still down: what needs it still says so.
			out, _, code = cellgate(t, "", "modem", "info", "--model", "sim7600", "--port", m.Path(), "--registration-wait", "2s")
			if code != 1 || !strings.Contains(out, "signal:       no signal (rssi 99)") {
				t.Fatalf("modem info: exit %d, stdout %q: want exit 1, no signal", code, out)
			}
		})
	}
}
