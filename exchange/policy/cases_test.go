package policy_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"govx/exchange"
	"govx/exchange/policy"
	"govx/schemas"
)

// caseFile is the shape of policies/testdata/cases/*.yaml.
type caseFile struct {
	Cases []struct {
		Name    string `yaml:"name"`
		Request struct {
			As      string            `yaml:"as"`
			Action  string            `yaml:"action"`
			Dataset string            `yaml:"dataset"`
			Columns []string          `yaml:"columns"`
			Filter  []exchange.Filter `yaml:"filter"`
			Purpose string            `yaml:"purpose"`
			CaseRef string            `yaml:"case_ref"`
			Limit   int64             `yaml:"limit"`
			Time    string            `yaml:"time"`
		} `yaml:"request"`
		Want struct {
			Allow           *bool              `yaml:"allow"`
			Reasons         []string           `yaml:"reasons"`
			MessageContains string             `yaml:"message_contains"`
			Agreement       *string            `yaml:"agreement"`
			Columns         []string           `yaml:"columns"`
			Masks           *map[string]string `yaml:"masks"`
			RowFilter       *[]exchange.Filter `yaml:"row_filter"`
			MaxRows         *int64             `yaml:"max_rows"`
		} `yaml:"want"`
	} `yaml:"cases"`
}

func subject(as string) exchange.Subject {
	dept, sys, _ := strings.Cut(as, "/")
	return exchange.Subject{Department: dept, System: sys}
}

// TestDecisionCases runs the data-file decision cases through the engine, cached and
// uncached, exactly as the exchange decides.
func TestDecisionCases(t *testing.T) {
	files, err := filepath.Glob("../../policies/testdata/cases/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no decision cases found: %v", err)
	}
	eng, err := policy.New(schemas.MustLoad())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var cf caseFile
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&cf); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, c := range cf.Cases {
			n++
			t.Run(filepath.Base(file)+"/"+c.Name, func(t *testing.T) {
				r := c.Request
				tm, err := time.Parse(time.RFC3339Nano, r.Time)
				if err != nil {
					t.Fatalf("case time: %v", err)
				}
				req := exchange.Request{
					Subject: subject(r.As), Action: exchange.Action(r.Action), Dataset: r.Dataset,
					Columns: r.Columns, Filter: r.Filter, Purpose: r.Purpose, CaseRef: r.CaseRef,
					Limit: r.Limit, Time: tm,
				}
				if c.Want.Allow == nil {
					t.Fatal("case has no want.allow")
				}
				for _, pass := range []string{"cold", "cached"} {
					d := eng.Decide(context.Background(), req)
					w := c.Want
					if d.Allow != *w.Allow {
						t.Fatalf("%s: allow = %v, want %v; reasons %v", pass, d.Allow, *w.Allow, d.Reasons)
					}
					if w.Reasons != nil {
						var codes []string
						for _, r := range d.Reasons {
							codes = append(codes, r.Code)
						}
						if !reflect.DeepEqual(codes, w.Reasons) {
							t.Errorf("%s: reasons %v, want %v (%v)", pass, codes, w.Reasons, d.Reasons)
						}
					}
					if w.MessageContains != "" && (len(d.Reasons) == 0 || !strings.Contains(d.Reasons[0].Message, w.MessageContains)) {
						t.Errorf("%s: reasons %v do not mention %q", pass, d.Reasons, w.MessageContains)
					}
					if w.Agreement != nil && d.Agreement != *w.Agreement {
						t.Errorf("%s: agreement %q, want %q", pass, d.Agreement, *w.Agreement)
					}
					if w.Columns != nil && !reflect.DeepEqual(d.Columns, w.Columns) {
						t.Errorf("%s: columns %v, want %v", pass, d.Columns, w.Columns)
					}
					if w.Masks != nil && !reflect.DeepEqual(d.Masks, *w.Masks) {
						t.Errorf("%s: masks %v, want %v", pass, d.Masks, *w.Masks)
					}
					if w.RowFilter != nil && !(len(d.RowFilter) == 0 && len(*w.RowFilter) == 0) && !reflect.DeepEqual(d.RowFilter, *w.RowFilter) {
						t.Errorf("%s: row filter %v, want %v", pass, d.RowFilter, *w.RowFilter)
					}
					if w.MaxRows != nil && d.MaxRows != *w.MaxRows {
						t.Errorf("%s: max_rows %d, want %d", pass, d.MaxRows, *w.MaxRows)
					}
					if d.Revision != eng.Revision() || d.Revision == "" {
						t.Errorf("%s: decision revision %q, engine %q", pass, d.Revision, eng.Revision())
					}
				}
			})
		}
	}
	if n < 25 {
		t.Errorf("only %d decision cases", n)
	}
	// Each case's second pass comes from the index (as may its first), the compiled
	// decision or the cache.
	if s := eng.Stats(); s.CacheHits+s.IndexHits+s.Compiled < uint64(n) {
		t.Errorf("the second pass of %d cases hit the index, the compiled decision and the cache %d, %d and %d times", n, s.IndexHits, s.Compiled, s.CacheHits)
	}
}
