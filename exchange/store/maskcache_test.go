package store

import (
	"context"
	"slices"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"

	"govx/exchange/mask"
)

// TestMaskCacheServesWhatMaskingWould: a repeated pull answers from masked columns kept
// per segment; it must be exactly what masking anew gives, per department for the hash
// mask, and leak nothing when the table closes.
func TestMaskCacheServesWhatMaskingWould(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	g := &gen{r: newRand(), d: d, keys: 2000}
	var changes []Change
	for i := 0; i < 3000; i++ {
		changes = append(changes, Change{Record: g.record(), Offset: int64(i)})
	}
	cached := New(d, WithAllocator(mem), WithSegmentRows(1024))
	plain := New(d, WithAllocator(mem), WithSegmentRows(1024), WithMaskCache(0))
	for _, tbl := range []*Table{cached, plain} {
		if err := tbl.Apply(changes); err != nil {
			t.Fatal(err)
		}
	}
	rows := func(tbl *Table, spec Spec) []string {
		snap := tbl.Snapshot()
		defer snap.Release()
		var out []string
		err := snap.Scan(context.Background(), spec, func(rec arrow.Record) error {
			for i := 0; i < int(rec.NumRows()); i++ {
				line := ""
				for _, c := range rec.Columns() {
					line += c.ValueStr(i) + "|"
				}
				out = append(out, line)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	masks := map[string]string{"id_number": mask.IDCard, "name": mask.Name, "address": mask.Address, "phone": mask.Hash}
	cols := []string{"id_number", "name", "address", "phone"}
	for round := 0; round < 2; round++ { // the second round is served from the cache
		for _, dept := range []string{"mz-3301", "rs-33"} {
			spec := Spec{Columns: cols, Masks: masks, MaskKey: mask.DeriveKey([]byte("secret-secret-secret-secret-32by"), dept)}
			got, want := rows(cached, spec), rows(plain, spec)
			if len(got) != len(want) || len(got) == 0 {
				t.Fatalf("round %d %s: %d rows cached, %d masked anew", round, dept, len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("round %d %s row %d: cached %q, masked anew %q", round, dept, i, got[i], want[i])
				}
			}
		}
	}
	if cached.masks.bytes == 0 {
		t.Fatal("nothing was cached")
	}
	a := rows(cached, Spec{Columns: []string{"phone"}, Masks: map[string]string{"phone": mask.Hash}, MaskKey: []byte("department-a-key")})
	b := rows(cached, Spec{Columns: []string{"phone"}, Masks: map[string]string{"phone": mask.Hash}, MaskKey: []byte("department-b-key")})
	same := 0
	for i := range a {
		if a[i] == b[i] && a[i] != "(null)|" {
			same++
		}
	}
	if same > 0 {
		t.Fatalf("%d hash pseudonyms shared between two departments' keys: the cache mixed them up", same)
	}
	cached.Close()
	plain.Close()
}

// TestMaskCachePinsOnlyLiveSegments: ingest and pulls interleaved merge small segments
// away; the cache must let those go, so its bound is a bound on memory.
func TestMaskCachePinsOnlyLiveSegments(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	g := &gen{r: newRand(), d: d, keys: 100000}
	tbl := New(d, WithAllocator(mem), WithSegmentRows(4096))
	spec := Spec{Columns: []string{"id_number"}, Masks: map[string]string{"id_number": mask.IDCard}}
	for round := 0; round < 60; round++ {
		var changes []Change
		for i := 0; i < 100; i++ {
			changes = append(changes, Change{Record: g.record(), Offset: int64(round*100 + i)})
		}
		if err := tbl.Apply(changes); err != nil {
			t.Fatal(err)
		}
		snap := tbl.Snapshot()
		if err := snap.Scan(context.Background(), spec, func(arrow.Record) error { return nil }); err != nil {
			t.Fatal(err)
		}
		snap.Release()
	}
	tbl.mu.RLock()
	live := map[*segment]bool{}
	for _, s := range tbl.segs {
		live[s.seg] = true
	}
	tbl.mu.RUnlock()
	tbl.masks.mu.Lock()
	for k := range tbl.masks.m {
		if !live[k.seg] {
			t.Errorf("the mask cache pins a segment the table merged away")
		}
	}
	n := len(tbl.masks.m)
	tbl.masks.mu.Unlock()
	if n == 0 {
		t.Fatal("nothing cached")
	}
	tbl.Close()
}

// TestMaskCacheLetsCompactedSegmentsGo: compaction drops segments whose rows are all
// history; the cache must let those go too, and keep serving what masking anew gives
// for the segments holding the copied rows.
func TestMaskCacheLetsCompactedSegmentsGo(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "population.person")
	g := &gen{r: newRand(), d: d, keys: 500}
	tbl := New(d, WithAllocator(mem), WithSegmentRows(256), WithHistory(300))
	defer tbl.Close()
	plain := New(d, WithAllocator(mem), WithSegmentRows(256), WithMaskCache(0))
	defer plain.Close()
	spec := Spec{Columns: []string{"id_number", "name"}, Masks: map[string]string{"id_number": mask.IDCard, "name": mask.Name}}
	var off int64
	for round := 0; round < 40; round++ {
		cs := churnChanges(t, g, 400, &off, 0)
		for _, x := range []*Table{tbl, plain} {
			if err := x.Apply(cs); err != nil {
				t.Fatal(err)
			}
		}
		snap, ref := tbl.Snapshot(), plain.Snapshot()
		if got, want := scanRows(t, snap, spec), scanRows(t, ref, spec); !slices.Equal(got, want) {
			t.Fatalf("round %d: the cached masked scan differs from masking anew", round)
		}
		snap.Release()
		ref.Release()
	}
	if st := tbl.Stats(); st.Reclaimed == 0 || st.Copied == 0 {
		t.Fatalf("stats %+v: no compaction happened", st)
	}
	tbl.mu.RLock()
	live := map[*segment]bool{}
	for _, s := range tbl.segs {
		live[s.seg] = true
	}
	tbl.mu.RUnlock()
	tbl.masks.mu.Lock()
	defer tbl.masks.mu.Unlock()
	for k := range tbl.masks.m {
		if !live[k.seg] {
			t.Errorf("the mask cache pins a segment compaction dropped")
		}
	}
	if len(tbl.masks.m) == 0 {
		t.Fatal("nothing cached")
	}
}
