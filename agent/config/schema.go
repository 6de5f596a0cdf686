package config

import (
	"reflect"
	"sort"
	"strings"
)

// The schema is the Config type itself: key names come from koanf tags, so
// the struct is the one place a key is declared.

const tagName = "koanf"

var configType = reflect.TypeFor[Config]()

// schemaField returns the field of struct type t whose key is exactly key.
// Matching is case-sensitive on purpose: mapstructure's default folds case,
// which would let "Port" pass for "port" in one layer and not another.
func schemaField(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag := keyOf(f); tag != "" && tag == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// keyOf returns the key of a struct field, or "" when it is not a key.
func keyOf(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(f.Tag.Get(tagName), ",")
	if tag == "-" {
		return ""
	}
	return tag
}

// sectionType returns the struct type behind t when t is a section (a struct
// or a pointer to one).
func sectionType(t reflect.Type) (reflect.Type, bool) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Struct && t != durationType {
		return t, true
	}
	return nil, false
}

// isStringMap reports whether t is a free-form map section such as
// plugins.sha256, whose keys are names rather than schema keys.
func isStringMap(t reflect.Type) bool {
	return t.Kind() == reflect.Map && t.Key().Kind() == reflect.String
}

// isStringList reports whether t is a list of text values such as
// remote_config.allow.
func isStringList(t reflect.Type) bool {
	return t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String
}

// typeAt returns the Go type of the key at path, or false when no such key
// exists in the schema. Inside a free-form map every name is a key.
func typeAt(path []string) (reflect.Type, bool) {
	t := configType
	for _, seg := range path {
		if st, ok := sectionType(t); ok {
			f, ok := schemaField(st, seg)
			if !ok {
				return nil, false
			}
			t = f.Type
			continue
		}
		if isStringMap(t) {
			t = t.Elem()
			continue
		}
		return nil, false
	}
	return t, true
}

// sectionKeys returns the keys of a section type in declaration order.
func sectionKeys(st reflect.Type) []string {
	var keys []string
	for i := range st.NumField() {
		if k := keyOf(st.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// schemaPaths returns every key path of the schema, sections included,
// sorted. A free-form map appears as its own path.
func schemaPaths() []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for _, k := range sectionKeys(t) {
			f, _ := schemaField(t, k)
			p := joinPath(prefix, k)
			out = append(out, p)
			if st, ok := sectionType(f.Type); ok {
				walk(st, p)
			}
		}
	}
	walk(configType, "")
	sort.Strings(out)
	return out
}

func joinPath(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// envName renders a key path as the environment variable that sets it.
func envName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "__"))
}

// EnvName is the environment variable that sets the key at path, by the
// loader's rule: "status.token_file" is CELLGATE_STATUS__TOKEN_FILE. For
// commands that read one section themselves (`cellgate status`).
func EnvName(path string) string { return envName(path) }
