package connectors

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"govx/schemas"
)

// Source reads a department's native rows. Implementations live in sqlsrc and filesrc and
// register themselves by driver name (Register).
//
// Rows come in (cursor, key) order. The values a Source yields for the cursor and key are
// what it needs bound back as parameters to continue after them (e.g. a time.Time for a
// timestamp column), so a Position stored in a checkpoint resumes exactly.
type Source interface {
	// Count returns how many rows the source has (for progress and ETA).
	Count(ctx context.Context) (int64, error)
	// Read calls fn for at most limit rows after from, in (cursor, key) order. The row's
	// Values slice is valid only during the call.
	Read(ctx context.Context, from Position, limit int, fn func(Row) error) error
	// Keys calls fn with the key of every row (for delete detection by comparison).
	Keys(ctx context.Context, fn func(key []any) error) error
	Close() error
}

// Position is a place in (cursor, key) order.
//
//   - zero Position: from the first row with a cursor;
//   - Key nil: every row whose cursor is >= Cursor (the look-back re-read);
//   - Key set: rows strictly after (Cursor, Key) — keyset pagination;
//   - NullCursor: rows whose cursor is NULL, after Key (read once at the end of a snapshot
//     so that they are not lost).
type Position struct {
	Cursor     any
	Key        []any
	NullCursor bool
}

// Row is one native row: Values in Spec.Columns order, plus its cursor and key values.
type Row struct {
	Cursor any
	Key    []any
	Values []any
}

// Spec is what a Source is opened with: the resolved config plus the columns needed.
type Spec struct {
	Driver    string
	DSN       string // secret: never print; errors are redacted by the caller too
	Table     string
	Query     string
	Encoding  string
	Delimiter string
	Cursor    string   // cursor column ("" for files: the file's modification time)
	Key       []string // native key columns
	Columns   []string // every column the connector reads, in the order of Row.Values
}

// Opener opens a Source; it checks that the table and every column in spec exist and
// reports a missing one by name.
type Opener func(ctx context.Context, spec Spec) (Source, error)

var (
	regMu    sync.RWMutex
	registry = map[string]Opener{}
)

// Register makes a source kind available by driver name; it panics on a duplicate, as
// two packages claiming one name is a programming error.
func Register(driver string, open Opener) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[driver]; dup {
		panic("connectors: source driver " + driver + " registered twice")
	}
	registry[driver] = open
}

// Drivers returns the registered driver names, sorted.
func Drivers() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	var out []string
	for d := range registry {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

func opener(driver string) (Opener, error) {
	regMu.RLock()
	defer regMu.RUnlock()
	if o, ok := registry[driver]; ok {
		return o, nil
	}
	return nil, fmt.Errorf("source driver %q is not linked into this program (registered: %s); import govx/connectors/sqlsrc and govx/connectors/filesrc", driver, strings.Join(driversLocked(), ", "))
}

func driversLocked() []string {
	var out []string
	for d := range registry {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// CursorTime reads a cursor value as a point in time: a time.Time, a timestamp text in
// one of schemas.TimestampLayouts (no offset: China Standard Time), or Unix seconds.
func CursorTime(v any) (time.Time, bool) { return cursorTimeIn(v, schemas.ChinaTime) }

// cursorTimeIn is CursorTime with offset-less text taken in loc.
func cursorTimeIn(v any, loc *time.Location) (time.Time, bool) {
	switch c := v.(type) {
	case time.Time:
		return c, true
	case []byte:
		return cursorTimeIn(string(c), loc)
	case string:
		if t, ok := parseTime(c, loc); ok {
			return t, true
		}
		if d, err := schemas.NormalizeDate(c); err == nil {
			t, err := time.ParseInLocation(time.DateOnly, d, loc)
			return t, err == nil
		}
	case int64:
		if c > 1e12 { // milliseconds
			return time.UnixMilli(c), true
		}
		return time.Unix(c, 0), true
	}
	return time.Time{}, false
}

// parseTime parses a timestamp text in the extra layouts, then RFC 3339 and
// schemas.TimestampLayouts; text without an offset is in loc.
func parseTime(s string, loc *time.Location, layouts ...string) (time.Time, bool) {
	s = schemas.NormalizeText(s)
	for _, l := range layouts {
		if t, err := time.ParseInLocation(l, s, loc); err == nil {
			return t, true
		}
	}
	for _, l := range schemas.TimestampLayouts {
		if t, err := time.ParseInLocation(l, s, loc); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// cursorMinus returns a cursor value d earlier than v, of the same kind so that the
// source can bind it (a text cursor keeps its layout). ok is false if v is not a time.
func cursorMinus(v any, d time.Duration) (any, bool) {
	switch c := v.(type) {
	case time.Time:
		return c.Add(-d), true
	case int64:
		if c > 1e12 {
			return c - d.Milliseconds(), true
		}
		return c - int64(d/time.Second), true
	case string:
		for _, l := range append([]string{time.RFC3339Nano}, schemas.TimestampLayouts...) {
			if t, err := time.ParseInLocation(l, c, schemas.ChinaTime); err == nil {
				return t.Add(-d).In(t.Location()).Format(l), true
			}
		}
	}
	return v, false
}

// encodeValue writes a cursor or key value with its type, so a checkpoint read back binds
// the same kind of value (a time stays a time, not a string).
func encodeValue(v any) (json.RawMessage, error) {
	var tv struct {
		T string `json:"t"`
		V any    `json:"v,omitempty"`
	}
	switch x := v.(type) {
	case nil:
		tv.T = "null"
	case time.Time:
		tv.T, tv.V = "time", x.Format(time.RFC3339Nano)
	case string:
		tv.T, tv.V = "string", x
	case []byte:
		tv.T, tv.V = "string", string(x)
	case int64:
		tv.T, tv.V = "int", strconv.FormatInt(x, 10)
	case int:
		tv.T, tv.V = "int", strconv.Itoa(x)
	case int32:
		tv.T, tv.V = "int", strconv.FormatInt(int64(x), 10)
	case float64:
		tv.T, tv.V = "float", strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		tv.T, tv.V = "bool", x
	default:
		return nil, fmt.Errorf("cannot keep a %T in a checkpoint", v)
	}
	return json.Marshal(tv)
}

func decodeValue(raw json.RawMessage) (any, error) {
	var tv struct {
		T string          `json:"t"`
		V json.RawMessage `json:"v"`
	}
	if err := json.Unmarshal(raw, &tv); err != nil {
		return nil, err
	}
	if tv.T == "null" || tv.T == "" {
		return nil, nil
	}
	if tv.T == "bool" {
		var b bool
		err := json.Unmarshal(tv.V, &b)
		return b, err
	}
	var s string
	if err := json.Unmarshal(tv.V, &s); err != nil {
		return nil, err
	}
	switch tv.T {
	case "time":
		return time.Parse(time.RFC3339Nano, s)
	case "string":
		return s, nil
	case "int":
		return strconv.ParseInt(s, 10, 64)
	case "float":
		return strconv.ParseFloat(s, 64)
	}
	return nil, fmt.Errorf("unknown value type %q in checkpoint", tv.T)
}
