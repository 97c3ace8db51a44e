package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"

	"govx/exchange"
	"govx/exchange/mask"
)

func benchPersons(b *testing.B, n int) []Change {
	d := dataset(b, "population.person")
	g := &gen{r: newRand(), d: d, keys: 1}
	cs := make([]Change, n)
	for i := range cs {
		rec := g.record()
		rec["id_number"] = fmt.Sprintf("33010619%010d", i)
		cs[i] = Change{Record: rec, Partition: int32(i % 6), Offset: int64(i / 6)}
	}
	return cs
}

// BenchmarkApply measures ingest of new persons, in batches of 1000.
func BenchmarkApply(b *testing.B) {
	cs := benchPersons(b, 100_000)
	d := dataset(b, "population.person")
	b.ResetTimer()
	for range b.N {
		t := New(d)
		for i := 0; i < len(cs); i += 1000 {
			if err := t.Apply(cs[i : i+1000]); err != nil {
				b.Fatal(err)
			}
		}
		t.Close()
	}
	b.ReportMetric(float64(len(cs)*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkApplyRows is BenchmarkApply with the records given as typed rows, as ingest
// gives them (Change.Row).
func BenchmarkApplyRows(b *testing.B) {
	cs := benchPersons(b, 100_000)
	d := dataset(b, "population.person")
	for i := range cs {
		row := make([]Cell, len(d.Fields))
		for j := range d.Fields {
			c, err := parseCell(&d.Fields[j], cs[i].Record[d.Fields[j].Name])
			if err != nil {
				b.Fatal(err)
			}
			row[j] = c
		}
		cs[i].Record, cs[i].Row = nil, row
	}
	b.ResetTimer()
	for range b.N {
		t := New(d)
		for i := 0; i < len(cs); i += 512 {
			if err := t.Apply(cs[i:min(i+512, len(cs))]); err != nil {
				b.Fatal(err)
			}
		}
		t.Close()
	}
	b.ReportMetric(float64(len(cs)*b.N)/b.Elapsed().Seconds(), "records/s")
}

func benchTable(b *testing.B) *Snapshot {
	cs := benchPersons(b, 200_000)
	t := New(dataset(b, "population.person"))
	b.Cleanup(t.Close)
	if err := t.Apply(cs); err != nil {
		b.Fatal(err)
	}
	s := t.Snapshot()
	b.Cleanup(s.Release)
	settle(t)
	return s
}

func benchScan(b *testing.B, filter []exchange.Filter) {
	s := benchTable(b)
	spec := Spec{
		Columns: []string{"id_number", "name", "gender", "birth_date", "household_region", "status"},
		Masks:   map[string]string{"id_number": mask.IDCard, "name": mask.Name},
		Filter:  filter,
	}
	b.ResetTimer()
	var rows int64
	for range b.N {
		if err := s.Scan(context.Background(), spec, func(r arrow.Record) error { rows += r.NumRows(); return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkScanMasked: projection and two masks, every row.
func BenchmarkScanMasked(b *testing.B) { benchScan(b, nil) }

// BenchmarkScanFiltered: the same with a filter keeping about one row in seven.
func BenchmarkScanFiltered(b *testing.B) {
	benchScan(b, []exchange.Filter{{Column: "household_region", Op: "in", Value: []any{"330106", "330108"}}})
}

func BenchmarkLookup(b *testing.B) {
	s := benchTable(b)
	b.ResetTimer()
	for i := range b.N {
		if _, ok := s.Lookup(fmt.Sprintf("33010619%010d", i%200_000)); !ok {
			b.Fatal("not found")
		}
	}
}

// BenchmarkLookupScoped: a lookup within a row scope, as the exchange's lookups are.
func BenchmarkLookupScoped(b *testing.B) {
	s := benchTable(b)
	scope := []exchange.Filter{{Column: "household_region", Op: "prefix", Value: "33"}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, _, err := s.LookupScoped(fmt.Sprintf("33010619%010d", i%200_000), scope); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFirstScan: the first masked pull of a table just ingested, every row, the
// masks of the pull the catalog's defaults; the table is built anew for each (not
// timed), so nothing is warm but what ingest prepared before the exchange is ready.
func BenchmarkFirstScan(b *testing.B) {
	cs := benchPersons(b, 200_000)
	d := dataset(b, "population.person")
	spec := Spec{
		Columns: []string{"id_number", "name", "gender", "birth_date", "household_region", "status"},
		Masks:   map[string]string{"id_number": mask.IDCard, "name": mask.Name},
	}
	var rows int64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		t := New(d)
		if err := t.Apply(cs); err != nil {
			b.Fatal(err)
		}
		s := t.Snapshot()
		settle(t)
		b.StartTimer()
		if err := s.Scan(context.Background(), spec, func(r arrow.Record) error { rows += r.NumRows(); return nil }); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Release()
		t.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}

// settle waits for the masking Apply started in the background, as an exchange is
// ready only once its ingest has caught up.
func settle(t *Table) { t.matWG.Wait() }
