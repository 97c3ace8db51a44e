package synth

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, registered as "sqlite"
)

// sqliteMaxParams stays under SQLITE_MAX_VARIABLE_NUMBER (32766 since SQLite 3.32).
const sqliteMaxParams = 32000

type sqliteTarget struct{ dir string }

func openSQLite(dir string) (Writer, error) {
	if dir == "" {
		return nil, fmt.Errorf("sqlite target needs a directory: sqlite:DIR")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create the SQLite directory: %w", err)
	}
	return &sqliteTarget{dir: dir}, nil
}

func (s *sqliteTarget) String() string { return "sqlite:" + s.dir }
func (s *sqliteTarget) Close() error   { return nil }

// SQLitePath returns the database file of dept under a sqlite:DIR target.
func SQLitePath(dir, dept string) string { return filepath.Join(dir, dept+".db") }

// sqliteType maps a column to a declared type. Dates and times are stored as text in
// ISO form, the usual SQLite convention; DECIMAL has numeric affinity, so values come
// back as numbers (exact at the sizes generated: at most 15 significant digits).
func sqliteType(c Column) string {
	switch c.Type {
	case Date:
		return "DATE"
	case Timestamp:
		return "TIMESTAMP"
	case Numeric:
		return fmt.Sprintf("DECIMAL(%d,%d)", c.Size, c.Scale)
	case Float:
		return "REAL"
	}
	return fmt.Sprintf("VARCHAR(%d)", c.Size)
}

func (s *sqliteTarget) Create(ctx context.Context, t *Table) (TableWriter, error) {
	path := SQLitePath(s.dir, t.Dept)
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; pragmas below are per connection
	fail := func(err error) (TableWriter, error) {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// The file is regenerated from the seed at will, so durability during the load
	// buys nothing; the final commit still leaves a consistent file.
	for _, p := range []string{"PRAGMA synchronous=OFF", "PRAGMA cache_size=-65536"} {
		if _, err := db.ExecContext(ctx, p); err != nil {
			return fail(err)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fail(err)
	}
	if _, err := tx.ExecContext(ctx, "DROP TABLE IF EXISTS "+t.Name); err != nil {
		tx.Rollback()
		return fail(err)
	}
	if _, err := tx.ExecContext(ctx, createTableSQL(t, t.Name, sqliteType, "")); err != nil {
		tx.Rollback()
		return fail(err)
	}
	return &sqliteTable{db: db, tx: tx, t: t, path: path, perStmt: min(500, sqliteMaxParams/len(t.Columns))}, nil
}

// createTableSQL is the CREATE TABLE statement shared by the SQL targets; suffix ends it
// (e.g. MySQL's table options).
func createTableSQL(t *Table, qualified string, sqlType func(Column) string, suffix string) string {
	var b strings.Builder
	b.WriteString("CREATE TABLE " + qualified + " (\n")
	for _, c := range t.Columns {
		b.WriteString("  " + c.Name + " " + sqlType(c))
		if !c.Nullable {
			b.WriteString(" NOT NULL")
		}
		b.WriteString(",\n")
	}
	b.WriteString("  PRIMARY KEY (" + strings.Join(t.Key(), ", ") + ")\n)" + suffix)
	return b.String()
}

// indexSQL returns the CREATE INDEX statements of t's secondary indexes, shared by the
// SQL targets. Each is named <table>_<columns>, which stays unique per table.
func indexSQL(t *Table, qualified string) []string {
	var out []string
	for _, cols := range t.Indexes {
		out = append(out, "CREATE INDEX "+t.Name+"_"+strings.Join(cols, "_")+" ON "+qualified+" ("+strings.Join(cols, ", ")+")")
	}
	return out
}

// insertSQL is a multi-row INSERT of n rows with ? placeholders.
func insertSQL(qualified string, t *Table, n int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", len(t.Columns)), ",") + ")"
	var b strings.Builder
	b.Grow(64 + n*(len(one)+1))
	b.WriteString("INSERT INTO " + qualified + " (" + strings.Join(t.ColumnNames(), ", ") + ") VALUES ")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(one)
	}
	return b.String()
}

type sqliteTable struct {
	db      *sql.DB
	tx      *sql.Tx
	t       *Table
	path    string
	perStmt int
	full    *sql.Stmt
	args    []any
}

func (s *sqliteTable) Write(ctx context.Context, rows [][]any) error {
	for len(rows) > 0 {
		n := min(len(rows), s.perStmt)
		s.args = s.args[:0]
		for _, row := range rows[:n] {
			for k, v := range row {
				s.args = append(s.args, textValue(s.t.Columns[k], v))
			}
		}
		var err error
		if n == s.perStmt {
			if s.full == nil {
				if s.full, err = s.tx.PrepareContext(ctx, insertSQL(s.t.Name, s.t, n)); err != nil {
					return fmt.Errorf("%s: prepare insert: %w", s.path, err)
				}
			}
			_, err = s.full.ExecContext(ctx, s.args...)
		} else {
			_, err = s.tx.ExecContext(ctx, insertSQL(s.t.Name, s.t, n), s.args...)
		}
		if err != nil {
			return fmt.Errorf("%s: insert into %s: %w", s.path, s.t.Name, err)
		}
		rows = rows[n:]
	}
	return nil
}

func (s *sqliteTable) Commit(ctx context.Context) error {
	if s.full != nil {
		s.full.Close()
	}
	// Indexes are built once the rows are in: one sort instead of a b-tree insert per row.
	for _, q := range indexSQL(s.t, s.t.Name) {
		if _, err := s.tx.ExecContext(ctx, q); err != nil {
			s.Abort()
			return fmt.Errorf("%s: %w", s.path, err)
		}
	}
	err := s.tx.Commit()
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: commit: %w", s.path, err)
	}
	return nil
}

func (s *sqliteTable) Abort() {
	s.tx.Rollback()
	s.db.Close()
}

// textValue renders dates and times as ISO text and floats as their shortest exact
// decimal; other values pass through.
func textValue(c Column, v any) any {
	switch x := v.(type) {
	case time.Time:
		if c.Type == Date {
			return x.Format(textDate)
		}
		return x.UTC().Format(textTimestamp)
	case float64:
		if c.Type == Float {
			return x
		}
	}
	return v
}

// formatFloat is the CSV form of a float: the shortest text that reads back exactly.
func formatFloat(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
