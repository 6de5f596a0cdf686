package deptest_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellgate/cellgate/internal/deptest"
)

// platforms are the builds whose import graphs TestImportRules checks:
// gateways run linux/arm and linux/arm64, CI linux/amd64, developers also
// macOS. Build-constrained files (sdk/pdeathsig_other.go) make the graphs
// differ.
var platforms = []string{"linux/amd64", "linux/arm64", "linux/arm", "darwin/arm64"}

// TestImportRules checks deptest.Rules against the module's real import
// graph on every platform and lists each violation once, with its chain,
// the rule it breaks, and the platforms it occurs on when not all.
func TestImportRules(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, modulePath, err := deptest.FindModule(wd)
	if err != nil {
		t.Fatal(err)
	}
	if modulePath != deptest.Module {
		t.Fatalf("go.mod in %s declares module %q, the rules are written for %q", root, modulePath, deptest.Module)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	graphs := make([]deptest.Graph, len(platforms))
	loadErrs := make([]error, len(platforms))
	var wg sync.WaitGroup
	for i, platform := range platforms {
		goos, goarch, _ := strings.Cut(platform, "/")
		wg.Go(func() {
			graphs[i], loadErrs[i] = deptest.Load(ctx, root, []string{"GOOS=" + goos, "GOARCH=" + goarch}, deptest.Module+"/...")
		})
	}
	wg.Wait()

	// A finding seen on several platforms is listed once, in the order
	// first found.
	var order []string
	seenOn := map[string][]string{}
	note := func(finding, platform string) {
		if _, ok := seenOn[finding]; !ok {
			order = append(order, finding)
		}
		seenOn[finding] = append(seenOn[finding], platform)
	}
	for i, platform := range platforms {
		if loadErrs[i] != nil {
			t.Errorf("%s: %v", platform, loadErrs[i])
		}
		if graphs[i] == nil {
			continue
		}
		for _, u := range deptest.Unmatched(graphs[i], deptest.Rules) {
			note("stale rule: "+u, platform)
		}
		for _, v := range deptest.Check(graphs[i], deptest.Rules) {
			note(v.Path()+"\n\trule: "+v.Rule.Reason, platform)
		}
	}
	if t.Failed() && len(order) == 0 {
		t.FailNow()
	}
	if len(order) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d import-rule violation(s); each is the chain of non-test imports that reaches a forbidden package, then the rule:\n", len(order))
	for _, finding := range order {
		b.WriteString("\n" + finding)
		if on := seenOn[finding]; !slices.Equal(on, platforms) {
			fmt.Fprintf(&b, "\n\ton: %s only", strings.Join(on, ", "))
		}
		b.WriteString("\n")
	}
	t.Error(b.String())
}
