package main

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"sync"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/flight"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/metadata"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
)

// parquetRowGroup is the rows per row group, as pyarrow's write_table makes them: a
// reader gets large column chunks, and the writer holds at most one group's pages.
const parquetRowGroup = 1 << 20

// parquetSink writes a pull as Parquet (Snappy). Each batch's columns are encoded at
// once, one goroutine each, into the current (buffered) row group, while the next
// batch arrives over the network: encoding, not the pull, is what a Parquet pull
// waits on. The writer is made at the first batch, which decides each column's
// encoding: dictionary encoding pays only where values repeat (codes, regions, status,
// dates), and hashing every value of a column of distinct ones (ID numbers, timestamps)
// only to give the dictionary up at its size limit is time spent for nothing. Where
// values repeat, govx numbers them itself (dictColumn). The Arrow schema is kept in the
// file, as pyarrow keeps it, so field metadata and exact types come back.
func parquetSink(w io.Writer) *pullSink {
	var (
		sc   *arrow.Schema
		pw   *parquetWriter
		recs chan arrow.Record
		done chan error
	)
	s := &pullSink{}
	s.begin = func(schema *arrow.Schema) error { sc = schema; return nil }
	s.write = func(r arrow.Record) error {
		if pw == nil {
			var err error
			if pw, err = newParquetWriter(w, sc, r); err != nil {
				return err
			}
			recs, done = make(chan arrow.Record, 2), make(chan error, 1)
			go func() { done <- pw.encode(recs) }()
		}
		r.Retain()
		select {
		case recs <- r:
			return nil
		case err := <-done: // encoding failed: the pull stops with its error
			r.Release()
			done <- err // for close
			return err
		}
	}
	s.close = func() error {
		if pw == nil {
			if sc == nil {
				return nil
			}
			// No rows: a file with the schema and no row group.
			pw, err := newParquetWriter(w, sc, nil)
			if err != nil {
				return err
			}
			return pw.w.Close()
		}
		close(recs)
		return <-done
	}
	return s
}

type parquetWriter struct {
	w     *file.Writer
	props pqarrow.ArrowWriterProperties
	rg    file.BufferedRowGroupWriter
	rows  int64         // in rg
	group int64         // most rows per row group: parquetRowGroup
	dicts []*dictColumn // by column: nil where the column is not dictionary encoded by us
}

// newParquetWriter starts a Parquet file of schema sc whose first batch is first (nil
// when there are no rows).
func newParquetWriter(w io.Writer, sc *arrow.Schema, first arrow.Record) (*parquetWriter, error) {
	opts := []parquet.WriterProperty{parquet.WithCompression(compress.Codecs.Snappy), parquet.WithMaxRowGroupLength(parquetRowGroup)}
	dicts := make([]*dictColumn, sc.NumFields())
	if first != nil {
		for i, col := range first.Columns() {
			if mostlyDistinct(col) {
				opts = append(opts, parquet.WithDictionaryFor(first.ColumnName(i), false))
			} else {
				dicts[i] = newDictColumn(col.DataType(), int(parquet.DefaultDictionaryPageSizeLimit))
			}
		}
	}
	props := parquet.NewWriterProperties(opts...)
	aprops := pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema())
	pqschema, err := pqarrow.ToParquet(sc, props, aprops)
	if err != nil {
		return nil, err
	}
	// What pqarrow.NewFileWriter writes as the file's key-value metadata.
	meta := metadata.KeyValueMetadata{}
	for i, k := range sc.Metadata().Keys() {
		meta.Append(k, sc.Metadata().Values()[i])
	}
	meta.Append("ARROW:schema", base64.StdEncoding.EncodeToString(flight.SerializeSchema(sc, memory.DefaultAllocator)))
	return &parquetWriter{w: file.NewParquetWriter(w, pqschema.Root(), file.WithWriterProps(props), file.WithWriteMetadata(meta)), props: aprops, group: parquetRowGroup, dicts: dicts}, nil
}

// encode writes every batch from recs, then closes the file. After an error it drops
// what still comes.
func (p *parquetWriter) encode(recs <-chan arrow.Record) error {
	var err error
	for r := range recs {
		if err == nil {
			err = p.write(r)
		}
		r.Release()
	}
	if err == nil && p.rg != nil {
		err = p.endRowGroup()
	}
	if err != nil {
		return err
	}
	return p.w.Close()
}

// write appends one batch to the current row group, its columns in parallel (each
// column chunk writer of a buffered row group buffers its own pages).
func (p *parquetWriter) write(r arrow.Record) error {
	if p.rg == nil || p.rows+r.NumRows() > p.group {
		if p.rg != nil {
			if err := p.endRowGroup(); err != nil {
				return err
			}
		}
		p.rg, p.rows = p.w.AppendBufferedRowGroup(), 0
	}
	err := p.eachColumn(func(i int, cw file.ColumnChunkWriter) error {
		col := r.Column(i)
		d := p.dicts[i]
		if d == nil {
			return p.writeColumn(cw, i, col)
		}
		plain := d.take(col)
		defer releaseAll(plain)
		for _, a := range plain {
			if err := p.writeColumn(cw, i, a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	p.rows += r.NumRows()
	return nil
}

// endRowGroup writes the dictionary encoded columns of the current row group and
// closes it.
func (p *parquetWriter) endRowGroup() error {
	err := p.eachColumn(func(i int, cw file.ColumnChunkWriter) error {
		if p.dicts[i] == nil {
			return nil
		}
		col := p.dicts[i].column()
		if col == nil {
			return nil
		}
		defer col.Release()
		// Handing the encoder the dictionary first, as the one it keeps, spares the
		// writer from finding which of its values the indices use (a hash of every
		// index) to compute the statistics: here they all do.
		if enc, ok := cw.CurrentEncoder().(interface{ PutDictionary(arrow.Array) error }); ok {
			if err := enc.PutDictionary(col.(*array.Dictionary).Dictionary()); err != nil {
				return err
			}
		}
		return p.writeColumn(cw, i, col)
	})
	if err != nil {
		return err
	}
	return p.rg.Close()
}

// eachColumn runs f for every column of the current row group, one goroutine each.
func (p *parquetWriter) eachColumn(f func(i int, cw file.ColumnChunkWriter) error) error {
	errs := make([]error, len(p.dicts))
	var wg sync.WaitGroup
	for i := range p.dicts {
		cw, err := p.rg.Column(i)
		if err != nil {
			errs[i] = err
			break // after the columns already started have ended
		}
		wg.Go(func() { errs[i] = f(i, cw) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// writeColumn writes col, values of column i, to its column chunk writer.
func (p *parquetWriter) writeColumn(cw file.ColumnChunkWriter, i int, col arrow.Array) error {
	nullable := p.w.Schema.Column(i).MaxDefinitionLevel() > 0
	var def []int16
	switch {
	case nullable:
		def = make([]int16, col.Len())
		for j := range def {
			if col.IsValid(j) {
				def[j] = 1
			}
		}
	case col.DataType().ID() == arrow.DICTIONARY:
		// A column that cannot be null needs no levels, but Arrow Go counts a dictionary
		// column's nulls as its levels less its values: without levels, minus the rows.
		// Zero levels, which it ignores otherwise, make the count 0.
		def = make([]int16, col.Len())
	}
	ctx := pqarrow.NewArrowWriteContext(context.Background(), &p.props)
	return pqarrow.WriteArrowToColumn(ctx, cw, col, def, nil, nullable)
}

func releaseAll(as []arrow.Array) {
	for _, a := range as {
		a.Release()
	}
}

// mostlyDistinct reports whether a column's values are mostly different from each other,
// judged on up to 4,096 values spread over the batch: text, and fixed-width values
// (timestamps, integers, decimals) compared by their bytes.
func mostlyDistinct(col arrow.Array) bool {
	var value func(i int) string
	switch a := col.(type) {
	case *array.String:
		value = a.Value
	case *array.LargeString:
		value = a.Value
	default:
		fw, ok := col.DataType().(arrow.FixedWidthDataType)
		if !ok || fw.BitWidth() < 8 || len(col.Data().Buffers()) < 2 {
			return false
		}
		w, off := fw.BitWidth()/8, col.Data().Offset()
		buf := col.Data().Buffers()[1].Bytes()
		value = func(i int) string { return string(buf[(off+i)*w : (off+i+1)*w]) }
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
