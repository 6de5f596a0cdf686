package cli_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/sdk/modemsim"
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
