package main

import (
	"io"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
)

// parquetRowGroup is the rows per row group, as pyarrow's write_table makes them: a
// reader gets large column chunks, and the writer holds at most one group's pages.
const parquetRowGroup = 1 << 20

// parquetSink writes a pull as Parquet (Snappy). Encoding runs in a goroutine of its
// own, so the next batches arrive over the network while one is encoded. The writer is
// made at the first batch, which decides each text column's encoding: dictionary
// encoding pays only where values repeat (codes, regions, status), and hashing every
// value of a column of distinct ones (ID numbers, names) only to give the dictionary
// up at its size limit was most of the time a Parquet pull took.
func parquetSink(w io.Writer) *pullSink {
	var (
		sc    *arrow.Schema
		recs  chan arrow.Record
		done  chan error
		first = true
	)
	// encode sends on done once: its first error at once (then drops what still comes),
	// or the result of closing the file.
	encode := func(pw *pqarrow.FileWriter) {
		var err error
		for r := range recs {
			if err == nil {
				if err = pw.WriteBuffered(r); err != nil {
					done <- err
				}
			}
			r.Release()
		}
		if err == nil {
			done <- pw.Close()
		}
	}
	s := &pullSink{}
	s.begin = func(schema *arrow.Schema) error { sc = schema; return nil }
	s.write = func(r arrow.Record) error {
		if first {
			first = false
			pw, err := pqarrow.NewFileWriter(sc, w, parquetProps(r), arrowProps)
			if err != nil {
				return err
			}
			recs, done = make(chan arrow.Record, 2), make(chan error, 1)
			go encode(pw)
		}
		r.Retain()
		select {
		case recs <- r:
			return nil
		case err := <-done: // a write failed: the pull stops with its error
			r.Release()
			done <- err // for close, which waits on it too
			return err
		}
	}
	s.close = func() error {
		if first {
			if sc == nil {
				return nil
			}
			// No rows: a file with the schema and no row group.
			pw, err := pqarrow.NewFileWriter(sc, w, parquetProps(nil), arrowProps)
			if err != nil {
				return err
			}
			return pw.Close()
		}
		close(recs)
		return <-done
	}
	return s
}

// arrowProps keep the Arrow schema in the file, as pyarrow does: its field metadata
// (sensitivity, masks) and exact types come back when the file is read as Arrow.
var arrowProps = pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema())

// parquetProps are the writer properties for a pull whose first batch is r (nil when
// there are no rows): Snappy, pyarrow's row group size, and dictionary encoding only for
// the text columns whose sampled values repeat.
func parquetProps(r arrow.Record) *parquet.WriterProperties {
	opts := []parquet.WriterProperty{parquet.WithCompression(compress.Codecs.Snappy), parquet.WithMaxRowGroupLength(parquetRowGroup)}
	if r != nil {
		for i, col := range r.Columns() {
			if mostlyDistinct(col) {
				opts = append(opts, parquet.WithDictionaryFor(r.ColumnName(i), false))
			}
		}
	}
	return parquet.NewWriterProperties(opts...)
}

// mostlyDistinct reports whether a text column's values are mostly different from each
// other, judged on up to 4,096 values spread over the batch.
func mostlyDistinct(col arrow.Array) bool {
	var value func(i int) string
	switch a := col.(type) {
	case *array.String:
		value = a.Value
	case *array.LargeString:
		value = a.Value
	default:
		return false
	}
	n := col.Len()
	step := max(1, n/4096)
	seen := map[string]struct{}{}
	sampled := 0
	for i := 0; i < n; i += step {
		if col.IsNull(i) {
			continue
		}
		seen[value(i)] = struct{}{}
		sampled++
	}
	return sampled >= 64 && len(seen)*2 > sampled
}
