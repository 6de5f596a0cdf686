package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/maps"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// LoadOptions names the layers Load reads. The zero value reads the default
// file and nothing else.
type LoadOptions struct {
	// File is the configuration file. When empty, Load uses the --config flag
	// of Flags if BindFlags registered it (explicit when the operator set it),
	// and DefaultFile otherwise.
	File string
	// FileExplicit says the operator named File: a missing explicit file is
	// an error, a missing default one is not.
	FileExplicit bool
	// Env is the process environment as os.Environ returns it; only
	// CELLGATE_* entries are read. Tests inject their own.
	Env []string
	// Flags is a parsed FlagSet on which BindFlags was called; nil for none.
	// Only the flags BindFlags registered, and only those set, are read.
	Flags *pflag.FlagSet
	// Overlay is the accepted remote configuration: a nested map of keys as
	// a YAML or JSON document decodes to. It is checked as strictly as the
	// file; which keys may be set remotely is the caller's policy, except
	// for NeverRemote, which no overlay may set.
	Overlay map[string]any
	// OverlayYAML is the accepted remote configuration as YAML text, used
	// in place of Overlay when not nil. Its problems are reported as
	// OverlayName:line, like the file's.
	OverlayYAML []byte
	// OverlayName names OverlayYAML in problems: the file it was read from
	// (remote.yaml), or the push it came in. Empty means "remote overlay".
	OverlayName string
}

const overlaySource = "remote overlay"

// Load reads the layers named by opts (defaults < file < overlay <
// environment < flags), decodes them strictly and validates the result.
//
// On success it returns the Config and any warnings to log. Otherwise the
// error is an *Errors listing every problem found, each with its key path
// and origin (file and line, environment variable, flag or overlay); the
// warnings found so far are returned with it. A file that cannot be read or
// is not valid YAML stops Load at once, since its keys cannot be known.
//
// Load touches no global state and may run concurrently with itself; a
// reload is a new Load whose result replaces the old Config.
func Load(opts LoadOptions) (*Config, []Warning, error) {
	ld := &loader{
		bad:           map[string]bool{},
		suggested:     map[string]bool{},
		leafOrigin:    map[string]location{},
		sectionOrigin: map[string]location{},
	}
	var layers []map[string]any

	file, explicit := opts.File, opts.FileExplicit
	if file == "" {
		file = DefaultFile
		if opts.Flags != nil {
			if f := opts.Flags.Lookup("config"); f != nil {
				file, explicit = f.Value.String(), f.Changed
			}
		}
	}
	doc, err := readFile(file, explicit)
	if err != nil {
		return nil, nil, err
	}
	if doc != nil {
		ld.source.File = file
		ld.fileDir = filepath.Dir(file)
		at := func(p string) location { return location{layer: layerFile, file: file, line: doc.lines[p]} }
		layers = append(layers, ld.checkLayer(doc.values, at))
	}

	switch {
	case opts.OverlayYAML != nil:
		name := opts.OverlayName
		if name == "" {
			name = overlaySource
		}
		doc, problems := parseFile(name, opts.OverlayYAML)
		if problems != nil {
			return nil, nil, &Errors{Problems: sortProblems(problems)}
		}
		ld.source.Overlay = true
		at := func(p string) location { return location{layer: layerOverlay, file: name, line: doc.lines[p]} }
		layers = append(layers, ld.checkLayer(ld.overlayOnly(doc.values, at), at))
	case opts.Overlay != nil:
		ld.source.Overlay = true
		at := func(string) location { return location{layer: layerOverlay, source: overlaySource} }
		layers = append(layers, ld.checkLayer(ld.overlayOnly(confmapCopy(opts.Overlay), at), at))
	}

	if m, at := ld.readEnv(opts.Env); m != nil {
		layers = append(layers, ld.checkLayer(m, at))
	}
	if opts.Flags != nil {
		if m, at := ld.readFlags(opts.Flags); m != nil {
			layers = append(layers, ld.checkLayer(m, at))
		}
	}

	cfg := ld.merge(layers)
	v := &validator{ld: ld}
	v.validate(cfg)
	if len(ld.problems) > 0 {
		return nil, v.warnings, &Errors{Problems: sortProblems(ld.problems)}
	}
	normalize(cfg, ld.fileDir)
	cfg.source = ld.source
	cfg.opts = opts
	return cfg, v.warnings, nil
}

// overlayOnly drops from an overlay the keys no overlay may set
// (NeverRemote), each reported where the overlay set it.
func (ld *loader) overlayOnly(m map[string]any, at func(string) location) map[string]any {
	for _, key := range NeverRemote {
		if _, ok := m[key]; ok {
			ld.add(at(key), key, "may never be set by remote configuration; set it in the configuration file")
			ld.bad[key] = true
			delete(m, key)
		}
	}
	return m
}

// fileOnly are the keys only the configuration file may set: the keys
// trusted to sign remote configuration, which an environment variable set
// by whoever can start a process must not be able to add.
const fileOnly = "remote_config.trusted_keys"

// loader holds the state of one Load.
type loader struct {
	problems []*FieldError
	// bad holds the paths of values dropped from a layer for their type or
	// shape, so validation does not report a second, misleading problem
	// about the lower-layer value that took their place.
	bad map[string]bool
	// suggested holds the keys an unknown key was taken for, so a typo'd
	// required key is reported once, as the typo.
	suggested map[string]bool
	// leafOrigin is where each value in effect came from (the last layer
	// to set it); sectionOrigin is where each section was first written.
	leafOrigin    map[string]location
	sectionOrigin map[string]location
	source        Source
	fileDir       string
	k             *koanf.Koanf
}

func (ld *loader) add(loc location, path, format string, args ...any) {
	ld.problems = append(ld.problems, loc.fieldError(path, fmt.Sprintf(format, args...)))
}

func readFile(name string, explicit bool) (*fileDoc, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			return nil, nil
		}
		problem := "cannot read the configuration file: "
		var pe *fs.PathError
		switch {
		case errors.Is(err, fs.ErrNotExist):
			problem = "the configuration file does not exist"
		case errors.As(err, &pe):
			problem += pe.Err.Error()
		default:
			problem += err.Error()
		}
		return nil, &Errors{Problems: []*FieldError{{File: name, Problem: problem}}}
	}
	doc, problems := parseFile(name, data)
	if problems != nil {
		return nil, &Errors{Problems: sortProblems(problems)}
	}
	return doc, nil
}

// confmapCopy deep-copies a caller's map the way koanf does, so checking
// and merging never write into it.
func confmapCopy(m map[string]any) map[string]any {
	out, _ := confmap.Provider(m, "").Read()
	return out
}

var envSegmentRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

type envVar struct {
	path  string
	value any
}

// readEnv reads the CELLGATE_* variables into a nested map. Names are
// checked first, all together, because koanf's unflattening silently
// misplaces a key when one variable sets a section (CELLGATE_MODEM) and
// another a key inside it (CELLGATE_MODEM__PORT).
func (ld *loader) readEnv(environ []string) (map[string]any, func(string) location) {
	accepted := map[string]envVar{} // by variable name
	for _, kv := range environ {
		name, text, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		loc := location{layer: layerEnv, source: "env " + name}
		segs := strings.Split(strings.ToLower(strings.TrimPrefix(name, EnvPrefix)), "__")
		if !slices.ContainsFunc(segs, func(s string) bool { return !envSegmentRE.MatchString(s) }) {
			path := strings.Join(segs, ".")
			if path == fileOnly || strings.HasPrefix(path, fileOnly+".") {
				ld.add(loc, path, "can be set only in the configuration file")
				ld.bad[path] = true
				continue
			}
			t, _ := typeAt(segs)
			value, err := parseText(text, t)
			if err != nil {
				ld.add(loc, path, "%s", err)
				ld.bad[path] = true
				continue
			}
			accepted[name] = envVar{path: path, value: value}
			continue
		}
		ld.add(loc, "", "not a configuration key name (want %sSECTION__KEY, e.g. %s)", EnvPrefix, envName("modem.port"))
	}

	byPath := map[string]string{}
	names := make([]string, 0, len(accepted))
	for name := range accepted {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		byPath[accepted[name].path] = name
	}
	for _, name := range names {
		e := accepted[name]
		for _, other := range names {
			o, ok := accepted[other]
			if !ok || other == name {
				continue
			}
			problem := ""
			switch {
			case strings.HasPrefix(o.path, e.path+"."):
				problem = fmt.Sprintf("sets a value where %s sets a key inside it; use one or the other", other)
			case o.path == e.path:
				// Names differing only in case, which the environment allows.
				problem = fmt.Sprintf("sets the same key as %s; use one or the other", other)
			}
			if problem != "" {
				ld.add(location{layer: layerEnv, source: "env " + name}, e.path, "%s", problem)
				ld.bad[e.path] = true
				delete(accepted, name)
				if byPath[e.path] == name {
					delete(byPath, e.path)
				}
				break
			}
		}
	}
	if len(accepted) == 0 {
		return nil, nil
	}
	p := env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, _ string) (string, any) {
			e, ok := accepted[name]
			if !ok {
				return "", nil
			}
			return e.path, e.value
		},
	})
	m, _ := p.Read() // Read fails only without an environ function.
	at := func(path string) location {
		return location{layer: layerEnv, source: "env " + originName(byPath, path)}
	}
	return m, at
}

// readFlags reads the override flags the operator set. A FlagSet on which
// BindFlags was not called contributes nothing. It looks flags up by name
// rather than through koanf's posflag provider: posflag walks the set with
// VisitAll, which writes pflag's sorted-flag cache, so two Loads sharing a
// FlagSet (a reload beside a `config check`) would race.
func (ld *loader) readFlags(fset *pflag.FlagSet) (map[string]any, func(string) location) {
	byPath := map[string]string{}
	flat := map[string]any{}
	for _, o := range overrideFlags {
		f := fset.Lookup(o.name)
		if f == nil || !f.Changed || !slices.Equal(f.Annotations[flagKeyAnnotation], []string{o.key}) {
			continue
		}
		t, _ := typeAt(strings.Split(o.key, "."))
		value, err := parseText(f.Value.String(), t)
		if err != nil {
			ld.add(location{layer: layerFlag, source: "flag --" + f.Name}, o.key, "%s", err)
			ld.bad[o.key] = true
			continue
		}
		byPath[o.key] = "--" + f.Name
		flat[o.key] = value
	}
	if len(flat) == 0 {
		return nil, nil
	}
	at := func(path string) location {
		return location{layer: layerFlag, source: "flag " + originName(byPath, path)}
	}
	// No override key is a prefix of another, so unflattening is exact.
	return maps.Unflatten(flat, "."), at
}

// originName returns the variable or flag that set path, or for a section
// the first one that set a key inside it.
func originName(byPath map[string]string, path string) string {
	if n, ok := byPath[path]; ok {
		return n
	}
	var inside []string
	for p, n := range byPath {
		if strings.HasPrefix(p, path+".") {
			inside = append(inside, n)
		}
	}
	sort.Strings(inside)
	if len(inside) > 0 {
		return inside[0]
	}
	return "?"
}

// checkLayer checks one layer on its own against the schema: unknown keys
// and values of the wrong type are reported where that layer set them, even
// when a higher layer overrides them, and are left out of what is merged.
func (ld *loader) checkLayer(m map[string]any, at func(string) location) map[string]any {
	out := ld.checkSection(m, configType, "", at)
	ld.recordOrigins(out, "", at)
	ld.recordNames(out, "", at)
	return out
}

func (ld *loader) checkSection(m map[string]any, st reflect.Type, prefix string, at func(string) location) map[string]any {
	out := make(map[string]any, len(m))
	for _, key := range sortedKeys(m) {
		v, p := m[key], joinPath(prefix, key)
		f, ok := schemaField(st, key)
		if !ok {
			ld.unknownKey(st, prefix, key, at(p))
			continue
		}
		if v == nil {
			// "apn:" with nothing after it reads as null; for text and
			// sections the operator's intent is plain, for the rest not.
			if v = zeroFor(f.Type); v == nil {
				ld.add(at(p), p, "has no value; write one, or remove the key to use the default")
				ld.bad[p] = true
				continue
			}
		}
		if sub, ok := v.(map[string]any); ok && at(p).layer == layerEnv && !isStringMap(f.Type) {
			if _, isSection := sectionType(f.Type); !isSection {
				// CELLGATE_TLS__CA__FILE reads as a section under a value;
				// the operator wrote a key that does not exist.
				ld.keysUnderValue(sub, p, at)
				continue
			}
		}
		if _, err := convert(v, f.Type); err != nil {
			ld.add(at(p), p, "%s", err)
			ld.bad[p] = true
			continue
		}
		switch sub, isSection := sectionType(f.Type); {
		case isSection:
			out[key] = ld.checkSection(v.(map[string]any), sub, p, at)
		case isStringMap(f.Type):
			out[key] = ld.checkNamed(v.(map[string]any), f.Type.Elem(), p, at)
		default:
			out[key] = v
		}
	}
	return out
}

// checkNamed checks a free-form map such as plugins.sha256, whose keys are
// names (validated later) and whose values all have one type.
func (ld *loader) checkNamed(m map[string]any, elem reflect.Type, prefix string, at func(string) location) map[string]any {
	out := make(map[string]any, len(m))
	for _, key := range sortedKeys(m) {
		v, p := m[key], joinPath(prefix, key)
		if v == nil {
			v = zeroFor(elem)
		}
		if _, err := convert(v, elem); err != nil {
			ld.add(at(p), p, "%s", err)
			ld.bad[p] = true
			continue
		}
		out[key] = v
	}
	return out
}

// keysUnderValue reports each environment variable that sets a key below
// the value at path.
func (ld *loader) keysUnderValue(m map[string]any, path string, at func(string) location) {
	var walk func(m map[string]any, prefix string)
	walk = func(m map[string]any, prefix string) {
		for _, key := range sortedKeys(m) {
			p := joinPath(prefix, key)
			if sub, ok := m[key].(map[string]any); ok {
				walk(sub, p)
				continue
			}
			ld.add(at(p), p, "unknown key (%s is a value with no keys; set it as %s)", path, envName(path))
		}
	}
	walk(m, path)
}

func zeroFor(t reflect.Type) any {
	if _, ok := sectionType(t); ok || isStringMap(t) {
		return map[string]any{}
	}
	if t.Kind() == reflect.String {
		return ""
	}
	return nil
}

func (ld *loader) unknownKey(st reflect.Type, prefix, key string, loc location) {
	p := joinPath(prefix, key)
	if strings.Contains(key, ".") {
		ld.add(loc, p, "unknown key; a key cannot contain \".\", write the section and the key nested on their own lines")
		return
	}
	s := suggest(prefix, key, sectionKeys(st))
	if s == "" {
		ld.add(loc, p, "unknown key")
		return
	}
	ld.suggested[s] = true
	if loc.layer == layerEnv {
		ld.add(loc, p, "unknown key (did you mean %s?)", envName(s))
		return
	}
	ld.add(loc, p, "unknown key (did you mean %s?)", s)
}

// recordOrigins notes, for every path a layer sets, where it came from.
func (ld *loader) recordOrigins(m map[string]any, prefix string, at func(string) location) {
	for key, v := range m {
		p := joinPath(prefix, key)
		if sub, ok := v.(map[string]any); ok {
			if _, seen := ld.sectionOrigin[p]; !seen {
				ld.sectionOrigin[p] = at(p)
			}
			ld.recordOrigins(sub, p, at)
			continue
		}
		ld.leafOrigin[p] = at(p)
	}
}

// recordNames lists in Source the variables and flags whose values made it
// into the merge.
func (ld *loader) recordNames(m map[string]any, prefix string, at func(string) location) {
	for key, v := range m {
		p := joinPath(prefix, key)
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			ld.recordNames(sub, p, at)
			continue
		}
		switch loc := at(p); loc.layer {
		case layerEnv:
			ld.source.Env = appendSorted(ld.source.Env, strings.TrimPrefix(loc.source, "env "))
		case layerFlag:
			ld.source.Flags = appendSorted(ld.source.Flags, strings.TrimPrefix(loc.source, "flag --"))
		}
	}
}

func appendSorted(s []string, v string) []string {
	i, found := slices.BinarySearch(s, v)
	if found {
		return s
	}
	return slices.Insert(s, i, v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// merge layers the checked maps over the defaults with koanf and decodes
// the result strictly.
func (ld *loader) merge(layers []map[string]any) *Config {
	defaults := Defaults()
	uplink := defaults["uplink"].(map[string]any)
	for _, kind := range uplinkKinds {
		for _, l := range layers {
			if u, ok := l["uplink"].(map[string]any); ok {
				if _, ok := u[kind].(map[string]any); ok {
					uplink[kind] = uplinkDefaults(kind)
				}
			}
		}
	}
	ld.k = koanf.New(".")
	for _, l := range append([]map[string]any{defaults}, layers...) {
		// A confmap provider with no delimiter keeps the nesting as checked;
		// its Read cannot fail.
		if err := ld.k.Load(confmap.Provider(l, ""), nil); err != nil {
			ld.add(location{layer: layerNone}, "", "merging the layers failed: %v", err)
		}
	}
	var cfg Config
	if err := decodeStrict(ld.k, &cfg); err != nil {
		// The layers were checked with the same rules, so this is a bug in
		// the checks; it is still reported like any other problem.
		ld.decodeProblems(err)
	}
	return &cfg
}

// decodeStrict decodes k into cfg as libraries.md prescribes for koanf:
// unknown keys are errors (ErrorUnused), names match exactly rather than
// case-folded, nothing is weakly typed, and the decode hook that a custom
// decoder config drops is replaced by convert, which also parses sizes
// and durations.
func decodeStrict(k *koanf.Koanf, cfg *Config) error {
	return k.UnmarshalWithConf("", cfg, koanf.UnmarshalConf{
		Tag: tagName,
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook: mapstructure.DecodeHookFuncValue(func(from, to reflect.Value) (any, error) {
				return convert(from.Interface(), to.Type())
			}),
			ErrorUnused:      true,
			WeaklyTypedInput: false,
			MatchName:        func(mapKey, field string) bool { return mapKey == field },
			TagName:          tagName,
		},
	})
}

var msIndexRE = regexp.MustCompile(`\[([^\]]*)\]`)

// decodeProblems turns mapstructure's error tree into FieldErrors.
func (ld *loader) decodeProblems(err error) {
	var de *mapstructure.DecodeError
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		for _, sub := range e.Unwrap() {
			ld.decodeProblems(sub)
		}
		return
	case *mapstructure.DecodeError:
		de = e
	default:
		if inner := errors.Unwrap(err); inner != nil {
			ld.decodeProblems(inner)
			return
		}
		ld.add(location{layer: layerNone}, "", "%s", err)
		return
	}
	path := msIndexRE.ReplaceAllString(de.Name(), ".$1")
	ld.add(ld.locate(path), path, "%s", de.Unwrap())
}

// locate returns where the value at path came from: the layer that set it,
// or the nearest enclosing section that was written somewhere.
func (ld *loader) locate(path string) location {
	isSection := false
	if ld.k != nil {
		_, isSection = ld.k.Get(path).(map[string]any)
	}
	if loc, ok := ld.leafOrigin[path]; ok && !isSection {
		return loc
	}
	for p := path; p != ""; p = parentPath(p) {
		if loc, ok := ld.sectionOrigin[p]; ok {
			return loc
		}
	}
	return location{layer: layerNone}
}

func parentPath(p string) string {
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}
