package aggregate

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/decimal128"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"govx/exchange/store"
)

// Result is an executed plan's answer.
type Result struct {
	// Record holds the groups, one row each; the caller releases it.
	Record arrow.Record
	// SuppressedCells is how many cells of the partition in the query's scope had
	// fewer than the minimum group size rows and so count in no group.
	SuppressedCells int
}

// stats accumulates one measured column over a cell or a group.
type stats struct {
	n                int64 // non-null values
	sumI, minI, maxI int64
	sumF, minF, maxF float64
	sumD, minD, maxD decimal128.Num
	overflow         bool
}

// cell is one cell of the partition: its values (nil for null) and what it holds.
type cell struct {
	vals  []*string
	rows  int64
	stats []stats
}

// Execute runs the plan on one version of the dataset. Every group it returns is a union
// of whole cells of the partition with at least the minimum group size rows each; cells
// below it are counted in SuppressedCells and nowhere else.
func (p *Plan) Execute(ctx context.Context, snap *store.Snapshot, mem memory.Allocator) (*Result, error) {
	var (
		cells []*cell
		index = map[string]int{}
		key   []byte
	)
	nPart, kinds := len(p.Terms.GroupBy), make([]arrow.Type, len(p.measured))
	spec := store.Spec{Columns: p.cols, Filter: p.Filter}
	err := snap.Scan(ctx, spec, func(rec arrow.Record) error {
		parts := make([]*array.String, nPart)
		for i := range nPart {
			s, ok := rec.Column(i).(*array.String)
			if !ok {
				return fmt.Errorf("aggregate: group column %s is %s, not text", p.cols[i], rec.Column(i).DataType())
			}
			parts[i] = s
		}
		measures := make([]arrow.Array, len(p.measured))
		for i, c := range p.measured {
			measures[i] = rec.Column(slices.Index(p.cols, c))
			kinds[i] = measures[i].DataType().ID()
		}
		for r := range int(rec.NumRows()) {
			key = key[:0]
			for _, s := range parts {
				if s.IsNull(r) {
					key = append(key, 0)
					continue
				}
				v := s.Value(r)
				key = append(key, 1)
				key = binary.AppendUvarint(key, uint64(len(v)))
				key = append(key, v...)
			}
			ci, ok := index[string(key)]
			if !ok {
				c := &cell{vals: make([]*string, nPart), stats: make([]stats, len(p.measured))}
				for i, s := range parts {
					if !s.IsNull(r) {
						v := strings.Clone(s.Value(r)) // the batch is released after the callback
						c.vals[i] = &v
					}
				}
				ci = len(cells)
				cells = append(cells, c)
				index[string(key)] = ci
			}
			c := cells[ci]
			c.rows++
			for i, a := range measures {
				c.stats[i].add(a, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res := &Result{}
	groups, order := map[string]*cell{}, []*cell{}
	for _, c := range cells {
		if c.rows < p.Terms.MinGroupSize {
			res.SuppressedCells++
			continue
		}
		key = key[:0]
		vals := make([]*string, len(p.group))
		for i, pi := range p.group {
			vals[i] = c.vals[pi]
			if vals[i] == nil {
				key = append(key, 0)
				continue
			}
			key = append(key, 1)
			key = binary.AppendUvarint(key, uint64(len(*vals[i])))
			key = append(key, *vals[i]...)
		}
		g, ok := groups[string(key)]
		if !ok {
			g = &cell{vals: vals, stats: make([]stats, len(p.measured))}
			groups[string(key)] = g
			order = append(order, g)
		}
		g.rows += c.rows
		for i := range g.stats {
			g.stats[i].merge(&c.stats[i], kinds[i])
		}
	}
	if len(p.Query.GroupBy) == 0 && len(order) == 0 {
		// As in SQL, an aggregate over no group is one row: a count of 0, nulls.
		order = append(order, &cell{stats: make([]stats, len(p.measured))})
	}
	rows := make([][]any, len(order))
	for i, g := range order {
		if rows[i], err = p.row(g, kinds); err != nil {
			return nil, err
		}
	}
	p.sort(rows)
	if p.Query.Limit > 0 && int64(len(rows)) > p.Query.Limit {
		rows = rows[:p.Query.Limit]
	}
	res.Record = p.build(rows, mem)
	return res, nil
}

func (s *stats) add(a arrow.Array, r int) {
	if a.IsNull(r) {
		return
	}
	first := s.n == 0
	s.n++
	switch x := a.(type) {
	case *array.Int64:
		v := x.Value(r)
		sum, overflow := addInt(s.sumI, v)
		s.sumI, s.overflow = sum, s.overflow || overflow
		if first || v < s.minI {
			s.minI = v
		}
		if first || v > s.maxI {
			s.maxI = v
		}
	case *array.Float64:
		v := x.Value(r)
		s.sumF += v
		if first || v < s.minF {
			s.minF = v
		}
		if first || v > s.maxF {
			s.maxF = v
		}
	case *array.Decimal128:
		v := x.Value(r)
		s.sumD = s.sumD.Add(v)
		if first || v.Less(s.minD) {
			s.minD = v
		}
		if first || s.maxD.Less(v) {
			s.maxD = v
		}
	}
}

func (s *stats) merge(o *stats, kind arrow.Type) {
	if o.n == 0 {
		return
	}
	first := s.n == 0
	s.n += o.n
	s.overflow = s.overflow || o.overflow
	switch kind {
	case arrow.INT64:
		sum, overflow := addInt(s.sumI, o.sumI)
		s.sumI, s.overflow = sum, s.overflow || overflow
		if first || o.minI < s.minI {
			s.minI = o.minI
		}
		if first || o.maxI > s.maxI {
			s.maxI = o.maxI
		}
	case arrow.FLOAT64:
		s.sumF += o.sumF
		if first || o.minF < s.minF {
			s.minF = o.minF
		}
		if first || o.maxF > s.maxF {
			s.maxF = o.maxF
		}
	case arrow.DECIMAL128:
		s.sumD = s.sumD.Add(o.sumD)
		if first || o.minD.Less(s.minD) {
			s.minD = o.minD
		}
		if first || s.maxD.Less(o.maxD) {
			s.maxD = o.maxD
		}
	}
}

func addInt(a, b int64) (int64, bool) {
	s := a + b
	return s, (a >= 0) == (b >= 0) && (s >= 0) != (a >= 0)
}

// row is one group's output values in SELECT order: *string, int64, float64 or
// decimal128.Num, nil for null.
func (p *Plan) row(g *cell, kinds []arrow.Type) ([]any, error) {
	out := make([]any, len(p.Query.Items))
	for i, it := range p.Query.Items {
		if it.Fn == "" {
			if v := g.vals[slices.Index(p.Query.GroupBy, it.Column)]; v != nil {
				out[i] = v
			}
			continue
		}
		if it.Fn == FnCount {
			out[i] = g.rows
			continue
		}
		mi := slices.Index(p.measured, it.Column)
		s := &g.stats[mi]
		if s.n == 0 {
			continue // SQL: an aggregate of no values is null
		}
		kind := kinds[mi]
		if s.overflow && kind == arrow.INT64 && (it.Fn == FnSum || it.Fn == FnAvg) {
			return nil, fmt.Errorf("aggregate: the sum of %s overflows 64 bits", it.Column)
		}
		out[i] = s.value(it.Fn, kind, p.scale(it.Column))
	}
	return out, nil
}

func (p *Plan) scale(col string) int32 {
	f, _ := p.Dataset.Field(col)
	if d, ok := f.ArrowType().(*arrow.Decimal128Type); ok {
		return d.Scale
	}
	return 0
}

func (s *stats) value(fn string, kind arrow.Type, scale int32) any {
	switch kind {
	case arrow.INT64:
		return pick(fn, s.sumI, s.minI, s.maxI, float64(s.sumI)/float64(s.n))
	case arrow.FLOAT64:
		return pick(fn, s.sumF, s.minF, s.maxF, s.sumF/float64(s.n))
	}
	return pick(fn, s.sumD, s.minD, s.maxD, s.sumD.ToFloat64(scale)/float64(s.n))
}

func pick[T any](fn string, sum, lo, hi T, avg float64) any {
	switch fn {
	case FnSum:
		return sum
	case FnMin:
		return lo
	case FnMax:
		return hi
	}
	return avg
}

// sort orders the rows by ORDER BY, then by the group columns, so that an answer's
// order never depends on the scan's.
func (p *Plan) sort(rows [][]any) {
	keys := slices.Clone(p.Query.OrderBy)
	for i, it := range p.Query.Items {
		if it.Fn == "" {
			keys = append(keys, Order{Item: i})
		}
	}
	slices.SortStableFunc(rows, func(a, b []any) int {
		for _, k := range keys {
			c := compare(a[k.Item], b[k.Item])
			if k.Desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
}

// compare orders two values of one output column, null first.
func compare(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	switch x := a.(type) {
	case *string:
		return strings.Compare(*x, *b.(*string))
	case int64:
		return cmp.Compare(x, b.(int64))
	case float64:
		return cmp.Compare(x, b.(float64))
	case decimal128.Num:
		return x.Cmp(b.(decimal128.Num))
	}
	return 0
}

func (p *Plan) build(rows [][]any, mem memory.Allocator) arrow.Record {
	b := array.NewRecordBuilder(mem, p.schema)
	defer b.Release()
	for i := range p.Query.Items {
		fb := b.Field(i)
		for _, r := range rows {
			switch v := r[i].(type) {
			case nil:
				fb.AppendNull()
			case *string:
				fb.(*array.StringBuilder).Append(*v)
			case int64:
				fb.(*array.Int64Builder).Append(v)
			case float64:
				if math.IsNaN(v) {
					fb.AppendNull()
					continue
				}
				fb.(*array.Float64Builder).Append(v)
			case decimal128.Num:
				fb.(*array.Decimal128Builder).Append(v)
			}
		}
	}
	return b.NewRecord()
}
