package store

import (
	"context"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"

	"govx/exchange"
)

// TestChangesReportRowsLeavingTheScope: a person who moves out of the caller's city
// comes as a delete in the caller's changes pull, so the caller's copy follows its scope.
func TestChangesReportRowsLeavingTheScope(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	tbl := New(d, WithAllocator(mem))
	defer tbl.Close()
	person := func(id, region string) map[string]any {
		return map[string]any{"id_number": id, "name": "张三", "gender": "1", "birth_date": "1990-03-07",
			"household_region": region, "status": "alive", "updated_at": "2026-11-01T00:00:00Z"}
	}
	mover, stayer := "330106199003071236", "330106198511110026"
	if err := tbl.Apply([]Change{{Record: person(mover, "330106"), Offset: 0}, {Record: person(stayer, "330106"), Offset: 1}}); err != nil {
		t.Fatal(err)
	}
	snap := tbl.Snapshot()
	since := snap.Cursor()
	snap.Release()
	if err := tbl.Apply([]Change{{Record: person(mover, "320102"), Offset: 2}}); err != nil {
		t.Fatal(err)
	}
	snap = tbl.Snapshot()
	defer snap.Release()
	spec := Spec{Columns: []string{"id_number", "household_region"}, Filter: []exchange.Filter{{Column: "household_region", Op: "prefix", Value: "3301"}}}
	got := map[string]string{}
	err := snap.Changes(context.Background(), since, spec, func(rec arrow.Record) error {
		for i := 0; i < int(rec.NumRows()); i++ {
			got[rec.Column(1).ValueStr(i)] = rec.Column(0).ValueStr(i)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[mover] != OpDelete {
		t.Fatalf("changes for Hangzhou = %v, want only a delete of the person who moved away", got)
	}
	// Nanjing's view of the same change is an upsert.
	spec.Filter[0].Value = "3201"
	clear(got)
	snap.Changes(context.Background(), since, spec, func(rec arrow.Record) error {
		for i := 0; i < int(rec.NumRows()); i++ {
			got[rec.Column(1).ValueStr(i)] = rec.Column(0).ValueStr(i)
		}
		return nil
	})
	if len(got) != 1 || got[mover] != OpUpsert {
		t.Fatalf("changes for Nanjing = %v, want the newcomer as an upsert", got)
	}
}

// TestChangesReportDeleteOfRowThatLeftTheScope: moved away, then deleted — the caller
// that held the row still gets its delete.
func TestChangesReportDeleteOfRowThatLeftTheScope(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	tbl := New(d, WithAllocator(mem))
	defer tbl.Close()
	rec := func(region string) map[string]any {
		return map[string]any{"id_number": "330106199003071236", "name": "张三", "gender": "1", "birth_date": "1990-03-07",
			"household_region": region, "status": "alive", "updated_at": "2026-11-01T00:00:00Z"}
	}
	tbl.Apply([]Change{{Record: rec("330106"), Offset: 0}})
	snap := tbl.Snapshot()
	since := snap.Cursor()
	snap.Release()
	tbl.Apply([]Change{{Record: rec("320102"), Offset: 1}, {Key: "330106199003071236", Offset: 2}})
	snap = tbl.Snapshot()
	defer snap.Release()
	var ops []string
	spec := Spec{Columns: []string{"id_number"}, Filter: []exchange.Filter{{Column: "household_region", Op: "prefix", Value: "3301"}}}
	snap.Changes(context.Background(), since, spec, func(r arrow.Record) error {
		for i := 0; i < int(r.NumRows()); i++ {
			ops = append(ops, r.Column(0).ValueStr(i))
		}
		return nil
	})
	if len(ops) != 1 || ops[0] != OpDelete {
		t.Fatalf("changes for Hangzhou = %v, want one delete", ops)
	}
}
