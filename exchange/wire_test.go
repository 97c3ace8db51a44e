package exchange_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"syscall"
	"testing"

	"govx/exchange"
)

func TestDuplicateField(t *testing.T) {
	for _, tt := range []struct {
		body string
		dup  string // "" when none
	}{
		{`{"purpose":"a","limit":1}`, ""},
		{`{"purpose":"a","purpose":"b"}`, "purpose"},
		// Go's decoder would read "Purpose" into the same field: ambiguous, refused.
		{`{"purpose":"a","Purpose":"b"}`, "Purpose"},
		// The Kelvin sign folds to k, as encoding/json matches it.
		{`{"key":"a","\u212aey":"b"}`, "\u212aey"},
		{`{"claims":{"name":"张三","name":"李四"},"key":"x"}`, "name"},
		{`{"filter":[{"column":"a","op":"eq","column":"b"}]}`, "column"},
		// The same name in sibling objects, or as a string value, is no duplicate.
		{`{"filter":[{"column":"a"},{"column":"b"}],"column":"column"}`, ""},
		{`{"a":{"b":1},"b":{"a":2}}`, ""},
		{`["a","a"]`, ""},
		{`{"a":[{"x":1}],"b":[[{"x":1,"y":{"x":2}}]]}`, ""},
		// Not JSON: the strict decoder reports it, not this.
		{`{"a":`, ""},
		{`{"a":1,"a"`, "a"},
	} {
		got, dup := exchange.DuplicateField([]byte(tt.body))
		if dup != (tt.dup != "") || got != tt.dup {
			t.Errorf("DuplicateField(%s) = %q, %v; want %q", tt.body, got, dup, tt.dup)
		}
	}
}

func FuzzDuplicateField(f *testing.F) {
	f.Add([]byte(`{"dataset":"population.person","purpose":"p","filter":[{"column":"a","op":"eq","value":1}]}`))
	f.Add([]byte(`{"a":1,"A":2}`))
	f.Add([]byte(`{"claims":{"x":{"y":[1,{"z":null}]}},"key":["a","b"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		name, dup := exchange.DuplicateField(data)
		if !dup {
			if name != "" {
				t.Fatalf("no duplicate but a name %q", name)
			}
			// A valid object without duplicates decodes into a map with one entry per
			// name it lists at the top level.
			var m map[string]json.RawMessage
			if json.Unmarshal(data, &m) == nil {
				var names []string
				dec := json.NewDecoder(strings.NewReader(string(data)))
				dec.Token()
				for dec.More() {
					tok, err := dec.Token()
					if err != nil {
						t.Fatal(err)
					}
					names = append(names, tok.(string))
					var skip json.RawMessage
					if err := dec.Decode(&skip); err != nil {
						t.Fatal(err)
					}
				}
				if len(names) != len(m) {
					t.Fatalf("%s: %d names, %d distinct, but no duplicate reported", data, len(names), len(m))
				}
			}
			return
		}
		// A reported duplicate is a name the text holds at least twice (up to case).
		var n int
		dec := json.NewDecoder(strings.NewReader(string(data)))
		for {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			if s, ok := tok.(string); ok && strings.EqualFold(s, name) {
				n++
			}
		}
		if n < 2 {
			t.Fatalf("%s: duplicate %q reported, but it occurs %d times", data, name, n)
		}
	})
}

func TestClientGoneIsCancellation(t *testing.T) {
	err := exchange.ClientGone(syscall.EPIPE)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("ClientGone(EPIPE) = %v: want it to match context.Canceled and keep its cause", err)
	}
	if exchange.KindOf(err) != exchange.Internal {
		t.Fatalf("ClientGone is of kind %v; it carries no exchange error", exchange.KindOf(err))
	}
}
