// Package sqlsrc reads department tables from PostgreSQL, MySQL/MariaDB and SQLite for
// govx connectors, through database/sql. Importing it registers the source drivers
// "postgres", "mysql" and "sqlite" with package connectors.
//
// Every query is built from identifiers in the connector config, quoted for the
// database; every value from a cursor or key is bound as a parameter, never spliced into
// SQL. Snapshots page by keyset — WHERE (cursor, key) > (last) ORDER BY cursor, key
// LIMIT n — so a restarted connector resumes after its last acknowledged row. An index
// on (cursor, key) makes each page an index range scan; without it every page sorts.
package sqlsrc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"govx/connectors"
)

// dialect is what differs between databases.
type dialect struct {
	name       string
	driver     string // database/sql driver name
	quoteChar  byte
	dollar     bool // $1 placeholders (PostgreSQL) instead of ?
	rowCompare bool // (a, b) > ($1, $2) is index-friendly here; else expanded ORs
	// rawCursor selects the cursor as an expression, not a column, so the driver returns
	// the stored value (SQLite keeps timestamps as text; binding a time.Time back would
	// compare a differently formatted text).
	rawCursor bool
	// caseSensitive: quoted column names compare exactly (PostgreSQL).
	caseSensitive bool
	// indexes lists a table's indexes, for CursorIndex.
	indexes func(ctx context.Context, d *dialect, db *sql.DB, table string) ([]index, error)
}

func (d *dialect) quote(ident string) string {
	q := string(d.quoteChar)
	return q + strings.ReplaceAll(ident, q, q+q) + q
}

// quoteTable quotes a [schema.]table name part by part.
func (d *dialect) quoteTable(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = d.quote(p)
	}
	return strings.Join(parts, ".")
}

type source struct {
	d      *dialect
	db     *sql.DB
	spec   connectors.Spec
	from   string
	cols   string // select list
	curIdx int    // index in the scanned values of the cursor
	keyIdx []int
	nScan  int

	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// open connects, checks the login, the table and every column, and returns the source.
func open(ctx context.Context, d *dialect, dsn string, spec connectors.Spec) (connectors.Source, error) {
	db, err := sql.Open(d.driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("cannot open the database: %w", err)
	}
	db.SetMaxOpenConns(4)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot connect: %w (check the DSN: host, port, user and password)", err)
	}
	s := &source{d: d, db: db, spec: spec, stmts: map[string]*sql.Stmt{}}
	if spec.Table != "" {
		s.from = d.quoteTable(spec.Table)
	} else {
		s.from = "(" + strings.TrimRight(strings.TrimSpace(spec.Query), ";") + ") src"
	}
	if err := s.probe(ctx); err != nil {
		db.Close()
		return nil, err
	}
	idx := map[string]int{}
	quoted := make([]string, len(spec.Columns))
	for i, c := range spec.Columns {
		idx[c] = i
		quoted[i] = d.quote(c)
	}
	s.nScan = len(spec.Columns)
	s.curIdx = idx[spec.Cursor]
	if d.rawCursor {
		quoted = append(quoted, "+"+d.quote(spec.Cursor))
		s.curIdx = s.nScan
		s.nScan++
	}
	s.cols = strings.Join(quoted, ", ")
	for _, k := range spec.Key {
		s.keyIdx = append(s.keyIdx, idx[k])
	}
	return s, nil
}

// probe reads the table's columns without reading rows and reports a missing table or
// column by name.
func (s *source) probe(ctx context.Context) error {
	what := "table " + s.spec.Table
	if s.spec.Table == "" {
		what = "query"
	}
	rows, err := s.db.QueryContext(ctx, "SELECT * FROM "+s.from+" WHERE 1=0")
	if err != nil {
		return fmt.Errorf("%s cannot be read: %w (check source.table or source.query, and that the user may SELECT from it)", what, err)
	}
	defer rows.Close()
	have, err := rows.Columns()
	if err != nil {
		return err
	}
	set := map[string]bool{}
	for _, c := range have {
		set[c] = true
	}
	var missing []string
	need := append(append([]string{}, s.spec.Columns...), s.spec.Cursor)
	for _, c := range need {
		if c != "" && !set[c] {
			missing = append(missing, strconv.Quote(c))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s has no column %s (it has: %s); fix the mapping in the config", what, strings.Join(missing, ", "), strings.Join(have, ", "))
	}
	return nil
}

func (s *source) Close() error {
	s.mu.Lock()
	for _, st := range s.stmts {
		st.Close()
	}
	s.mu.Unlock()
	return s.db.Close()
}

func (s *source) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stmts[query]; ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.stmts[query] = st
	return st, nil
}

func (s *source) Count(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM "+s.from).Scan(&n)
	return n, err
}

// args numbers placeholders as they are added.
type args struct {
	d    *dialect
	vals []any
}

func (a *args) add(v any) string {
	a.vals = append(a.vals, v)
	if a.d.dollar {
		return "$" + strconv.Itoa(len(a.vals))
	}
	return "?"
}

// after returns a condition "(cols) > (vals)" in the dialect's best form.
func (s *source) after(a *args, cols []string, vals []any) string {
	if s.d.rowCompare {
		ph := make([]string, len(vals))
		for i, v := range vals {
			ph[i] = a.add(v)
		}
		return "(" + strings.Join(cols, ", ") + ") > (" + strings.Join(ph, ", ") + ")"
	}
	// (c1 > v1) OR (c1 = v1 AND c2 > v2) OR ...
	var ors []string
	for i := range cols {
		var ands []string
		for j := 0; j < i; j++ {
			ands = append(ands, cols[j]+" = "+a.add(vals[j]))
		}
		ands = append(ands, cols[i]+" > "+a.add(vals[i]))
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	return "(" + strings.Join(ors, " OR ") + ")"
}

func (s *source) Read(ctx context.Context, from connectors.Position, limit int, fn func(connectors.Row) error) error {
	cur := s.d.quote(s.spec.Cursor)
	keys := make([]string, len(s.spec.Key))
	for i, k := range s.spec.Key {
		keys[i] = s.d.quote(k)
	}
	a := &args{d: s.d}
	var where, order string
	switch {
	case from.NullCursor:
		where = cur + " IS NULL"
		if from.Key != nil {
			where += " AND " + s.after(a, keys, from.Key)
		}
		order = strings.Join(keys, ", ")
	case from.Cursor == nil:
		where = cur + " IS NOT NULL"
		order = cur + ", " + strings.Join(keys, ", ")
	case from.Key == nil:
		where = cur + " >= " + a.add(from.Cursor)
		order = cur + ", " + strings.Join(keys, ", ")
	default:
		where = s.after(a, append([]string{cur}, keys...), append([]any{from.Cursor}, from.Key...))
		order = cur + ", " + strings.Join(keys, ", ")
	}
	q := "SELECT " + s.cols + " FROM " + s.from + " WHERE " + where + " ORDER BY " + order
	if limit > 0 {
		q += " LIMIT " + strconv.Itoa(limit)
	}
	st, err := s.stmt(ctx, q)
	if err != nil {
		return err
	}
	rows, err := st.QueryContext(ctx, a.vals...)
	if err != nil {
		return err
	}
	defer rows.Close()
	vals := make([]any, s.nScan)
	ptrs := make([]any, s.nScan)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	key := make([]any, len(s.keyIdx))
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for i, k := range s.keyIdx {
			key[i] = vals[k]
		}
		if err := fn(connectors.Row{Cursor: vals[s.curIdx], Key: key, Values: vals[:len(s.spec.Columns)]}); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (s *source) Keys(ctx context.Context, fn func(key []any) error) error {
	keys := make([]string, len(s.spec.Key))
	for i, k := range s.spec.Key {
		keys[i] = s.d.quote(k)
	}
	rows, err := s.db.QueryContext(ctx, "SELECT "+strings.Join(keys, ", ")+" FROM "+s.from)
	if err != nil {
		return err
	}
	defer rows.Close()
	vals := make([]any, len(keys))
	ptrs := make([]any, len(keys))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = string(b)
			}
		}
		if err := fn(vals); err != nil {
			return err
		}
	}
	return rows.Err()
}

var errNoDSN = errors.New("no DSN: set source.dsn_env or source.dsn_file")
