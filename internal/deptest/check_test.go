package deptest_test

import (
	"slices"
	"testing"

	"github.com/cellgate/cellgate/internal/deptest"
)

const m = deptest.Module + "/"

// imports returns non-test edges to paths.
func imports(paths ...string) []deptest.Import {
	out := make([]deptest.Import, len(paths))
	for i, p := range paths {
		out[i] = deptest.Import{Path: p}
	}
	return out
}

// testImports returns edges to paths that only _test.go files have.
func testImports(paths ...string) []deptest.Import {
	out := imports(paths...)
	for i := range out {
		out[i].Test = true
	}
	return out
}

// reasonOf returns the Reason of the one rule in deptest.Rules whose From
// and Forbid select from and forbidden, so a test names a rule by what it
// does rather than by its place in the table.
func reasonOf(t *testing.T, from string, fromName string, forbidden string) string {
	t.Helper()
	g := deptest.Graph{
		from:      {Name: fromName, Imports: imports(forbidden)},
		forbidden: {Name: "x"},
	}
	vs := deptest.Check(g, deptest.Rules)
	if len(vs) != 1 {
		t.Fatalf("%s -> %s breaks %d rules, want 1: %v", from, forbidden, len(vs), vs)
	}
	return vs[0].Rule.Reason
}

type found struct {
	Chain  []string
	Reason string
}

func check(g deptest.Graph) []found {
	var out []found
	for _, v := range deptest.Check(g, deptest.Rules) {
		out = append(out, found{v.Chain, v.Rule.Reason})
	}
	return out
}

func TestCheckerFindsForbiddenChain(t *testing.T) {
	sdkRule := reasonOf(t, m+"sdk/foo", "foo", m+"agent/config")
	testingRule := reasonOf(t, m+"plugins/x", "x", "testing")

	g := deptest.Graph{
		m + "sdk/foo":       {Name: "foo", Imports: imports("fmt", m+"internal/bar")},
		m + "internal/bar":  {Name: "bar", Imports: imports("os", m+"agent/config")},
		m + "agent/config":  {Name: "config", Imports: imports(m + "agent/reading")},
		m + "agent/reading": {Name: "reading"},
		m + "plugins/x":     {Name: "x", Imports: imports("testing")},
		"testing":           {Name: "testing", Imports: imports("fmt")},
		"fmt":               {Name: "fmt"},
		"os":                {Name: "os"},
	}
	want := []found{
		{[]string{m + "sdk/foo", m + "internal/bar", m + "agent/config"}, sdkRule},
		{[]string{m + "plugins/x", "testing"}, testingRule},
	}
	if got := check(g); !slices.EqualFunc(got, want, equalFound) {
		t.Errorf("Check found\n%v\nwant\n%v", got, want)
	}
}

func TestCheckerIgnoresTestImports(t *testing.T) {
	g := deptest.Graph{
		// The sdk's own tests may use the agent and the test kits.
		m + "sdk/foo": {Name: "foo", Imports: append(imports(m+"internal/bar"),
			testImports(m+"agent/config", m+"sdk/plugintest", "testing")...)},
		// A test-only edge deeper in the chain does not count either.
		m + "internal/bar":      {Name: "bar", Imports: testImports(m + "transport/uplink")},
		m + "plugins/sim7600":   {Name: "main", Imports: testImports(m+"internal/testutil", "testing")},
		m + "agent/config":      {Name: "config"},
		m + "sdk/plugintest":    {Name: "plugintest", Imports: imports("testing")},
		m + "internal/testutil": {Name: "testutil", Imports: imports("testing")},
	}
	if got := check(g); len(got) != 0 {
		t.Errorf("Check found %v in test-only imports, want nothing", got)
	}
}

func TestCheckerStopsAtFirstForbiddenPackage(t *testing.T) {
	// cmd/tool reaches testing only through sdk/plugintest: the one thing
	// to fix is the import of sdk/plugintest, so that is the one reported.
	binaryRule := reasonOf(t, m+"cmd/tool", "main", m+"internal/testutil")
	testingRule := reasonOf(t, m+"agent/y", "y", "testing")
	g := deptest.Graph{
		m + "cmd/tool":       {Name: "main", Imports: imports(m + "agent/demo")},
		m + "agent/demo":     {Name: "demo", Imports: imports(m + "sdk/plugintest")},
		m + "sdk/plugintest": {Name: "plugintest", Imports: imports("testing")},
	}
	want := []found{
		{[]string{m + "agent/demo", m + "sdk/plugintest"}, testingRule},
		{[]string{m + "cmd/tool", m + "agent/demo", m + "sdk/plugintest"}, testingRule},
		{[]string{m + "cmd/tool", m + "agent/demo", m + "sdk/plugintest"}, binaryRule},
	}
	if got := check(g); !slices.EqualFunc(got, want, equalFound) {
		t.Errorf("Check found\n%v\nwant\n%v", got, want)
	}
}

func TestCheckerRules(t *testing.T) {
	for _, tc := range []struct {
		name      string
		from      string
		fromName  string
		imports   string
		forbidden bool
	}{
		{"sdk may not import transport", m + "sdk", "sdk", m + "transport/uplink", true},
		{"sdk may not import plugins", m + "sdk/plugintest", "plugintest", m + "plugins/simcom", true},
		{"sdk may not import commands", m + "sdk/at", "at", m + "cmd/cellgate", true},
		{"plugins may not import the agent", m + "plugins/simcom", "simcom", m + "agent/config", true},
		{"plugins may not import transport", m + "plugins/simcom", "simcom", m + "transport", true},
		{"plugins may import the sdk", m + "plugins/simcom", "simcom", m + "sdk/at", false},
		{"modemsim may not import sdk/at", m + "sdk/modemsim", "modemsim", m + "sdk/at", true},
		{"modemsim may not import sdk/atkit", m + "sdk/modemsim", "modemsim", m + "sdk/atkit/serial", true},
		{"modemsim may not import plugins", m + "sdk/modemsim", "modemsim", m + "plugins/simcom", true},
		{"modemsim may import x/sys", m + "sdk/modemsim", "modemsim", "golang.org/x/sys/unix", false},
		{"sdk/at is not sdk/atkit", m + "sdk/atkit", "atkit", m + "sdk/at", false},
		{"atkit may not import internal/redact", m + "sdk/atkit", "atkit", m + "internal/redact", true},
		{"atkit's subpackages may not import internal/", m + "sdk/atkit/transcript", "transcript", m + "internal/atomicfile", true},
		{"atkit may not import sdk/modemsim", m + "sdk/atkit", "atkit", m + "sdk/modemsim", true},
		{"atkit may not import sdk/conformance", m + "sdk/atkit/transcript", "transcript", m + "sdk/conformance", true},
		{"atkit may not import sdk/plugintest", m + "sdk/atkit", "atkit", m + "sdk/plugintest", true},
		{"atkit may not import sdk/sdktest", m + "sdk/atkit", "atkit", m + "sdk/sdktest", true},
		{"atkit may not import the agent", m + "sdk/atkit", "atkit", m + "agent/config", true},
		{"atkit may import sdk", m + "sdk/atkit", "atkit", m + "sdk", false},
		{"atkit may import its own packages", m + "sdk/atkit", "atkit", m + "sdk/atkit/transcript", false},
		{"atkit may import sdk/proto", m + "sdk/atkit", "atkit", m + "sdk/proto", false},
		{"atkit may import third-party code", m + "sdk/atkit", "atkit", "go.bug.st/serial", false},
		{"the agent may not import plugintest", m + "agent/demo", "demo", m + "sdk/plugintest", true},
		{"plugintest is a test kit", m + "sdk/plugintest", "plugintest", "testing", false},
		{"testutil is a test kit", m + "internal/testutil", "testutil", "testing", false},
		{"a command may not import testutil", m + "cmd/modemsim", "main", m + "internal/testutil", true},
		{"any main package may not import testutil", m + "tools/gen", "main", m + "internal/testutil", true},
		{"a library may not import testutil", m + "agent/spool", "spool", m + "internal/testutil", true},
		{"third-party code is not ours to constrain", "example.com/lib", "lib", "testing", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := deptest.Graph{
				m + "internal/testutil": {Name: "testutil", Imports: imports("testing")},
				m + "sdk/plugintest":    {Name: "plugintest", Imports: imports("testing")},
			}
			g[tc.from] = deptest.Package{Name: tc.fromName, Imports: imports(tc.imports)}
			got := check(g)
			if tc.forbidden && len(got) == 0 {
				t.Errorf("%s -> %s passed, want a violation", tc.from, tc.imports)
			}
			if !tc.forbidden && len(got) != 0 {
				t.Errorf("%s -> %s: got %v, want none", tc.from, tc.imports, got)
			}
		})
	}
}

func TestCheckerSkipsOnlyAcceptedEdges(t *testing.T) {
	const goPlugin = "github.com/hashicorp/go-plugin"
	testingRule := reasonOf(t, m+"sdk", "sdk", "testing")
	g := deptest.Graph{
		m + "sdk":       {Name: "sdk", Imports: imports(goPlugin)},
		goPlugin:        {Name: "plugin", Imports: imports("testing")},
		m + "sdk/other": {Name: "other", Imports: imports(goPlugin, "example.com/lib")},
		// The same import of testing from elsewhere is still a violation.
		"example.com/lib": {Name: "lib", Imports: imports("testing")},
	}
	want := []found{
		{[]string{m + "sdk/other", "example.com/lib", "testing"}, testingRule},
	}
	if got := check(g); !slices.EqualFunc(got, want, equalFound) {
		t.Errorf("Check found\n%v\nwant\n%v", got, want)
	}
}

func TestUnmatchedNamesStalePatterns(t *testing.T) {
	rules := []deptest.Rule{{
		From:   []string{m + "sdk/...", m + "sdk/moved"},
		Except: []string{m + "sdk/gone"},
		Forbid: []string{m + "agent/..."},
		Accept: []deptest.Edge{{From: m + "sdk", To: "log"}, {From: m + "sdk", To: "testing"}},
		Reason: "why",
	}}
	g := deptest.Graph{m + "sdk": {Name: "sdk", Imports: append(imports("log"), testImports("testing")...)}}
	want := []string{
		`rule 0 (why): From pattern "` + m + `sdk/moved" matches no package`,
		`rule 0 (why): Except pattern "` + m + `sdk/gone" matches no package`,
		`rule 0 (why): accepted import ` + m + `sdk -> testing is not in the graph`,
	}
	if got := deptest.Unmatched(g, rules); !slices.Equal(got, want) {
		t.Errorf("Unmatched = %q, want %q", got, want)
	}
}

func equalFound(a, b found) bool {
	return slices.Equal(a.Chain, b.Chain) && a.Reason == b.Reason
}
