package store

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// asRow is rec as the typed row a decoder gives Apply (Change.Row).
func asRow(t *testing.T, tbl *Table, rec map[string]any) []Cell {
	t.Helper()
	row := make([]Cell, len(tbl.d.Fields))
	for i := range tbl.d.Fields {
		c, err := parseCell(&tbl.d.Fields[i], rec[tbl.d.Fields[i].Name])
		if err != nil {
			t.Fatal(err)
		}
		row[i] = c
	}
	return row
}

// TestApplyRowsAsRecords: rows given as typed cells are stored exactly as the same
// records given as maps, for a single and a composite key, with and without the
// message key; Apply keeps copies, so the caller may overwrite the cells once it
// returns — also when it stopped on a full table in the middle of a chunk.
func TestApplyRowsAsRecords(t *testing.T) {
	for _, tc := range []struct {
		dataset string
		recs    []map[string]any
	}{
		{"population.person", []map[string]any{
			person("330106199001011234", "张三", "330106"), person("330106199001015678", "李四", "330106"),
			person("330106199001011234", "张三丰", "330108"),
		}},
		{"economy.indicator", []map[string]any{
			{"indicator_code": "GDP", "region_code": "330100", "period": "2024Q3", "value": "1234.5678", "unit": "亿元",
				"published_on": "2024-10-20", "updated_at": "2024-10-20T08:00:00+08:00"},
			{"indicator_code": "CPI", "region_code": "330100", "period": "2024-09", "value": "-0.1", "unit": "%",
				"published_on": "2024-10-15", "updated_at": "2024-10-15T00:00:00.5Z"},
		}},
	} {
		d := dataset(t, tc.dataset)
		byRow, byRecord := New(d, WithAllocator(checked(t))), New(d, WithAllocator(checked(t)))
		var rows, recs []Change
		var keys []string
		for i, rec := range tc.recs {
			k, err := d.RecordKey(rec)
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k)
			c := Change{Offset: int64(i), Row: asRow(t, byRow, rec)}
			if i%2 == 0 {
				c.Key = k
			}
			rows = append(rows, c)
			recs = append(recs, Change{Key: c.Key, Offset: int64(i), Record: rec})
		}
		if err := byRow.Apply(rows); err != nil {
			t.Fatalf("%s: Apply(rows) = %v", tc.dataset, err)
		}
		if err := byRecord.Apply(recs); err != nil {
			t.Fatalf("%s: Apply(records) = %v", tc.dataset, err)
		}
		for _, c := range rows {
			for i := range c.Row {
				c.Row[i] = Text(strings.Repeat("X", i+1)) // the caller reuses its cells
			}
		}
		a, b := byRow.Snapshot(), byRecord.Snapshot()
		for _, k := range keys {
			got, gok := a.Lookup(k)
			want, wok := b.Lookup(k)
			if !gok || !wok || !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s: stored from a row %v (%v), from the record %v (%v)", tc.dataset, k, got, gok, want, wok)
			}
		}
		if a.Len() != b.Len() {
			t.Errorf("%s: %d rows from rows, %d from records", tc.dataset, a.Len(), b.Len())
		}
		a.Release()
		b.Release()
		byRow.Close()
		byRecord.Close()
	}

	// A full table in the middle of a chunk: the rows applied before it are copied too.
	d := dataset(t, "population.person")
	tbl := New(d, WithAllocator(checked(t)))
	defer tbl.Close()
	tbl.maxRow = 2
	var changes []Change
	for i := range 3 {
		changes = append(changes, Change{Offset: int64(i), Row: asRow(t, tbl, person(fmt.Sprintf("3301061990010100%02d", i), []string{"甲", "乙", "丙"}[i], "330106"))})
	}
	if err := tbl.Apply(changes); !errors.Is(err, ErrTableFull) {
		t.Fatalf("Apply = %v, want ErrTableFull", err)
	}
	for _, c := range changes {
		for i := range c.Row {
			c.Row[i] = Text("overwritten")
		}
	}
	s := tbl.Snapshot()
	defer s.Release()
	if rec, ok := s.Lookup("330106199001010001"); !ok || rec["name"] != "乙" || s.Len() != 2 {
		t.Fatalf("after the stop, Lookup = %v, %v (Len %d): want the second person as applied", rec, ok, s.Len())
	}
}

// TestApplyRowChecks: a row of the wrong width or without a required value is refused
// as a record's fault, never stored.
func TestApplyRowChecks(t *testing.T) {
	d := dataset(t, "population.person")
	tbl := New(d, WithAllocator(checked(t)))
	defer tbl.Close()
	good := asRow(t, tbl, person("330106199001011234", "张三", "330106"))
	noName := append([]Cell(nil), good...)
	noName[1] = Null()
	err := tbl.Apply([]Change{
		{Offset: 0, Row: good[:3]},
		{Offset: 1, Row: noName},
		{Offset: 2, Row: good, Key: "330106199001015678"},
	})
	var ce *ChangeError
	if !errors.As(err, &ce) || len(ce.Failed) != 3 {
		t.Fatalf("Apply = %v, want the three changes refused", err)
	}
	for i, want := range []string{"has 3 fields", "name is required", "is not the record's key"} {
		if !strings.Contains(ce.Failed[i].Err.Error(), want) {
			t.Errorf("change %d refused with %q, want it to say %q", i, ce.Failed[i].Err, want)
		}
	}
	if tbl.Len() != 0 || tbl.Positions()[0] != 3 {
		t.Errorf("Len %d, position %d: want nothing stored and the positions past all three", tbl.Len(), tbl.Positions()[0])
	}
}
