package synth_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"

	"govx/connectors/synth"
)

// TestCSVTarget: each export has a header row; the market-regulation export is GB18030
// and decodes back to the same Chinese names; the others are UTF-8.
func TestCSVTarget(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	g := newGen(t, 1000, 5, synth.DefaultInvalidRate)
	w, err := synth.Open(ctx, "csv:"+dir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := synth.Generate(ctx, g, w, nil); err != nil {
		t.Fatal(err)
	}
	for _, dept := range g.Departments() {
		tab := synth.TableOf(dept)
		raw, err := os.ReadFile(synth.CSVPath(dir, dept))
		if err != nil {
			t.Fatal(err)
		}
		text := raw
		if synth.CSVCharset(dept) == "GB18030" {
			if utf8.Valid(raw) {
				t.Fatalf("%s export is valid UTF-8; it should be GB18030", dept)
			}
			if text, err = simplifiedchinese.GB18030.NewDecoder().Bytes(raw); err != nil {
				t.Fatal(err)
			}
		} else if !utf8.Valid(raw) {
			t.Fatalf("%s export is not UTF-8", dept)
		}
		recs, err := csv.NewReader(bytes.NewReader(text)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := recs[0], tab.ColumnNames(); !equal(got, want) {
			t.Fatalf("%s header %v, want %v", dept, got, want)
		}
		if len(recs)-1 != g.Count(dept) {
			t.Fatalf("%s: %d data rows, want %d", dept, len(recs)-1, g.Count(dept))
		}
		for i, rec := range recs[1:] {
			row := g.Row(dept, i)
			// Name columns (xm, qymc, fddbr_xm) and keys must survive the encoding exactly.
			for k := range 2 {
				if rec[k] != row[k] {
					t.Fatalf("%s row %d column %s: %q, generated %q", dept, i, tab.Columns[k].Name, rec[k], row[k])
				}
			}
			if dept == synth.DeptMarket && rec[4] != row[4] {
				t.Fatalf("legal representative of row %d: %q, generated %q", i, rec[4], row[4])
			}
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
