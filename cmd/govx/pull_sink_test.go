package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/decimal128"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
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

// TestParquetDictionaries: the columns govx numbers itself (text, dates and integers
// whose values repeat) read back from the Parquet file exactly as they were pulled, nulls
// included, over several row groups, each with a dictionary page; a column whose
// dictionary outgrows Parquet's page limit part way through a row group falls back to
// plain values without losing a row; columns of distinct values are written plain.
func TestParquetDictionaries(t *testing.T) {
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "code", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "day", Type: arrow.FixedWidthTypes.Date32, Nullable: true},
		{Name: "n32", Type: arrow.PrimitiveTypes.Int32},
		{Name: "n64", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "grows", Type: arrow.BinaryTypes.String},
		{Name: "id", Type: arrow.BinaryTypes.String},
		{Name: "ts", Type: arrow.FixedWidthTypes.Timestamp_us, Nullable: true},
	}, nil)
	const batches, rows = 7, 5000
	var recs []arrow.Record
	for b := range batches {
		rb := array.NewRecordBuilder(memory.DefaultAllocator, sc)
		for i := range rows {
			n := b*rows + i
			if n%7 == 3 {
				rb.Field(0).AppendNull()
				rb.Field(1).AppendNull()
				rb.Field(3).AppendNull()
				rb.Field(6).AppendNull()
			} else {
				rb.Field(0).(*array.StringBuilder).Append(fmt.Sprintf("region-%d", n%97))
				rb.Field(1).(*array.Date32Builder).Append(arrow.Date32(n % 400))
				rb.Field(3).(*array.Int64Builder).Append(int64(n%13) << 40)
				rb.Field(6).(*array.TimestampBuilder).Append(arrow.Timestamp(n * 1000))
			}
			rb.Field(2).(*array.Int32Builder).Append(int32(n%5 - 2))
			if b == 0 { // repeats in the first batch (dictionary chosen), then distinct and long
				rb.Field(4).(*array.StringBuilder).Append(fmt.Sprintf("g%d", n%3))
			} else {
				rb.Field(4).(*array.StringBuilder).Append(fmt.Sprintf("%0200d", n))
			}
			rb.Field(5).(*array.StringBuilder).Append(fmt.Sprintf("id-%08d", n))
		}
		recs = append(recs, rb.NewRecord())
		rb.Release()
	}
	defer releaseRecords(recs)

	var out bytes.Buffer
	pw, err := newParquetWriter(&out, sc, recs[0])
	if err != nil {
		t.Fatal(err)
	}
	pw.group = 2 * rows // row groups of two batches: 10000, 10000, 10000, 5000 rows
	ch := make(chan arrow.Record, len(recs))
	for _, r := range recs {
		r.Retain()
		ch <- r
	}
	close(ch)
	if err := pw.encode(ch); err != nil {
		t.Fatal(err)
	}

	rdr, err := file.NewParquetReader(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if rdr.NumRowGroups() != 4 {
		t.Errorf("%d row groups, want 4", rdr.NumRowGroups())
	}
	for g := range rdr.NumRowGroups() {
		rg := rdr.MetaData().RowGroup(g)
		for c, want := range map[int]bool{0: true, 1: true, 2: true, 3: true, 5: false, 6: false} {
			cc, err := rg.ColumnChunk(c)
			if err != nil {
				t.Fatal(err)
			}
			if cc.HasDictionaryPage() != want {
				t.Errorf("row group %d, column %s: dictionary page %v, want %v", g, sc.Field(c).Name, cc.HasDictionaryPage(), want)
			}
			st, err := cc.Statistics()
			if err != nil || st == nil || !st.HasMinMax() {
				t.Errorf("row group %d, column %s: no min/max statistics (%v)", g, sc.Field(c).Name, err)
				continue
			}
			if wantNulls := int64(0); c == 0 || c == 1 || c == 3 || c == 6 { // every 7th row null
				first := int64(g) * 2 * rows
				last := min(first+2*rows, batches*rows) - 1
				if wantNulls = (last-3)/7 - (first-3+6)/7 + 1; st.NullCount() != wantNulls {
					t.Errorf("row group %d, column %s: statistics count %d nulls, want %d", g, sc.Field(c).Name, st.NullCount(), wantNulls)
				}
			} else if st.NullCount() != 0 {
				t.Errorf("row group %d, column %s (not nullable): statistics count %d nulls, want 0", g, sc.Field(c).Name, st.NullCount())
			}
			if g == 0 && c == 0 { // rows 0..9999: region-0 .. region-96, every 7th null
				if min, max := string(st.EncodeMin()), string(st.EncodeMax()); min != "region-0" || max != "region-96" || st.NullCount() != 1429 || st.NumValues() != 10000-1429 {
					t.Errorf("row group 0, column code: statistics min %q max %q, %d nulls, %d values; want region-0, region-96, 1429, 8571", min, max, st.NullCount(), st.NumValues())
				}
			}
		}
	}
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	want := array.NewTableFromRecords(sc, recs)
	defer want.Release()
	if got.NumRows() != want.NumRows() {
		t.Fatalf("%d rows read back, want %d", got.NumRows(), want.NumRows())
	}
	for i := range int(want.NumCols()) {
		if !arrow.TypeEqual(got.Schema().Field(i).Type, sc.Field(i).Type) {
			t.Errorf("column %s reads back as %s, want %s", sc.Field(i).Name, got.Schema().Field(i).Type, sc.Field(i).Type)
			continue
		}
		if !array.ChunkedEqual(got.Column(i).Data(), want.Column(i).Data()) {
			t.Errorf("column %s reads back different from what was written", sc.Field(i).Name)
		}
	}
}

func releaseRecords(recs []arrow.Record) {
	for _, r := range recs {
		r.Release()
	}
}
