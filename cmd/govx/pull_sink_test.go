package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/decimal128"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

// TestPullCSVDecimals: --format csv prints a decimal as the exact text of its scale, as
// the HTTP API's CSV does, not through a float (76.6263 as 76.626300000000000003).
func TestPullCSVDecimals(t *testing.T) {
	dt := &arrow.Decimal128Type{Precision: 20, Scale: 4}
	sc := arrow.NewSchema([]arrow.Field{{Name: "value", Type: dt, Nullable: true}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	db := b.Field(0).(*array.Decimal128Builder)
	for _, s := range []string{"76.6263", "27.9092", "-0.0001", "1234567890123456.7890"} {
		v, err := decimal128.FromString(s, dt.Precision, dt.Scale)
		if err != nil {
			t.Fatal(err)
		}
		db.Append(v)
	}
	db.AppendNull()
	rec := b.NewRecord()
	defer rec.Release()

	var out bytes.Buffer
	sink, err := newPullSink("csv", &out)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.begin(sc); err != nil {
		t.Fatal(err)
	}
	if err := sink.write(rec); err != nil {
		t.Fatal(err)
	}
	if err := sink.close(); err != nil {
		t.Fatal(err)
	}
	if want := "value\n76.6263\n27.9092\n-0.0001\n1234567890123456.7890\n\n"; out.String() != want {
		t.Errorf("csv:\n%s\nwant:\n%s", out.String(), strings.TrimSpace(want))
	}
}
