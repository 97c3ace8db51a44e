package client

import (
	"reflect"
	"testing"
	"unicode/utf8"

	"govx/exchange"
)

func TestParseWhere(t *testing.T) {
	types := map[string]string{"longitude": "float64", "n": "int64"}
	typeOf := func(c string) string { return types[c] }
	for _, tt := range []struct {
		in   string
		want exchange.Filter
	}{
		{"household_region prefix 3301", exchange.Filter{Column: "household_region", Op: "prefix", Value: "3301"}},
		{"name = 欧阳 娜娜", exchange.Filter{Column: "name", Op: "eq", Value: "欧阳 娜娜"}},
		{"status in alive, migrated", exchange.Filter{Column: "status", Op: "in", Value: []any{"alive", "migrated"}}},
		{"phone is_null", exchange.Filter{Column: "phone", Op: "is_null"}},
		{"longitude >= 120.5", exchange.Filter{Column: "longitude", Op: "ge", Value: "120.5"}},
		{"n != 7", exchange.Filter{Column: "n", Op: "ne", Value: int64(7)}},
		{"birth_date < 1990-01-01", exchange.Filter{Column: "birth_date", Op: "lt", Value: "1990-01-01"}},
	} {
		got, err := ParseWhere(tt.in, typeOf)
		if err != nil {
			t.Errorf("ParseWhere(%q): %v", tt.in, err)
			continue
		}
		if n, ok := got.Value.(interface{ String() string }); ok {
			got.Value = n.String()
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseWhere(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"", "name", "name like 张%", "phone is_null x", "name =", "n = seven", "longitude > east", "; DROP TABLE x"} {
		if _, err := ParseWhere(bad, typeOf); err == nil {
			t.Errorf("ParseWhere(%q) accepted", bad)
		}
	}
}

func FuzzParseWhere(f *testing.F) {
	for _, s := range []string{"a = b", "a in 1,2", "x is_null", "n >= 3", "longitude < 1e9", "名 prefix 张"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseWhere(s, func(c string) string {
			if c == "n" {
				return "int64"
			}
			return "string"
		})
		if err != nil {
			return
		}
		if got.Column == "" || !exchange.ValidOp(got.Op) {
			t.Fatalf("ParseWhere(%q) = %+v: accepted without a column or a valid op", s, got)
		}
		if v, ok := got.Value.(string); ok && utf8.ValidString(s) && !utf8.ValidString(v) {
			t.Fatalf("ParseWhere(%q) produced invalid UTF-8 %q", s, v)
		}
	})
}
