package arrowtext_test

import (
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/decimal128"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"govx/exchange/arrowtext"
)

// TestRecord: decimal columns become the exact text of their scale, timestamps RFC 3339
// in UTC (nulls stay null); every other column is the same array; a batch without
// either is itself.
func TestRecord(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	dt := &arrow.Decimal128Type{Precision: 20, Scale: 2}
	ts := &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	sc := arrow.NewSchema([]arrow.Field{{Name: "sum", Type: dt, Nullable: true}, {Name: "code", Type: arrow.BinaryTypes.String},
		{Name: "updated_at", Type: ts, Nullable: true}}, nil)
	b := array.NewRecordBuilder(mem, sc)
	defer b.Release()
	for _, s := range []string{"843954.20", "-0.01"} {
		v, err := decimal128.FromString(s, dt.Precision, dt.Scale)
		if err != nil {
			t.Fatal(err)
		}
		b.Field(0).(*array.Decimal128Builder).Append(v)
		b.Field(1).(*array.StringBuilder).Append("330106")
	}
	b.Field(2).(*array.TimestampBuilder).Append(arrow.Timestamp(time.Date(2024, 9, 1, 8, 0, 0, 123000, time.UTC).UnixMicro()))
	b.Field(2).(*array.TimestampBuilder).Append(arrow.Timestamp(time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC).UnixMicro()))
	b.Field(0).AppendNull()
	b.Field(1).(*array.StringBuilder).Append("330106")
	b.Field(2).AppendNull()
	rec := b.NewRecord()
	defer rec.Release()

	out := arrowtext.Record(rec, mem)
	defer out.Release()
	if !out.Schema().Equal(arrowtext.Schema(sc)) || out.Schema().Field(0).Type.ID() != arrow.STRING {
		t.Fatalf("schema %v", out.Schema())
	}
	got := out.Column(0).(*array.String)
	if got.Value(0) != "843954.20" || got.Value(1) != "-0.01" || !got.IsNull(2) {
		t.Errorf("decimals as text: %v", got)
	}
	if out.Column(1) != rec.Column(1) {
		t.Error("a column that is not a decimal was rebuilt")
	}
	when := out.Column(2).(*array.String)
	if when.Value(0) != "2024-09-01T08:00:00.000123Z" || when.Value(1) != "1969-12-31T23:59:59Z" || !when.IsNull(2) {
		t.Errorf("timestamps as text: %v", when)
	}

	plain := rec.NewSlice(0, 1)
	defer plain.Release()
	noDec := array.NewRecord(arrow.NewSchema(sc.Fields()[1:2], nil), plain.Columns()[1:2], 1)
	defer noDec.Release()
	same := arrowtext.Record(noDec, mem)
	defer same.Release()
	if same != noDec {
		t.Error("a batch without decimals was copied")
	}
}
