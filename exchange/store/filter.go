package store

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/decimal128"

	"govx/exchange"
	"govx/schemas"
)

// maxInValues bounds the list of an "in" filter: filters are outside input.
const maxInValues = 10000

type opcode uint8

const (
	opEq opcode = iota
	opNe
	opIn
	opPrefix
	opLt
	opLe
	opGt
	opGe
	opIsNull
	opNone // matches no row
	opAll  // matches every non-null row
)

var opcodes = map[string]opcode{
	exchange.OpEq: opEq, exchange.OpNe: opNe, exchange.OpIn: opIn, exchange.OpPrefix: opPrefix,
	exchange.OpLt: opLt, exchange.OpLe: opLe, exchange.OpGt: opGt, exchange.OpGe: opGe,
	exchange.OpIsNull: opIsNull,
}

// pred is one compiled filter: the value parsed once into the column's physical type.
// Comparisons with null are false (SQL's rule, so ne excludes nulls too); is_null is
// the way to ask for nulls.
type pred struct {
	col  int
	op   opcode
	null bool // is_null: true asks for nulls, false for non-nulls

	s  string
	ss map[string]struct{}
	i  int64 // int64, date (days), timestamp (µs), bool (0/1)
	is map[int64]struct{}
	f  float64
	fs map[float64]struct{}
	d  decimal128.Num
	ds map[decimal128.Num]struct{}
}

func invalidFilter(col, format string, args ...any) error {
	return exchange.E(exchange.Invalid, "invalid_filter", fmt.Sprintf("filter on column %q: ", col)+fmt.Sprintf(format, args...))
}

// compileFilters checks filters against the dataset and parses their values.
// CheckFilters reports whether filters apply to d as a scan would apply them (columns,
// operators, value types), without reading a row: what a pull is refused for before
// anything is streamed when it needs no count.
func CheckFilters(d *schemas.Dataset, filters []exchange.Filter) error {
	_, err := compileFilters(d, filters)
	return err
}

func compileFilters(d *schemas.Dataset, filters []exchange.Filter) ([]pred, error) {
	out := make([]pred, 0, len(filters))
	for _, flt := range filters {
		p, err := compileFilter(d, flt)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func compileFilter(d *schemas.Dataset, flt exchange.Filter) (pred, error) {
	f, ok := d.Field(flt.Column)
	if !ok {
		return pred{}, exchange.E(exchange.Invalid, "unknown_column",
			fmt.Sprintf("filter names column %q, which %s does not have (columns: %s)", flt.Column, d.ID, strings.Join(d.FieldNames(), ", ")))
	}
	op, ok := opcodes[flt.Op]
	if !ok {
		return pred{}, invalidFilter(flt.Column, "unknown op %q (one of eq, ne, in, prefix, lt, le, gt, ge, is_null)", flt.Op)
	}
	p := pred{op: op}
	for i := range d.Fields {
		if d.Fields[i].Name == f.Name {
			p.col = i
		}
	}
	switch op {
	case opIsNull:
		switch v := flt.Value.(type) {
		case nil:
			p.null = true
		case bool:
			p.null = v
		default:
			return pred{}, invalidFilter(f.Name, "is_null takes true, false or no value, not %s", describe(v))
		}
		return p, nil
	case opPrefix:
		if f.Kind() != schemas.KindString {
			return pred{}, invalidFilter(f.Name, "prefix applies to text columns; %s is %s", f.Name, f.Type)
		}
		s, ok := flt.Value.(string)
		if !ok {
			return pred{}, invalidFilter(f.Name, "prefix needs a string, not %s", describe(flt.Value))
		}
		p.s = s
		return p, nil
	case opIn:
		list, ok := asList(flt.Value)
		if !ok {
			return pred{}, invalidFilter(f.Name, "in needs a list of values, not %s", describe(flt.Value))
		}
		if len(list) > maxInValues {
			return pred{}, invalidFilter(f.Name, "in takes at most %d values, got %d", maxInValues, len(list))
		}
		if f.Kind() == schemas.KindFloat64 && len(list) > 0 {
			p.fs = map[float64]struct{}{}
		}
		for _, v := range list {
			var q pred
			var err error
			if q, err = scalar(f, opEq, v); err != nil {
				return pred{}, err
			}
			if q.op == opNone {
				continue // a decimal with more digits than the column: equals nothing
			}
			switch f.Kind() {
			case schemas.KindString:
				if p.ss == nil {
					p.ss = map[string]struct{}{}
				}
				p.ss[q.s] = struct{}{}
			case schemas.KindFloat64:
				p.fs[q.f] = struct{}{}
			case schemas.KindDecimal:
				if p.ds == nil {
					p.ds = map[decimal128.Num]struct{}{}
				}
				p.ds[q.d] = struct{}{}
			default:
				if p.is == nil {
					p.is = map[int64]struct{}{}
				}
				p.is[q.i] = struct{}{}
			}
		}
		if p.ss == nil && p.fs == nil && p.ds == nil && p.is == nil {
			p.op = opNone
		}
		return p, nil
	}
	q, err := scalar(f, op, flt.Value)
	if err != nil {
		return pred{}, err
	}
	q.col = p.col
	return q, nil
}

// scalar parses a comparison value for field f.
func scalar(f *schemas.Field, op opcode, v any) (pred, error) {
	p := pred{op: op}
	if v == nil {
		return pred{}, invalidFilter(f.Name, "%s needs a value (to ask for nulls use is_null)", opName(op))
	}
	switch f.Kind() {
	case schemas.KindString:
		s, ok := v.(string)
		if !ok {
			return pred{}, invalidFilter(f.Name, "%s is text; the value must be a string, not %s", f.Name, describe(v))
		}
		p.s = s
	case schemas.KindInt64:
		i, ok := schemas.AsInt64(v)
		if !ok {
			return pred{}, invalidFilter(f.Name, "%s is an integer; the value must be a whole number, not %s", f.Name, describe(v))
		}
		p.i = i
	case schemas.KindFloat64:
		x, ok := schemas.AsFloat64(v)
		if !ok {
			return pred{}, invalidFilter(f.Name, "%s is a number; the value must be a number, not %s", f.Name, describe(v))
		}
		p.f = x
	case schemas.KindBool:
		b, ok := v.(bool)
		if !ok {
			return pred{}, invalidFilter(f.Name, "%s is true/false; the value must be a boolean, not %s", f.Name, describe(v))
		}
		if op != opEq && op != opNe && op != opIn {
			return pred{}, invalidFilter(f.Name, "%s is true/false; use eq, ne, in or is_null", f.Name)
		}
		if b {
			p.i = 1
		}
	case schemas.KindDate:
		s, ok := v.(string)
		d, err := parseDate(s)
		if !ok || err != nil {
			return pred{}, invalidFilter(f.Name, "%s is a date; the value must be a date as \"YYYY-MM-DD\", not %s", f.Name, describe(v))
		}
		p.i = int64(d)
	case schemas.KindTimestamp:
		s, ok := v.(string)
		ts, err := parseTimestamp(s)
		if !ok || err != nil {
			return pred{}, invalidFilter(f.Name, "%s is a timestamp; the value must be RFC 3339 (2024-09-30T08:00:00Z), not %s", f.Name, describe(v))
		}
		p.i = ts
	case schemas.KindDecimal:
		prec, scale := f.DecimalPS()
		r, ok := asRat(v)
		if !ok {
			return pred{}, invalidFilter(f.Name, "%s is a decimal; the value must be a number or a decimal string (\"12.50\"), not %s", f.Name, describe(v))
		}
		q, exact, ok := scaled(r, int32(scale))
		if !ok || (exact && !decimal128.FromBigInt(q).FitsInPrecision(int32(prec))) {
			return pred{}, invalidFilter(f.Name, "%v is out of range for %s", v, f.Type)
		}
		p.d = decimal128.FromBigInt(q)
		if !exact {
			// The value lies strictly between two column values: q and q+1 (scaled).
			switch op {
			case opEq:
				p.op = opNone
			case opNe:
				p.op = opAll
			case opLt, opLe:
				p.op = opLe
			case opGt, opGe:
				p.op = opGt
			}
		}
	}
	return p, nil
}

func opName(op opcode) string {
	for k, v := range opcodes {
		if v == op {
			return k
		}
	}
	return "?"
}

func asList(v any) ([]any, bool) {
	switch l := v.(type) {
	case []any:
		return l, true
	case []string:
		out := make([]any, len(l))
		for i, s := range l {
			out[i] = s
		}
		return out, true
	}
	return nil, false
}

// describe names a filter value's JSON type for an error message, without echoing long
// or binary input.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if len(x) > 40 {
			x = x[:40] + "…"
		}
		return fmt.Sprintf("the string %q", x)
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	case float64, int64, int, json.Number:
		return fmt.Sprintf("the number %v", x)
	case []any, []string:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a %T", v)
}

func cmpOK(op opcode, c int) bool {
	switch op {
	case opEq:
		return c == 0
	case opNe:
		return c != 0
	case opLt:
		return c < 0
	case opLe:
		return c <= 0
	case opGt:
		return c > 0
	case opGe:
		return c >= 0
	}
	return false
}

func cmp[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// apply clears, in sel, the bits of rows of col that do not match.
func (p *pred) apply(col arrow.Array, sel []uint64) { p.applyFrom(col, sel, 0) }

// applyFrom is apply for a selection whose first bit is row first: a lookup tests its
// one row with a one-word selection, not one as long as the segment.
func (p *pred) applyFrom(col arrow.Array, sel []uint64, first int) {
	eachSet := func(sel []uint64, keep func(i int) bool) { eachSetFrom(sel, first, keep) }
	hasNulls := col.NullN() > 0
	if p.op == opIsNull {
		eachSet(sel, func(i int) bool { return col.IsNull(i) == p.null })
		return
	}
	if p.op == opNone {
		clear(sel)
		return
	}
	if p.op == opAll {
		if hasNulls {
			eachSet(sel, func(i int) bool { return col.IsValid(i) })
		}
		return
	}
	var match func(i int) bool
	switch a := col.(type) {
	case *array.String:
		switch p.op {
		case opPrefix:
			match = func(i int) bool { return strings.HasPrefix(a.Value(i), p.s) }
		case opIn:
			match = func(i int) bool { _, ok := p.ss[a.Value(i)]; return ok }
		case opEq:
			match = func(i int) bool { return a.Value(i) == p.s }
		default:
			match = func(i int) bool { return cmpOK(p.op, strings.Compare(a.Value(i), p.s)) }
		}
	case *array.Int64:
		match = intMatch(p, a.Int64Values())
	case *array.Timestamp:
		v := a.TimestampValues()
		match = p.intOp(func(i int) int64 { return int64(v[i]) })
	case *array.Date32:
		v := a.Date32Values()
		match = p.intOp(func(i int) int64 { return int64(v[i]) })
	case *array.Boolean:
		match = p.intOp(func(i int) int64 {
			if a.Value(i) {
				return 1
			}
			return 0
		})
	case *array.Float64:
		v := a.Float64Values()
		if p.op == opIn {
			match = func(i int) bool { _, ok := p.fs[v[i]]; return ok }
		} else {
			match = func(i int) bool { return cmpOK(p.op, cmp(v[i], p.f)) }
		}
	case *array.Decimal128:
		v := a.Values()
		if p.op == opIn {
			match = func(i int) bool { _, ok := p.ds[v[i]]; return ok }
		} else {
			match = func(i int) bool { return cmpOK(p.op, v[i].Cmp(p.d)) }
		}
	default:
		panic(fmt.Sprintf("store: filter on unsupported type %s", col.DataType()))
	}
	if hasNulls {
		eachSet(sel, func(i int) bool { return col.IsValid(i) && match(i) })
	} else {
		eachSet(sel, match)
	}
}

func intMatch(p *pred, v []int64) func(int) bool {
	switch p.op {
	case opEq:
		return func(i int) bool { return v[i] == p.i }
	case opIn:
		return func(i int) bool { _, ok := p.is[v[i]]; return ok }
	}
	return func(i int) bool { return cmpOK(p.op, cmp(v[i], p.i)) }
}

func (p *pred) intOp(get func(int) int64) func(int) bool {
	if p.op == opIn {
		return func(i int) bool { _, ok := p.is[get(i)]; return ok }
	}
	return func(i int) bool { return cmpOK(p.op, cmp(get(i), p.i)) }
}

// eachSet calls keep for every set bit of sel and clears the bits it rejects.
func eachSet(sel []uint64, keep func(i int) bool) { eachSetFrom(sel, 0, keep) }

// eachSetFrom is eachSet for a selection whose first bit is row first.
func eachSetFrom(sel []uint64, first int, keep func(i int) bool) {
	for w, word := range sel {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			word &= word - 1
			if i := first + w*64 + b; !keep(i) {
				sel[w] &^= 1 << b
			}
		}
	}
}

func popcount(sel []uint64) int {
	n := 0
	for _, w := range sel {
		n += bits.OnesCount64(w)
	}
	return n
}
