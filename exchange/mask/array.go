package mask

import (
	"fmt"
	"strconv"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/bitutil"
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
	// The output is written straight into its offsets and an exactly sized data
	// buffer, not through a builder: a builder appends each value twice over (scratch,
	// then its buffers) and keeps the slack of its reservation (an address shrinks to
	// its county), which a column kept per segment would carry for its whole life.
	offsBuf := newBuffer(mem, (n+1)*arrow.Int32SizeBytes)
	offs := arrow.Int32Traits.CastFromBytes(offsBuf.Bytes())
	offs[0] = 0
	est := 0
	switch m {
	case Hash:
		est = n * HashHexLen
	case Year:
		est = n * 4
	default:
		if s, ok := arr.(*array.String); ok {
			est = len(s.ValueBytes())
		}
	}
	data := make([]byte, 0, est)
	var validity *memory.Buffer
	var vb []byte
	nulls := 0
	setNull := func(i int) {
		if validity == nil {
			validity = newBuffer(mem, int(bitutil.BytesForBits(int64(n))))
			vb = validity.Bytes()
			bitutil.SetBitsTo(vb, 0, int64(n), true)
		}
		bitutil.ClearBit(vb, i)
		nulls++
	}

	text := canonicalText(arr)
	var yearOf func(i int) (int64, bool)
	if m == Year {
		yearOf = yearOfRow(arr)
	}
	var tb []byte
	hasNulls := arr.NullN() > 0
	for i := 0; i < n; i++ {
		switch {
		case hasNulls && arr.IsNull(i):
			setNull(i)
		case h != nil:
			tb = text(tb[:0], i)
			data = h.appendBytes(data, tb)
		case m == Year && arr.DataType().ID() != arrow.STRING:
			if y, ok := yearOf(i); ok {
				data = append(data, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10))
				break
			}
			tb = text(tb[:0], i)
			data = append(data, tb[:min(4, len(tb))]...)
		default:
			s := arr.(*array.String).Value(i)
			region := ""
			if m == Address && o.Regions != nil && o.Regions.IsValid(i) {
				region = o.Regions.Value(i)
			}
			before := len(data)
			data = appendString(data, m, s, region)
			if m == Year && len(data) == before {
				setNull(i)
			}
		}
		offs[i+1] = int32(len(data))
	}
	dataBuf := newBuffer(mem, len(data))
	copy(dataBuf.Bytes(), data)
	bufs := []*memory.Buffer{validity, offsBuf, dataBuf}
	d := array.NewData(arrow.BinaryTypes.String, n, bufs, nil, nulls, 0)
	for _, b := range bufs {
		if b != nil {
			b.Release()
		}
	}
	defer d.Release()
	return array.NewStringData(d), nil
}

func newBuffer(mem memory.Allocator, n int) *memory.Buffer {
	b := memory.NewResizableBuffer(mem)
	b.Resize(n)
	return b
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

// yearOfRow returns a function giving the year of row i of a date or timestamp column
// as the first four characters of its canonical text would (canonicalText), without
// formatting the date: that formatting was most of the cost of materializing a year
// mask at each segment seal. ok is false for a year outside 0–9999, whose text is not
// four digits; the caller then takes it from the text.
func yearOfRow(arr arrow.Array) func(i int) (int64, bool) {
	switch a := arr.(type) {
	case *array.Date32:
		return func(i int) (int64, bool) { return civilYear(int64(a.Value(i))) }
	case *array.Timestamp:
		perDay := int64(86400)
		switch a.DataType().(*arrow.TimestampType).Unit {
		case arrow.Millisecond:
			perDay *= 1e3
		case arrow.Microsecond:
			perDay *= 1e6
		case arrow.Nanosecond:
			perDay *= 1e9
		}
		return func(i int) (int64, bool) {
			v := int64(a.Value(i))
			days := v / perDay
			if v%perDay < 0 {
				days-- // floor: the instant is in the UTC day that began before it
			}
			return civilYear(days)
		}
	}
	return func(int) (int64, bool) { return 0, false }
}

// civilYear returns the proleptic Gregorian year of the day days after 1970-01-01
// (H. Hinnant's civil_from_days), and whether it is in 0–9999.
func civilYear(days int64) (int64, bool) {
	// Days beyond ±4M years are out of range anyway; bounding them first keeps the
	// arithmetic below from overflowing.
	if days < -719528 || days > 2932896 {
		return 0, false
	}
	z := days + 719468 // days since 0000-03-01
	era := z / 146097
	if z < 0 {
		era = (z - 146096) / 146097
	}
	doe := z - era*146097                                  // day of the 400-year era
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // year of the era, from March
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // day of that year, from March 1
	y := yoe + era*400
	if mp := (5*doy + 2) / 153; mp >= 10 { // January or February: the next civil year
		y++
	}
	return y, y >= 0 && y <= 9999
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
