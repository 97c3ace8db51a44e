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
	Kafka      string
	Samples    []Sample
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
