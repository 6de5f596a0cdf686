package sdk_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/sdk"
)

func TestRSSIToDBMFollows27007(t *testing.T) {
	for _, c := range []struct {
		rssi, dbm int
		ok        bool
	}{
		{0, -113, true}, {1, -111, true}, {2, -109, true}, {10, -93, true}, {22, -69, true},
		{30, -53, true}, {31, -51, true}, {99, 0, false}, {32, 0, false}, {-1, 0, false},
	} {
		dbm, ok := sdk.RSSIToDBM(c.rssi)
		if dbm != c.dbm || ok != c.ok {
			t.Errorf("RSSIToDBM(%d) = %d, %v; want %d, %v", c.rssi, dbm, ok, c.dbm, c.ok)
		}
		if got, gotOK := (sdk.ModemStatus{SignalRSSI: c.rssi}).SignalDBM(); got != dbm || gotOK != ok {
			t.Errorf("ModemStatus.SignalDBM for rssi %d = %d, %v; want RSSIToDBM's", c.rssi, got, gotOK)
		}
	}
}

// statusOf asks p's transport for its status through the optional
// interface, as the agent's plugin host does.
func statusOf(t *testing.T, p *sdk.Plugin) error {
	t.Helper()
	r, ok := p.Transport().(sdk.StatusReporter)
	if !ok {
		t.Fatal("the host side's transport does not implement sdk.StatusReporter")
	}
	_, err := r.Status(testCtx(t))
	return err
}

func TestStatusOfAPluginWithoutStatusReporterIsUnsupported(t *testing.T) {
	p, _ := launch(t, sdk.LaunchConfig{}) // the double has no Status
	if err := statusOf(t, p); !errors.Is(err, sdk.ErrStatusUnsupported) {
		t.Fatalf("Status = %v, want ErrStatusUnsupported", err)
	}
	checkServes(t, p) // and the plugin keeps serving
}

func TestStatusIsNotSentToAContract10Plugin(t *testing.T) {
	p, _ := launch(t, sdk.LaunchConfig{Env: []string{envContract + "=1.0"}})
	if got := p.ContractVersion(); got != "1.0" {
		t.Fatalf("negotiated contract %s, want 1.0", got)
	}
	// Refused on the host side, naming the contract: not an UNIMPLEMENTED
	// answer from the plugin.
	err := statusOf(t, p)
	if !errors.Is(err, sdk.ErrStatusUnsupported) || !strings.Contains(err.Error(), "it speaks contract 1.0") {
		t.Fatalf("Status = %v, want ErrStatusUnsupported naming contract 1.0", err)
	}
	checkServes(t, p)
}
