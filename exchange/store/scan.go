package store

import (
	"context"
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"

	"govx/exchange"
	"govx/exchange/mask"
)

// DefaultBatchRows is the largest batch Scan yields when Spec.BatchRows is 0.
const DefaultBatchRows = 65536

// OpColumn is the first column of a changes pull: "upsert" or "delete".
const OpColumn = "op"

// The values of the op column.
const (
	OpUpsert = "upsert"
	OpDelete = "delete"
)

// Spec says what a scan returns: the decision's columns, the caller's filter ANDed with
// the decision's row filter, and the decision's masks.
type Spec struct {
	// Columns to return, in order; none means every column of the dataset.
	Columns []string
	// Filter conditions, all ANDed.
	Filter []exchange.Filter
	// Masks maps a column to the mask applied to it.
	Masks map[string]string
	// MaskKey is the consumer department's hash-mask key (mask.DeriveKey).
	MaskKey []byte
	// BatchRows caps the rows per batch (default DefaultBatchRows).
	BatchRows int
}

// plan is a Spec checked against the dataset.
type plan struct {
	cols   []int
	masks  []string
	preds  []pred
	schema *arrow.Schema
	batch  int
	key    []byte
	isKey  []bool
}

func (t *Table) plan(spec Spec, changes bool) (*plan, error) {
	p := &plan{batch: spec.BatchRows, key: spec.MaskKey}
	if p.batch <= 0 {
		p.batch = DefaultBatchRows
	}
	names := spec.Columns
	if len(names) == 0 {
		names = t.d.FieldNames()
	}
	seen := map[string]bool{}
	for _, name := range names {
		i := t.fieldIndex(name)
		if i < 0 {
			return nil, exchange.E(exchange.Invalid, "unknown_column",
				fmt.Sprintf("column %q is not in %s (columns: %s)", name, t.d.ID, strings.Join(t.d.FieldNames(), ", ")))
		}
		if seen[name] {
			return nil, exchange.E(exchange.Invalid, "invalid_columns", fmt.Sprintf("column %q is named twice", name))
		}
		seen[name] = true
		p.cols = append(p.cols, i)
	}
	for col, m := range spec.Masks {
		i := t.fieldIndex(col)
		if i < 0 {
			return nil, exchange.E(exchange.Invalid, "unknown_column", fmt.Sprintf("a mask names column %q, which %s does not have", col, t.d.ID))
		}
		if err := mask.CheckType(m, t.schema.Field(i).Type); err != nil {
			return nil, exchange.E(exchange.Invalid, "invalid_mask", fmt.Sprintf("column %q: %v", col, err))
		}
		if m == mask.Hash && len(spec.MaskKey) == 0 && seen[col] {
			return nil, &exchange.Error{Kind: exchange.Internal, Code: "mask_key_missing",
				Message: "the hash mask needs the consumer department's key; none was configured", Err: mask.ErrNoKey}
		}
	}
	fields := make([]arrow.Field, 0, len(p.cols)+1)
	if changes {
		fields = append(fields, arrow.Field{Name: OpColumn, Type: arrow.BinaryTypes.String})
	}
	for _, i := range p.cols {
		f := t.schema.Field(i)
		m := spec.Masks[f.Name]
		p.masks = append(p.masks, m)
		p.isKey = append(p.isKey, t.d.IsKey(f.Name))
		out := mask.OutputField(f, m)
		if changes && !t.d.IsKey(f.Name) {
			out.Nullable = true // a delete carries only its key
		}
		fields = append(fields, out)
	}
	md := t.schema.Metadata()
	p.schema = arrow.NewSchema(fields, &md)
	preds, err := compileFilters(t.d, spec.Filter)
	if err != nil {
		return nil, err
	}
	p.preds = preds
	return p, nil
}

// OutputSchema returns the schema Scan yields for spec: the projected columns, masked
// columns as strings (null keeps its type), each field's metadata naming its
// sensitivity and the mask applied.
func (s *Snapshot) OutputSchema(spec Spec) (*arrow.Schema, error) {
	p, err := s.t.plan(spec, false)
	if err != nil {
		return nil, err
	}
	return p.schema, nil
}

// ChangesSchema returns the schema Changes yields for spec: OutputSchema with the op
// column first.
func (s *Snapshot) ChangesSchema(spec Spec) (*arrow.Schema, error) {
	p, err := s.t.plan(spec, true)
	if err != nil {
		return nil, err
	}
	return p.schema, nil
}

// selection returns the live rows of a segment as a bitmap.
func (v *segView) selection(buf []uint64) []uint64 {
	n := v.seg.n
	words := (n + 63) / 64
	sel := buf[:0]
	for w := 0; w < words; w++ {
		sel = append(sel, ^v.del[w])
	}
	if r := n % 64; r != 0 {
		sel[words-1] &= 1<<r - 1
	}
	return sel
}

func (p *plan) filter(v *segView, sel []uint64) {
	for i := range p.preds {
		if popcount(sel) == 0 {
			return
		}
		p.preds[i].apply(v.seg.rec.Column(p.preds[i].col), sel)
	}
}

// Scan calls fn with the rows of this version that pass spec's filter, projected and
// masked, in batches of at most spec.BatchRows rows with schema OutputSchema(spec). A
// batch is valid only during fn (Retain it to keep it). An error from fn stops the
// scan and is returned.
func (s *Snapshot) Scan(ctx context.Context, spec Spec, fn func(arrow.Record) error) error {
	p, err := s.t.plan(spec, false)
	if err != nil {
		return err
	}
	var buf []uint64
	for i := range s.segs {
		if err := ctx.Err(); err != nil {
			return err
		}
		v := &s.segs[i]
		sel := v.selection(buf)
		buf = sel
		p.filter(v, sel)
		if err := s.emit(v, sel, p, "", fn); err != nil {
			return err
		}
	}
	return nil
}

// Count returns how many rows of this version pass filters, so that a result over
// max_rows is refused before anything is streamed.
func (s *Snapshot) Count(ctx context.Context, filters []exchange.Filter) (int64, error) {
	preds, err := compileFilters(s.t.d, filters)
	if err != nil {
		return 0, err
	}
	p := &plan{preds: preds}
	var n int64
	var buf []uint64
	for i := range s.segs {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		v := &s.segs[i]
		if len(preds) == 0 {
			n += int64(v.seg.n - v.ndel)
			continue
		}
		sel := v.selection(buf)
		buf = sel
		p.filter(v, sel)
		n += int64(popcount(sel))
	}
	return n, nil
}

// Changes calls fn with the rows that changed after since, as they are in this
// version, with the op column first: an upsert carries the row, a delete only its key
// columns (others null). Filters apply to a delete as to the row's last version, so a
// consumer learns only of deletes of rows it could read. A key changed several times
// appears once, in its final state. This snapshot's Cursor is the next since. A cursor
// from before history the table reclaimed gets an error of code cursor_too_old
// (ErrCursorTooOld) before any row is yielded.
func (s *Snapshot) Changes(ctx context.Context, since Cursor, spec Spec, fn func(arrow.Record) error) error {
	p, err := s.t.plan(spec, true)
	if err != nil {
		return err
	}
	if err := s.checkSince(since); err != nil {
		return err
	}
	after := func(part int32, off int64) bool { return off >= since[part] }
	asOf := s.versionsAsOf(after)
	// Deletes, as row ids of the versions to report (filtered on those versions).
	var deletes []int64
	var buf []uint64
	for i := range s.segs {
		if err := ctx.Err(); err != nil {
			return err
		}
		v := &s.segs[i]
		changed := v.selection(buf)
		buf = changed
		eachSet(changed, func(r int) bool { return after(v.seg.part[r], v.seg.off[r]) })
		passing := slices.Clone(changed)
		p.filter(v, passing)
		if err := s.emit(v, passing, p, OpUpsert, fn); err != nil {
			return err
		}
		if len(p.preds) > 0 {
			// Changed rows the filter now rejects left the caller's scope (a person who
			// moved to another city): the caller held the version before, if it could
			// see it, and gets a delete for it.
			for w := range changed {
				for left := changed[w] &^ passing[w]; left != 0; left &= left - 1 {
					row := v.seg.start + int64(w*64+bits.TrailingZeros64(left))
					if old := asOf(row); old >= 0 {
						deletes = append(deletes, old)
					}
				}
			}
		}
	}
	// Keys deleted after since and not live now, by their last tombstone.
	last := map[string]int{}
	for i, tb := range s.tombs {
		if after(tb.part, tb.off) {
			last[tb.key] = i
		}
	}
	for key, i := range last {
		if _, _, live := s.find(key); live {
			continue // deleted, then inserted again: an upsert above
		}
		row := s.tombs[i].row
		seg := s.segs[segAt(s.segs, viewSeg, row)].seg
		if after(seg.part[row-seg.start], seg.off[row-seg.start]) {
			// The deleted version was itself written after since: the caller holds the
			// version before it, if any, and the delete is filtered on that one (a row
			// that left the scope and was then deleted is still reported). A key born
			// after since is filtered on its last version: a harmless extra delete.
			if old := asOf(row); old >= 0 {
				row = old
			}
		}
		deletes = append(deletes, row)
	}
	return s.emitDeletes(ctx, deletes, p, fn)
}

// emitDeletes yields, as deletes, the given row versions that pass the plan's filter:
// a consumer learns only of deletes of rows it could read.
func (s *Snapshot) emitDeletes(ctx context.Context, rows []int64, p *plan, fn func(arrow.Record) error) error {
	bySeg := map[int][]int32{}
	for _, row := range rows {
		j := segAt(s.segs, viewSeg, row)
		bySeg[j] = append(bySeg[j], int32(row-s.segs[j].seg.start))
	}
	for i := range s.segs {
		if len(bySeg[i]) == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		v := &s.segs[i]
		sel := make([]uint64, (v.seg.n+63)/64)
		for _, r := range bySeg[i] {
			sel[r/64] |= 1 << (r % 64)
		}
		p.filter(v, sel)
		if err := s.emit(v, sel, p, OpDelete, fn); err != nil {
			return err
		}
	}
	return nil
}

// emit yields the selected rows of a segment in batches. op, if set, is the value of a
// leading op column; for a delete the non-key columns are null.
func (s *Snapshot) emit(v *segView, sel []uint64, p *plan, op string, fn func(arrow.Record) error) error {
	k := popcount(sel)
	if k == 0 {
		return nil
	}
	mem := s.t.mem
	n := v.seg.n
	var idx []int32
	if k < n {
		idx = make([]int32, 0, k)
		eachSet(sel, func(i int) bool { idx = append(idx, int32(i)); return true })
	}
	fill := 2*k >= n // a pull of most of the segment materializes a declared mask it lacks
	for start := 0; start < k; start += p.batch {
		end := min(start+p.batch, k)
		rows := end - start
		cols := make([]arrow.Array, 0, len(p.cols)+1)
		release := func() {
			for _, c := range cols {
				c.Release()
			}
		}
		if op != "" {
			cols = append(cols, constString(s, op, rows))
		}
		for j, c := range p.cols {
			var a arrow.Array
			switch m := p.masks[j]; {
			case op == OpDelete && !p.isKey[j]:
				// A delete carries only its key: nulls, of the masked column's type.
				a = array.MakeArrayOfNull(mem, p.schema.Field(len(cols)).Type, rows)
			case m != "":
				var err error
				if a, err = s.t.maskedColumn(v.seg, c, m, p.key, idx, start, end, fill); err != nil {
					release()
					return exchange.E(exchange.Invalid, "invalid_mask", err.Error())
				}
			default:
				a = s.t.segColumn(v.seg.rec.Column(c), n, idx, start, end)
			}
			cols = append(cols, a)
		}
		rec := array.NewRecord(p.schema, cols, int64(rows))
		release()
		err := fn(rec)
		rec.Release()
		if err != nil {
			return err
		}
	}
	return nil
}

func constString(s *Snapshot, v string, n int) arrow.Array {
	b := array.NewStringBuilder(s.t.mem)
	defer b.Release()
	b.Reserve(n)
	b.ReserveData(n * len(v))
	for range n {
		b.Append(v)
	}
	return b.NewArray()
}

// CountChanges returns how many rows Changes would yield for since and filters, so a
// changes pull over max_rows is refused before anything is streamed.
func (s *Snapshot) CountChanges(ctx context.Context, since Cursor, filters []exchange.Filter) (int64, error) {
	var n int64
	spec := Spec{Columns: s.t.d.Key[:1], Filter: filters}
	err := s.Changes(ctx, since, spec, func(rec arrow.Record) error {
		n += rec.NumRows()
		return nil
	})
	return n, err
}

// versionsAsOf returns a function giving, for a row, the row id of the version of its
// key that was current at since (the newest older version not written after since), or
// -1 when there was none: the key did not exist or was deleted then. It walks the
// versions this snapshot holds. One it does not hold was reclaimed, which checkSince
// allows only for rows that died before since; and a version that died by being
// superseded died when its successor, found after since by the walk, was written. So a
// reclaimed one was deleted before since, and the key did not exist at since.
func (s *Snapshot) versionsAsOf(after func(int32, int64) bool) func(row int64) int64 {
	var deletedAt map[int64]int // row -> its tombstone, built on first use
	return func(row int64) int64 {
		v := s.segs[segAt(s.segs, viewSeg, row)].seg
		for r := v.prev[row-v.start]; r >= 0; {
			j := segAt(s.segs, viewSeg, r)
			if j < 0 {
				return -1
			}
			seg := s.segs[j].seg
			i := r - seg.start
			if after(seg.part[i], seg.off[i]) {
				r = seg.prev[i]
				continue
			}
			if deletedAt == nil {
				deletedAt = make(map[int64]int, len(s.tombs))
				for k, tb := range s.tombs {
					deletedAt[tb.row] = k
				}
			}
			if k, ok := deletedAt[r]; ok && !after(s.tombs[k].part, s.tombs[k].off) {
				return -1 // deleted before since
			}
			return r
		}
		return -1
	}
}
