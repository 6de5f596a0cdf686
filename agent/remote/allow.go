package remote

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/cellgate/cellgate/agent/config"
)

// Allowed reports whether a push may set the key at path under the allow
// list (remote_config.allow): path is listed, or lies in a section listed
// as "section.*". The keys of config.NeverRemote are never allowed,
// whatever the list says.
func Allowed(path string, allow []string) bool {
	top, _, _ := strings.Cut(path, ".")
	if slices.Contains(config.NeverRemote, top) {
		return false
	}
	for _, pattern := range allow {
		if section, ok := strings.CutSuffix(pattern, ".*"); ok {
			if path == section || strings.HasPrefix(path, section+".") {
				return true
			}
			continue
		}
		if path == pattern {
			return true
		}
	}
	return false
}

// OverlayKeys returns the key paths an overlay sets, sorted: every value
// that is not a section, and every empty or null section. It returns nil
// for an overlay that is not a YAML section of keys; validation says what
// is wrong with it, with its line.
func OverlayKeys(overlay string) []string {
	var root map[string]any
	if err := yaml.Unmarshal([]byte(overlay), &root); err != nil {
		return nil
	}
	var keys []string
	var walk func(m map[string]any, prefix string)
	walk = func(m map[string]any, prefix string) {
		for k, v := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			if sub, ok := asSection(v); ok && len(sub) > 0 {
				walk(sub, p)
				continue
			}
			keys = append(keys, p)
		}
	}
	walk(root, "")
	sort.Strings(keys)
	return keys
}

// asSection returns v as a section, with its keys as text (YAML allows
// keys of any type: `1: x` is the key "1").
func asSection(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[fmt.Sprint(k)] = v
		}
		return out, true
	}
	return nil, false
}

// CheckAllowed refuses (ReasonNotAllowed) an overlay that sets a key the
// allow list does not allow, naming every such key.
func CheckAllowed(overlay string, allow []string) error {
	var never, unlisted []string
	for _, k := range OverlayKeys(overlay) {
		if Allowed(k, allow) {
			continue
		}
		top, _, _ := strings.Cut(k, ".")
		if slices.Contains(config.NeverRemote, top) {
			never = append(never, k)
		} else {
			unlisted = append(unlisted, k)
		}
	}
	var parts []string
	if len(never) > 0 {
		parts = append(parts, strings.Join(never, ", ")+" may never be set remotely")
	}
	if len(unlisted) > 0 {
		parts = append(parts, strings.Join(unlisted, ", ")+" not in remote_config.allow")
	}
	if len(parts) == 0 {
		return nil
	}
	return refuse(ReasonNotAllowed, "%s", strings.Join(parts, "; "))
}
