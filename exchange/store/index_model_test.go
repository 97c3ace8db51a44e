package store

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestKeysByAgainstModel drives a table with two indexed columns through random
// upserts, moves of either value (to another, to null and back), deletes, snapshots
// taken and released out of order, compaction and a restart, and checks every held
// snapshot's KeysBy, for every value any of them holds and some long gone, against a
// map of its version's records. The keys and values are long and drift over time, so
// the index frees ids and repacks its arenas meanwhile; its internal counts are checked
// after every round, and with the snapshots released it holds no more than the live
// rows and the last chunk's stale entries.
func TestKeysByAgainstModel(t *testing.T) {
	mem := checked(t)
	d := dataset(t, "resource.land_parcel")
	cols := []string{"holder_uscc", "holder_id_number"}
	r := rand.New(rand.NewPCG(17, 23))
	g := &gen{r: r, d: d, keys: 1}
	rounds, perRound := 80, 150
	if raceEnabled {
		rounds = 40
	}
	pad := strings.Repeat("x", 700)
	opts := []Option{WithAllocator(mem), WithSegmentRows(16), WithHistory(60)}
	tbl := New(d, opts...)
	defer func() { tbl.Close() }()
	type held struct {
		s *Snapshot
		m model
	}
	var snaps []held
	m := model{}
	var off int64
	var gone []string    // values no longer drawn
	var arena [2]int     // the key and value arenas' sizes after the last round
	var repacked [2]bool // whether they shrank
	value := func(col string, round int) any {
		if r.IntN(6) == 0 {
			return nil
		}
		return fmt.Sprintf("%s-%d-%d-%s", col, round/4, r.IntN(8), pad[:r.IntN(3)*300])
	}
	check := func(round int, h held) {
		t.Helper()
		for _, col := range cols {
			values := map[string]bool{}
			for _, rec := range h.m {
				if v, ok := rec[col].(string); ok {
					values[v] = true
				}
			}
			for range 5 {
				if len(gone) > 0 {
					values[gone[r.IntN(len(gone))]] = true
				}
			}
			for v := range values {
				if got, want := keysBy(t, h.s, col, v), modelKeysBy(h.m, col, v); !slices.Equal(got, want) {
					t.Fatalf("round %d, snapshot seq %d: KeysBy(%s, %.40s…) = %d keys, its version holds %d: %v, want %v",
						round, h.s.seq, col, v, len(got), len(want), got, want)
				}
			}
		}
	}
	for round := range rounds {
		cs := make([]Change, 0, perRound)
		for range perRound {
			// The keys drift: each round draws from a window further on.
			k := fmt.Sprintf("P%06d-%s", round*6+r.IntN(120), pad[:300])
			off++
			if r.IntN(7) == 0 {
				cs = append(cs, Change{Key: k, Offset: off})
				continue
			}
			rec := g.record()
			rec["parcel_code"] = k
			for _, col := range cols {
				if v := value(col, round); v != nil {
					rec[col] = v
				} else {
					delete(rec, col)
				}
			}
			cs = append(cs, Change{Key: k, Record: rec, Offset: off})
		}
		if err := tbl.Apply(cs); err != nil {
			t.Fatal(err)
		}
		m.apply(t, d, cs)
		if round%4 == 3 {
			for _, col := range cols {
				gone = append(gone, fmt.Sprintf("%s-%d-%d-%s", col, round/4-1, r.IntN(8), pad[:r.IntN(3)*300]))
			}
		}
		if r.IntN(3) == 0 {
			snaps = append(snaps, held{tbl.Snapshot(), maps.Clone(m)})
		}
		for len(snaps) > 0 && r.IntN(3) == 0 { // release some, not the oldest first
			i := r.IntN(len(snaps))
			snaps[i].s.Release()
			snaps = slices.Delete(snaps, i, i+1)
		}
		now := held{tbl.Snapshot(), m}
		check(round, now)
		now.s.Release()
		for _, h := range snaps {
			check(round, h)
		}
		checkLinks(t, tbl, m, cols)
		for i, tab := range []*strtab{&tbl.links.keys, &tbl.links.vals} {
			repacked[i] = repacked[i] || len(tab.data) < arena[i]
			arena[i] = len(tab.data)
		}
		if round == rounds/2 { // a restart: the reopened table answers as the one that wrote it
			for _, h := range snaps {
				h.s.Release()
			}
			snaps = nil
			s := tbl.Snapshot()
			dir := t.TempDir()
			if err := s.WriteTo(dir); err != nil {
				t.Fatal(err)
			}
			s.Release()
			tbl.Close()
			var err error
			if tbl, err = Open(d, dir, opts...); err != nil {
				t.Fatal(err)
			}
			s = tbl.Snapshot()
			check(round, held{s, m})
			s.Release()
			checkLinks(t, tbl, m, cols)
		}
	}
	if !repacked[0] || !repacked[1] {
		t.Fatalf("the key and value arenas repacked: %v; the test no longer frees enough to make them", repacked)
	}
	if st := tbl.Stats(); st.Copied == 0 || st.Reclaimed == 0 {
		t.Fatalf("stats %+v: compaction never copied or dropped a segment", st)
	}
	for _, h := range snaps {
		h.s.Release()
	}
	tbl.Snapshot().Release() // the cached snapshot is now the latest
	if err := tbl.Apply([]Change{{Key: fmt.Sprintf("P%06d-%s", 0, pad[:300]), Offset: off + 1}}); err != nil {
		t.Fatal(err)
	}
	tbl.mu.RLock()
	defer tbl.mu.RUnlock()
	for j, col := range cols {
		if entries, current := tbl.links.census(j); entries > current+1 {
			t.Errorf("%s: %d index entries for %d current values with no snapshot older than the last change", col, entries, current)
		}
	}
}

// checkLinks checks the index against the table's current records: each column's
// current entries are the live keys with a value in it, every interned key and value is
// counted once per entry naming it and found by its text, and the arenas hold at most
// twice the bytes in use (plus the slack before repacking).
func checkLinks(t *testing.T, tbl *Table, m model, cols []string) {
	t.Helper()
	tbl.mu.RLock()
	defer tbl.mu.RUnlock()
	l := &tbl.links
	keyRefs := make([]uint32, len(l.keys.refs))
	valRefs := make([]uint32, len(l.vals.refs))
	for j, col := range cols {
		want := 0
		for _, rec := range m {
			if _, ok := rec[col]; ok {
				want++
			}
		}
		if _, current := l.census(j); current != want {
			t.Fatalf("%s: %d keys with a current value in the index, the table has %d", col, current, want)
		}
		for _, head := range l.heads[j] {
			for e := head; e != 0; e = l.ents[e-1].next {
				keyRefs[l.ents[e-1].key]++
				valRefs[l.ents[e-1].val]++
			}
		}
	}
	for _, tab := range []struct {
		name string
		s    *strtab
		refs []uint32
	}{{"key", &l.keys, keyRefs}, {"value", &l.vals, valRefs}} {
		used := 0
		for id, n := range tab.s.refs {
			if n != tab.refs[id] {
				t.Fatalf("%s id %d counts %d references, %d entries name it", tab.name, id, n, tab.refs[id])
			}
			if n == 0 {
				continue
			}
			used += int(tab.s.size[id])
			if got, ok := tab.s.find(tab.s.str(uint32(id))); !ok || got != uint32(id) {
				t.Fatalf("%s id %d (%.40s…) is found as %d, %v", tab.name, id, tab.s.str(uint32(id)), got, ok)
			}
		}
		if len(tab.s.data) > 2*used+1<<16 {
			t.Fatalf("the %s arena holds %d bytes for %d in use", tab.name, len(tab.s.data), used)
		}
		if free := len(tab.s.refs) - tab.s.idx.n; free != len(tab.s.free) {
			t.Fatalf("%s ids: %d of %d not in the hash table, %d on the free list", tab.name, free, len(tab.s.refs), len(tab.s.free))
		}
	}
}
