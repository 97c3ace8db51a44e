package mask

import (
	"fmt"
	"strconv"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

// ArrayOptions carries what some masks need besides the column.
type ArrayOptions struct {
	// Key is the consumer department's hash key (DeriveKey); required by the hash mask.
	Key []byte
	// Regions, if not nil, holds each row's region code (same length as the masked
	// column): a hint for the address mask.
	Regions *array.String
}

// MetaKey is the Arrow field metadata key that names the mask applied to a column (the
// same key the dataset schemas use for a column's default mask; a test in exchange/store
// keeps the two equal, since this package imports nothing of govx but ident).
const MetaKey = "govx.mask"

// OutputField returns the field a column has in a response after mask m ("" for none):
// a string field, except for null which keeps the type; its metadata govx.mask names
// the mask applied ("" for none), the rest of its metadata is kept.
func OutputField(f arrow.Field, m string) arrow.Field {
	keys, vals := f.Metadata.Keys(), f.Metadata.Values()
	nk := make([]string, 0, len(keys)+1)
	nv := make([]string, 0, len(keys)+1)
	for i, k := range keys {
		if k != MetaKey {
			nk, nv = append(nk, k), append(nv, vals[i])
		}
	}
	nk, nv = append(nk, MetaKey), append(nv, m)
	out := arrow.Field{Name: f.Name, Type: f.Type, Nullable: f.Nullable, Metadata: arrow.NewMetadata(nk, nv)}
	switch m {
	case "":
	case Null:
		out.Nullable = true
	default:
		out.Type = arrow.BinaryTypes.String
		if m == Year && f.Type.ID() == arrow.STRING {
			out.Nullable = true // a string that is not a date has no year
		}
	}
	return out
}

// CheckType reports whether mask m can be applied to a column of type dt, with an
// error that names the mismatch.
func CheckType(m string, dt arrow.DataType) error {
	switch m {
	case "", Null, Hash:
		switch dt.ID() {
		case arrow.STRING, arrow.INT64, arrow.FLOAT64, arrow.DECIMAL128, arrow.DATE32, arrow.TIMESTAMP, arrow.BOOL:
			return nil
		}
		if m == Null || m == "" {
			return nil
		}
	case IDCard, Name, Phone, Address:
		if dt.ID() == arrow.STRING {
			return nil
		}
	case Year:
		switch dt.ID() {
		case arrow.STRING, arrow.DATE32, arrow.TIMESTAMP:
			return nil
		}
	default:
		return fmt.Errorf("unknown mask %q (one of id_card, name, phone, address, year, hash, null)", m)
	}
	return fmt.Errorf("mask %s cannot be applied to a %s column", m, dt)
}

// Array returns arr masked with m, as a new array the caller releases (for m == "" the
// same array, retained). Nulls stay null.
func Array(mem memory.Allocator, arr arrow.Array, m string, o ArrayOptions) (arrow.Array, error) {
	if err := CheckType(m, arr.DataType()); err != nil {
		return nil, err
	}
	switch m {
	case "":
		arr.Retain()
		return arr, nil
	case Null:
		return array.MakeArrayOfNull(mem, arr.DataType(), arr.Len()), nil
	}
	var h *hasher
	if m == Hash {
		if len(o.Key) == 0 {
			return nil, ErrNoKey
		}
		h = newHasher(o.Key)
	}
	if o.Regions != nil && o.Regions.Len() != arr.Len() {
		return nil, fmt.Errorf("mask: %d region codes for %d values", o.Regions.Len(), arr.Len())
	}
	n := arr.Len()
	b := array.NewStringBuilder(mem)
	defer b.Release()
	b.Reserve(n)
	switch m {
	case Hash:
		b.ReserveData(n * HashHexLen)
	case Year:
		b.ReserveData(n * 4)
	default:
		if s, ok := arr.(*array.String); ok {
			b.ReserveData(len(s.ValueBytes()))
		}
	}

	text := canonicalText(arr)
	var scratch, tb []byte
	hasNulls := arr.NullN() > 0
	for i := 0; i < n; i++ {
		if hasNulls && arr.IsNull(i) {
			b.AppendNull()
			continue
		}
		scratch = scratch[:0]
		switch {
		case h != nil:
			tb = text(tb[:0], i)
			scratch = h.appendBytes(scratch, tb)
		case m == Year && arr.DataType().ID() != arrow.STRING:
			tb = text(tb[:0], i)
			scratch = append(scratch, tb[:min(4, len(tb))]...)
		default:
			s := arr.(*array.String).Value(i)
			region := ""
			if m == Address && o.Regions != nil && o.Regions.IsValid(i) {
				region = o.Regions.Value(i)
			}
			scratch = appendString(scratch, m, s, region)
			if m == Year && len(scratch) == 0 {
				b.AppendNull()
				continue
			}
		}
		b.BinaryBuilder.Append(scratch)
	}
	return b.NewArray(), nil
}

// canonicalText returns a function appending row i of arr as schemas.CanonicalText
// writes the canonical value (schemas.Field.Normalize) the row holds: the hash of a
// value is the same whether it is masked in a scan or in a lookup. This is the Arrow
// side of that one definition, not a second one; exchange/store's TestScanMatchesNaive
// keeps the two equal over every column type.
func canonicalText(arr arrow.Array) func(dst []byte, i int) []byte {
	switch a := arr.(type) {
	case *array.String:
		return func(dst []byte, i int) []byte { return append(dst, a.Value(i)...) }
	case *array.Int64:
		return func(dst []byte, i int) []byte { return strconv.AppendInt(dst, a.Value(i), 10) }
	case *array.Float64:
		return func(dst []byte, i int) []byte { return strconv.AppendFloat(dst, a.Value(i), 'f', -1, 64) }
	case *array.Boolean:
		return func(dst []byte, i int) []byte { return strconv.AppendBool(dst, a.Value(i)) }
	case *array.Decimal128:
		scale := a.DataType().(*arrow.Decimal128Type).Scale
		return func(dst []byte, i int) []byte {
			return append(dst, DecimalText(a.Value(i).BigInt().String(), scale)...)
		}
	case *array.Date32:
		return func(dst []byte, i int) []byte { return a.Value(i).ToTime().AppendFormat(dst, time.DateOnly) }
	case *array.Timestamp:
		unit := a.DataType().(*arrow.TimestampType).Unit
		return func(dst []byte, i int) []byte {
			return a.Value(i).ToTime(unit).UTC().AppendFormat(dst, time.RFC3339Nano)
		}
	}
	return func(dst []byte, i int) []byte { return append(dst, arr.ValueStr(i)...) }
}

// DecimalText formats an unscaled integer (decimal digits with an optional sign) with
// scale digits after the point, as schemas.Field.Normalize writes decimals ("-0.50").
func DecimalText(unscaled string, scale int32) string {
	if scale <= 0 {
		return unscaled
	}
	neg := len(unscaled) > 0 && unscaled[0] == '-'
	if neg {
		unscaled = unscaled[1:]
	}
	for len(unscaled) <= int(scale) {
		unscaled = "0" + unscaled
	}
	cut := len(unscaled) - int(scale)
	out := unscaled[:cut] + "." + unscaled[cut:]
	if neg {
		out = "-" + out
	}
	return out
}
