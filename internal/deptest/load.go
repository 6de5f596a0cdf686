package deptest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// FindModule walks up from dir to the first directory holding a go.mod and
// returns that directory and the module path it declares. It fails if no
// directory up to the file system root has a go.mod, or if the go.mod found
// declares no module.
func FindModule(dir string) (root, modulePath string, err error) {
	dir, err = filepath.Abs(dir)
	if err != nil {
		return "", "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			if mp := moduleLine(data); mp != "" {
				return dir, mp, nil
			}
			return "", "", fmt.Errorf("deptest: %s declares no module", filepath.Join(dir, "go.mod"))
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", "", fmt.Errorf("deptest: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", "", errors.New("deptest: no go.mod found up from the working directory")
		}
		dir = parent
	}
}

func moduleLine(gomod []byte) string {
	for line := range strings.Lines(string(gomod)) {
		line, _, _ = strings.Cut(line, "//")
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), "\"`")
		}
	}
	return ""
}

// listedPackage holds the fields of `go list -json` that Load reads.
type listedPackage struct {
	ImportPath   string
	Name         string
	DepOnly      bool
	Imports      []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

// listFields is what Load asks go list for; naming them spares go list the
// work of computing the rest.
const listFields = "ImportPath,Name,DepOnly,Imports,TestImports,XTestImports,Error"

// Load runs `go list -e -deps -json` on patterns in dir (a module root),
// with env added to the environment (for instance GOOS=linux, GOARCH=arm),
// and returns the import graph of the matched packages and of everything
// they import, directly or not, for that platform. The test imports of the
// matched packages are Test edges; packages that only tests import are not
// in the graph, as no rule follows test imports.
//
// If go list cannot run, fails, matches no package, or ctx ends first, Load
// returns a nil Graph and an error with go list's own words. If go list ran
// but some packages are broken (a missing or moved import, an import
// cycle), Load returns the graph together with an error naming each broken
// package: checking that graph may miss what the broken packages would
// import.
func Load(ctx context.Context, dir string, env []string, patterns ...string) (Graph, error) {
	args := append([]string{"list", "-e", "-deps", "-json=" + listFields}, patterns...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	what := strings.Join(append(slices.Clone(env), "go", strings.Join(args, " ")), " ")
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return nil, fmt.Errorf("deptest: %s: %w\n%s", what, err, strings.TrimSpace(stderr.String()))
	}

	g := Graph{}
	var broken []error
	matched := false
	dec := json.NewDecoder(&stdout)
	for {
		var lp listedPackage
		if err := dec.Decode(&lp); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("deptest: %s: reading its output: %w", what, err)
		}
		matched = matched || !lp.DepOnly
		if lp.Error != nil {
			broken = append(broken, fmt.Errorf("%s: %s", lp.ImportPath, strings.TrimSpace(lp.Error.Err)))
		}
		g[lp.ImportPath] = Package{Name: lp.Name, Imports: edges(lp)}
	}
	if !matched {
		return nil, fmt.Errorf("deptest: %s matched no package\n%s", what, strings.TrimSpace(stderr.String()))
	}
	if len(broken) > 0 {
		return g, fmt.Errorf("deptest: %s: broken packages, the graph may be incomplete:\n%w", what, errors.Join(broken...))
	}
	return g, nil
}

// edges returns lp's imports, each once, marking those only its _test.go
// files import.
func edges(lp listedPackage) []Import {
	imports := make([]Import, 0, len(lp.Imports))
	for _, p := range lp.Imports {
		imports = append(imports, Import{Path: p})
	}
	testOnly := append(slices.Clone(lp.TestImports), lp.XTestImports...)
	slices.Sort(testOnly)
	for _, p := range slices.Compact(testOnly) {
		if !slices.Contains(lp.Imports, p) {
			imports = append(imports, Import{Path: p, Test: true})
		}
	}
	return imports
}
