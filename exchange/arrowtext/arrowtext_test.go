package arrowtext_test

import (
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/decimal128"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"govx/exchange/arrowtext"
)

// TestRecord: decimal columns become the exact text of their scale (nulls stay null);
// every other column is the same array; a batch without decimals is itself.
func TestRecord(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	dt := &arrow.Decimal128Type{Precision: 20, Scale: 2}
	sc := arrow.NewSchema([]arrow.Field{{Name: "sum", Type: dt, Nullable: true}, {Name: "code", Type: arrow.BinaryTypes.String}}, nil)
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
	b.Field(0).AppendNull()
	b.Field(1).(*array.StringBuilder).Append("330106")
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

	plain := rec.NewSlice(0, 1)
	defer plain.Release()
	noDec := array.NewRecord(arrow.NewSchema(sc.Fields()[1:], nil), plain.Columns()[1:], 1)
	defer noDec.Release()
	same := arrowtext.Record(noDec, mem)
	defer same.Release()
	if same != noDec {
		t.Error("a batch without decimals was copied")
	}
}
