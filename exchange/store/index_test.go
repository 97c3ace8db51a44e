package store

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"govx/exchange"
)

func TestIndexedColumns(t *testing.T) {
	for id, want := range map[string][]string{
		"population.person":         nil, // its citizen ID is its key
		"legal_entity.organization": {"legal_rep_id_number"},
		"resource.land_parcel":      {"holder_uscc", "holder_id_number"},
		"license.certificate":       {"holder_uscc", "holder_id_number"},
		"economy.indicator":         nil,
	} {
		if got := IndexedColumns(dataset(t, id)); !slices.Equal(got, want) {
			t.Errorf("%s: indexed %v, want %v", id, got, want)
		}
	}
}

// modelKeysBy is what KeysBy must answer for a version: the keys whose record holds
// value in column, sorted.
func modelKeysBy(m model, column, value string) []string {
	var out []string
	for k, rec := range m {
		if rec[column] == value {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func keysBy(t *testing.T, s *Snapshot, column, value string) []string {
	t.Helper()
	got, err := s.KeysBy(column, value)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 {
		return nil
	}
	return got
}

// TestKeysByFollowsChanges: upserts, moves of the value (to another value, to null and
// back), deletes and reinserts each show in the next snapshot, and never in one taken
// before them.
func TestKeysByFollowsChanges(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "license.certificate")
	tbl := New(d, WithAllocator(mem))
	defer tbl.Close()
	var off int64
	lic := func(no, holderID, holderUSCC string) Change {
		rec := map[string]any{"licence_no": no, "licence_type": "driving_licence", "holder_name": "张三",
			"issuer": "ga-3301", "issuer_region": "330100", "issued_on": "2020-01-01", "status": "valid",
			"content_digest": "00", "issuer_signature": "00", "updated_at": "2026-01-01T00:00:00Z"}
		if holderID != "" {
			rec["holder_id_number"] = holderID
		}
		if holderUSCC != "" {
			rec["holder_uscc"] = holderUSCC
		}
		off++
		return Change{Key: no, Record: rec, Offset: off}
	}
	del := func(no string) Change { off++; return Change{Key: no, Offset: off} }
	apply := func(cs ...Change) *Snapshot {
		t.Helper()
		if err := tbl.Apply(cs); err != nil {
			t.Fatal(err)
		}
		return tbl.Snapshot()
	}
	const a, b, org = "330106199001010012", "320102198505050021", "91330100MA27XYZ12K"
	s1 := apply(lic("L-00000001", a, ""), lic("L-00000002", a, ""), lic("L-00000003", "", org))
	s2 := apply(lic("L-00000002", b, ""), del("L-00000001"), lic("L-00000003", a, ""))
	s3 := apply(lic("L-00000001", a, ""), lic("L-00000003", "", org), lic("L-00000002", b, ""))
	s4 := apply(lic("L-00000003", "", ""), lic("L-00000002", a, ""))
	for _, tc := range []struct {
		s            *Snapshot
		col, value   string
		want         []string
		whenReleased bool
	}{
		{s1, "holder_id_number", a, []string{"L-00000001", "L-00000002"}, false},
		{s1, "holder_id_number", b, nil, false},
		{s1, "holder_uscc", org, []string{"L-00000003"}, false},
		{s2, "holder_id_number", a, []string{"L-00000003"}, false},
		{s2, "holder_id_number", b, []string{"L-00000002"}, false},
		{s2, "holder_uscc", org, nil, false},
		{s3, "holder_id_number", a, []string{"L-00000001"}, false},
		{s3, "holder_uscc", org, []string{"L-00000003"}, false},
		{s4, "holder_id_number", a, []string{"L-00000001", "L-00000002"}, false},
		{s4, "holder_id_number", b, nil, false},
		{s4, "holder_uscc", org, nil, false},
	} {
		if got := keysBy(t, tc.s, tc.col, tc.value); !slices.Equal(got, tc.want) {
			t.Errorf("snapshot seq %d: KeysBy(%s, %s) = %v, want %v", tc.s.seq, tc.col, tc.value, got, tc.want)
		}
	}
	if _, err := s1.KeysBy("holder_name", "张三"); !errors.Is(err, ErrNotIndexed) {
		t.Errorf("KeysBy on a column without an index: %v", err)
	}
	recs, err := s4.LookupBy("holder_id_number", a, nil)
	if err != nil || len(recs) != 2 || recs[0]["licence_no"] != "L-00000001" || recs[1]["licence_no"] != "L-00000002" {
		t.Errorf("LookupBy = %v, %v", recs, err)
	}
	recs, err = s4.LookupBy("holder_id_number", a, []exchange.Filter{{Column: "licence_no", Op: "eq", Value: "L-00000002"}})
	if err != nil || len(recs) != 1 || recs[0]["licence_no"] != "L-00000002" {
		t.Errorf("LookupBy within a row scope = %v, %v", recs, err)
	}
	for _, s := range []*Snapshot{s1, s2, s3, s4} {
		s.Release()
	}
	// With every snapshot but the table's cached one released, the next changes prune
	// the stale entries; what is left is what the current version holds.
	apply(lic("L-00000009", b, "")).Release()
	tbl.mu.RLock()
	stale := 0
	for j := range tbl.links.fields {
		entries, current := tbl.links.census(j)
		stale += entries - current
	}
	tbl.mu.RUnlock()
	if stale != 0 {
		t.Errorf("%d stale index entries kept with no snapshot older than them", stale)
	}
}

// TestKeysByUnderCompaction: under churn with deletes, while compaction copies and
// drops segments, every held snapshot's KeysBy matches its version for every value,
// and once they are released the index holds no more entries than the live rows.
func TestKeysByUnderCompaction(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "legal_entity.organization")
	g := &gen{r: rand.New(rand.NewPCG(7, 9)), d: d, keys: 120}
	tbl := New(d, WithAllocator(mem), WithSegmentRows(32), WithHistory(100))
	defer tbl.Close()
	type held struct {
		s *Snapshot
		m model
	}
	var snaps []held
	m := model{}
	var off int64
	values := map[string]bool{}
	for round := range 50 {
		cs := churnChanges(t, g, 120, &off, 5)
		for _, c := range cs {
			if c.Record != nil {
				values[c.Record["legal_rep_id_number"].(string)] = true
			}
		}
		if err := tbl.Apply(cs); err != nil {
			t.Fatal(err)
		}
		m.apply(t, d, cs)
		if round%5 == 0 {
			snaps = append(snaps, held{tbl.Snapshot(), maps.Clone(m)})
		}
		now := tbl.Snapshot()
		for v := range values {
			if got, want := keysBy(t, now, "legal_rep_id_number", v), modelKeysBy(m, "legal_rep_id_number", v); !slices.Equal(got, want) {
				t.Fatalf("round %d: KeysBy(%s) = %v, the table holds %v", round, v, got, want)
			}
		}
		now.Release()
	}
	if st := tbl.Stats(); st.Copied == 0 || st.Reclaimed == 0 {
		t.Fatalf("stats %+v: no compaction happened while the snapshots were held", st)
	}
	for i, h := range snaps {
		for v := range values {
			if got, want := keysBy(t, h.s, "legal_rep_id_number", v), modelKeysBy(h.m, "legal_rep_id_number", v); !slices.Equal(got, want) {
				t.Fatalf("snapshot %d after compaction: KeysBy(%s) = %v, its version holds %v", i, v, got, want)
			}
		}
		h.s.Release()
	}
	if err := tbl.Apply(churnChanges(t, g, 50, &off, 5)); err != nil {
		t.Fatal(err)
	}
	tbl.mu.RLock()
	defer tbl.mu.RUnlock()
	entries, current := tbl.links.census(0)
	// The cached snapshot of the last round may keep the last chunk's stale entries.
	if entries > tbl.live+50 || current != tbl.live {
		t.Fatalf("after the snapshots were released: %d index entries, %d current, %d live rows", entries, current, tbl.live)
	}
}

// TestKeysByAfterRestart: a table opened from its snapshot file answers KeysBy as the
// table that wrote it.
func TestKeysByAfterRestart(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "legal_entity.organization")
	g := &gen{r: newRand(), d: d, keys: 80}
	tbl := New(d, WithAllocator(mem), WithSegmentRows(16))
	var off int64
	m := model{}
	cs := churnChanges(t, g, 400, &off, 4)
	if err := tbl.Apply(cs); err != nil {
		t.Fatal(err)
	}
	m.apply(t, d, cs)
	s := tbl.Snapshot()
	dir := t.TempDir()
	if err := s.WriteTo(dir); err != nil {
		t.Fatal(err)
	}
	s.Release()
	tbl.Close()
	re, err := Open(d, dir, WithAllocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	rs := re.Snapshot()
	defer rs.Release()
	for _, rec := range m {
		v := rec["legal_rep_id_number"].(string)
		if got, want := keysBy(t, rs, "legal_rep_id_number", v), modelKeysBy(m, "legal_rep_id_number", v); !slices.Equal(got, want) {
			t.Fatalf("after Open: KeysBy(%s) = %v, want %v", v, got, want)
		}
	}
}

// census counts field j's index entries (in every value's list) and the keys that hold
// a value of it now, checking that every held entry is its key's current one and that
// each list is linked both ways.
func (l *links) census(j int) (entries, current int) {
	for vid, head := range l.heads[j] {
		prev := uint32(0)
		for e := head; e != 0; prev, e = e, l.ents[e-1].next {
			x := l.ents[e-1]
			if x.prev != prev || x.val != uint32(vid) || x.field != uint32(j) {
				panic(fmt.Sprintf("index entry %d is misplaced: %+v in the list of value %d after %d", e, x, vid, prev))
			}
			if (x.seq == linkHeld) != (l.cur[j][x.key] == e) {
				panic(fmt.Sprintf("index entry %d (%+v) and the key's current entry %d disagree", e, x, l.cur[j][x.key]))
			}
			entries++
		}
	}
	for _, e := range l.cur[j] {
		if e != 0 {
			current++
		}
	}
	return entries, current
}
