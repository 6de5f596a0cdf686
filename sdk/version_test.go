package sdk_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/cellgate/cellgate/sdk"
)

// The test binary plays a plugin of another contract version when
// envContract is set (see TestMain); the agent's side of a test may speak
// another version too, through sdk.SetContractVersion.

func TestPluginOfAnotherMajorVersionIsRefused(t *testing.T) {
	rec := &recorder{}
	_, err := sdk.Launch(testCtx(t), sdk.LaunchConfig{
		Path:   selfPath(t),
		Logger: slog.New(rec),
		Env:    []string{envPlugin + "=double", envContract + "=2.0", raceEnv()},
	})
	var ce *sdk.ContractError
	if !errors.As(err, &ce) {
		t.Fatalf("Launch of a contract 2.0 plugin = %v, want a *sdk.ContractError", err)
	}
	if ce.Plugin != "2.0" || ce.Agent != sdk.ContractVersion || ce.Path != selfPath(t) {
		t.Errorf("ContractError %+v: want plugin 2.0, agent %s, the binary's path", ce, sdk.ContractVersion)
	}
	if want := "speaks contract 2.0, this agent speaks 1.x: "; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

func TestPluginOfAnOlderMinorVersionIsAccepted(t *testing.T) {
	t.Cleanup(sdk.SetContractVersion("1.4")) // this side: an agent two minor releases on
	p, _ := launch(t, sdk.LaunchConfig{})    // the plugin: this sdk's ContractVersion
	if got := p.ContractVersion(); got != sdk.ContractVersion {
		t.Errorf("negotiated contract %s, want the plugin's %s", got, sdk.ContractVersion)
	}
	checkServes(t, p)
}

func TestPluginOfANewerMinorVersionIsAccepted(t *testing.T) {
	p, _ := launch(t, sdk.LaunchConfig{Env: []string{envContract + "=1.7"}})
	if got := p.ContractVersion(); got != sdk.ContractVersion {
		t.Errorf("negotiated contract %s, want the agent's %s", got, sdk.ContractVersion)
	}
	checkServes(t, p)
}

// checkServes fails unless p answers Ping and Open.
func checkServes(t *testing.T, p *sdk.Plugin) {
	t.Helper()
	ctx := testCtx(t)
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if _, err := p.Transport().Open(ctx, sdk.ModemConfig{Port: "/dev/ttyUSB9", Model: "double"}); err != nil {
		t.Fatalf("Open: %v", err)
	}
}

func TestContractErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		err  *sdk.ContractError
		want string
	}{
		{&sdk.ContractError{Path: "/usr/lib/cellgate/plugins/cellgate-plugin-x", Plugin: "2.0", Protocol: 2000, Agent: "1.3"},
			"plugin cellgate-plugin-x speaks contract 2.0, this agent speaks 1.x: rebuild the plugin against a 1.x sdk, or run an agent that speaks contract 2.x"},
		{&sdk.ContractError{Path: "/opt/cellgate-plugin-old", Protocol: 1, Agent: "1.0"},
			"plugin cellgate-plugin-old predates versioned contracts (it speaks protocol 1), this agent speaks 1.x: rebuild the plugin against a 1.x sdk"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q\nwant      %q", got, tc.want)
		}
	}
}
