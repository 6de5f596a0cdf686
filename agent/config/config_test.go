package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// minimalYAML is the least a valid file needs: everything else defaults.
const minimalYAML = `device_id: gw-0001
tls: {ca: ca.pem}
uplink:
  https: {url: "https://ingest.example.com/v1/batches"}
`

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	return p
}

func mustLoad(t *testing.T, opts LoadOptions) (*Config, []Warning) {
	t.Helper()
	cfg, warnings, err := Load(opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cfg, warnings
}

func loadErrors(t *testing.T, opts LoadOptions) *Errors {
	t.Helper()
	cfg, _, err := Load(opts)
	var es *Errors
	if !errors.As(err, &es) {
		t.Fatalf("Load = %v, %v; want *Errors", cfg, err)
	}
	if cfg != nil {
		t.Errorf("Load returned a Config along with an error")
	}
	return es
}

// Each layer beats the ones below it, whichever others are present: all 16
// combinations of file, overlay, environment and flag setting one key.
func TestLayerPrecedence(t *testing.T) {
	layers := []string{"file", "overlay", "env", "flag"}
	for mask := range 1 << len(layers) {
		var present []string
		for i, l := range layers {
			if mask&(1<<i) != 0 {
				present = append(present, l)
			}
		}
		name := strings.Join(present, "+")
		if name == "" {
			name = "defaults"
		}
		t.Run(name, func(t *testing.T) {
			// spool.dir: a key every layer may set (an overlay may not set
			// modem.*, see NeverRemote).
			want := "/var/lib/cellgate/spool" // the default
			yamlText := minimalYAML
			opts := LoadOptions{Flags: pflag.NewFlagSet("t", pflag.ContinueOnError)}
			BindFlags(opts.Flags)
			var args []string
			for _, l := range present {
				dir := "/srv/spool-" + l
				switch l {
				case "file":
					yamlText += "spool: {dir: " + dir + "}\n"
				case "overlay":
					opts.Overlay = map[string]any{"spool": map[string]any{"dir": dir}}
				case "env":
					opts.Env = []string{"CELLGATE_SPOOL__DIR=" + dir}
				case "flag":
					args = []string{"--spool.dir", dir}
				}
				want = dir // later layers are listed later
			}
			if err := opts.Flags.Parse(args); err != nil {
				t.Fatal(err)
			}
			opts.File, opts.FileExplicit = writeFile(t, t.TempDir(), "cellgate.yaml", yamlText), true
			cfg, _ := mustLoad(t, opts)
			if cfg.Spool.Dir != want {
				t.Errorf("spool.dir = %q, want %q", cfg.Spool.Dir, want)
			}
		})
	}
}

func TestMissingDefaultFileFallsBackToDefaults(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "cellgate.yaml")
	cfg, _ := mustLoad(t, LoadOptions{File: missing, Env: []string{
		"CELLGATE_DEVICE_ID=gw-env", "CELLGATE_TLS__INSECURE=true", "CELLGATE_UPLINK__TLS_LINES__ADDR=up.example.com:7000",
	}})
	if cfg.Source().File != "" {
		t.Errorf("Source().File = %q, want empty: no file was read", cfg.Source().File)
	}
	if cfg.Spool.MaxBytes != 256*MiB || cfg.Uplink.TLSLines == nil || !cfg.Uplink.TLSLines.Ack {
		t.Errorf("defaults not applied: spool.max_bytes=%v tls_lines=%+v", cfg.Spool.MaxBytes, cfg.Uplink.TLSLines)
	}
}

func TestMissingExplicitFileIsAnError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	es := loadErrors(t, LoadOptions{File: missing, FileExplicit: true})
	want := FieldError{File: missing, Problem: "the configuration file does not exist"}
	if len(es.Problems) != 1 || *es.Problems[0] != want {
		t.Errorf("problems = %v, want [%v]", es.Problems, &want)
	}
}

func TestUnreadableFileIsAnError(t *testing.T) {
	dir := t.TempDir() // a directory cannot be read as a file, even by root
	es := loadErrors(t, LoadOptions{File: dir, FileExplicit: false})
	if len(es.Problems) != 1 || !strings.Contains(es.Problems[0].Problem, "is a directory") {
		t.Errorf("problems = %v, want one saying it is a directory", es.Problems)
	}
}

// The --config flag names the file when LoadOptions.File is empty, and it is
// explicit only when the operator set it.
func TestConfigFlagNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "mine.yaml", minimalYAML)

	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	BindFlags(fs)
	if err := fs.Parse([]string{"--config", file}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := mustLoad(t, LoadOptions{Flags: fs})
	if cfg.Source().File != file {
		t.Errorf("Source().File = %q, want %q", cfg.Source().File, file)
	}

	fs = pflag.NewFlagSet("t", pflag.ContinueOnError)
	BindFlags(fs)
	if err := fs.Parse([]string{"--config", filepath.Join(dir, "absent.yaml")}); err != nil {
		t.Fatal(err)
	}
	es := loadErrors(t, LoadOptions{Flags: fs})
	if es.Problems[0].Problem != "the configuration file does not exist" {
		t.Errorf("problem = %q, want the missing explicit file", es.Problems[0].Problem)
	}
}

// A command's own flags share the FlagSet; only BindFlags' flags are keys.
func TestOnlyBoundFlagsAreKeys(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	BindFlags(fs)
	fs.Bool("json", false, "a command's own flag")
	fs.String("log", "", "a flag whose name is a section")
	if err := fs.Parse([]string{"--json", "--log", "x", "--log.level", "debug"}); err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, t.TempDir(), "cellgate.yaml", minimalYAML)
	cfg, _ := mustLoad(t, LoadOptions{File: file, FileExplicit: true, Flags: fs})
	if cfg.Log.Level != "debug" {
		t.Errorf("log.level = %q, want debug from --log.level", cfg.Log.Level)
	}
	if got := cfg.Source().Flags; !reflect.DeepEqual(got, []string{"log.level"}) {
		t.Errorf("Source().Flags = %v, want [log.level]", got)
	}
}

func TestSourceListsWhatWasApplied(t *testing.T) {
	file := writeFile(t, t.TempDir(), "cellgate.yaml", minimalYAML)
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	BindFlags(fs)
	if err := fs.Parse([]string{"--device-id=gw-9", "--spool.dir=/srv/spool"}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := mustLoad(t, LoadOptions{
		File: file, FileExplicit: true, Flags: fs,
		Env:     []string{"HOME=/root", "CELLGATE_LOG__FORMAT=json", "CELLGATE_MODEM__BAUD=9600"},
		Overlay: map[string]any{"uplink": map[string]any{"batch": map[string]any{"max_readings": 7}}},
	})
	want := Source{File: file, Overlay: true, Env: []string{"CELLGATE_LOG__FORMAT", "CELLGATE_MODEM__BAUD"}, Flags: []string{"device-id", "spool.dir"}}
	if got := cfg.Source(); !reflect.DeepEqual(got, want) {
		t.Errorf("Source() = %+v, want %+v", got, want)
	}
	if cfg.Modem.Baud != 9600 || cfg.Log.Format != "json" || cfg.Uplink.Batch.MaxReadings != 7 || cfg.DeviceID != "gw-9" {
		t.Errorf("layers not applied: %+v %+v %+v %q", cfg.Modem, cfg.Log, cfg.Uplink.Batch, cfg.DeviceID)
	}
}

// Environment text is parsed by the key's type, as a file's value would be.
func TestEnvironmentValuesAreTyped(t *testing.T) {
	file := writeFile(t, t.TempDir(), "cellgate.yaml", minimalYAML)
	cfg, warnings := mustLoad(t, LoadOptions{File: file, FileExplicit: true, Env: []string{
		"CELLGATE_TLS__INSECURE=true",
		"CELLGATE_INPUTS__DEMO__RATE=2.5",
		"CELLGATE_INPUTS__HTTP__MAX_BODY=64KiB",
		"CELLGATE_UPLINK__BATCH__MAX_DELAY=750ms",
		"CELLGATE_DEVICE_ID=0001", // text, never a number
		"CELLGATE_PLUGINS__SHA256__SIM7600=" + strings.Repeat("AB", 32),
		"NOT_CELLGATE_MODEM__PORT=ignored",
	}})
	if !cfg.TLS.Insecure || cfg.Inputs.Demo.Rate != 2.5 || cfg.Inputs.HTTP.MaxBody != 64*KiB ||
		cfg.Uplink.Batch.MaxDelay != 750*time.Millisecond || cfg.DeviceID != "0001" {
		t.Errorf("env not decoded by type: %+v", cfg)
	}
	if got := cfg.Plugins.SHA256["sim7600"]; got != strings.Repeat("ab", 32) {
		t.Errorf("sha256 = %q, want it lower-cased", got)
	}
	if len(warnings) != 1 || warnings[0].Path != "tls.insecure" || warnings[0].Source != "env CELLGATE_TLS__INSECURE" {
		t.Errorf("warnings = %v, want the insecure one located at its variable", warnings)
	}
}

// A caller's overlay is read, never written, even though koanf merges by
// reference.
func TestOverlayIsNotModified(t *testing.T) {
	overlay := map[string]any{
		"uplink": map[string]any{"batch": map[string]any{"max_readings": 5}},
		"spool":  map[string]any{"max_bytes": "1MiB", "bogus": 1},
	}
	before := fmt.Sprint(overlay)
	file := writeFile(t, t.TempDir(), "cellgate.yaml", minimalYAML)
	loadErrors(t, LoadOptions{File: file, FileExplicit: true, Overlay: overlay})
	delete(overlay["spool"].(map[string]any), "bogus")
	mustLoad(t, LoadOptions{File: file, FileExplicit: true, Overlay: overlay})
	overlay["spool"].(map[string]any)["bogus"] = 1
	if after := fmt.Sprint(overlay); after != before {
		t.Errorf("overlay changed:\n before %s\n after  %s", before, after)
	}
}

func TestFieldErrorsCarryTheirLocation(t *testing.T) {
	file := writeFile(t, t.TempDir(), "cellgate.yaml", minimalYAML+"modem:\n  baud: 14400\n")
	es := loadErrors(t, LoadOptions{File: file, FileExplicit: true, Env: []string{"CELLGATE_UPLINK__BATCH__ENCODING=zip"}})
	var fe *FieldError
	if !errors.As(error(es), &fe) {
		t.Fatal("errors.As cannot find a *FieldError in *Errors")
	}
	want := []FieldError{
		{Path: "modem.baud", File: file, Line: 6, Problem: fe.Problem},
		{Path: "uplink.batch.encoding", Source: "env CELLGATE_UPLINK__BATCH__ENCODING", Problem: `"zip" is not one of json, cbor, cbor+deflate or compact`},
	}
	if len(es.Problems) != len(want) {
		t.Fatalf("problems = %v, want %d", es.Problems, len(want))
	}
	for i := range want {
		if *es.Problems[i] != want[i] {
			t.Errorf("problem %d = %+v, want %+v", i, *es.Problems[i], want[i])
		}
	}
}

// A value dropped from one layer for its type does not reappear as a second
// problem about the value underneath it.
func TestNoConsequentialProblems(t *testing.T) {
	file := writeFile(t, t.TempDir(), "cellgate.yaml", `device_id: 12
tls: {ca: ca.pem, cert: c.pem, key: 7}
uplink:
  mqtt: "mqtts://broker.example.com"
`)
	es := loadErrors(t, LoadOptions{File: file, FileExplicit: true})
	var paths []string
	for _, p := range es.Problems {
		paths = append(paths, p.Path)
	}
	// Without the suppression there would also be "device_id is required",
	// "tls.cert is set without tls.key" and "no uplink is configured".
	if want := []string{"device_id", "tls.key", "uplink.mqtt"}; !reflect.DeepEqual(paths, want) {
		t.Errorf("problems at %v, want %v:\n%v", paths, want, es)
	}
}

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
		err  string
	}{
		{"0", 0, ""},
		{"1048576", MiB, ""},
		{"512KiB", 512 * KiB, ""},
		{"256MiB", 256 * MiB, ""},
		{"1 GiB", GiB, ""},
		{"2TiB", 2 * TiB, ""},
		{"7B", 7, ""},
		{"256MB", 0, "did you mean 256MiB?"},
		{"1k", 0, "did you mean 1KiB?"},
		{"1.5MiB", 0, "is not a size"},
		{"-1", 0, "is not a size"},
		{"", 0, "is not a size"},
		{"MiB", 0, "is not a size"},
		{"9223372036854775807", 1<<63 - 1, ""},
		{"9223372036854775808", 0, "too large"},
		{"8388608TiB", 0, "too large"},
		{"12 parsecs", 0, "is not a size"},
	} {
		got, err := ParseByteSize(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseByteSize(%q) error = %v, want one containing %q", tc.in, err, tc.err)
		}
	}
}

func TestByteSizeStringRoundTrips(t *testing.T) {
	for _, b := range []ByteSize{0, 1, 1000, KiB, 1536, 3 * MiB, GiB + 1, 5 * TiB, 1<<63 - 1} {
		back, err := ParseByteSize(b.String())
		if err != nil || back != b {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %d", b.String(), back, err, b)
		}
	}
	if s := (256 * MiB).String(); s != "256MiB" {
		t.Errorf("String() = %q, want 256MiB", s)
	}
}

// Redacted and YAML never show a secret, and show everything else.
func TestRedactedHidesSecretsOnly(t *testing.T) {
	cfg, _, err := Load(LoadOptions{File: "testdata/cases/valid_full/cellgate.yaml", FileExplicit: true,
		Env: []string{"CELLGATE_UPLINK__MQTT__BROKER=mqtts://gw:hunter2@broker.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Uplink.MQTT.Broker != "mqtts://gw:hunter2@broker.example.com:8883" {
		t.Errorf("the Config itself must keep the secret, got %q", cfg.Uplink.MQTT.Broker)
	}
	m := cfg.Redacted()
	y, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprint(m) + string(y); strings.Contains(s, "hunter2") {
		t.Errorf("secret shown:\n%s", s)
	}
	mqtt := m["uplink"].(map[string]any)["mqtt"].(map[string]any)
	if mqtt["broker"] != "mqtts://gw:<redacted>@broker.example.com:8883" {
		t.Errorf("broker = %v", mqtt["broker"])
	}
	tls := m["tls"].(map[string]any)
	if tls["key"] != "/etc/cellgate/keys/client.key" {
		t.Errorf("tls.key path = %v, want it shown: a path is not a secret", tls["key"])
	}
	if got := m["spool"].(map[string]any)["max_bytes"]; got != "1GiB" {
		t.Errorf("spool.max_bytes = %#v, want \"1GiB\"", got)
	}
	if _, ok := m["uplink"].(map[string]any)["https"]; ok {
		t.Error("an unconfigured uplink appears in Redacted")
	}
}

// The unredacted YAML of a loaded Config loads back to the same Config.
func TestYAMLRoundTrips(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("testdata/cases/valid_full/cellgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	first, _ := mustLoad(t, LoadOptions{File: writeFile(t, dir, "a.yaml", string(src)), FileExplicit: true})
	out, err := marshalYAML(first, false)
	if err != nil {
		t.Fatal(err)
	}
	second, _ := mustLoad(t, LoadOptions{File: writeFile(t, dir, "b.yaml", string(out)), FileExplicit: true})
	first.source, second.source = Source{}, Source{}
	first.opts, second.opts = LoadOptions{}, LoadOptions{}
	if !reflect.DeepEqual(first, second) {
		t.Errorf("round trip changed the config:\n%s\nfirst  %+v\nsecond %+v", out, first, second)
	}
}

// Loads share no state: run many at once under -race.
func TestConcurrentLoads(t *testing.T) {
	file := writeFile(t, t.TempDir(), "cellgate.yaml", minimalYAML)
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	BindFlags(fs)
	if err := fs.Parse([]string{"--modem.baud=9600"}); err != nil {
		t.Fatal(err)
	}
	opts := LoadOptions{File: file, FileExplicit: true, Flags: fs, Env: []string{"CELLGATE_LOG__LEVEL=debug"},
		Overlay: map[string]any{"spool": map[string]any{"max_bytes": "1MiB"}}}
	var wg sync.WaitGroup
	results := make([]*Config, 8)
	errs := make([]error, 8)
	for i := range results {
		wg.Go(func() { results[i], _, errs[i] = Load(opts) })
	}
	wg.Wait()
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("load %d: %v", i, errs[i])
		}
		if !reflect.DeepEqual(results[i], results[0]) {
			t.Errorf("load %d differs from load 0", i)
		}
	}
}

func TestSuggest(t *testing.T) {
	for _, tc := range []struct{ parent, key, want string }{
		{"spool", "max_byte", "spool.max_bytes"},
		{"spool", "maxbytes", "spool.max_bytes"},
		{"", "devcie_id", "device_id"},
		{"", "modem_port", "modem.port"},     // CELLGATE_MODEM_PORT: one "_" short
		{"uplink", "qos", "uplink.mqtt.qos"}, // a key in the wrong section
		{"modem", "Port", "modem.port"},
		{"", "metrics", ""},
		{"tls", "x", ""},
	} {
		st := configType
		if tc.parent != "" {
			typ, _ := typeAt(strings.Split(tc.parent, "."))
			st, _ = sectionType(typ)
		}
		if got := suggest(tc.parent, tc.key, sectionKeys(st)); got != tc.want {
			t.Errorf("suggest(%q, %q) = %q, want %q", tc.parent, tc.key, got, tc.want)
		}
	}
}

// The strict decoder is the backstop behind the per-layer checks: it must
// refuse what they refuse, and its errors must map to key paths.
func TestDecodeStrictIsStrict(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input map[string]any
		want  []string // "path: problem" fragments
	}{
		{"unknown key", map[string]any{"bogus": 1}, []string{": has invalid keys: bogus"}},
		{"case folded key", map[string]any{"Device_ID": "x"}, []string{"has invalid keys: Device_ID"}},
		{"string for int", map[string]any{"modem": map[string]any{"baud": "9600"}}, []string{"modem.baud: \"9600\" is a string"}},
		{"number for string", map[string]any{"device_id": 7}, []string{"device_id: 7 is a number"}},
		{"bad map value", map[string]any{"plugins": map[string]any{"sha256": map[string]any{"sim7600": 5}}}, []string{"plugins.sha256.sim7600: 5 is a number"}},
		{"bare duration", map[string]any{"uplink": map[string]any{"batch": map[string]any{"max_delay": 3}}}, []string{"uplink.batch.max_delay: 3 has no unit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := koanf.New(".")
			if err := k.Load(confmap.Provider(tc.input, ""), nil); err != nil {
				t.Fatal(err)
			}
			var cfg Config
			err := decodeStrict(k, &cfg)
			if err == nil {
				t.Fatal("decodeStrict accepted it")
			}
			ld := &loader{}
			ld.decodeProblems(err)
			var got []string
			for _, p := range ld.problems {
				got = append(got, p.Path+": "+p.Problem)
			}
			for _, w := range tc.want {
				if !strings.Contains(strings.Join(got, "\n"), w) {
					t.Errorf("problems %q lack %q", got, w)
				}
			}
		})
	}
}

func TestErrorsFormat(t *testing.T) {
	es := &Errors{Problems: []*FieldError{
		{Path: "uplink.mqtt.qos", File: "/etc/cellgate/cellgate.yaml", Line: 7, Problem: "3 is out of range (want 0, 1 or 2)"},
		{Path: "modem.baud", Source: "env CELLGATE_MODEM__BAUD", Problem: `"fast" is not an integer`},
		{Path: "device_id", Problem: "is required"},
		{File: "/etc/cellgate/cellgate.yaml", Problem: "the configuration file does not exist"},
	}}
	want := `config: 4 problems:
  /etc/cellgate/cellgate.yaml:7: uplink.mqtt.qos: 3 is out of range (want 0, 1 or 2)
  env CELLGATE_MODEM__BAUD: modem.baud: "fast" is not an integer
  device_id: is required
  /etc/cellgate/cellgate.yaml: the configuration file does not exist`
	if got := es.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
	one := &Errors{Problems: es.Problems[2:3]}
	if got := one.Error(); got != "config: 1 problem:\n  device_id: is required" {
		t.Errorf("Error() = %q", got)
	}
}

// Every override flag sets a schema key holding a value, and no key is a
// prefix of another, which readFlags' unflattening relies on.
func TestOverrideFlagsAreSchemaLeaves(t *testing.T) {
	leaves := schemaLeaves()
	for _, o := range overrideFlags {
		if !slices.Contains(leaves, o.key) {
			t.Errorf("--%s sets %q, which is not a schema key holding a value", o.name, o.key)
		}
		for _, other := range overrideFlags {
			if strings.HasPrefix(other.key, o.key+".") {
				t.Errorf("--%s's key %q is a prefix of --%s's %q", o.name, o.key, other.name, other.key)
			}
		}
	}
}
