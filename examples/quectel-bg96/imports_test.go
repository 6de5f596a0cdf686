package main

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// cellgateRoot is the import path of the repository's main module.
const cellgateRoot = "github.com/cellgate/cellgate/"

// TestImportsOnlyTheSDK proves this is a third party's plugin: nothing in
// the module, its tests included, imports a package of the main module
// other than sdk/... (the agent, transport, plugins, internal and cmd are
// the project's own), and the binary links none of them either.
func TestImportsOnlyTheSDK(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", "-json=ImportPath,Imports,TestImports,XTestImports,Module", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	own := 0
	for {
		var p struct {
			ImportPath                         string
			Imports, TestImports, XTestImports []string
			Module                             *struct{ Path string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || p.Module.Path != "github.com/cellgate/cellgate/examples/quectel-bg96" {
			continue
		}
		own++
		for _, imp := range append(append(p.Imports, p.TestImports...), p.XTestImports...) {
			if forbidden(imp) {
				t.Errorf("%s imports %s: a plugin outside the tree may import %ssdk/... only", p.ImportPath, imp, cellgateRoot)
			}
		}
	}
	if own == 0 {
		t.Fatal("go list found none of this module's packages")
	}

	out, err = exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if forbidden(dep) {
			t.Errorf("the plugin binary links %s", dep)
		}
	}
}

// forbidden reports whether path is a package of the main module outside
// sdk/.
func forbidden(path string) bool {
	rest, ok := strings.CutPrefix(path, cellgateRoot)
	if !ok || strings.HasPrefix(rest, "examples/quectel-bg96") {
		return false
	}
	return rest != "sdk" && !strings.HasPrefix(rest, "sdk/")
}

// TestForbiddenNamesTheProjectsOwnPackages pins the rule above, so a
// mistake in it cannot let an import through unnoticed.
func TestForbiddenNamesTheProjectsOwnPackages(t *testing.T) {
	for path, want := range map[string]bool{
		"github.com/cellgate/cellgate/sdk":                        false,
		"github.com/cellgate/cellgate/sdk/atkit":                  false,
		"github.com/cellgate/cellgate/examples/quectel-bg96/bg96": false,
		"go.bug.st/serial":                                        false,
		"github.com/cellgate/cellgate/agent":                      true,
		"github.com/cellgate/cellgate/transport":                  true,
		"github.com/cellgate/cellgate/plugins/simcom":             true,
		"github.com/cellgate/cellgate/internal/testutil":          true,
		"github.com/cellgate/cellgate/cmd/cellgate":               true,
		"github.com/cellgate/cellgate/sdkextra":                   true,
	} {
		if got := forbidden(path); got != want {
			t.Errorf("forbidden(%q) = %v, want %v", path, got, want)
		}
	}
}
