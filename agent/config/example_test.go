package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// exampleFile is the documented configuration shipped with cellgate.
const exampleFile = "../../configs/cellgate.yaml"

func TestExampleConfigIsValid(t *testing.T) {
	cfg, warnings, err := Load(LoadOptions{File: exampleFile, FileExplicit: true})
	if err != nil {
		t.Fatalf("the example does not load:\n%v", err)
	}
	if got := cfg.Uplink.Kind(); got != UplinkMQTT {
		t.Errorf("example uplink = %q, want mqtt", got)
	}
	// The one warning is the documented one: no plugin checksum, since a
	// real checksum cannot be shipped in an example.
	if len(warnings) != 1 || warnings[0].Path != "plugins.sha256" {
		t.Errorf("example warnings = %v, want only the plugins.sha256 one", warnings)
	}
}

// altStartRE matches the first line of a commented-out alternative block:
// "#" directly followed by a key. Prose comments have a space after "#".
var altStartRE = regexp.MustCompile(`^(\s*)#([a-z_]+:.*)$`)

// uncommentAlternatives deletes the "#" of every alternative block, as the
// file's header tells an operator to, and returns the text and the number of
// blocks found.
func uncommentAlternatives(text string) (string, int) {
	lines := strings.Split(text, "\n")
	blocks := 0
	for i := 0; i < len(lines); i++ {
		m := altStartRE.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		indent := m[1]
		blocks++
		lines[i] = indent + m[2]
		for i+1 < len(lines) && strings.HasPrefix(lines[i+1], indent+"#  ") {
			i++
			lines[i] = indent + lines[i][len(indent)+1:]
		}
	}
	return strings.Join(lines, "\n"), blocks
}

// exampleWithAlternatives is the example with both alternative uplinks
// uncommented, written next to the example's own directory layout.
func exampleWithAlternatives(t *testing.T) (string, []byte) {
	t.Helper()
	raw, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatalf("read example: %v", err)
	}
	text, blocks := uncommentAlternatives(string(raw))
	if blocks != 2 {
		t.Fatalf("found %d alternative blocks in the example, want 2 (tls_lines, https)", blocks)
	}
	path := filepath.Join(t.TempDir(), "cellgate.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatalf("write: %v", err)
	}
	return path, []byte(text)
}

// The alternatives are valid as written: uncommenting them makes the one
// problem of having three uplinks, and nothing else.
func TestExampleAlternativesAreValid(t *testing.T) {
	path, _ := exampleWithAlternatives(t)
	_, _, err := Load(LoadOptions{File: path, FileExplicit: true})
	var es *Errors
	if !errors.As(err, &es) {
		t.Fatalf("Load = %v, want *Errors about the extra uplinks", err)
	}
	var paths []string
	for _, p := range es.Problems {
		paths = append(paths, p.Path)
		if !strings.Contains(p.Problem, "configured as well as uplink.mqtt") {
			t.Errorf("unexpected problem: %v", p)
		}
	}
	if want := []string{"uplink.tls_lines", "uplink.https"}; !reflect.DeepEqual(paths, want) {
		t.Errorf("problems at %v, want %v", paths, want)
	}
}

// Every key of the schema appears in the example with a comment that says
// its default (which must be the real default) or that it is required, and
// a value that is the default unless the comment says the example sets it.
func TestExampleDocumentsEveryKey(t *testing.T) {
	_, text := exampleWithAlternatives(t)
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		t.Fatalf("parse example: %v", err)
	}
	keys := map[string][2]*yaml.Node{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := joinPath(prefix, n.Content[i].Value)
			keys[p] = [2]*yaml.Node{n.Content[i], n.Content[i+1]}
			if n.Content[i+1].Kind == yaml.MappingNode {
				walk(n.Content[i+1], p)
			}
		}
	}
	walk(doc.Content[0], "")

	for _, p := range schemaPaths() {
		kv, ok := keys[p]
		if !ok {
			t.Errorf("%s: not in the example", p)
			continue
		}
		t.Run(p, func(t *testing.T) {
			if _, isSection := sectionType(mustTypeAt(t, p)); isSection {
				return
			}
			checkKeyDoc(t, p, kv[0], kv[1])
		})
	}
	for p := range keys {
		if _, ok := typeAt(strings.Split(p, ".")); !ok && !strings.HasPrefix(p, "plugins.sha256.") {
			t.Errorf("%s: in the example but not in the schema", p)
		}
	}
}

var defaultLineRE = regexp.MustCompile(`(?m)^\s*Default: (.*)$`)

func checkKeyDoc(t *testing.T, path string, key, value *yaml.Node) {
	t.Helper()
	comment := strings.TrimSpace(key.HeadComment + "\n" + key.LineComment)
	typ := mustTypeAt(t, path)
	def, hasDefault := defaultAt(path)
	if len(strings.Fields(comment)) < 6 {
		t.Errorf("comment %q does not say what the key does", comment)
	}
	m := defaultLineRE.FindStringSubmatch(strings.ReplaceAll(comment, "# ", ""))
	switch {
	case !hasDefault:
		if m != nil || !strings.Contains(comment, "Required: no default.") {
			t.Errorf("has no default, so its comment must say \"Required: no default.\": %q", comment)
		}
		return
	case m == nil:
		t.Fatalf("comment has no \"Default: …\" line: %q", comment)
	}
	var documented any
	if err := yaml.Unmarshal([]byte(m[1]), &documented); err != nil {
		t.Fatalf("documented default %q is not a YAML value: %v", m[1], err)
	}
	want := mustConvert(t, def, typ)
	if got := mustConvert(t, documented, typ); !reflect.DeepEqual(got, want) {
		t.Errorf("documents default %q, but the default is %v", m[1], want)
	}
	var example any
	if err := value.Decode(&example); err != nil {
		t.Fatalf("decode example value: %v", err)
	}
	if got := mustConvert(t, example, typ); !reflect.DeepEqual(got, want) && !strings.Contains(comment, "This example sets") {
		t.Errorf("example value %v differs from the default %v without saying \"This example sets\"", got, want)
	}
}

// defaultAt returns the built-in default of a key, from Defaults or, for an
// uplink's keys, from that uplink's defaults.
func defaultAt(path string) (any, bool) {
	segs := strings.Split(path, ".")
	var cur any = Defaults()
	if len(segs) == 3 && segs[0] == "uplink" && segs[1] != "batch" {
		cur, segs = uplinkDefaults(segs[1]), segs[2:]
	}
	for _, s := range segs {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[s]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func mustTypeAt(t *testing.T, path string) reflect.Type {
	t.Helper()
	typ, ok := typeAt(strings.Split(path, "."))
	if !ok {
		t.Fatalf("%s is not in the schema", path)
	}
	return typ
}

func mustConvert(t *testing.T, v any, typ reflect.Type) any {
	t.Helper()
	got, err := convert(v, typ)
	if err != nil {
		t.Fatalf("convert %v to %s: %v", v, typ, err)
	}
	return got
}

// Every schema key has a default, except the required ones and the uplink
// choice itself; a key added without one shows up here.
func TestDefaultsCoverTheSchema(t *testing.T) {
	required := map[string]bool{"device_id": true, "uplink.mqtt.broker": true, "uplink.tls_lines.addr": true, "uplink.https.url": true}
	for _, p := range schemaLeaves() {
		if _, ok := defaultAt(p); ok == required[p] {
			t.Errorf("%s: has default = %v, want %v", p, ok, !required[p])
		}
	}
}

// schemaLeaves returns the paths of keys that hold a value (not a section),
// free-form maps included, sorted.
func schemaLeaves() []string {
	var out []string
	for _, p := range schemaPaths() {
		t, _ := typeAt(strings.Split(p, "."))
		if _, ok := sectionType(t); !ok {
			out = append(out, p)
		}
	}
	return out
}
