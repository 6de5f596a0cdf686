package deptest

// Module is the import path of the cellgate module; every pattern in Rules
// that names one of our packages hangs from it.
const Module = "github.com/cellgate/cellgate"

// TestKits are the only non-test packages allowed to depend on testing or
// sdk/plugintest: they exist to be imported by tests. Keep this list short.
// A package that needs a test kit in its non-test code is either a test kit
// itself (add it here, with a reason) or wrong. deptest is not on it: its
// checker does not import testing.
var TestKits = own(
	"sdk/plugintest",    // the plugin conformance suite a plugin's tests run
	"internal/testutil", // building binaries, free ports, waiting for servers in end-to-end tests
)

// thirdPartyTesting are the imports of testing by non-test code of our
// dependencies: the rules against testing do not follow them. It is not
// ours to change, so each is listed here with why it is accepted; Unmatched
// reports an entry once the import is gone, so the list only shrinks.
var thirdPartyTesting = []Edge{
	// go-plugin's testing.go (TestConn, TestPluginGRPCConn, ...) is
	// non-test code. DESIGN.md makes go-plugin the plugin protocol, so the
	// agent and every plugin link testing through it. Since Go 1.13 that
	// registers no -test.* flags (testing.Init does, and only tests call it).
	{From: "github.com/hashicorp/go-plugin", To: "testing"},
}

// Rules are the import rules of DESIGN.md ("may import", and "Nothing under
// sdk/ imports agent/...") and issue #14, checked over non-test imports,
// transitively. internal/ needs no rule: the go command enforces it.
var Rules = []Rule{
	{
		From:   own("sdk/..."),
		Forbid: own("agent/...", "transport/...", "plugins/...", "cmd/..."),
		Reason: "sdk/ is the public plugin contract: a third party builds a plugin with sdk/ alone, without our agent, transports, drivers or commands",
	},
	{
		From:   own("plugins/..."),
		Forbid: own("agent/...", "transport/...", "cmd/..."),
		Reason: "a plugin is a separate process that speaks only the sdk contract: it carries neither the agent nor its transports",
	},
	{
		From:   own("sdk/modemsim/..."),
		Forbid: own("sdk/at/...", "sdk/atkit/...", "plugins/..."),
		Reason: "sdk/modemsim is the independent model of the modem: code shared with the drivers would let one misreading of the manual hide in both sides",
	},
	{
		// sdk/... above already keeps agent, transport, plugins and cmd
		// out; this adds the rest of what is ours. sdk/proto is allowed
		// because sdk is built on it. A new package under sdk/ that the
		// kit must not use is added here.
		From: own("sdk/atkit/..."),
		Forbid: own("internal/...", "sdk/conformance/...", "sdk/modemsim/...",
			"sdk/plugintest/...", "sdk/sdktest/..."),
		Reason: "sdk/atkit is the driver kit a third party builds on: it may use only sdk and sdk/at (and its own packages), so a plugin importing it pulls in nothing else of ours",
	},
	{
		From:   own("..."),
		Except: TestKits,
		Forbid: append(own("sdk/plugintest"), "testing"),
		Accept: thirdPartyTesting,
		Reason: "non-test code must not carry test machinery; only the packages in deptest.TestKits may",
	},
	{
		From:     own("cmd/...", "plugins/sim7600", "plugins/sim7800"),
		FromMain: true,
		Forbid:   append(own("sdk/plugintest", "internal/testutil"), "testing"),
		Accept:   thirdPartyTesting,
		Reason:   "a shipped binary carries no test code: no test kit (throwaway PKIs, helpers that fail a testing.TB) and no testing of our own making",
	},
}

// own returns the import paths of the module's packages at rel.
func own(rel ...string) []string {
	paths := make([]string, len(rel))
	for i, r := range rel {
		paths[i] = Module + "/" + r
	}
	return paths
}
