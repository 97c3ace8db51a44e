package connectors

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"govx/schemas"
)

// mapper turns native rows into dataset records: value maps, then the shared normalizer
// (with the column's date formats), then the dataset's validation.
type mapper struct {
	ds      *schemas.Dataset
	columns []string // native columns read, the order of Row.Values
	fields  []mappedField
	delCol  int // index of the soft-delete column, or -1
	delVal  string
	keyIdx  []int          // dataset key fields' positions in fields
	loc     *time.Location // zone of offset-less text timestamps
}

type mappedField struct {
	f       *schemas.Field
	col     int
	values  map[string]string
	formats []string
	loc     *time.Location
}

func newMapper(c *Config) (*mapper, error) {
	ds, ok := catalog().Dataset(c.Dataset)
	if !ok {
		return nil, fmt.Errorf("unknown dataset %q", c.Dataset)
	}
	loc, err := c.Source.location()
	if err != nil {
		return nil, err
	}
	m := &mapper{ds: ds, delCol: -1, delVal: c.Deletes.Value, loc: loc}
	colIdx := map[string]int{}
	add := func(col string) int {
		if i, ok := colIdx[col]; ok {
			return i
		}
		colIdx[col] = len(m.columns)
		m.columns = append(m.columns, col)
		return len(m.columns) - 1
	}
	// Fields in dataset order keep records and messages stable.
	for i := range ds.Fields {
		f := &ds.Fields[i]
		fm, ok := c.Fields[f.Name]
		if !ok {
			continue
		}
		m.fields = append(m.fields, mappedField{f: f, col: add(fm.Column), values: fm.Values, formats: fm.Formats, loc: loc})
	}
	for _, k := range ds.Key {
		for i, mf := range m.fields {
			if mf.f.Name == k {
				m.keyIdx = append(m.keyIdx, i)
			}
		}
	}
	if c.Cursor.Column != "" {
		add(c.Cursor.Column)
	}
	for _, k := range c.Cursor.Key {
		add(k)
	}
	if c.Deletes.Column != "" {
		m.delCol = add(c.Deletes.Column)
	}
	return m, nil
}

// deleted reports whether a row carries the soft-delete marker.
func (m *mapper) deleted(values []any) bool {
	if m.delCol < 0 {
		return false
	}
	return schemas.NormalizeText(schemas.CanonicalText(values[m.delCol])) == m.delVal
}

// mapRow returns the record of a native row and every failed check (normalization and
// validation); a record with errors must not be published.
func (m *mapper) mapRow(values []any) (map[string]any, []schemas.FieldError) {
	return m.mapRowInto(make(map[string]any, len(m.ds.Fields)), values)
}

// mapRowInto is mapRow filling rec, which it clears first: the snapshot reuses one map
// for every row, as the record is encoded before the next row is mapped.
func (m *mapper) mapRowInto(rec map[string]any, values []any) (map[string]any, []schemas.FieldError) {
	clear(rec)
	var errs []schemas.FieldError
	var failed map[string]bool
	for i := range m.fields {
		mf := &m.fields[i]
		v, err := mf.value(values[mf.col])
		if err != nil {
			errs = append(errs, schemas.FieldError{Field: mf.f.Name, Code: "type", Message: err.Error()})
			if failed == nil {
				failed = map[string]bool{}
			}
			failed[mf.f.Name] = true
			continue
		}
		rec[mf.f.Name] = v
	}
	for _, fe := range m.ds.Validate(rec) {
		if !failed[fe.Field] {
			errs = append(errs, fe)
		}
	}
	return rec, errs
}

// recordKey returns the Kafka key of a row from its key fields only (enough for a
// tombstone, whatever the rest of the row holds).
func (m *mapper) recordKey(values []any) (string, error) {
	rec := make(map[string]any, len(m.keyIdx))
	for _, i := range m.keyIdx {
		mf := &m.fields[i]
		v, err := mf.value(values[mf.col])
		if err != nil {
			return "", err
		}
		rec[mf.f.Name] = v
	}
	return m.ds.RecordKey(rec)
}

// keyFromNative maps the native key columns (cursor.key order) to a record key; used by
// delete detection, where only key values are read.
func (m *mapper) keyFromNative(keyCols []string, key []any) (string, error) {
	values := make([]any, len(m.columns))
	for i, col := range keyCols {
		for j, c := range m.columns {
			if c == col {
				values[j] = key[i]
			}
		}
	}
	return m.recordKey(values)
}

func (mf *mappedField) value(v any) (any, error) {
	if b, ok := v.([]byte); ok {
		v = string(b)
	}
	if len(mf.values) > 0 && v != nil {
		if to, ok := mf.values[schemas.NormalizeText(schemas.CanonicalText(v))]; ok {
			v = to
		}
	}
	if s, ok := v.(string); ok && mf.f.Kind() == schemas.KindTimestamp {
		// The shared normalizer takes offset-less text as China Standard Time; the
		// source's declared zone decides here.
		if t, ok := parseTime(s, mf.loc, mf.formats...); ok {
			v = t
		}
	}
	return mf.f.Normalize(v, mf.formats...)
}

// encodeRecord writes a record as a JSON object in dataset field order. It is the hot
// path of a snapshot, so it appends canonical values directly instead of reflecting.
func (m *mapper) encodeRecord(buf []byte, rec map[string]any) []byte {
	buf = append(buf, '{')
	first := true
	for i := range m.ds.Fields {
		f := &m.ds.Fields[i]
		v, ok := rec[f.Name]
		if !ok {
			if !f.Nullable {
				continue
			}
			v = nil
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = appendJSONString(buf, f.Name)
		buf = append(buf, ':')
		buf = appendJSONValue(buf, v)
	}
	return append(buf, '}')
}

func appendJSONValue(buf []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(buf, "null"...)
	case string:
		return appendJSONString(buf, x)
	case int64:
		return strconv.AppendInt(buf, x, 10)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return append(buf, "null"...)
		}
		return strconv.AppendFloat(buf, x, 'g', -1, 64)
	case bool:
		return strconv.AppendBool(buf, x)
	}
	b, _ := json.Marshal(v)
	return append(buf, b...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as a JSON string, keeping non-ASCII text as UTF-8.
func appendJSONString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
				buf = append(buf, s[start:i]...)
				if r == utf8.RuneError {
					buf = append(buf, `\ufffd`...)
				} else {
					buf = append(buf, `\u202`...)
					buf = append(buf, hexDigits[r&0xF])
				}
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\r':
			buf = append(buf, '\\', 'r')
		case '\t':
			buf = append(buf, '\\', 't')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		i++
		start = i
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// nativeJSON is the DLQ value: the native row as read, column by column.
func (m *mapper) nativeJSON(values []any) []byte {
	obj := make(map[string]any, len(m.columns))
	for i, c := range m.columns {
		v := values[i]
		switch x := v.(type) {
		case []byte:
			v = string(x)
		case time.Time:
			v = x.Format(time.RFC3339Nano)
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				v = fmt.Sprint(x)
			}
		}
		obj[c] = v
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return []byte(fmt.Sprintf(`{"error":%q}`, err.Error()))
	}
	return b
}
