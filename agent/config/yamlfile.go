package config

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/knadh/koanf/maps"
	"go.yaml.in/yaml/v3"
)

// fileDoc is a parsed configuration file: its values as a nested map, and
// the line of every key path, so a problem found after merging the layers
// can still point at the line an operator has to edit.
type fileDoc struct {
	values map[string]any
	lines  map[string]int
}

// parseFile parses YAML once through the Node API, which gives both the
// values and the key positions; parsing again with koanf's YAML parser
// would read the same bytes twice for nothing.
func parseFile(name string, data []byte) (*fileDoc, []*FieldError) {
	fail := func(line int, format string, args ...any) (*fileDoc, []*FieldError) {
		return nil, []*FieldError{{File: name, Line: line, Problem: fmt.Sprintf(format, args...)}}
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		line, msg := yamlErrorLine(err.Error())
		return fail(line, "invalid YAML: %s", msg)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return fail(next.Line, "a second YAML document starts here; the configuration is one document")
	case !errors.Is(err, io.EOF):
		line, msg := yamlErrorLine(err.Error())
		return fail(line, "invalid YAML: %s", msg)
	}

	out := &fileDoc{values: map[string]any{}, lines: map[string]int{}}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return out, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return out, nil
	}
	if root.Kind != yaml.MappingNode {
		return fail(root.Line, "the top level must be a section of keys (device_id: …), found %s", nodeKind(root))
	}
	var v any
	if err := root.Decode(&v); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var ps []*FieldError
			for _, e := range te.Errors {
				line, msg := yamlErrorLine(e)
				ps = append(ps, &FieldError{File: name, Line: line, Problem: "invalid YAML: " + msg})
			}
			return nil, ps
		}
		line, msg := yamlErrorLine(err.Error())
		return fail(line, "invalid YAML: %s", msg)
	}
	// Non-string keys (1: x) become their text, to be reported as unknown
	// keys with the rest.
	wrapped := map[string]any{"root": v}
	maps.IntfaceKeysToStrings(wrapped)
	if m, ok := wrapped["root"].(map[string]any); ok {
		out.values = m
	}
	budget := 100000
	keyLines(root, "", out.lines, &budget)
	return out, nil
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlErrorLine splits "yaml: line 5: did not find expected key" into the
// line and the message.
func yamlErrorLine(msg string) (int, string) {
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n, m[2]
	}
	return 0, strings.TrimPrefix(msg, "yaml: ")
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value (" + show(n.Value) + ")"
	case yaml.AliasNode:
		return "an alias"
	}
	return "something else"
}

// keyLines records the line of every key under n. Keys brought in by a
// merge key (<<: *base) get the line where the anchor defines them, and an
// explicit key wins over a merged one as it does in the values. The budget
// bounds the work on alias-heavy input: aliases are not copied in the Node
// tree, and walking them expands them.
func keyLines(n *yaml.Node, prefix string, lines map[string]int, budget *int) {
	n = resolveAlias(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if *budget--; *budget <= 0 {
			return
		}
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			continue
		}
		if k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		p := joinPath(prefix, keyText(k))
		if _, seen := lines[p]; !seen {
			lines[p] = k.Line
		}
		keyLines(v, p, lines, budget)
	}
	for _, m := range merges {
		m = resolveAlias(m)
		if m == nil {
			continue
		}
		if m.Kind == yaml.SequenceNode {
			for _, item := range m.Content {
				keyLines(item, prefix, lines, budget)
			}
			continue
		}
		keyLines(m, prefix, lines, budget)
	}
}

// keyText renders a key as the decoded values name it (koanf's
// IntfaceKeysToStrings: fmt's %v of the decoded key), so that `1.0:` and
// `~:` find their lines too.
func keyText(k *yaml.Node) string {
	if k.Tag == "!!str" || k.Tag == "" {
		return k.Value
	}
	var v any
	if err := k.Decode(&v); err != nil {
		return k.Value
	}
	return fmt.Sprintf("%v", v)
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}
