package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cellgate/cellgate/internal/redact"
)

// RedactionMark stands in for a secret in the output of Redacted and YAML.
const RedactionMark = redact.Mark

// entry is one key of the effective configuration in schema order, so that
// the map and the YAML views come from one walk.
type entry struct {
	key   string
	value any // string, int, bool, float64, or []entry for a section
}

// tree walks a section struct in field order.
func tree(v reflect.Value, hide bool) []entry {
	var out []entry
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key := keyOf(f)
		if key == "" {
			continue
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				continue
			}
			fv = fv.Elem()
		}
		var val any
		switch {
		case fv.Type() == byteSizeType:
			val = ByteSize(fv.Int()).String()
		case fv.Type() == durationType:
			val = formatDuration(time.Duration(fv.Int()))
		case fv.Kind() == reflect.Struct:
			val = tree(fv, hide)
		case fv.Kind() == reflect.Map:
			var sub []entry
			for _, k := range sortedMapKeys(fv.Interface().(map[string]string)) {
				sub = append(sub, entry{k, fv.MapIndex(reflect.ValueOf(k)).Interface()})
			}
			if sub == nil {
				sub = []entry{}
			}
			val = sub
		case fv.Kind() == reflect.Slice:
			val = append([]string{}, fv.Interface().([]string)...)
		case fv.Kind() == reflect.String:
			s := fv.String()
			if hide && f.Tag.Get("redact") == "url" {
				s = redact.URL(s)
			}
			val = s
		default:
			val = fv.Interface()
		}
		out = append(out, entry{key, val})
	}
	return out
}

func toMap(es []entry) map[string]any {
	m := make(map[string]any, len(es))
	for _, e := range es {
		if sub, ok := e.value.([]entry); ok {
			m[e.key] = toMap(sub)
			continue
		}
		m[e.key] = e.value
	}
	return m
}

func toNode(es []entry) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, e := range es {
		k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: e.key}
		var v *yaml.Node
		switch x := e.value.(type) {
		case []entry:
			v = toNode(x)
			if len(x) == 0 {
				v.Style = yaml.FlowStyle
			}
		case []string:
			v = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
			for _, item := range x {
				v.Content = append(v.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: item})
			}
		case string:
			v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: x}
		case int:
			v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(x)}
		case bool:
			v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(x)}
		case float64:
			// A whole number is written as one (rate: 0), which YAML reads
			// back as an int that a float key accepts.
			v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: strconv.FormatFloat(x, 'g', -1, 64)}
			if _, err := strconv.ParseInt(v.Value, 10, 64); err == nil {
				v.Tag = "!!int"
			}
		}
		n.Content = append(n.Content, k, v)
	}
	return n
}

// Redacted returns the effective configuration as a nested map of keys to
// strings, ints, floats, bools and lists of strings, with sizes and durations written as in
// the file (256MiB, 2s). Passwords and tokens inside URLs are replaced by
// RedactionMark; paths to key material are shown, since they are not secret.
func (c *Config) Redacted() map[string]any {
	return toMap(tree(reflect.ValueOf(c).Elem(), true))
}

// YAML renders the effective configuration, redacted as by Redacted, in
// the order of configs/cellgate.yaml. Without secrets in it, it loads back
// to the same configuration.
func (c *Config) YAML() ([]byte, error) {
	return marshalYAML(c, true)
}

func marshalYAML(c *Config, hide bool) ([]byte, error) {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(toNode(tree(reflect.ValueOf(c).Elem(), hide))); err != nil {
		return nil, fmt.Errorf("config: render YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: render YAML: %w", err)
	}
	return []byte(b.String()), nil
}
