package store

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/util"

	"govx/exchange/mask"
)

// Masked columns are materialized per segment: each segment holds, beside its columns,
// the masked columns the table declares (the dataset's default masks, and those set
// with MaterializeMasks: the masks agreements use), computed with mask.Array once for
// the whole segment. A segment is immutable and a mask is a function of each row alone,
// so a materialized column is right for the segment's whole life, whatever is deleted
// or updated later (those change bitmaps and add segments, never a segment's rows);
// merging and compaction carry them over by the same concatenation and take as the
// columns themselves. A pull then takes or slices masked values, the first pull after
// start as cheaply as a repeated one, and memory grows with the data (a few masked
// string columns), not with a fixed cache.
//
// The ingest goroutine masks a newly sealed segment after the chunk that sealed it,
// outside the table lock (Apply), and Open masks the segments it loads, so a table
// serves its first pull warm. A segment a pull meets unmasked (the small tail a
// snapshot just sealed, or a mask declared since) is masked whole when the pull wants
// most of it, and kept; a mask nobody declared is computed for the rows taken only.
//
// The hash mask's output depends on the consumer department's key: it is materialized
// only when declared with that key, and an entry is found only under its own key, so no
// department is ever served another's pseudonyms.

// MaskedColumn names a column a table keeps masked in every segment.
type MaskedColumn struct {
	Column string
	Mask   string
	// Key is the consumer department's hash key (mask.DeriveKey), for the hash mask
	// only: one department's pseudonyms are materialized per key.
	Key []byte
}

// maskSpec is a MaskedColumn resolved against the table: the column's position.
type maskSpec struct {
	col  int
	mask string
	key  string // the department's hash key, for the hash mask only
}

// maskSet is the masks a table materializes; gen changes whenever the set does, and a
// segment records the gen whose masks it holds, so checking one is one atomic load.
type maskSet struct {
	gen   int64
	specs []maskSpec
}

func (ms *maskSet) has(k maskSpec) bool { return slices.Contains(ms.specs, k) }

// segMasks is a segment's materialized masked columns.
type segMasks struct {
	mu    sync.Mutex
	cols  map[maskSpec]arrow.Array
	bytes int64        // the buffers of cols
	gen   atomic.Int64 // the maskSet generation whose masks were all tried (kept or over budget)
}

// get returns a materialized column retained, or nil.
func (m *segMasks) get(k maskSpec) arrow.Array {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.cols[k]
	if a != nil {
		a.Retain()
	}
	return a
}

// put keeps arr for k unless a column is kept for k already or arr would take the
// segment's masked columns over limit bytes, and returns the column to use (the kept
// one, or arr itself when it is not kept), the caller's to release.
func (m *segMasks) put(k maskSpec, arr arrow.Array, limit int64) arrow.Array {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.cols[k]; old != nil {
		arr.Release()
		old.Retain()
		return old
	}
	size := util.TotalArraySize(arr)
	if m.bytes+size > limit {
		return arr
	}
	if m.cols == nil {
		m.cols = map[maskSpec]arrow.Array{}
	}
	m.cols[k] = arr
	m.bytes += size
	arr.Retain()
	return arr
}

func (m *segMasks) release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range m.cols {
		a.Release()
	}
	m.cols, m.bytes = nil, 0
}

// DefaultMaskBudget is the share of a segment's own bytes its materialized masked
// columns may take (WithMaskBudget). Masks past it are computed per pull. 0.35 keeps a
// table of persons with its masked columns within the memory target (2× the Arrow IPC
// size of its rows; 1.48× without them) while holding the id_card, name and year
// masks (≈ 41 of its ≈ 137 bytes a row).
const DefaultMaskBudget = 0.35

// WithMaskBudget sets the share of each segment's bytes its materialized masked columns
// may take (default DefaultMaskBudget; 0 materializes none). The masks agreements use
// most come first.
func WithMaskBudget(share float64) Option {
	return func(t *Table) {
		if share >= 0 {
			t.maskBudget = share
		}
	}
}

// room reports whether column k of seg, masked, may fit the segment's budget: its
// size is bounded before masking by the column's own (a string mask keeps or stars
// characters, and a star is never longer than the character it hides), or by the fixed
// width of the year and hash masks' output, so a mask that cannot fit is not computed.
func (t *Table) room(seg *segment, k maskSpec) bool {
	col := seg.rec.Column(k.col)
	n := int64(col.Len())
	est := 4*(n+1) + (n+7)/8
	switch {
	case k.mask == mask.Hash:
		est += mask.HashHexLen * n
	case k.mask == mask.Year:
		est += 4 * n
	default:
		if s, ok := col.(*array.String); ok {
			est += int64(len(s.ValueBytes()))
		}
	}
	seg.masks.mu.Lock()
	defer seg.masks.mu.Unlock()
	return seg.masks.bytes+est <= t.maskLimit(seg)
}

// maskLimit returns the bytes a segment's materialized masked columns may take.
func (t *Table) maskLimit(seg *segment) int64 {
	return int64(t.maskBudget * float64(util.TotalRecordSize(seg.rec)))
}

// defaultMasks returns the dataset's default masks worth materializing: not null (an
// array of nulls costs nothing to make) and not hash (it needs a department's key).
func (t *Table) defaultMasks() []maskSpec {
	var out []maskSpec
	for i := range t.d.Fields {
		m := t.d.Fields[i].Mask
		if m == "" || m == mask.Null || m == mask.Hash || mask.CheckType(m, t.schema.Field(i).Type) != nil {
			continue
		}
		out = append(out, maskSpec{col: i, mask: m})
	}
	return out
}

// MaterializeMasks sets the masks the table keeps materialized besides the dataset's
// default masks (the masks agreements use: the exchange passes them at start and at
// each policy reload), and masks the segments it holds with the new ones before it
// returns; later segments get them as the ingest seals them. Masks no longer named are
// dropped as their segments are replaced. A column or mask the dataset cannot take is
// an error and changes nothing.
func (t *Table) MaterializeMasks(ms []MaskedColumn) error {
	var specs []maskSpec
	uses := map[maskSpec]int{} // how many agreements use each: the most used come first
	for _, m := range ms {
		i := t.fieldIndex(m.Column)
		if i < 0 {
			return fmt.Errorf("store: a mask names column %q, which %s does not have", m.Column, t.d.ID)
		}
		if err := mask.CheckType(m.Mask, t.schema.Field(i).Type); err != nil {
			return fmt.Errorf("store: %s.%s: %w", t.d.ID, m.Column, err)
		}
		if m.Mask == "" || m.Mask == mask.Null {
			continue
		}
		k := maskSpec{col: i, mask: m.Mask}
		if m.Mask == mask.Hash {
			if len(m.Key) == 0 {
				return fmt.Errorf("store: %s.%s: %w", t.d.ID, m.Column, mask.ErrNoKey)
			}
			k.key = string(m.Key)
		}
		if uses[k]++; uses[k] == 1 {
			specs = append(specs, k)
		}
	}
	slices.SortStableFunc(specs, func(a, b maskSpec) int { return uses[b] - uses[a] })
	for _, k := range t.defaultMasks() {
		if !slices.Contains(specs, k) {
			specs = append(specs, k)
		}
	}
	t.maskMu.Lock()
	old := t.maskSet.Load()
	if !slices.Equal(old.specs, specs) {
		t.maskSet.Store(&maskSet{gen: old.gen + 1, specs: specs})
	}
	t.maskMu.Unlock()
	t.materialize()
	return nil
}

// specFor returns the key of column c masked with m for a department key.
func specFor(c int, m string, key []byte) maskSpec {
	k := maskSpec{col: c, mask: m}
	if m == mask.Hash {
		k.key = string(key)
	}
	return k
}

// maskWhole masks a segment's whole column for k and keeps it; it returns the kept
// column, retained.
func (t *Table) maskWhole(seg *segment, k maskSpec) (arrow.Array, error) {
	arr, err := mask.Array(t.mem, seg.rec.Column(k.col), k.mask, mask.ArrayOptions{Key: []byte(k.key), Regions: t.segRegions(seg)})
	if err != nil {
		return nil, err
	}
	return seg.masks.put(k, arr, t.maskLimit(seg)), nil
}

// materializeAsync masks, on a goroutine of its own, the segments that lack a declared
// mask, so that the ingest goroutine goes on applying while the other core masks what
// it sealed. At most one such goroutine runs per table; Close waits for it.
func (t *Table) materializeAsync() {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed || len(t.unmasked(t.maskSet.Load())) == 0 || !t.matRunning.CompareAndSwap(false, true) {
		return
	}
	t.matWG.Add(1) // under mu, with closed unset: Close's Wait comes after
	go func() {
		defer t.matWG.Done()
		for {
			t.materialize()
			t.matRunning.Store(false)
			// A seal after the last look and before the flag fell found it set.
			t.mu.RLock()
			more := !t.closed && len(t.unmasked(t.maskSet.Load())) > 0
			t.mu.RUnlock()
			if !more || !t.matRunning.CompareAndSwap(false, true) {
				return
			}
		}
	}()
}

// unmasked returns the table's segments that lack a mask of ms; mu must be held.
func (t *Table) unmasked(ms *maskSet) []*segment {
	if len(ms.specs) == 0 {
		return nil
	}
	var out []*segment
	for _, st := range t.segs {
		if st.seg.masks.gen.Load() != ms.gen {
			out = append(out, st.seg)
		}
	}
	return out
}

// materialize masks the table's segments that lack a declared mask, outside the table
// lock: in the background after Apply sealed, merged or compacted segments
// (materializeAsync), after Open loaded a snapshot file, and when MaterializeMasks
// declares new masks.
func (t *Table) materialize() {
	ms := t.maskSet.Load()
	t.mu.RLock()
	todo := t.unmasked(ms)
	for _, seg := range todo {
		seg.retain()
	}
	t.mu.RUnlock()
	for _, seg := range todo {
		for _, k := range ms.specs {
			if a := seg.masks.get(k); a != nil {
				a.Release()
				continue
			}
			if !t.room(seg, k) {
				continue
			}
			a, err := t.maskWhole(seg, k)
			if err != nil {
				// Declared masks were checked against the column types; a failure
				// here is a bug. The pull masks on its own and reports it.
				continue
			}
			a.Release()
		}
		seg.masks.gen.Store(ms.gen)
		seg.release()
	}
}

// carryMasks gives seg, made of rows of others (a merge: parts concatenated; or a
// compaction: rows taken from each and concatenated), the declared masked columns all
// of them hold, built by the same operation from theirs: masking is per row, so it is
// what masking seg anew would give.
func (t *Table) carryMasks(seg *segment, parts []*segment, build func(cols []arrow.Array) arrow.Array) {
	ms := t.maskSet.Load()
	complete := len(ms.specs) > 0
	for _, k := range ms.specs {
		cols := make([]arrow.Array, 0, len(parts))
		for _, p := range parts {
			if a := p.masks.get(k); a != nil {
				cols = append(cols, a)
			}
		}
		if len(cols) == len(parts) {
			seg.masks.put(k, build(cols), t.maskLimit(seg)).Release()
		} else {
			complete = false
		}
		for _, a := range cols {
			a.Release()
		}
	}
	if complete {
		seg.masks.gen.Store(ms.gen)
	}
}

// concatenate concatenates arrays of one type.
func (t *Table) concatenate(parts []arrow.Array) arrow.Array {
	if len(parts) == 1 {
		parts[0].Retain()
		return parts[0]
	}
	out, err := array.Concatenate(parts, t.mem)
	if err != nil {
		panic(fmt.Sprintf("store: concatenating segments: %v", err)) // same types: cannot fail
	}
	return out
}

// segColumn returns rows [start, end) of the selection idx (every row when nil) of
// a segment's column arr: passed through, sliced or taken.
func (t *Table) segColumn(arr arrow.Array, n int, idx []int32, start, end int) arrow.Array {
	if idx != nil {
		return take(t.mem, arr, idx[start:end])
	}
	if start == 0 && end == n {
		arr.Retain()
		return arr
	}
	return array.NewSlice(arr, int64(start), int64(end))
}

// maskedColumn returns rows [start, end) of the selection idx (every row when nil) of
// column c of seg masked with m: from the segment's materialized column; or, for a
// declared mask the segment lacks, from one materialized now when the pull wants most
// of the segment (fill); or masked for those rows only.
func (t *Table) maskedColumn(seg *segment, c int, m string, key []byte, idx []int32, start, end int, fill bool) (arrow.Array, error) {
	k := specFor(c, m, key)
	whole := seg.masks.get(k)
	if whole == nil && fill && t.maskSet.Load().has(k) {
		var err error
		if whole, err = t.maskWhole(seg, k); err != nil {
			return nil, err
		}
	}
	if whole != nil {
		defer whole.Release()
		return t.segColumn(whole, seg.n, idx, start, end), nil
	}
	raw := t.segColumn(seg.rec.Column(c), seg.n, idx, start, end)
	defer raw.Release()
	o := mask.ArrayOptions{Key: key}
	if m == mask.Address {
		if r := t.segRegions(seg); r != nil {
			region := t.segColumn(r, seg.n, idx, start, end)
			defer region.Release()
			o.Regions = region.(*array.String)
		}
	}
	return mask.Array(t.mem, raw, m, o)
}
