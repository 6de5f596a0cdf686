package main

import (
	"testing"

	"github.com/cellgate/cellgate/internal/testutil"
	"github.com/cellgate/cellgate/sdk/plugintest"
)

// TestConformance certifies this plugin: it builds it and runs the plugin
// conformance kit against it, exactly as a third-party plugin would be
// certified. Under -race the plugin is race-instrumented too, and a race
// kills it at once, failing the kit.
func TestConformance(t *testing.T) {
	plugintest.Run(t, plugintest.Config{Binary: testutil.Build(t, testutil.PluginSim7600), Model: "sim7600", Env: testutil.RaceEnv})
}
