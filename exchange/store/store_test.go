package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"

	"govx/exchange"
	"govx/exchange/mask"
	"govx/schemas"
)

var testKey = mask.DeriveKey([]byte("a master secret for tests only!!"), "mz-3301")

func person(id, name, region string) map[string]any {
	return map[string]any{
		"id_number": id, "name": name, "gender": "1", "birth_date": "1990-01-01",
		"household_region": region, "address": "浙江省杭州市西湖区文三路1号", "phone": "13812345678",
		"status": "alive", "updated_at": "2024-09-30T08:00:00Z",
	}
}

func TestUpsertDeleteReinsert(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	tbl := New(d, WithAllocator(mem), WithSegmentRows(4))
	defer tbl.Close()

	const a, b = "330106199001011234", "330106199001015678"
	if err := tbl.Apply([]Change{
		{Record: person(a, "张三", "330106"), Partition: 0, Offset: 0},
		{Record: person(b, "李四", "330106"), Partition: 1, Offset: 0},
	}); err != nil {
		t.Fatal(err)
	}
	s1 := tbl.Snapshot()
	defer s1.Release()

	if err := tbl.Apply([]Change{
		{Key: a, Record: person(a, "张三丰", "330108"), Partition: 0, Offset: 1},
		{Key: b, Partition: 1, Offset: 1}, // delete
	}); err != nil {
		t.Fatal(err)
	}
	s2 := tbl.Snapshot()
	defer s2.Release()
	if got := tbl.Len(); got != 1 {
		t.Fatalf("after update and delete: Len = %d, want 1", got)
	}
	if rec, ok := s2.Lookup(a); !ok || rec["name"] != "张三丰" || rec["household_region"] != "330108" {
		t.Fatalf("Lookup(a) after update = %v, %v", rec, ok)
	}
	if _, ok := s2.Lookup(b); ok {
		t.Fatal("Lookup(b) finds a deleted person")
	}
	// The older snapshot still sees its version.
	if rec, ok := s1.Lookup(a); !ok || rec["name"] != "张三" {
		t.Fatalf("old snapshot Lookup(a) = %v, %v; want the old name", rec, ok)
	}
	if _, ok := s1.Lookup(b); !ok {
		t.Fatal("old snapshot lost b")
	}

	// Re-insert b; a replayed old change is skipped.
	if err := tbl.Apply([]Change{
		{Record: person(b, "李四", "320102"), Partition: 1, Offset: 2},
		{Record: person(a, "张三", "330106"), Partition: 0, Offset: 0}, // replay
	}); err != nil {
		t.Fatal(err)
	}
	s3 := tbl.Snapshot()
	defer s3.Release()
	if rec, ok := s3.Lookup(b); !ok || rec["household_region"] != "320102" {
		t.Fatalf("re-inserted b = %v, %v", rec, ok)
	}
	if rec, _ := s3.Lookup(a); rec["name"] != "张三丰" {
		t.Fatalf("a replayed change was applied again: name %v", rec["name"])
	}
	if _, ok := s2.Lookup(b); ok {
		t.Fatal("the snapshot between delete and re-insert sees b")
	}
	if got, want := tbl.Positions(), map[int32]int64{0: 2, 1: 3}; !mapsEqual(got, want) {
		t.Fatalf("Positions = %v, want %v", got, want)
	}
	if n, _ := s3.Count(context.Background(), nil); n != 2 {
		t.Fatalf("Count = %d, want 2", n)
	}
	if got := rowsOf(t, collectRelease(t, s1, Spec{Columns: []string{"name"}})); !slices.Equal(got, []string{`["张三"]`, `["李四"]`}) {
		t.Fatalf("old snapshot scan = %v", got)
	}
}

func collectRelease(t *testing.T, s *Snapshot, spec Spec) []arrow.Record {
	recs := collect(t, s, spec)
	t.Cleanup(func() { releaseAll(recs) })
	return recs
}

func mapsEqual(a, b map[int32]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestApplyRejectsBadRecords(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	tbl := New(d, WithAllocator(mem))
	defer tbl.Close()
	bad := person("330106199001011234", "张三", "330106")
	bad["birth_date"] = 19900101.0
	unknown := person("330106199001015678", "李四", "330106")
	unknown["shoe_size"] = "42"
	err := tbl.Apply([]Change{
		{Record: bad, Offset: 0},
		{Record: person("330106199001019999", "王五", "330106"), Offset: 1},
		{Record: unknown, Offset: 2},
		{Key: "330106199001010000", Record: person("330106199001019998", "赵六", "330106"), Offset: 3},
	})
	var ce *ChangeError
	if !errors.As(err, &ce) || len(ce.Failed) != 3 {
		t.Fatalf("Apply error = %v, want a ChangeError with 3 failures", err)
	}
	if !strings.Contains(ce.Failed[0].Err.Error(), "birth_date") {
		t.Errorf("error %q does not name birth_date", ce.Failed[0].Err)
	}
	if tbl.Len() != 1 || tbl.Positions()[0] != 4 {
		t.Fatalf("Len %d, positions %v: want the good change applied and every offset passed", tbl.Len(), tbl.Positions())
	}
}

// TestScanMatchesNaive compares Scan and Count with a row-by-row evaluation of random
// filters, projections and masks over random data with updates and deletes.
func TestScanMatchesNaive(t *testing.T) {
	for _, id := range []string{"test.kinds", "population.person", "economy.indicator", "legal_entity.organization"} {
		t.Run(id, func(t *testing.T) {
			mem := checked(t)
			d := dataset(t, id)
			r := rand.New(rand.NewPCG(7, uint64(len(id))))
			g := &gen{r: r, d: d, keys: 400}
			tbl := New(d, WithAllocator(mem), WithSegmentRows(128))
			defer tbl.Close()
			m := model{}
			var off int64
			for round := 0; round < 6; round++ {
				var cs []Change
				for range 300 {
					rec := g.record()
					k, _ := d.RecordKey(rec)
					if r.IntN(8) == 0 {
						cs = append(cs, Change{Key: k, Offset: off})
					} else {
						cs = append(cs, Change{Key: k, Record: rec, Offset: off})
					}
					off++
				}
				if err := tbl.Apply(cs); err != nil {
					t.Fatal(err)
				}
				m.apply(t, d, cs)
				s := tbl.Snapshot() // seal and merge small segments on the way
				for q := 0; q < 25; q++ {
					spec := randomSpec(g)
					got := rowsOf(t, collectRelease(t, s, spec))
					want := m.rows(t, d, spec)
					if !slices.Equal(got, want) {
						t.Fatalf("round %d spec %+v:\n got %d rows %.600v\nwant %d rows %.600v", round, spec, len(got), got, len(want), want)
					}
					n, err := s.Count(context.Background(), spec.Filter)
					if err != nil || n != int64(len(want)) {
						t.Fatalf("Count(%v) = %d, %v; want %d", spec.Filter, n, err, len(want))
					}
				}
				if s.Len() != len(m) {
					t.Fatalf("Len = %d, model has %d", s.Len(), len(m))
				}
				for k, rec := range m {
					got, ok := s.Lookup(k)
					if !ok || jsonRow(t, naiveRow(t, d, got, Spec{})) != jsonRow(t, naiveRow(t, d, rec, Spec{})) {
						t.Fatalf("Lookup(%s) = %v, %v; want %v", k, got, ok, rec)
					}
				}
				s.Release()
			}
		})
	}
}

func randomSpec(g *gen) Spec {
	r := g.r
	d := g.d
	var spec Spec
	for _, n := range d.FieldNames() {
		if r.IntN(2) == 0 {
			spec.Columns = append(spec.Columns, n)
		}
	}
	r.Shuffle(len(spec.Columns), func(i, j int) { spec.Columns[i], spec.Columns[j] = spec.Columns[j], spec.Columns[i] })
	spec.Masks = map[string]string{}
	for i := range d.Fields {
		f := &d.Fields[i]
		var choices []string
		switch f.Kind() {
		case schemas.KindString:
			choices = []string{"", mask.IDCard, mask.Name, mask.Phone, mask.Address, mask.Hash, mask.Null}
		case schemas.KindDate, schemas.KindTimestamp:
			choices = []string{"", mask.Year, mask.Hash, mask.Null}
		default:
			choices = []string{"", mask.Hash, mask.Null}
		}
		if m := choices[r.IntN(len(choices))]; m != "" {
			spec.Masks[f.Name] = m
		}
	}
	spec.MaskKey = testKey
	for range r.IntN(3) {
		spec.Filter = append(spec.Filter, g.filter())
	}
	spec.BatchRows = []int{0, 7, 100}[r.IntN(3)]
	return spec
}

// TestSnapshotIsolation scans snapshots while Apply runs and checks that each sees
// exactly the rows of its version: the changes before its cursor.
func TestSnapshotIsolation(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	tbl := New(d, WithAllocator(mem), WithSegmentRows(256))
	defer tbl.Close()
	r := rand.New(rand.NewPCG(1, 1))
	g := &gen{r: r, d: d, keys: 500}
	var all []Change
	for off := range int64(20000) {
		rec := g.record()
		k, _ := d.RecordKey(rec)
		rec["name"] = fmt.Sprintf("v%d", off) // every version distinct
		c := Change{Key: k, Record: rec, Offset: off}
		if r.IntN(10) == 0 {
			c.Record = nil
		}
		all = append(all, c)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < len(all); i += 97 {
			if err := tbl.Apply(all[i:min(i+97, len(all))]); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	m := model{}
	applied := 0
	checks := 0
	for {
		s := tbl.Snapshot()
		n := int(s.Cursor()[0])
		m.apply(t, d, all[applied:n])
		applied = n
		spec := Spec{Columns: []string{"id_number", "name"}}
		got := scanRows(t, s, spec)
		if want := m.rows(t, d, spec); !slices.Equal(got, want) {
			t.Fatalf("snapshot at offset %d: %d rows differ from the %d of its version", n, len(got), len(want))
		}
		s.Release()
		checks++
		if n == len(all) {
			break
		}
	}
	wg.Wait()
	t.Logf("%d snapshots checked", checks)
}

// scanRows scans and renders the rows, releasing the batches.
func scanRows(t *testing.T, s *Snapshot, spec Spec) []string {
	recs := collect(t, s, spec)
	defer releaseAll(recs)
	return rowsOf(t, recs)
}

func TestChangesSinceCursor(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	tbl := New(d, WithAllocator(mem), WithSegmentRows(3))
	defer tbl.Close()
	id := func(i int) string { return fmt.Sprintf("3301061990010100%02d", i) }
	var cs []Change
	for i := range 6 {
		region := "330106"
		if i%2 == 1 {
			region = "320102"
		}
		cs = append(cs, Change{Record: person(id(i), "甲", region), Partition: int32(i % 2), Offset: int64(i / 2)})
	}
	if err := tbl.Apply(cs); err != nil {
		t.Fatal(err)
	}
	s1 := tbl.Snapshot()
	defer s1.Release()
	c1, err := DecodeCursor(s1.Cursor().Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.Apply([]Change{
		{Record: person(id(0), "乙", "330106"), Partition: 0, Offset: 3}, // update
		{Key: id(2), Partition: 0, Offset: 4},                           // delete (in 3301)
		{Key: id(3), Partition: 1, Offset: 3},                           // delete (in 3201)
		{Key: id(4), Partition: 0, Offset: 5},                           // delete, then
		{Record: person(id(4), "丙", "330106"), Partition: 0, Offset: 6}, // re-insert
		{Record: person(id(7), "丁", "330106"), Partition: 1, Offset: 4}, // insert
	}); err != nil {
		t.Fatal(err)
	}
	s2 := tbl.Snapshot()
	defer s2.Release()

	spec := Spec{Columns: []string{"id_number", "name"}, Masks: map[string]string{"name": mask.Name}}
	changes := func(since Cursor, spec Spec) []string {
		var recs []arrow.Record
		err := s2.Changes(context.Background(), since, spec, func(r arrow.Record) error {
			if r.Schema().Field(0).Name != OpColumn {
				t.Fatalf("first column is %q, want op", r.Schema().Field(0).Name)
			}
			r.Retain()
			recs = append(recs, r)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		defer releaseAll(recs)
		return rowsOf(t, recs)
	}
	want := []string{
		`["delete","330106199001010002",null]`,
		`["delete","330106199001010003",null]`,
		`["upsert","330106199001010000","*"]`,
		`["upsert","330106199001010004","*"]`,
		`["upsert","330106199001010007","*"]`,
	}
	if got := changes(c1, spec); !slices.Equal(got, want) {
		t.Fatalf("changes since c1:\n got %v\nwant %v", got, want)
	}
	// A row filter applies to deletes too: 3201's delete is not shown to a 3301 scope.
	scoped := spec
	scoped.Filter = []exchange.Filter{{Column: "household_region", Op: "prefix", Value: "3301"}}
	if got := changes(c1, scoped); slices.Contains(got, `["delete","330106199001010003",null]`) || len(got) != 4 {
		t.Fatalf("scoped changes = %v: want 4 rows without the 3201 delete", got)
	}
	// Nothing changed after s2's own cursor.
	if got := changes(s2.Cursor(), spec); len(got) != 0 {
		t.Fatalf("changes since the latest cursor = %v, want none", got)
	}
	// From the empty cursor: every live row, plus the deletes.
	if got := changes(Cursor{}, spec); len(got) != 7 {
		t.Fatalf("changes since the beginning = %d rows (%v), want 5 upserts + 2 deletes", len(got), got)
	}
	sch, err := s2.ChangesSchema(spec)
	if err != nil || sch.Field(0).Name != OpColumn || !sch.Field(2).Nullable {
		t.Fatalf("ChangesSchema = %v, %v", sch, err)
	}
}

func TestPersistenceRoundTrip(t *testing.T) {
	mem := checked(t)
	dir := t.TempDir()
	for _, id := range []string{"test.kinds", "economy.indicator"} {
		d := dataset(t, id)
		r := rand.New(rand.NewPCG(5, 5))
		g := &gen{r: r, d: d, keys: 300}
		// The middle cursor is 500 changes back: keep that much history.
		tbl := New(d, WithAllocator(mem), WithSegmentRows(100), WithHistory(1000))
		m := model{}
		var cs []Change
		for off := range int64(1500) {
			rec := g.record()
			k, _ := d.RecordKey(rec)
			c := Change{Key: k, Record: rec, Partition: int32(off % 3), Offset: off / 3}
			if r.IntN(6) == 0 {
				c.Record = nil
			}
			cs = append(cs, c)
		}
		if err := tbl.Apply(cs[:1000]); err != nil {
			t.Fatal(err)
		}
		mid := tbl.Snapshot()
		midCursor := mid.Cursor()
		mid.Release()
		if err := tbl.Apply(cs[1000:]); err != nil {
			t.Fatal(err)
		}
		m.apply(t, d, cs)
		s := tbl.Snapshot()
		if err := s.WriteTo(dir); err != nil {
			t.Fatal(err)
		}
		spec := Spec{Columns: d.FieldNames()}
		want := rowsOf(t, collectRelease(t, s, spec))
		wantChanges := changesRows(t, s, midCursor, spec)
		s.Release()
		positions := tbl.Positions()
		tbl.Close()

		re, err := Open(d, dir, WithAllocator(mem), WithSegmentRows(100), WithHistory(1000))
		if err != nil {
			t.Fatal(err)
		}
		if !mapsEqual(re.Positions(), positions) {
			t.Fatalf("%s: positions %v after reopening, want %v", id, re.Positions(), positions)
		}
		s2 := re.Snapshot()
		if got := rowsOf(t, collectRelease(t, s2, spec)); !slices.Equal(got, want) || !slices.Equal(want, m.rows(t, d, spec)) {
			t.Fatalf("%s: %d rows after reopening, %d before, model %d", id, len(got), len(want), len(m))
		}
		if got := changesRows(t, s2, midCursor, spec); !slices.Equal(got, wantChanges) {
			t.Fatalf("%s: changes since the middle differ after reopening:\n got %d %.300v\nwant %d %.300v", id, len(got), got, len(wantChanges), wantChanges)
		}
		s2.Release()
		// Replaying the topic from before the saved positions changes nothing.
		if err := re.Apply(cs); err != nil {
			t.Fatal(err)
		}
		s3 := re.Snapshot()
		if got := rowsOf(t, collectRelease(t, s3, spec)); !slices.Equal(got, want) {
			t.Fatalf("%s: a replay changed the data", id)
		}
		s3.Release()
		re.Close()
	}
	// A file for another schema version is refused with advice.
	d := *dataset(t, "test.kinds")
	d.Version = 2
	if _, err := Open(&d, dir, WithAllocator(mem)); err == nil || !strings.Contains(err.Error(), "replay") {
		t.Fatalf("Open with another schema version: %v", err)
	}
}

func changesRows(t *testing.T, s *Snapshot, since Cursor, spec Spec) []string {
	var recs []arrow.Record
	if err := s.Changes(context.Background(), since, spec, func(r arrow.Record) error {
		r.Retain()
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	defer releaseAll(recs)
	return rowsOf(t, recs)
}

func TestFilterErrors(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	tbl := New(d, WithAllocator(mem))
	defer tbl.Close()
	s := tbl.Snapshot()
	defer s.Release()
	for _, c := range []struct {
		f    exchange.Filter
		code string
	}{
		{exchange.Filter{Column: "birth_date", Op: "eq", Value: 19900101.0}, "invalid_filter"},
		{exchange.Filter{Column: "birth_date", Op: "lt", Value: "1990/01/01"}, "invalid_filter"},
		{exchange.Filter{Column: "updated_at", Op: "gt", Value: "yesterday"}, "invalid_filter"},
		{exchange.Filter{Column: "name", Op: "eq", Value: 3.0}, "invalid_filter"},
		{exchange.Filter{Column: "birth_date", Op: "prefix", Value: "1990"}, "invalid_filter"},
		{exchange.Filter{Column: "household_region", Op: "in", Value: "330106"}, "invalid_filter"},
		{exchange.Filter{Column: "household_region", Op: "like", Value: "33%"}, "invalid_filter"},
		{exchange.Filter{Column: "name", Op: "eq"}, "invalid_filter"},
		{exchange.Filter{Column: "salary", Op: "gt", Value: 1.0}, "unknown_column"},
	} {
		_, err := s.Count(context.Background(), []exchange.Filter{c.f})
		var e *exchange.Error
		if !errors.As(err, &e) || e.Kind != exchange.Invalid || e.Code != c.code || !strings.Contains(e.Message, c.f.Column) {
			t.Errorf("filter %+v: error %v, want Invalid %s naming the column", c.f, err, c.code)
		}
		if err := s.Scan(context.Background(), Spec{Filter: []exchange.Filter{c.f}}, func(arrow.Record) error { return nil }); exchange.KindOf(err) != exchange.Invalid {
			t.Errorf("Scan with filter %+v: %v, want Invalid", c.f, err)
		}
	}
	if _, err := s.OutputSchema(Spec{Columns: []string{"name", "name"}}); exchange.KindOf(err) != exchange.Invalid {
		t.Errorf("a column named twice: %v", err)
	}
	if _, err := s.OutputSchema(Spec{Masks: map[string]string{"birth_date": "name"}}); exchange.KindOf(err) != exchange.Invalid {
		t.Errorf("a name mask on a date: %v", err)
	}
	if _, err := s.OutputSchema(Spec{Masks: map[string]string{"name": "hash"}}); err == nil {
		t.Error("a hash mask without a key: no error")
	}
}

func TestOutputSchema(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	tbl := New(d, WithAllocator(mem))
	defer tbl.Close()
	s := tbl.Snapshot()
	defer s.Release()
	sch, err := s.OutputSchema(Spec{Columns: []string{"id_number", "birth_date", "gender"},
		Masks: map[string]string{"id_number": "id_card", "birth_date": "year", "gender": "null"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []arrow.DataType{arrow.BinaryTypes.String, arrow.BinaryTypes.String, arrow.BinaryTypes.String}
	for i, f := range sch.Fields() {
		if !arrow.TypeEqual(f.Type, want[i]) {
			t.Errorf("%s: %s, want %s", f.Name, f.Type, want[i])
		}
		if m, _ := f.Metadata.GetValue(schemas.MetaMask); m == "" {
			t.Errorf("%s: no govx.mask metadata", f.Name)
		}
		if v, _ := f.Metadata.GetValue(schemas.MetaSensitivity); v == "" {
			t.Errorf("%s: no sensitivity metadata", f.Name)
		}
	}
	if v, _ := sch.Metadata().GetValue(schemas.MetaDataset); v != d.ID {
		t.Errorf("schema metadata dataset = %q", v)
	}
}

func TestMaskedScan(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	tbl := New(d, WithAllocator(mem))
	defer tbl.Close()
	if err := tbl.Apply([]Change{{Record: person("330106199001011234", "欧阳娜娜", "330106")}}); err != nil {
		t.Fatal(err)
	}
	s := tbl.Snapshot()
	defer s.Release()
	recs := collectRelease(t, s, Spec{Columns: []string{"id_number", "name", "address", "phone", "birth_date", "updated_at"},
		Masks: map[string]string{"id_number": "id_card", "name": "name", "address": "address", "phone": "phone", "birth_date": "year", "updated_at": "null"}})
	got := rowsOf(t, recs)
	want := `["330106********1234","欧***","浙江省杭州市西湖区","138****5678","1990",null]`
	if len(got) != 1 || got[0] != want {
		t.Fatalf("masked row = %v, want %s", got, want)
	}
	if _, ok := recs[0].Column(5).(*array.Timestamp); !ok {
		t.Fatalf("the null mask changed updated_at's type to %s", recs[0].Column(5).DataType())
	}
}

func TestCursorEncoding(t *testing.T) {
	c := Cursor{3: 100, 0: 7, 1: 1 << 40}
	b := c.Encode()
	if string(b) != string((Cursor{0: 7, 1: 1 << 40, 3: 100}).Encode()) {
		t.Fatal("Encode is not deterministic")
	}
	got, err := DecodeCursor(b)
	if err != nil || !mapsEqual(got, c) {
		t.Fatalf("DecodeCursor(Encode(c)) = %v, %v", got, err)
	}
	for _, bad := range [][]byte{{9}, {1, 1}, append(b, 0), {1, 2, 2, 0, 2, 0}} {
		if _, err := DecodeCursor(bad); exchange.KindOf(err) != exchange.Invalid {
			t.Errorf("DecodeCursor(%v) = %v, want Invalid", bad, err)
		}
	}
}

func TestTableClosed(t *testing.T) {
	mem := checked(t)
	tbl := New(dataset(t, "population.person"), WithAllocator(mem))
	s := tbl.Snapshot()
	tbl.Close()
	if _, ok := s.Lookup("x"); ok {
		t.Fatal("lookup on a closed table found something")
	}
	s.Release()
	if err := tbl.Apply([]Change{{Key: "x"}}); err == nil {
		t.Fatal("Apply on a closed table: no error")
	}
}
