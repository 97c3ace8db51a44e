package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/ipc"

	"govx/exchange"
)

// churnChanges returns n random changes over keys keys of d (one in deleteEvery a
// delete, none when 0), at offsets from off on, spread over three partitions.
func churnChanges(t *testing.T, g *gen, n int, off *int64, deleteEvery int) []Change {
	cs := make([]Change, 0, n)
	for range n {
		rec := g.record()
		k, err := g.d.RecordKey(rec)
		if err != nil {
			t.Fatal(err)
		}
		c := Change{Key: k, Record: rec, Partition: int32(*off % 3), Offset: *off / 3}
		if deleteEvery > 0 && g.r.IntN(deleteEvery) == 0 {
			c.Record = nil
		}
		cs = append(cs, c)
		*off++
	}
	return cs
}

// TestCompactionKeepsEveryValue: under churn with deletes, compaction copies live rows
// out of sparse segments and drops old history, and every scan, count and lookup still
// matches the model, while the rows held stay a small multiple of the live ones.
func TestCompactionKeepsEveryValue(t *testing.T) {
	for _, id := range []string{"population.person", "economy.indicator"} { // one string key, a composite key
		t.Run(id, func(t *testing.T) {
			mem := checked(t)
			d := dataset(t, id)
			g := &gen{r: rand.New(rand.NewPCG(3, uint64(len(id)))), d: d, keys: 300}
			tbl := New(d, WithAllocator(mem), WithSegmentRows(64))
			defer tbl.Close()
			m := model{}
			var off int64
			var maxRows int64
			for round := range 40 {
				cs := churnChanges(t, g, 700, &off, 9)
				if err := tbl.Apply(cs); err != nil {
					t.Fatal(err)
				}
				m.apply(t, d, cs)
				st := tbl.Stats()
				maxRows = max(maxRows, st.Rows)
				if round%8 != 7 {
					continue
				}
				s := tbl.Snapshot()
				spec := Spec{Columns: d.FieldNames()}
				if got, want := scanRows(t, s, spec), m.rows(t, d, spec); !slices.Equal(got, want) {
					t.Fatalf("round %d: scan has %d rows, the model %d", round, len(got), len(want))
				}
				if n, _ := s.Count(context.Background(), nil); n != int64(len(m)) || s.Len() != len(m) {
					t.Fatalf("round %d: Count %d, Len %d, model %d", round, n, s.Len(), len(m))
				}
				for k, rec := range m {
					got, ok := s.Lookup(k)
					if !ok || jsonRow(t, naiveRow(t, d, got, Spec{})) != jsonRow(t, naiveRow(t, d, rec, Spec{})) {
						t.Fatalf("round %d: Lookup(%s) = %v, %v; want %v", round, k, got, ok, rec)
					}
				}
				s.Release()
			}
			st := tbl.Stats()
			if st.Copied == 0 || st.Reclaimed == 0 {
				t.Fatalf("stats %+v: compaction never copied or reclaimed under 28000 changes to 300 keys", st)
			}
			// 28000 versions were written; history is kept for max(live, 64) changes, so
			// the table holds live rows, that history, and sparse segments not yet
			// dropped: a few times the live rows, never the versions written.
			if bound := int64(8 * max(len(m), 64)); maxRows > bound {
				t.Fatalf("the table held up to %d row versions for %d live keys (bound %d): compaction does not keep up", maxRows, len(m), bound)
			}
		})
	}
}

// TestSnapshotsSurviveCompaction: snapshots taken along the way see exactly their
// version — scans, counts and lookups, of keys updated, deleted, reclaimed and inserted
// again after them — however much compaction copies and drops before they are read.
func TestSnapshotsSurviveCompaction(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	g := &gen{r: rand.New(rand.NewPCG(5, 8)), d: d, keys: 200}
	tbl := New(d, WithAllocator(mem), WithSegmentRows(32), WithHistory(100))
	defer tbl.Close()
	type held struct {
		s *Snapshot
		m model
	}
	var snaps []held
	m := model{}
	var off int64
	for round := range 60 {
		cs := churnChanges(t, g, 150, &off, 6)
		if err := tbl.Apply(cs); err != nil {
			t.Fatal(err)
		}
		m.apply(t, d, cs)
		if round%6 == 0 {
			snaps = append(snaps, held{tbl.Snapshot(), maps.Clone(m)})
		}
	}
	if st := tbl.Stats(); st.Copied == 0 || st.Reclaimed == 0 {
		t.Fatalf("stats %+v: no compaction happened while the snapshots were held", st)
	}
	spec := Spec{Columns: d.FieldNames()}
	for i, h := range snaps {
		if got, want := scanRows(t, h.s, spec), h.m.rows(t, d, spec); !slices.Equal(got, want) {
			t.Fatalf("snapshot %d: scan has %d rows, its version %d", i, len(got), len(want))
		}
		for j := range g.keys { // every key ever used: live, deleted, never written
			k := fmt.Sprintf("3301061990%08d", j)
			got, ok := h.s.Lookup(k)
			want, live := h.m[k]
			if ok != live || (ok && got["name"] != want["name"]) || (ok && got["updated_at"] != want["updated_at"]) {
				t.Fatalf("snapshot %d: Lookup(%s) = %v, %v; its version has %v, %v", i, k, got, ok, want, live)
			}
		}
		h.s.Release()
	}
	tbl.mu.RLock()
	ghosts, pending := len(tbl.ghosts), len(tbl.pending)
	tbl.mu.RUnlock()
	// The links kept for those snapshots go with the next compaction.
	if err := tbl.Apply(churnChanges(t, g, 500, &off, 6)); err != nil {
		t.Fatal(err)
	}
	tbl.mu.RLock()
	defer tbl.mu.RUnlock()
	if len(tbl.ghosts) != 0 || len(tbl.pending) != 0 {
		t.Fatalf("after every snapshot was released: %d ghosts, %d pending index entries kept (%d, %d before)", len(tbl.ghosts), len(tbl.pending), ghosts, pending)
	}
	for _, st := range tbl.segs {
		if st.src != nil {
			t.Fatal("copy links are kept with no snapshot older than them")
		}
	}
}

// TestChangesAcrossCompaction: a changes pull from a cursor taken before compaction
// copied and dropped segments returns exactly what it returns from a table that never
// compacts — upserts, deletes, rows that left the scope — as long as the cursor is
// within the history kept; an older cursor is refused with cursor_too_old before any
// row is sent, never answered without its deletes.
func TestChangesAcrossCompaction(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	g := &gen{r: rand.New(rand.NewPCG(9, 2)), d: d, keys: 250}
	const history = 1500
	tbl := New(d, WithAllocator(mem), WithSegmentRows(64), WithHistory(history))
	defer tbl.Close()
	ref := New(d, WithAllocator(mem), WithSegmentRows(64), WithGarbageRatio(1), WithHistory(1<<30))
	defer ref.Close()
	type mark struct {
		c  Cursor
		at int64 // changes applied when it was taken
	}
	var marks []mark
	var off int64
	tooOld, compared := 0, 0
	for round := range 30 {
		cs := churnChanges(t, g, 300, &off, 7)
		for _, x := range []*Table{tbl, ref} {
			if err := x.Apply(cs); err != nil {
				t.Fatal(err)
			}
		}
		s := tbl.Snapshot()
		marks = append(marks, mark{s.Cursor(), off})
		s.Release()
		if round%5 != 4 {
			continue
		}
		snap, rsnap := tbl.Snapshot(), ref.Snapshot()
		for _, mk := range marks {
			spec := randomSpec(g)
			spec.Filter = append(spec.Filter, exchange.Filter{Column: "household_region", Op: "prefix", Value: "3301"})
			want := changesRows(t, rsnap, mk.c, spec)
			var got []arrow.Record
			yielded := false
			err := snap.Changes(context.Background(), mk.c, spec, func(r arrow.Record) error {
				yielded = true
				r.Retain()
				got = append(got, r)
				return nil
			})
			if err != nil {
				var e *exchange.Error
				if !errors.Is(err, ErrCursorTooOld) || !errors.As(err, &e) || e.Code != "cursor_too_old" || e.Kind != exchange.Invalid {
					t.Fatalf("changes since %v: %v, want cursor_too_old", mk.c, err)
				}
				if yielded {
					t.Fatal("rows were yielded before the cursor was found too old")
				}
				if off-mk.at < history {
					t.Fatalf("a cursor %d changes old is refused; the table keeps %d", off-mk.at, history)
				}
				if _, err := snap.CountChanges(context.Background(), mk.c, spec.Filter); !errors.Is(err, ErrCursorTooOld) {
					t.Fatalf("CountChanges from a cursor too old: %v", err)
				}
				tooOld++
				continue
			}
			rows := rowsOf(t, got)
			releaseAll(got)
			if !slices.Equal(rows, want) {
				t.Fatalf("changes since a cursor %d changes old differ from a table that never compacts:\n got %d %.400v\nwant %d %.400v", off-mk.at, len(rows), rows, len(want), want)
			}
			compared++
		}
		// A pull from nothing held needs no delete: the empty cursor is never too old.
		if err := snap.Changes(context.Background(), Cursor{}, Spec{}, func(arrow.Record) error { return nil }); err != nil {
			t.Fatalf("changes since the empty cursor: %v", err)
		}
		snap.Release()
		rsnap.Release()
	}
	st := tbl.Stats()
	if tooOld == 0 || compared == 0 || st.Copied == 0 || st.Reclaimed == 0 {
		t.Fatalf("%d cursors too old, %d compared, stats %+v: the test did not cross a compaction both ways", tooOld, compared, st)
	}
	t.Logf("%d pulls compared, %d refused as too old; stats %+v", compared, tooOld, st)
}

// TestCursorTooOldAfterRestart: the horizon is written with the table, so a cursor
// refused before a restart is refused after it.
func TestCursorTooOldAfterRestart(t *testing.T) {
	mem := checked(t)
	dir := t.TempDir()
	d := dataset(t, "population.person")
	g := &gen{r: rand.New(rand.NewPCG(4, 4)), d: d, keys: 100}
	opts := []Option{WithAllocator(mem), WithSegmentRows(16), WithHistory(50)}
	tbl := New(d, opts...)
	var off int64
	if err := tbl.Apply(churnChanges(t, g, 200, &off, 4)); err != nil {
		t.Fatal(err)
	}
	s := tbl.Snapshot()
	old := s.Cursor()
	s.Release()
	if err := tbl.Apply(churnChanges(t, g, 2000, &off, 4)); err != nil {
		t.Fatal(err)
	}
	s = tbl.Snapshot()
	if err := s.WriteTo(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Changes(context.Background(), old, Spec{}, func(arrow.Record) error { return nil }); !errors.Is(err, ErrCursorTooOld) {
		t.Fatalf("before the restart: %v, want ErrCursorTooOld", err)
	}
	recent := s.Cursor()
	s.Release()
	tbl.Close()
	re, err := Open(d, dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	s = re.Snapshot()
	defer s.Release()
	if err := s.Changes(context.Background(), old, Spec{}, func(arrow.Record) error { return nil }); !errors.Is(err, ErrCursorTooOld) {
		t.Fatalf("after the restart: %v, want ErrCursorTooOld", err)
	}
	if err := s.Changes(context.Background(), recent, Spec{}, func(arrow.Record) error { return nil }); err != nil {
		t.Fatalf("the cursor of the written version after the restart: %v", err)
	}
}

// TestApplyStopsWhenTableFull: a change the table cannot take is not passed over: Apply
// stops there with an *ApplyError (ErrTableFull), not a *ChangeError, nothing after it
// is applied, and Positions stay at the last change applied, so the ingest reads it
// again rather than losing it.
func TestApplyStopsWhenTableFull(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	tbl := New(d, WithAllocator(mem))
	defer tbl.Close()
	tbl.maxRow = 3
	id := func(i int) string { return fmt.Sprintf("3301061990010100%02d", i) }
	bad := person(id(9), "甲", "330106")
	bad["birth_date"] = "not a date"
	err := tbl.Apply([]Change{
		{Record: person(id(0), "甲", "330106"), Partition: 0, Offset: 0},
		{Record: bad, Partition: 1, Offset: 0},
		{Record: person(id(1), "乙", "330106"), Partition: 1, Offset: 1},
		{Record: person(id(0), "丙", "330106"), Partition: 0, Offset: 1},
		{Record: person(id(2), "丁", "330106"), Partition: 0, Offset: 2}, // the fourth row id: refused
		{Key: id(1), Partition: 1, Offset: 2},                           // after it: not applied
		{Record: person(id(3), "戊", "330106"), Partition: 2, Offset: 0},
	})
	var ae *ApplyError
	var ce *ChangeError
	if !errors.As(err, &ae) || !errors.Is(err, ErrTableFull) || errors.As(err, &ce) {
		t.Fatalf("Apply = %v; want an *ApplyError for ErrTableFull that is no *ChangeError", err)
	}
	if ae.Partition != 0 || ae.Offset != 2 || len(ae.Skipped) != 1 || ae.Skipped[0].Offset != 0 || ae.Skipped[0].Partition != 1 {
		t.Fatalf("ApplyError %+v: want the stop at partition 0 offset 2, the invalid record reported", ae)
	}
	if got, want := tbl.Positions(), map[int32]int64{0: 2, 1: 2}; !mapsEqual(got, want) {
		t.Fatalf("Positions = %v, want %v: nothing at or after the refused change passed", got, want)
	}
	s := tbl.Snapshot()
	defer s.Release()
	if rec, ok := s.Lookup(id(1)); !ok || rec["name"] != "乙" {
		t.Fatalf("Lookup(%s) = %v, %v: the delete after the stop was applied", id(1), rec, ok)
	}
	if _, ok := s.Lookup(id(2)); ok || s.Len() != 2 {
		t.Fatalf("the refused row is stored (Len %d)", s.Len())
	}
	// Resuming from Positions with the same records meets the same refusal, no skip.
	if err := tbl.Apply([]Change{{Record: person(id(2), "丁", "330106"), Partition: 0, Offset: 2}}); !errors.Is(err, ErrTableFull) || tbl.Positions()[0] != 2 {
		t.Fatalf("retry: %v, positions %v", err, tbl.Positions())
	}
	tbl.Close()
	if err := tbl.Apply([]Change{{Key: id(0), Partition: 0, Offset: 2}}); !errors.Is(err, ErrClosed) || !errors.As(err, &ae) {
		t.Fatalf("Apply on a closed table = %v, want an *ApplyError for ErrClosed", err)
	}
}

// TestIndexRemoveKeepsEveryOtherKey: removing entries shifts probe runs back; every key
// left must still be found, including across the table's wrap-around.
func TestIndexRemoveKeepsEveryOtherKey(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var x index
	x.init(64)
	keys := map[int64]string{}
	hashes := map[int64]uint64{}
	keyOf := func(row int64) string { return keys[row] }
	live := map[string]int64{}
	for step := range 20000 {
		k := fmt.Sprintf("k%d", r.IntN(300))
		// Few distinct hashes, many near the end of the table: long runs that wrap.
		h := uint64(len(x.rows)-1-r.IntN(4)) | uint64(r.IntN(3))<<40
		if row, ok := live[k]; ok && r.IntN(2) == 0 {
			slot := x.slotOf(hashes[row], row)
			if slot < 0 {
				t.Fatalf("step %d: %s (row %d) has no slot", step, k, row)
			}
			x.removeAt(slot)
			delete(live, k)
			continue
		}
		if row, ok := live[k]; ok {
			h = hashes[row]
		}
		row := int64(step)
		keys[row], hashes[row] = k, h
		x.upsert(h, k, row, keyOf)
		live[k] = row
		for k2, row2 := range live {
			if got := x.lookup(hashes[row2], k2, keyOf); got != row2 {
				t.Fatalf("step %d: lookup(%s) = %d, want %d", step, k2, got, row2)
			}
		}
	}
	if x.n != len(live) {
		t.Fatalf("the index counts %d entries, %d keys are live", x.n, len(live))
	}
}

// TestGarbageRatioAndHistoryOptions: a ratio of 1 never copies rows out (only fully
// dead segments are dropped), and the history bounds what a cursor may ask for.
func TestGarbageRatioAndHistoryOptions(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	g := &gen{r: rand.New(rand.NewPCG(6, 6)), d: d, keys: 100}
	never := New(d, WithAllocator(mem), WithSegmentRows(32), WithGarbageRatio(1), WithHistory(1<<30))
	defer never.Close()
	var off int64
	if err := never.Apply(churnChanges(t, g, 5000, &off, 0)); err != nil {
		t.Fatal(err)
	}
	if st := never.Stats(); st.Copied != 0 || st.Reclaimed != 0 || st.Rows != 5000 {
		t.Fatalf("ratio 1, history unbounded: %+v, want every version kept", st)
	}
	for _, bad := range []float64{0, -1, 1.5} {
		if New(d, WithGarbageRatio(bad)).ratio != DefaultGarbageRatio {
			t.Errorf("WithGarbageRatio(%v) was accepted", bad)
		}
	}
}

// TestOpenReadsFormat1: a snapshot file written before compaction existed (format 1, no
// horizon) opens with nothing reclaimed, so every cursor from before is served.
func TestOpenReadsFormat1(t *testing.T) {
	mem := checked(t)
	dir := t.TempDir()
	d := dataset(t, "population.person")
	tbl := New(d, WithAllocator(mem))
	if err := tbl.Apply([]Change{
		{Record: person("330106199001011234", "张三", "330106"), Offset: 0},
		{Record: person("330106199001015678", "李四", "330106"), Offset: 1},
		{Key: "330106199001015678", Offset: 2},
	}); err != nil {
		t.Fatal(err)
	}
	s := tbl.Snapshot()
	if err := s.WriteTo(dir); err != nil {
		t.Fatal(err)
	}
	s.Release()
	tbl.Close()

	// Rewrite the file as format 1 wrote it: no horizon, format "1".
	path := filepath.Join(dir, FileName(d.ID))
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ipc.NewFileReader(f, ipc.WithAllocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	md := r.Schema().Metadata()
	var keys, vals []string
	for i, k := range md.Keys() {
		switch k {
		case metaHorizon:
		case metaFormat:
			keys, vals = append(keys, k), append(vals, "1")
		default:
			keys, vals = append(keys, k), append(vals, md.Values()[i])
		}
	}
	m := arrow.NewMetadata(keys, vals)
	sch := arrow.NewSchema(r.Schema().Fields(), &m)
	var recs []arrow.Record
	for i := 0; i < r.NumRecords(); i++ {
		rec, err := r.RecordAt(i)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, array.NewRecord(sch, rec.Columns(), rec.NumRows()))
		rec.Release()
	}
	r.Close()
	f.Close()
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ipc.NewFileWriter(out, ipc.WithSchema(sch), ipc.WithAllocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out.Close()

	re, err := Open(d, dir, WithAllocator(mem))
	if err != nil {
		t.Fatalf("Open of a format 1 file: %v", err)
	}
	defer re.Close()
	s = re.Snapshot()
	defer s.Release()
	if got := changesRows(t, s, Cursor{0: 1}, Spec{Columns: []string{"id_number"}}); !slices.Equal(got, []string{`["delete","330106199001015678"]`}) {
		t.Fatalf("changes since offset 1 after opening a format 1 file = %v, want the delete", got)
	}
	if !mapsEqual(re.Positions(), map[int32]int64{0: 3}) || s.Len() != 1 {
		t.Fatalf("positions %v, Len %d", re.Positions(), s.Len())
	}
}
