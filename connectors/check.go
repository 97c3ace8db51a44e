package connectors

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"govx/schemas"
)

// MappingLine is one dataset field and where its value comes from.
type MappingLine struct {
	Field    string
	Type     string
	Nullable bool
	Column   string // "" when unmapped (a nullable field left empty)
	Detail   string // value map and date formats, for display
}

// Sample is one source row as the connector would publish it.
type Sample struct {
	Key    string
	Record map[string]any
	Value  string // the JSON value as published
	Errors []schemas.FieldError
	Native string // the native row as JSON (what the dead-letter topic would hold)
}

// CheckReport is what `govx connector check` shows.
type CheckReport struct {
	Mapping    []MappingLine
	SourceRows int64 // -1 when not connected
	// CursorIndex is what the source says of its (cursor, key) index; nil when it
	// cannot say (a file has no index, a query: source is not a table).
	CursorIndex *IndexAdvice
	Kafka       string
	Samples     []Sample
}

// CursorIndexer is a Source that can tell whether its table has an index serving the
// (cursor, key) order connectors read in (sqlsrc's sources can).
type CursorIndexer interface {
	// CursorIndex returns nil when this source cannot be looked into.
	CursorIndex(ctx context.Context) (*IndexAdvice, error)
}

// IndexAdvice says whether a source table has the (cursor, key) index and, if not,
// the statement that creates it.
type IndexAdvice struct {
	Table   string
	Columns []string // the cursor, then the key columns
	Index   string   // an index whose leading columns are Columns; "" when there is none
	Create  string   // when Index is "": the statement to run in the source database
}

// Missing reports whether the table lacks the index.
func (a *IndexAdvice) Missing() bool { return a != nil && a.Index == "" }

// Warning is the advice to an operator when the index is missing.
func (a *IndexAdvice) Warning() string {
	return fmt.Sprintf("table %s has no index on (%s): every poll (each poll_interval) and every snapshot page "+
		"scans and sorts the whole table. Run this in the source database:\n  %s",
		a.Table, strings.Join(a.Columns, ", "), a.Create)
}

// cursorIndex asks src about its (cursor, key) index; nil when it cannot say.
func (c *Connector) cursorIndex(ctx context.Context, src Source) (*IndexAdvice, error) {
	ci, ok := src.(CursorIndexer)
	if !ok {
		return nil, nil
	}
	adv, err := ci.CursorIndex(ctx)
	if err != nil {
		return nil, c.red.err(fmt.Errorf("reading the indexes of %s: %w", c.sourceName(), err))
	}
	return adv, nil
}

// Mapping returns the field mapping of a config, in dataset field order.
func (c *Config) Mapping() []MappingLine {
	ds, _ := catalog().Dataset(c.Dataset)
	var out []MappingLine
	for _, f := range ds.Fields {
		l := MappingLine{Field: f.Name, Type: f.Type, Nullable: f.Nullable}
		if m, ok := c.Fields[f.Name]; ok {
			l.Column = m.Column
			var d []string
			if len(m.Values) > 0 {
				b, _ := json.Marshal(m.Values)
				d = append(d, "values "+string(b))
			}
			if len(m.Formats) > 0 {
				d = append(d, "formats "+strings.Join(m.Formats, ", "))
			}
			l.Detail = strings.Join(d, "; ")
		}
		out = append(out, l)
	}
	return out
}

// Check connects to the source and to Kafka and maps up to samples rows, without
// publishing anything. Any error names the problem; secrets are redacted from it.
func (c *Connector) Check(ctx context.Context, samples int) (*CheckReport, error) {
	rep := &CheckReport{Mapping: c.cfg.Mapping(), SourceRows: -1}
	src, err := c.openSource(ctx)
	if err != nil {
		return rep, err
	}
	defer src.Close()
	if rep.SourceRows, err = src.Count(ctx); err != nil {
		return rep, c.red.err(fmt.Errorf("counting rows of %s: %w", c.sourceName(), err))
	}
	if rep.CursorIndex, err = c.cursorIndex(ctx, src); err != nil {
		return rep, err
	}
	err = src.Read(ctx, Position{}, samples, func(r Row) error {
		s := Sample{Native: string(c.mapper.nativeJSON(r.Values))}
		rec, errs := c.mapper.mapRow(r.Values)
		s.Record, s.Errors = rec, errs
		if len(errs) == 0 {
			s.Key, _ = c.mapper.ds.RecordKey(rec)
			s.Value = string(c.mapper.encodeRecord(nil, rec))
		} else if k, err := c.mapper.recordKey(r.Values); err == nil {
			s.Key = k
		}
		rep.Samples = append(rep.Samples, s)
		return nil
	})
	if err != nil {
		return rep, c.red.err(fmt.Errorf("reading %s: %w", c.sourceName(), err))
	}
	k, err := newKafkaConn(c.cfg.Kafka)
	if err != nil {
		return rep, err
	}
	defer k.close()
	if err := k.ping(ctx); err != nil {
		return rep, err
	}
	rep.Kafka = strings.Join(c.cfg.Kafka.Brokers, ",") + " (topic " + c.cfg.Topic() + ")"
	return rep, nil
}
