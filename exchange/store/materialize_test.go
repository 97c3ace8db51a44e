package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"

	"govx/exchange"
	"govx/exchange/mask"
)

// onTheFly makes t mask nothing ahead: every pull masks the rows it takes, as the store
// did before masks were materialized. It is the reference materialized masks must equal.
func onTheFly(t *Table) *Table {
	t.maskSet.Store(&maskSet{gen: 1 << 40})
	return t
}

var (
	keyA = mask.DeriveKey([]byte("secret-secret-secret-secret-32by"), "mz-3301")
	keyB = mask.DeriveKey([]byte("secret-secret-secret-secret-32by"), "rs-33")
)

// everyMask is, per mask kind, a person column it applies to; hash and year on a string,
// a date and a timestamp, so every canonical text the hash and year masks read is met.
var everyMask = []MaskedColumn{
	{Column: "id_number", Mask: mask.IDCard},
	{Column: "name", Mask: mask.Name},
	{Column: "phone", Mask: mask.Phone},
	{Column: "address", Mask: mask.Address},
	{Column: "birth_date", Mask: mask.Year},
	{Column: "updated_at", Mask: mask.Year},
	{Column: "gender", Mask: mask.Hash, Key: keyA},
	{Column: "birth_date", Mask: mask.Hash, Key: keyA},
	{Column: "updated_at", Mask: mask.Hash, Key: keyA},
	{Column: "status", Mask: mask.Null},
}

// sameBatches fails unless two scans yielded the same batches, column by column
// (values, validity and types: array.Equal) and with the same schema.
func sameBatches(t *testing.T, what string, got, want []arrow.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d batches, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !got[i].Schema().Equal(want[i].Schema()) {
			t.Fatalf("%s batch %d: schema %v, want %v", what, i, got[i].Schema(), want[i].Schema())
		}
		for c := range got[i].Columns() {
			if !array.Equal(got[i].Column(c), want[i].Column(c)) {
				t.Fatalf("%s batch %d column %s: materialized %v, masked on the fly %v", what, i,
					got[i].ColumnName(c), got[i].Column(c), want[i].Column(c))
			}
		}
	}
}

// specsOf returns one Spec per department key masking every column of everyMask (one
// mask per column: two specs for the columns masked twice).
func specsOf(key []byte) []Spec {
	var out []Spec
	for _, m := range everyMask {
		placed := false
		for i := range out {
			if _, ok := out[i].Masks[m.Column]; !ok {
				out[i].Masks[m.Column], out[i].Columns, placed = m.Mask, append(out[i].Columns, m.Column), true
				break
			}
		}
		if !placed {
			out = append(out, Spec{Masks: map[string]string{m.Column: m.Mask}, Columns: []string{m.Column}, MaskKey: key})
		}
	}
	return out
}

// TestMaterializedMasksEqualMaskingOnTheFly: a pull served from the masked columns
// segments keep is exactly what masking the rows it takes gives, for every mask kind,
// through upserts, deletes, merges and compaction, whole and filtered, scans and
// changes; the hash mask is served only under the key it was materialized with.
func TestMaterializedMasksEqualMaskingOnTheFly(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	g := &gen{r: newRand(), d: d, keys: 700}
	mat := New(d, WithAllocator(mem), WithSegmentRows(256), WithHistory(300), WithMaskBudget(10))
	defer mat.Close()
	if err := mat.MaterializeMasks(everyMask); err != nil {
		t.Fatal(err)
	}
	ref := onTheFly(New(d, WithAllocator(mem), WithSegmentRows(256), WithHistory(300)))
	defer ref.Close()
	var off int64
	var since Cursor
	filtered := []exchange.Filter{{Column: "gender", Op: "eq", Value: "1"}}
	for round := 0; round < 30; round++ {
		cs := churnChanges(t, g, 300, &off, 6)
		for _, x := range []*Table{mat, ref} {
			if err := x.Apply(cs); err != nil {
				t.Fatal(err)
			}
		}
		a, b := mat.Snapshot(), ref.Snapshot()
		for _, key := range [][]byte{keyA, keyB} {
			for i, spec := range specsOf(key) {
				for _, f := range [][]exchange.Filter{nil, filtered} {
					spec.Filter = f
					what := fmt.Sprintf("round %d spec %d filter %v", round, i, f)
					got, want := collect(t, a, spec), collect(t, b, spec)
					sameBatches(t, what+" scan", got, want)
					releaseAll(got)
					releaseAll(want)
					got, want = collectChanges(t, a, since, spec), collectChanges(t, b, since, spec)
					sameBatches(t, what+" changes", got, want)
					releaseAll(got)
					releaseAll(want)
				}
			}
		}
		since = a.Cursor()
		a.Release()
		b.Release()
	}
	if st := mat.Stats(); st.Reclaimed == 0 || st.Copied == 0 {
		t.Fatalf("stats %+v: no compaction happened", st)
	}
	// Every segment now holds each declared mask; hash under key A only.
	mat.mu.RLock()
	defer mat.mu.RUnlock()
	for _, st := range mat.segs {
		for _, m := range everyMask {
			if m.Mask == mask.Null {
				continue
			}
			k := specFor(mat.fieldIndex(m.Column), m.Mask, m.Key)
			a := st.seg.masks.get(k)
			if a == nil {
				t.Fatalf("segment at %d lacks %s masked %s", st.seg.start, m.Column, m.Mask)
			}
			a.Release()
			if m.Mask == mask.Hash {
				if b := st.seg.masks.get(specFor(k.col, mask.Hash, keyB)); b != nil {
					b.Release()
					t.Fatalf("segment at %d holds %s hashed under a key nobody declared", st.seg.start, m.Column)
				}
			}
		}
	}
}

func collectChanges(t *testing.T, s *Snapshot, since Cursor, spec Spec) []arrow.Record {
	t.Helper()
	var out []arrow.Record
	err := s.Changes(context.Background(), since, spec, func(r arrow.Record) error {
		r.Retain()
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMasksMaterializedBeforeTheFirstPull: the ingest masks the segments it seals (in
// the background), and Open the segments it loads, with the dataset's default masks,
// so the first pull after start finds them; a pull of a mask nobody declared keeps
// nothing.
func TestMasksMaterializedBeforeTheFirstPull(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	g := &gen{r: newRand(), d: d, keys: 1 << 30}
	tbl := New(d, WithAllocator(mem), WithSegmentRows(512), WithMaskBudget(10))
	var cs []Change
	for i := range 2000 {
		cs = append(cs, Change{Record: g.record(), Offset: int64(i)})
	}
	if err := tbl.Apply(cs); err != nil {
		t.Fatal(err)
	}
	tbl.matWG.Wait() // the masking goroutine Apply started for the segments it sealed
	defaults := tbl.defaultMasks()
	if len(defaults) < 4 { // id_card, name, year, address, phone
		t.Fatalf("default masks of population.person: %v", defaults)
	}
	held := func(x *Table) (segs, full int) {
		x.mu.RLock()
		defer x.mu.RUnlock()
		for _, st := range x.segs {
			segs++
			n := 0
			for _, k := range defaults {
				if a := st.seg.masks.get(k); a != nil {
					n++
					a.Release()
				}
			}
			if n == len(defaults) {
				full++
			}
		}
		return segs, full
	}
	if segs, full := held(tbl); segs != 3 || full != 3 {
		t.Fatalf("after ingest: %d of %d sealed segments hold every default mask, want 3 of 3", full, segs)
	}
	spec := Spec{Columns: []string{"name", "gender"}, Masks: map[string]string{"gender": mask.Hash}, MaskKey: keyB}
	snap := tbl.Snapshot()
	recs := collect(t, snap, spec)
	releaseAll(recs)
	tbl.mu.RLock()
	for _, st := range tbl.segs {
		st.seg.masks.mu.Lock()
		for k := range st.seg.masks.cols {
			if k.mask == mask.Hash {
				t.Errorf("a pull kept a hash mask nobody declared")
			}
		}
		st.seg.masks.mu.Unlock()
	}
	tbl.mu.RUnlock()

	dir := t.TempDir()
	if err := snap.WriteTo(dir); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	tbl.Close()
	back, err := Open(d, dir, WithAllocator(mem), WithSegmentRows(512), WithMaskBudget(10))
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if segs, full := held(back); segs == 0 || full != segs {
		t.Fatalf("after Open: %d of %d segments hold every default mask", full, segs)
	}
}

// TestMaterializeMasksRefusesWhatTheDatasetCannotTake: a declared mask is checked
// against the column, and a refused set changes nothing.
func TestMaterializeMasksRefusesWhatTheDatasetCannotTake(t *testing.T) {
	d := dataset(t, "population.person")
	tbl := New(d)
	defer tbl.Close()
	before := tbl.maskSet.Load()
	for _, bad := range [][]MaskedColumn{
		{{Column: "no_such_column", Mask: mask.Name}},
		{{Column: "birth_date", Mask: mask.IDCard}},
		{{Column: "name", Mask: "scramble"}},
		{{Column: "name", Mask: mask.Hash}}, // no key
	} {
		if err := tbl.MaterializeMasks(bad); err == nil {
			t.Errorf("MaterializeMasks(%v) accepted", bad)
		}
	}
	if tbl.maskSet.Load() != before {
		t.Fatal("a refused MaterializeMasks changed the set")
	}
}

// TestMaskBudget: a segment's materialized masks stay within their share of its bytes,
// the masks agreements use most coming first; what does not fit is masked per pull,
// with the same result.
func TestMaskBudget(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	g := &gen{r: newRand(), d: d, keys: 1 << 30}
	tbl := New(d, WithAllocator(mem), WithSegmentRows(1024), WithMaskBudget(0.4))
	defer tbl.Close()
	ref := onTheFly(New(d, WithAllocator(mem), WithSegmentRows(1024)))
	defer ref.Close()
	// Two agreements hash phone under key A, one masks name: phone first.
	ms := []MaskedColumn{{Column: "name", Mask: mask.Name}, {Column: "phone", Mask: mask.Hash, Key: keyA}, {Column: "phone", Mask: mask.Hash, Key: keyA}}
	if err := tbl.MaterializeMasks(ms); err != nil {
		t.Fatal(err)
	}
	if got := tbl.maskSet.Load().specs[0]; got.mask != mask.Hash {
		t.Fatalf("the mask two agreements use is not first: %+v", got)
	}
	var cs []Change
	for i := range 5000 {
		cs = append(cs, Change{Record: g.record(), Offset: int64(i)})
	}
	for _, x := range []*Table{tbl, ref} {
		if err := x.Apply(cs); err != nil {
			t.Fatal(err)
		}
	}
	tbl.matWG.Wait()
	tbl.mu.RLock()
	for _, st := range tbl.segs {
		seg := st.seg
		seg.masks.mu.Lock()
		if seg.masks.bytes > tbl.maskLimit(seg) || seg.masks.bytes == 0 {
			t.Errorf("segment at %d: %d bytes of masked columns, budget %d", seg.start, seg.masks.bytes, tbl.maskLimit(seg))
		}
		if seg.masks.cols[specFor(tbl.fieldIndex("phone"), mask.Hash, keyA)] == nil {
			t.Errorf("segment at %d lacks the most used mask", seg.start)
		}
		if n := len(tbl.maskSet.Load().specs); len(seg.masks.cols) >= n {
			t.Errorf("segment at %d holds all %d masks: the budget did not bind", seg.start, n)
		}
		seg.masks.mu.Unlock()
	}
	tbl.mu.RUnlock()
	a, b := tbl.Snapshot(), ref.Snapshot()
	defer a.Release()
	defer b.Release()
	for _, spec := range specsOf(keyA) {
		got, want := collect(t, a, spec), collect(t, b, spec)
		sameBatches(t, fmt.Sprint(spec.Columns), got, want)
		releaseAll(got)
		releaseAll(want)
	}
}
