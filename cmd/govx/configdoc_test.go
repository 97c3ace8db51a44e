package main

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"govx/connectors"
	"govx/exchange/server"
)

// yamlKeys lists the dotted keys a config struct accepts, from its yaml tags: nested
// structs (and pointers to them) add their keys under the parent's, a map of structs
// adds its entries' keys under "<parent>.<field>", anything else is a key of its own.
func yamlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		key := prefix + name
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct && ft.PkgPath() != "time":
			keys = append(keys, yamlKeys(ft, key+".")...)
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			// A mapping entry may be written short (the column alone) or in full.
			keys = append(keys, key+".<field>")
			keys = append(keys, yamlKeys(ft.Elem(), key+".<field>.")...)
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

// documentedKeys reads the first column of the tables of the section titled title.
func documentedKeys(t *testing.T, doc, title string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n## "+title+"\n")
	if !ok {
		t.Fatalf("docs/configuration.md has no section %q", title)
	}
	rest, _, _ = strings.Cut(rest, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")
	var keys []string
	for _, m := range row.FindAllStringSubmatch(rest, -1) {
		keys = append(keys, m[1])
	}
	return keys
}

// TestConfigReferenceMatchesCode: docs/configuration.md lists every key of the exchange
// and connector configs, once, and no key the code does not accept.
func TestConfigReferenceMatchesCode(t *testing.T) {
	data, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		title string
		typ   reflect.Type
	}{
		{"Exchange", reflect.TypeFor[server.Config]()},
		{"Connector", reflect.TypeFor[connectors.Config]()},
	} {
		code := yamlKeys(tt.typ, "")
		doc := documentedKeys(t, string(data), tt.title)
		for _, k := range code {
			if !slices.Contains(doc, k) {
				t.Errorf("%s config key %s is not documented in docs/configuration.md", tt.title, k)
			}
		}
		seen := map[string]bool{}
		for _, k := range doc {
			if !slices.Contains(code, k) {
				t.Errorf("docs/configuration.md documents %s key %s, which the code does not accept", tt.title, k)
			}
			if seen[k] {
				t.Errorf("docs/configuration.md documents %s key %s twice", tt.title, k)
			}
			seen[k] = true
		}
		if len(code) < 10 {
			t.Errorf("%s: found only %d keys in the code: %v", tt.title, len(code), code)
		}
	}
}
