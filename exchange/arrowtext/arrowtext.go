// Package arrowtext turns Arrow batches into what a text format (CSV, JSON) must print
// exactly: the HTTP API's text answers and `govx pull --format csv` both go through it,
// so a value reads the same whichever way it is fetched.
package arrowtext

import (
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

// Arrow writes decimals to CSV and JSON through a binary float, which prints a sum of
// 843954.20 as 843954.19999999999998863131622783839703. The text formats get each
// decimal as the exact text of its scale instead, "843954.20": a CSV field, a JSON
// string (a JSON number is read as a float by most clients, which would lose it again).
//
// Arrow writes a timestamp to CSV as "2024-09-01 08:00:00.000123", with no zone, which
// a spreadsheet or a CSV reader takes for local time, and to JSON with a space for the
// T. The text formats get each timestamp in RFC 3339 in UTC instead,
// "2024-09-01T08:00:00.000123Z", as the datasets' records carry them on Kafka.

// textual reports whether a column of type dt is printed by this package.
func textual(dt arrow.DataType) bool {
	return dt.ID() == arrow.DECIMAL128 || dt.ID() == arrow.TIMESTAMP
}

// Schema is schema with its decimal and timestamp columns as strings.
func Schema(schema *arrow.Schema) *arrow.Schema {
	fields := schema.Fields()
	changed := false
	for i, f := range fields {
		if textual(f.Type) {
			fields[i].Type, changed = arrow.BinaryTypes.String, true
		}
	}
	if !changed {
		return schema
	}
	md := schema.Metadata()
	return arrow.NewSchema(fields, &md)
}

// Record is rec with its decimal and timestamp columns as their text; the caller
// releases it.
func Record(rec arrow.Record, mem memory.Allocator) arrow.Record {
	schema := Schema(rec.Schema())
	if schema == rec.Schema() {
		rec.Retain()
		return rec
	}
	cols := make([]arrow.Array, rec.NumCols())
	for i, col := range rec.Columns() {
		var text func(r int) string
		switch a := col.(type) {
		case *array.Decimal128:
			scale := a.DataType().(*arrow.Decimal128Type).Scale
			text = func(r int) string { return a.Value(r).ToString(scale) }
		case *array.Timestamp:
			unit := a.DataType().(*arrow.TimestampType).Unit
			text = func(r int) string { return a.Value(r).ToTime(unit).UTC().Format(time.RFC3339Nano) }
		default:
			col.Retain()
			cols[i] = col
			continue
		}
		b := array.NewStringBuilder(mem)
		for r := range col.Len() {
			if col.IsNull(r) {
				b.AppendNull()
			} else {
				b.Append(text(r))
			}
		}
		cols[i] = b.NewArray()
		b.Release()
	}
	out := array.NewRecord(schema, cols, rec.NumRows())
	for _, c := range cols {
		c.Release()
	}
	return out
}
