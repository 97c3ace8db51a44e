package synth_test

import (
	"database/sql"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" database/sql driver
	_ "modernc.org/sqlite"

	"govx/connectors/synth"
)

// readBack is a table read from a target, normalized to the generator's value form.
type readBack struct {
	digest digest
	rows   [][]any
}

func readSQLite(t testing.TB, path string, tab *synth.Table) readBack {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return readTable(t, db, tab.Name, tab, true)
}

// readTable reads every row of qualified and normalizes each value by its column's
// type, as a connector would: text dates and times parsed, decimals at their scale.
func readTable(t testing.TB, db *sql.DB, qualified string, tab *synth.Table, keep bool) readBack {
	t.Helper()
	rows, err := db.Query("SELECT " + strings.Join(tab.ColumnNames(), ", ") + " FROM " + qualified)
	if err != nil {
		t.Fatalf("read %s: %v", qualified, err)
	}
	defer rows.Close()
	var out readBack
	raw := make([]any, len(tab.Columns))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make([]any, len(raw))
		for k, c := range tab.Columns {
			v, err := normalize(c, raw[k])
			if err != nil {
				t.Fatalf("%s.%s: %v", qualified, c.Name, err)
			}
			row[k] = v
		}
		out.digest.add(row)
		if keep {
			out.rows = append(out.rows, row)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func normalize(c synth.Column, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	if b, ok := v.([]byte); ok {
		v = string(b)
	}
	switch c.Type {
	case synth.Text:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case synth.Date, synth.Timestamp:
		switch x := v.(type) {
		case time.Time:
			// Drivers hand back wall-clock values in UTC or with a zero offset.
			return time.Date(x.Year(), x.Month(), x.Day(), x.Hour(), x.Minute(), x.Second(), x.Nanosecond(), time.UTC), nil
		case string:
			for _, layout := range []string{time.DateOnly, time.DateTime, time.RFC3339Nano} {
				if tm, err := time.Parse(layout, x); err == nil {
					return tm.UTC(), nil
				}
			}
		}
	case synth.Numeric:
		var r *big.Rat
		switch x := v.(type) {
		case string:
			r, _ = new(big.Rat).SetString(x)
		case float64:
			r, _ = new(big.Rat).SetString(strconv.FormatFloat(x, 'f', -1, 64))
		case int64:
			r = new(big.Rat).SetInt64(x)
		case pgtype.Numeric:
			f, err := x.MarshalJSON()
			if err != nil {
				return nil, err
			}
			r, _ = new(big.Rat).SetString(string(f))
		}
		if r != nil {
			return r.FloatString(c.Scale), nil
		}
	case synth.Float:
		switch x := v.(type) {
		case float64:
			return x, nil
		case string:
			return strconv.ParseFloat(x, 64)
		}
	}
	return nil, fmt.Errorf("unexpected %T value %v", v, v)
}
