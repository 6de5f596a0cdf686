package main

import (
	"testing"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// pluginNetstack is this plugin's binary for testutil.Build.
var pluginNetstack = testutil.Binary{Name: "cellgate-plugin-netstack", Package: "github.com/cellgate/cellgate/plugins/netstack"}

// TestConformance certifies this plugin with the kit's checks for a plugin
// that drives no modem (plugintest.RunNetwork), against real TLS servers on
// 127.0.0.1. Under -race the plugin is race-instrumented too, and a race
// kills it at once, failing the kit.
func TestConformance(t *testing.T) {
	plugintest.RunNetwork(t, plugintest.Config{Binary: testutil.Build(t, pluginNetstack), Model: "netstack", Env: testutil.RaceEnv})
}
