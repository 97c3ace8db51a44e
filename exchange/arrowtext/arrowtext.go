// Package arrowtext turns Arrow batches into what a text format (CSV, JSON) must print
// exactly: the HTTP API's text answers and `govx pull --format csv` both go through it,
// so a value reads the same whichever way it is fetched.
package arrowtext

import (
	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

// Arrow writes decimals to CSV and JSON through a binary float, which prints a sum of
// 843954.20 as 843954.19999999999998863131622783839703. The text formats get each
// decimal as the exact text of its scale instead, "843954.20": a CSV field, a JSON
// string (a JSON number is read as a float by most clients, which would lose it again).

// Schema is schema with its decimal columns as strings.
func Schema(schema *arrow.Schema) *arrow.Schema {
	fields := schema.Fields()
	changed := false
	for i, f := range fields {
		if f.Type.ID() == arrow.DECIMAL128 {
			fields[i].Type, changed = arrow.BinaryTypes.String, true
		}
	}
	if !changed {
		return schema
	}
	md := schema.Metadata()
	return arrow.NewSchema(fields, &md)
}

// Record is rec with its decimal columns as their exact text; the caller releases it.
func Record(rec arrow.Record, mem memory.Allocator) arrow.Record {
	schema := Schema(rec.Schema())
	if schema == rec.Schema() {
		rec.Retain()
		return rec
	}
	cols := make([]arrow.Array, rec.NumCols())
	for i, col := range rec.Columns() {
		d, ok := col.(*array.Decimal128)
		if !ok {
			col.Retain()
			cols[i] = col
			continue
		}
		scale := d.DataType().(*arrow.Decimal128Type).Scale
		b := array.NewStringBuilder(mem)
		for r := range d.Len() {
			if d.IsNull(r) {
				b.AppendNull()
			} else {
				b.Append(d.Value(r).ToString(scale))
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
