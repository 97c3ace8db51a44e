package store

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/bitutil"
	"github.com/apache/arrow/go/v17/arrow/decimal128"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"govx/exchange/mask"
	"govx/schemas"
)

// Cell is one typed value of a row, ready to append to a column: what Apply stores for
// a field. A decoder that has validated a record builds its row of cells (Change.Row)
// with the constructors below, one per field kind; the zero Cell is a null. Parsing
// happens before the table lock is taken, so ingest parses in parallel with readers.
//
// It is 40 bytes whatever the kind, because ingest fills and copies a row of them per
// record: the number sits in n (an int64, date days, timestamp µs or bool 0/1 as its
// two's complement bits, a float64 as its IEEE bits, a decimal's low 64 bits, with hi
// the high ones).
type Cell struct {
	s   string
	n   uint64
	hi  int64
	set bool // not null
}

// Null is a null value (of any field kind).
func Null() Cell { return Cell{} }

// Text is a value of a string field.
func Text(s string) Cell { return Cell{set: true, s: s} }

// Int is a value of an int64 field.
func Int(n int64) Cell { return Cell{set: true, n: uint64(n)} }

// Float is a value of a float64 field.
func Float(x float64) Cell { return Cell{set: true, n: math.Float64bits(x)} }

// Date is a value of a date field: days since 1970-01-01.
func Date(days int32) Cell { return Int(int64(days)) }

// Timestamp is a value of a timestamp field: microseconds since 1970-01-01T00:00:00Z.
func Timestamp(us int64) Cell { return Int(us) }

// Bool is a value of a bool field.
func Bool(b bool) Cell {
	if b {
		return Int(1)
	}
	return Int(0)
}

func decimalCell(d decimal128.Num) Cell { return Cell{set: true, n: d.LowBits(), hi: d.HighBits()} }

func (c Cell) int() int64 { return int64(c.n) }

// DecimalText is a value of decimal field f given as its text (as schemas' CheckDecimal
// accepts it), read exactly as Apply reads a decimal of a Change.Record.
func DecimalText(f *schemas.Field, s string) (Cell, error) {
	return parseCell(f, s)
}

func (c Cell) null() bool { return !c.set }

// Text returns the value of a string field's cell, and false for a null.
func (c Cell) Text() (string, bool) { return c.s, c.set }

// parseCell reads a canonical value (as schemas.Validate accepts it) for field f.
func parseCell(f *schemas.Field, v any) (Cell, error) {
	if v == nil {
		if !f.Nullable {
			return Cell{}, fmt.Errorf("%s is required", f.Name)
		}
		return Null(), nil
	}
	switch f.Kind() {
	case schemas.KindString:
		if s, ok := v.(string); ok {
			return Text(s), nil
		}
	case schemas.KindInt64:
		if i, ok := schemas.AsInt64(v); ok {
			return Int(i), nil
		}
	case schemas.KindFloat64:
		if x, ok := schemas.AsFloat64(v); ok {
			return Float(x), nil
		}
	case schemas.KindDecimal:
		p, s := f.DecimalPS()
		if n, ok, err := asDecimal(v, int32(p), int32(s)); ok && err == nil {
			return decimalCell(n), nil
		} else if err != nil {
			return Cell{}, fmt.Errorf("%s: %v", f.Name, err)
		}
	case schemas.KindDate:
		if s, ok := v.(string); ok {
			if d, err := parseDate(s); err == nil {
				return Date(int32(d)), nil
			}
		}
	case schemas.KindTimestamp:
		if s, ok := v.(string); ok {
			if ts, err := parseTimestamp(s); err == nil {
				return Timestamp(ts), nil
			}
		}
	case schemas.KindBool:
		if b, ok := v.(bool); ok {
			return Bool(b), nil
		}
	}
	return Cell{}, fmt.Errorf("%s: %T value %v is not a %s", f.Name, v, v, f.Type)
}

// asRat reads a decimal given as a string or a number, exactly.
func asRat(v any) (*big.Rat, bool) {
	var r big.Rat
	switch n := v.(type) {
	case string:
		if len(n) == 0 || len(n) > 80 {
			return nil, false
		}
		for i := 0; i < len(n); i++ {
			if c := n[i]; !(c >= '0' && c <= '9' || c == '.' || (i == 0 && (c == '-' || c == '+'))) {
				return nil, false
			}
		}
		if _, ok := r.SetString(n); !ok {
			return nil, false
		}
	case json.Number:
		return asRat(string(n))
	case float64:
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return nil, false
		}
		r.SetString(strconv.FormatFloat(n, 'f', -1, 64))
	case int64:
		r.SetInt64(n)
	case int:
		r.SetInt64(int64(n))
	default:
		return nil, false
	}
	return &r, true
}

var max128 = new(big.Int).Lsh(big.NewInt(1), 127)

// scaled returns r·10^scale rounded towards minus infinity, and whether that was exact.
func scaled(r *big.Rat, scale int32) (floor *big.Int, exact bool, ok bool) {
	m := new(big.Rat).Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)))
	num, den := m.Num(), m.Denom()
	q, mod := new(big.Int).DivMod(num, den, new(big.Int)) // Euclidean: floor for den > 0
	if q.CmpAbs(max128) >= 0 {
		return nil, false, false
	}
	return q, mod.Sign() == 0, true
}

// asDecimal reads a decimal value for a decimal(p,s) column; ok is false when v is not
// a decimal at all, err when it is one that does not fit.
func asDecimal(v any, prec, scale int32) (decimal128.Num, bool, error) {
	r, ok := asRat(v)
	if !ok {
		return decimal128.Num{}, false, nil
	}
	q, exact, ok := scaled(r, scale)
	if !ok || !exact {
		return decimal128.Num{}, true, fmt.Errorf("%v does not fit decimal(%d,%d)", v, prec, scale)
	}
	n := decimal128.FromBigInt(q)
	if !n.FitsInPrecision(prec) {
		return decimal128.Num{}, true, fmt.Errorf("%v does not fit decimal(%d,%d)", v, prec, scale)
	}
	return n, true, nil
}

// colBuf accumulates one column of the mutable tail in Go slices; seal copies it into
// exactly sized Arrow buffers, so sealed segments carry no builder slack (Arrow
// builders double their buffers and never shrink them).
type colBuf struct {
	kind  schemas.Kind
	dt    arrow.DataType
	valid []bool
	nulls int
	offs  []int32 // strings: end offsets
	data  []byte
	i64   []int64
	f64   []float64
	dec   []decimal128.Num
}

// appendColumn appends field i of each row.
func (c *colBuf) appendColumn(rows [][]Cell, i int) {
	for _, r := range rows {
		v := &r[i]
		c.valid = append(c.valid, v.set)
		if !v.set {
			c.nulls++
		}
	}
	switch c.kind {
	case schemas.KindString:
		for _, r := range rows {
			c.data = append(c.data, r[i].s...)
			c.offs = append(c.offs, int32(len(c.data)))
		}
	case schemas.KindFloat64:
		for _, r := range rows {
			c.f64 = append(c.f64, math.Float64frombits(r[i].n))
		}
	case schemas.KindDecimal:
		for _, r := range rows {
			c.dec = append(c.dec, decimal128.New(r[i].hi, r[i].n))
		}
	default:
		for _, r := range rows {
			c.i64 = append(c.i64, r[i].int())
		}
	}
}

func (c *colBuf) reset() {
	c.valid, c.offs, c.data, c.i64, c.f64, c.dec = c.valid[:0], c.offs[:0], c.data[:0], c.i64[:0], c.f64[:0], c.dec[:0]
	c.nulls = 0
}

func newBuffer(mem memory.Allocator, n int) *memory.Buffer {
	b := memory.NewResizableBuffer(mem)
	b.Resize(n)
	return b
}

// finish returns the column as an Arrow array with exactly sized buffers.
func (c *colBuf) finish(mem memory.Allocator) arrow.Array {
	n := len(c.valid)
	var validity *memory.Buffer
	if c.nulls > 0 {
		validity = newBuffer(mem, int(bitutil.BytesForBits(int64(n))))
		vb := validity.Bytes()
		clear(vb)
		for i, ok := range c.valid {
			if ok {
				bitutil.SetBit(vb, i)
			}
		}
	}
	var bufs []*memory.Buffer
	switch c.kind {
	case schemas.KindString:
		offs := newBuffer(mem, (n+1)*arrow.Int32SizeBytes)
		o := arrow.Int32Traits.CastFromBytes(offs.Bytes())
		o[0] = 0
		copy(o[1:], c.offs)
		data := newBuffer(mem, len(c.data))
		copy(data.Bytes(), c.data)
		bufs = []*memory.Buffer{validity, offs, data}
	case schemas.KindFloat64:
		vals := newBuffer(mem, n*8)
		copy(arrow.Float64Traits.CastFromBytes(vals.Bytes()), c.f64)
		bufs = []*memory.Buffer{validity, vals}
	case schemas.KindDecimal:
		vals := newBuffer(mem, n*arrow.Decimal128SizeBytes)
		copy(arrow.Decimal128Traits.CastFromBytes(vals.Bytes()), c.dec)
		bufs = []*memory.Buffer{validity, vals}
	case schemas.KindDate:
		vals := newBuffer(mem, n*4)
		d := arrow.Date32Traits.CastFromBytes(vals.Bytes())
		for i, v := range c.i64 {
			d[i] = arrow.Date32(v)
		}
		bufs = []*memory.Buffer{validity, vals}
	case schemas.KindBool:
		vals := newBuffer(mem, int(bitutil.BytesForBits(int64(n))))
		vb := vals.Bytes()
		clear(vb)
		for i, v := range c.i64 {
			if v != 0 {
				bitutil.SetBit(vb, i)
			}
		}
		bufs = []*memory.Buffer{validity, vals}
	default: // int64, timestamp
		vals := newBuffer(mem, n*8)
		copy(arrow.Int64Traits.CastFromBytes(vals.Bytes()), c.i64)
		bufs = []*memory.Buffer{validity, vals}
	}
	data := array.NewData(c.dt, n, bufs, nil, c.nulls, 0)
	for _, b := range bufs {
		if b != nil {
			b.Release()
		}
	}
	defer data.Release()
	return array.MakeFromData(data)
}

// take returns the rows idx of arr as a new array, in one pass per buffer. It is used
// instead of compute.Take/FilterRecordBatch, which are much slower on strings in
// arrow/go v17 and need an exec context per call.
func take(mem memory.Allocator, arr arrow.Array, idx []int32) arrow.Array {
	k := len(idx)
	var validity *memory.Buffer
	nulls := 0
	if arr.NullN() > 0 {
		validity = newBuffer(mem, int(bitutil.BytesForBits(int64(k))))
		vb := validity.Bytes()
		clear(vb)
		for j, i := range idx {
			if arr.IsValid(int(i)) {
				bitutil.SetBit(vb, j)
			} else {
				nulls++
			}
		}
	}
	var bufs []*memory.Buffer
	switch a := arr.(type) {
	case *array.String:
		offs := newBuffer(mem, (k+1)*4)
		o := arrow.Int32Traits.CastFromBytes(offs.Bytes())
		total := 0
		o[0] = 0
		for j, i := range idx {
			total += a.ValueLen(int(i))
			o[j+1] = int32(total)
		}
		data := newBuffer(mem, total)
		db := data.Bytes()
		src := a.ValueBytes()
		so := a.ValueOffsets()
		for j, i := range idx {
			copy(db[o[j]:o[j+1]], src[so[i]:so[i+1]])
		}
		bufs = []*memory.Buffer{validity, offs, data}
	case *array.Int64:
		bufs = []*memory.Buffer{validity, takeFixed(mem, a.Int64Values(), idx, arrow.Int64Traits.CastFromBytes, 8)}
	case *array.Timestamp:
		bufs = []*memory.Buffer{validity, takeFixed(mem, a.TimestampValues(), idx, arrow.TimestampTraits.CastFromBytes, 8)}
	case *array.Float64:
		bufs = []*memory.Buffer{validity, takeFixed(mem, a.Float64Values(), idx, arrow.Float64Traits.CastFromBytes, 8)}
	case *array.Date32:
		bufs = []*memory.Buffer{validity, takeFixed(mem, a.Date32Values(), idx, arrow.Date32Traits.CastFromBytes, 4)}
	case *array.Decimal128:
		bufs = []*memory.Buffer{validity, takeFixed(mem, a.Values(), idx, arrow.Decimal128Traits.CastFromBytes, 16)}
	case *array.Boolean:
		vals := newBuffer(mem, int(bitutil.BytesForBits(int64(k))))
		vb := vals.Bytes()
		clear(vb)
		for j, i := range idx {
			if a.Value(int(i)) {
				bitutil.SetBit(vb, j)
			}
		}
		bufs = []*memory.Buffer{validity, vals}
	default:
		panic(fmt.Sprintf("store: take on unsupported type %s", arr.DataType()))
	}
	data := array.NewData(arr.DataType(), k, bufs, nil, nulls, 0)
	for _, b := range bufs {
		if b != nil {
			b.Release()
		}
	}
	defer data.Release()
	return array.MakeFromData(data)
}

func takeFixed[T any](mem memory.Allocator, src []T, idx []int32, cast func([]byte) []T, size int) *memory.Buffer {
	buf := newBuffer(mem, len(idx)*size)
	dst := cast(buf.Bytes())
	for j, i := range idx {
		dst[j] = src[i]
	}
	return buf
}

// canonical returns row i of arr in canonical record form (schemas.Field.Normalize).
func canonical(arr arrow.Array, i int) any {
	if arr.IsNull(i) {
		return nil
	}
	switch a := arr.(type) {
	case *array.String:
		return a.Value(i)
	case *array.Int64:
		return a.Value(i)
	case *array.Float64:
		return a.Value(i)
	case *array.Boolean:
		return a.Value(i)
	case *array.Date32:
		return a.Value(i).ToTime().Format(time.DateOnly)
	case *array.Timestamp:
		return time.UnixMicro(int64(a.Value(i))).UTC().Format(time.RFC3339Nano)
	case *array.Decimal128:
		scale := a.DataType().(*arrow.Decimal128Type).Scale
		return mask.DecimalText(a.Value(i).BigInt().String(), scale)
	}
	return arr.ValueStr(i)
}

// parseDate and parseTimestamp read a date or timestamp of a filter as Apply reads a
// record's: schemas' readers, which time.Parse's DateOnly and RFC3339Nano are the
// reference of.
func parseDate(s string) (arrow.Date32, error) {
	d, ok := schemas.ParseDate(s)
	if !ok {
		return 0, fmt.Errorf("%q is not a date YYYY-MM-DD", s)
	}
	return arrow.Date32(d), nil
}

func parseTimestamp(s string) (int64, error) {
	us, ok := schemas.ParseTimestamp(s)
	if !ok {
		return 0, fmt.Errorf("%q is not an RFC 3339 timestamp", s)
	}
	return us, nil
}
