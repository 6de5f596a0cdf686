package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// FieldError is one problem with the configuration: where it is and what is
// wrong. Exactly one of File and Source says where the offending value came
// from; both are empty when it came from the defaults or is missing.
type FieldError struct {
	// Path is the key path, e.g. "uplink.mqtt.qos"; empty for a problem with
	// a whole file or variable name.
	Path string
	// File is the configuration file, as given, when the value came from it.
	File string
	// Line is the 1-based line of the key in File; 0 when not known.
	Line int
	// Source names a non-file origin: "env CELLGATE_MODEM__BAUD",
	// "flag --modem.port" or "remote overlay".
	Source string
	// Problem says what was found and what was expected.
	Problem string
}

// Error renders the problem as one line:
// "file:line: path: problem", "env NAME: path: problem" or "path: problem".
func (e *FieldError) Error() string {
	return locatedLine(e.File, e.Line, e.Source, e.Path, e.Problem)
}

// locatedLine renders text after where it applies, the one-line form that
// problems and warnings share: "file:line: path: text", "source: path:
// text" or "path: text"; the parts that are empty or 0 are left out.
func locatedLine(file string, line int, source, path, text string) string {
	var b strings.Builder
	switch {
	case file != "" && line > 0:
		fmt.Fprintf(&b, "%s:%d: ", file, line)
	case file != "":
		fmt.Fprintf(&b, "%s: ", file)
	case source != "":
		fmt.Fprintf(&b, "%s: ", source)
	}
	if path != "" {
		b.WriteString(path)
		b.WriteString(": ")
	}
	b.WriteString(text)
	return b.String()
}

// Errors is every problem Load found, sorted: file problems by line, then
// the remote overlay, the environment, flags, and last the problems that
// have no origin (such as a missing required key).
type Errors struct {
	Problems []*FieldError
}

// Error renders all problems, one per line, under a count.
func (e *Errors) Error() string {
	return ProblemList("config", e.Problems, (*FieldError).Error)
}

// ProblemList renders problems as Errors does: "what: N problems:" (or
// "1 problem:"), then each problem's text on its own indented line.
func ProblemList[P any](what string, problems []P, text func(P) string) string {
	var b strings.Builder
	noun := "problems"
	if len(problems) == 1 {
		noun = "problem"
	}
	fmt.Fprintf(&b, "%s: %d %s:", what, len(problems), noun)
	for _, p := range problems {
		b.WriteString("\n  ")
		b.WriteString(text(p))
	}
	return b.String()
}

// Unwrap exposes each *FieldError to errors.As and errors.Is.
func (e *Errors) Unwrap() []error {
	out := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p
	}
	return out
}

// Warning is a configuration that is valid but deserves an operator's
// attention, such as an input listening beyond loopback. Load returns
// warnings for the caller to log.
type Warning struct {
	// Path, File, Line and Source locate the value as in FieldError.
	Path   string
	File   string
	Line   int
	Source string
	// Message says what the setting means for the operator.
	Message string
}

// String renders the warning like a FieldError.
func (w Warning) String() string {
	return locatedLine(w.File, w.Line, w.Source, w.Path, w.Message)
}

// location is where a value came from.
type location struct {
	layer  layer
	file   string
	line   int
	source string
}

// layer orders the origins; it is also the sort rank of their problems.
type layer int

const (
	layerFile layer = iota
	layerOverlay
	layerEnv
	layerFlag
	layerNone // defaults, or nowhere
)

func (l location) fieldError(path, problem string) *FieldError {
	return &FieldError{Path: path, File: l.file, Line: l.line, Source: l.source, Problem: problem}
}

func rankOf(e *FieldError) layer {
	switch {
	case e.File != "":
		return layerFile
	case e.Source == overlaySource:
		return layerOverlay
	case strings.HasPrefix(e.Source, "env "):
		return layerEnv
	case strings.HasPrefix(e.Source, "flag "):
		return layerFlag
	}
	return layerNone
}

func compareProblems(a, b *FieldError) int {
	return cmp.Or(
		cmp.Compare(rankOf(a), rankOf(b)),
		cmp.Compare(a.File, b.File),
		cmp.Compare(a.Line, b.Line),
		cmp.Compare(a.Source, b.Source),
		cmp.Compare(a.Path, b.Path),
		cmp.Compare(a.Problem, b.Problem),
	)
}

// sortProblems sorts and removes exact duplicates, which arise when two
// checks see the same bad value.
func sortProblems(ps []*FieldError) []*FieldError {
	slices.SortFunc(ps, compareProblems)
	return slices.CompactFunc(ps, func(a, b *FieldError) bool { return *a == *b })
}

// suggest proposes the key an unknown path was probably meant to be: a
// sibling a typo or two away, the same key in another section, or the same
// words nested differently (CELLGATE_MODEM_PORT for modem.port). It returns
// "" when nothing is close.
func suggest(parent, key string, siblings []string) string {
	best, bestDist := "", 1<<30
	for _, s := range siblings {
		if d := editDistance(strings.ToLower(key), s); d < bestDist {
			best, bestDist = s, d
		}
	}
	if best != "" && bestDist <= maxTypos(key) {
		return joinPath(parent, best)
	}
	full := joinPath(parent, key)
	squash := func(s string) string {
		return strings.NewReplacer("_", "", ".", "", "-", "").Replace(strings.ToLower(s))
	}
	for _, p := range schemaPaths() {
		if squash(p) == squash(full) {
			return p
		}
	}
	for _, p := range schemaPaths() {
		if p == key || strings.HasSuffix(p, "."+key) {
			return p
		}
	}
	return ""
}

func maxTypos(key string) int {
	switch {
	case len(key) <= 3:
		return 1
	case len(key) <= 8:
		return 2
	}
	return 3
}

// editDistance is the Levenshtein distance between a and b in bytes; keys
// are ASCII.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
