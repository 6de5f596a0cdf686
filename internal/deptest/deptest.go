// Package deptest checks the import rules of DESIGN.md: which packages may
// depend on which, through any chain of non-test imports. It is the
// project's version of Tailscale's tstest/deptest, and its non-test code
// uses only the standard library (and not testing), so the checker is
// itself subject to the rules it checks.
//
// A Graph is the input (Load builds it from `go list`; tests build small
// ones by hand), Rules is the table of what is forbidden and why, and Check
// returns every Violation with the import chain that reaches the forbidden
// package, so a failure says how it is reached, not just that it is.
package deptest

import (
	"fmt"
	"slices"
	"strings"
)

// Graph maps an import path to the package it names. A path that appears
// only as an import (a package the loader did not list) is a leaf.
type Graph map[string]Package

// Package is one node of a Graph: its package clause name and its direct
// imports.
type Package struct {
	// Name is the package clause; "main" marks a command.
	Name string
	// Imports lists each imported path once. An import from both the
	// package's own files and its _test.go files is a non-test import.
	Imports []Import
}

// Import is one edge of a Graph.
type Import struct {
	Path string
	// Test is true when only _test.go files (of the package or of its
	// external _test package) import Path. Rules never follow such edges.
	Test bool
}

// Rule forbids some packages from depending on others through non-test
// imports, directly or transitively.
//
// A pattern is an import path, or a path ending in "/..." that matches that
// path and every path below it, as with the go command ("x/..." matches "x"
// and "x/y", not "xy").
type Rule struct {
	// From selects the packages the rule constrains.
	From []string
	// FromMain, when set, also selects every package named main.
	FromMain bool
	// Except removes packages from those From and FromMain selected.
	Except []string
	// Forbid names the packages that must not be in the non-test
	// dependency closure of a constrained package.
	Forbid []string
	// Accept lists imports the rule does not follow: known breaches in
	// code that is not ours to change, each kept with a comment saying why.
	Accept []Edge
	// Reason is one line saying why, shown with every violation.
	Reason string
}

// Edge is one import: From imports To.
type Edge struct {
	From, To string
}

// Violation is one forbidden dependency: Chain starts at the constrained
// package, follows non-test imports, and ends at the first forbidden
// package on that path.
type Violation struct {
	Rule  Rule
	Chain []string
}

// Path returns the chain as "a -> b -> c".
func (v Violation) Path() string {
	return strings.Join(v.Chain, " -> ")
}

// String returns the chain and the reason of the rule it breaks, on one line.
func (v Violation) String() string {
	return v.Path() + ": " + v.Rule.Reason
}

// Check returns every violation of rules in g, in rule order, then by
// constrained package, then shortest chain first.
//
// For each constrained package and each forbidden package it reaches, there
// is one violation carrying a shortest chain (ties broken by import path).
// The search does not continue through a forbidden package: what lies
// behind it is reported once that first step is gone, which keeps one
// mistake from producing a page of consequences.
func Check(g Graph, rules []Rule) []Violation {
	paths := sortedPaths(g)
	next := make(map[string][]string, len(g))
	for _, p := range paths {
		var deps []string
		for _, imp := range g[p].Imports {
			if !imp.Test {
				deps = append(deps, imp.Path)
			}
		}
		slices.Sort(deps)
		next[p] = slices.Compact(deps)
	}

	var out []Violation
	for _, r := range rules {
		for _, from := range paths {
			if !r.constrains(from, g[from]) {
				continue
			}
			for _, chain := range r.forbiddenChains(next, from) {
				out = append(out, Violation{Rule: r, Chain: chain})
			}
		}
	}
	return out
}

// forbiddenChains searches breadth first from start and returns a shortest
// chain to each package r forbids, in the order they are found.
func (r Rule) forbiddenChains(next map[string][]string, start string) [][]string {
	parent := map[string]string{start: ""}
	queue := []string{start}
	var chains [][]string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, dep := range next[p] {
			if _, seen := parent[dep]; seen {
				continue
			}
			if slices.Contains(r.Accept, Edge{p, dep}) {
				continue
			}
			parent[dep] = p
			if matchAny(r.Forbid, dep) {
				chains = append(chains, chainTo(parent, dep))
				continue
			}
			queue = append(queue, dep)
		}
	}
	return chains
}

func chainTo(parent map[string]string, end string) []string {
	var chain []string
	for p := end; p != ""; p = parent[p] {
		chain = append(chain, p)
	}
	slices.Reverse(chain)
	return chain
}

func (r Rule) constrains(path string, p Package) bool {
	selected := matchAny(r.From, path) || (r.FromMain && p.Name == "main")
	return selected && !matchAny(r.Except, path)
}

// Unmatched returns one line for each From or Except pattern of rules that
// matches no package of g, and for each accepted Edge that g does not have
// as a non-test import. Such a pattern or edge is usually stale (its
// package moved, the dependency changed): a rule whose From matches nothing
// checks nothing, and an acceptance nothing needs only waits to hide a
// future breach.
func Unmatched(g Graph, rules []Rule) []string {
	paths := sortedPaths(g)
	matchesSome := func(pattern string) bool {
		return slices.ContainsFunc(paths, func(p string) bool { return match(pattern, p) })
	}
	var out []string
	for i, r := range rules {
		for _, field := range []struct {
			name     string
			patterns []string
		}{{"From", r.From}, {"Except", r.Except}} {
			for _, pat := range field.patterns {
				if !matchesSome(pat) {
					out = append(out, fmt.Sprintf("rule %d (%s): %s pattern %q matches no package", i, r.Reason, field.name, pat))
				}
			}
		}
		for _, e := range r.Accept {
			if !slices.Contains(g[e.From].Imports, Import{Path: e.To}) {
				out = append(out, fmt.Sprintf("rule %d (%s): accepted import %s -> %s is not in the graph", i, r.Reason, e.From, e.To))
			}
		}
	}
	return out
}

func sortedPaths(g Graph) []string {
	paths := make([]string, 0, len(g))
	for p := range g {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}

func matchAny(patterns []string, path string) bool {
	return slices.ContainsFunc(patterns, func(pat string) bool { return match(pat, path) })
}

func match(pattern, path string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}
