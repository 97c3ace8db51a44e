package store

import (
	"slices"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
)

// Compaction runs on the ingest's goroutine, after each chunk Apply applied, in steps
// of bounded work:
//
//   - A segment whose dead rows reach the garbage ratio has its live rows copied into
//     a new segment (one new segment per step, at most segRows rows). The key index
//     points at the copies; the old rows are marked dead, so the segment now holds only
//     history: the versions superseded and the last rows of deleted keys.
//   - A segment with no live row whose last death is older than the history kept is
//     dropped, with its tombstones; the horizon moves past the changes that killed its
//     rows, so a changes pull from before it is refused instead of missing deletes.
//
// Snapshots keep the segments they hold. A snapshot finds a key by walking from the
// key's current row back to the one it holds (Snapshot.find); the links of rows copied
// or dropped after it was taken are kept (segState.src, ghosts, pending) until every
// snapshot older than that step is released.

// maxCompactSteps bounds the steps after one chunk of changes.
const maxCompactSteps = 4

// compact runs compaction steps after Apply applied n changes, copying at most about
// four rows per change (and at least one segment's worth), so that reclaiming keeps up
// with churn without stalling the ingest.
func (t *Table) compact(n int) {
	if n == 0 {
		return
	}
	budget := max(t.segRows, 4*n)
	for range maxCompactSteps {
		copied, did := t.compactStep(budget)
		budget -= copied
		if !did || budget <= 0 {
			return
		}
	}
}

// victim is a segment whose live rows a step copies out.
type victim struct {
	st   *segState
	rows []int32
}

// evacuation is a step's copy of its victims' live rows, built outside the lock.
type evacuation struct {
	victims []victim
	seg     *segment
	src     []int64
	hashes  []uint64
	n       int
}

// compactStep drops the segments nothing needs any more, then copies the live rows of
// the sparsest segments into one new segment. It returns the rows copied and whether
// it did anything.
func (t *Table) compactStep(budget int) (copied int, did bool) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return 0, false
	}
	t.pruneLocked()
	did = t.dropLocked()
	victims := t.victimsLocked(min(t.segRows, budget))
	if len(victims) == 0 {
		t.mu.Unlock()
		return 0, did
	}
	// The copies take the next row ids, so the tail goes first; merging segments would
	// replace victims, so it waits until the copies are in. Close may release the
	// table's references meanwhile: the step holds its own.
	t.compacting = true
	t.sealLocked()
	for _, v := range victims {
		v.st.seg.retain()
	}
	t.mu.Unlock()

	// Readers go on meanwhile; nothing else writes, since Apply is waiting for this.
	ev := t.evacuate(victims)

	t.mu.Lock()
	defer t.mu.Unlock()
	defer func() {
		t.compacting = false
		for _, v := range victims {
			v.st.seg.release()
		}
	}()
	if t.closed {
		ev.seg.release()
		return 0, false
	}
	if !t.installLocked(ev) {
		return 0, did
	}
	return ev.n, true
}

// historyLen returns how many of the latest changes the table keeps the history of.
func (t *Table) historyLen() int64 {
	if t.history > 0 {
		return int64(t.history)
	}
	return int64(max(t.live, t.segRows))
}

// changedLocked marks the version changed and drops the cached snapshot, which would
// otherwise keep the links of older eras (and the segments it holds) alive.
func (t *Table) changedLocked() {
	t.dirty = true
	if t.cached != nil {
		t.cached.Release()
		t.cached = nil
	}
}

// oldestEra returns the era of the oldest unreleased snapshot, or the current era.
func (t *Table) oldestEra() int64 {
	t.snapMu.Lock()
	defer t.snapMu.Unlock()
	oldest := t.era
	for e := range t.eras {
		oldest = min(oldest, e)
	}
	return oldest
}

func (t *Table) unregister(era int64) {
	t.snapMu.Lock()
	defer t.snapMu.Unlock()
	if t.eras[era]--; t.eras[era] <= 0 {
		delete(t.eras, era)
	}
}

// pruneLocked forgets the links no unreleased snapshot can walk through any more: those
// made in eras no older than the oldest snapshot's.
func (t *Table) pruneLocked() {
	t.links.prune()
	oldest := t.oldestEra()
	ghosts := t.ghosts[:0]
	for _, g := range t.ghosts {
		if g.era > oldest {
			ghosts = append(ghosts, g)
		}
	}
	clear(t.ghosts[len(ghosts):])
	t.ghosts = ghosts
	for row, p := range t.pending {
		if p.era > oldest {
			continue
		}
		if slot := t.idx.slotOf(p.h, row); slot >= 0 {
			t.idx.removeAt(slot)
		}
		delete(t.pending, row)
	}
	for _, st := range t.segs {
		if st.src != nil && st.srcEra <= oldest {
			st.src = nil
		}
	}
}

func ghostSeg(g ghost) *segment { return g.st.seg }

// dropLocked drops the segments with no live row whose last death is older than the
// history kept, with the tombstones of their rows, and reports whether it dropped any.
func (t *Table) dropLocked() bool {
	keep := t.seq - t.historyLen()
	var gone []*segState
	for _, st := range t.segs {
		if st.ndel == st.seg.n && st.death.last <= keep {
			gone = append(gone, st)
		}
	}
	if len(gone) == 0 {
		return false
	}
	t.era++
	t.changedLocked()
	older := t.oldestEra() < t.era // a snapshot from before this drop is still held
	in := func(row int64) bool { return segAt(gone, stateSeg, row) >= 0 }
	tombs := make([]tomb, 0, len(t.tombs))
	for _, tb := range t.tombs {
		if !in(tb.row) {
			tombs = append(tombs, tb)
			continue
		}
		h := t.hash(tb.key)
		if slot := t.idx.slotOf(h, tb.row); slot >= 0 {
			// The key's last row: an older snapshot may still look the key up and find
			// it live, so the index names the row until those are released.
			if older {
				t.pending[tb.row] = pendingHead{key: tb.key, h: h, era: t.era}
			} else {
				t.idx.removeAt(slot)
			}
		}
	}
	t.tombs = tombs // a new slice: snapshots share the old one
	segs := make([]*segState, 0, len(t.segs)-len(gone))
	for _, st := range t.segs {
		if !in(st.seg.start) {
			segs = append(segs, st)
			continue
		}
		for p, off := range st.death.pos {
			if off+1 > t.horizon[p] {
				t.horizon[p] = off + 1
			}
		}
		if older {
			t.ghosts = append(t.ghosts, ghost{st: st, era: t.era})
		}
		st.seg.release()
		t.stats.Reclaimed += int64(st.seg.n)
	}
	t.segs = segs
	slices.SortFunc(t.ghosts, func(a, b ghost) int { return order(a.st.seg.start, b.st.seg.start) })
	return true
}

// victimsLocked returns the segments whose garbage reached the ratio, sparsest first
// (the most garbage freed per row copied), whose live rows fit in limit (the first
// always does), in row id order. It returns none until they hold a segment's worth of
// rows: copying a few rows at a time would seal the tail early every time and leave
// the table in many small segments.
func (t *Table) victimsLocked(limit int) []victim {
	var cands []*segState
	rows := 0
	for _, st := range t.segs {
		if live := st.seg.n - st.ndel; live > 0 && float64(st.ndel) >= t.ratio*float64(st.seg.n) {
			cands = append(cands, st)
			rows += st.seg.n
		}
	}
	if rows < t.segRows {
		return nil
	}
	liveShare := func(st *segState) float64 { return float64(st.seg.n-st.ndel) / float64(st.seg.n) }
	slices.SortFunc(cands, func(a, b *segState) int { return order(liveShare(a), liveShare(b)) })
	var out []victim
	total := 0
	var buf []uint64
	for _, st := range cands {
		live := st.seg.n - st.ndel
		if len(out) > 0 && total+live > limit {
			continue
		}
		sel := (&segView{seg: st.seg, del: st.del}).selection(buf)
		buf = sel
		rows := make([]int32, 0, live)
		eachSet(sel, func(i int) bool { rows = append(rows, int32(i)); return true })
		out = append(out, victim{st: st, rows: rows})
		total += live
	}
	slices.SortFunc(out, func(a, b victim) int { return order(a.st.seg.start, b.st.seg.start) })
	return out
}

// evacuate copies the victims' live rows into a new segment, whose start is set when
// it is installed. It reads only immutable segments and the row lists taken under the
// lock.
func (t *Table) evacuate(victims []victim) *evacuation {
	ev := &evacuation{victims: victims}
	for _, v := range victims {
		ev.n += len(v.rows)
	}
	// takeAll takes each victim's live rows of its array (cols[k] is victim k's) and
	// concatenates them.
	takeAll := func(cols []arrow.Array) arrow.Array {
		parts := make([]arrow.Array, len(victims))
		for k, v := range victims {
			parts[k] = take(t.mem, cols[k], v.rows)
		}
		out := t.concatenate(parts)
		for _, p := range parts {
			p.Release()
		}
		return out
	}
	gather := func(col func(*segment) arrow.Array) arrow.Array {
		cols := make([]arrow.Array, len(victims))
		for k, v := range victims {
			cols[k] = col(v.st.seg)
		}
		return takeAll(cols)
	}
	cols := make([]arrow.Array, len(t.d.Fields))
	for c := range cols {
		cols[c] = gather(func(s *segment) arrow.Array { return s.rec.Column(c) })
	}
	rec := array.NewRecord(t.schema, cols, int64(ev.n))
	for _, c := range cols {
		c.Release()
	}
	seg := &segment{rec: rec, n: ev.n, part: make([]int32, 0, ev.n), off: make([]int64, 0, ev.n), prev: make([]int64, 0, ev.n)}
	seg.refs.Store(1)
	if t.keyCol >= 0 {
		seg.keys = rec.Column(t.keyCol).(*array.String)
	} else {
		seg.keys, seg.ownKeys = gather(func(s *segment) arrow.Array { return s.keys }).(*array.String), true
	}
	parts := make([]*segment, len(victims))
	for k, v := range victims {
		parts[k] = v.st.seg
	}
	t.carryMasks(seg, parts, takeAll)
	ev.src = make([]int64, 0, ev.n)
	ev.hashes = make([]uint64, 0, ev.n)
	for _, v := range victims {
		s := v.st.seg
		for _, r := range v.rows {
			seg.part = append(seg.part, s.part[r])
			seg.off = append(seg.off, s.off[r])
			// A copy is the same version: its previous version is the original's.
			seg.prev = append(seg.prev, s.prev[r])
			ev.src = append(ev.src, s.start+int64(r))
			ev.hashes = append(ev.hashes, t.hash(s.keys.Value(int(r))))
		}
	}
	ev.seg = seg
	return ev
}

// installLocked puts an evacuation's segment in the table: the index points at the
// copies and the originals are marked dead. It reports false, keeping the rows where
// they are, when the row ids would run out.
func (t *Table) installLocked(ev *evacuation) bool {
	if t.next > t.maxRow-int64(ev.n) {
		ev.seg.release()
		return false
	}
	t.sealLocked() // nothing to seal: Apply, the only appender, waits for this step
	start := t.next
	ev.seg.start = start
	t.next += int64(ev.n)
	t.tail.start = t.next
	t.era++
	i := int64(0)
	for _, v := range ev.victims {
		for _, r := range v.rows {
			v.st.kill(int(r))
			slot := t.idx.slotOf(ev.hashes[i], v.st.seg.start+int64(r))
			if slot < 0 {
				panic("store: a live row is not its key's latest") // an invariant of upsert
			}
			t.idx.rows[slot] = start + i + 1
			i++
		}
	}
	t.segs = append(t.segs, &segState{seg: ev.seg, del: make([]uint64, (ev.n+63)/64), src: ev.src, srcEra: t.era})
	t.stats.Copied += int64(ev.n)
	t.changedLocked()
	return true
}

// before returns the row that was its key's latest before row was written: for a
// compaction copy the row it was copied from, otherwise the key's previous version, or
// -1. It serves snapshots walking back from the current row (Snapshot.find).
func (t *Table) before(row int64) int64 {
	if row >= t.tail.start {
		return t.tail.prev[row-t.tail.start]
	}
	var st *segState
	if j := segAt(t.segs, stateSeg, row); j >= 0 {
		st = t.segs[j]
	} else if j := segAt(t.ghosts, ghostSeg, row); j >= 0 {
		st = t.ghosts[j].st
	} else {
		return -1 // reclaimed before any unreleased snapshot was taken
	}
	i := int(row - st.seg.start)
	if st.src != nil && st.src[i] >= 0 {
		return st.src[i]
	}
	return st.seg.prev[i]
}

// order compares like cmp.Compare (the package has a cmp of its own, in filter.go).
func order[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
