package sqlsrc

import (
	"context"
	"database/sql"
	"strings"

	"govx/connectors"
)

// CursorIndex tells whether the source table has an index whose leading columns are
// the cursor then the key, in that order: the order every page and every poll reads
// in, so with it a poll is an index range scan over what changed, and without it each
// poll scans and sorts the whole table. A query source cannot be looked into: nil.
func (s *source) CursorIndex(ctx context.Context) (*connectors.IndexAdvice, error) {
	if s.spec.Table == "" || s.d.indexes == nil {
		return nil, nil
	}
	want := []string{s.spec.Cursor}
	for _, k := range s.spec.Key {
		if k != s.spec.Cursor {
			want = append(want, k)
		}
	}
	indexes, err := s.d.indexes(ctx, s.d, s.db, s.spec.Table)
	if err != nil {
		return nil, err
	}
	adv := &connectors.IndexAdvice{Table: s.spec.Table, Columns: want}
	for _, ix := range indexes {
		if s.d.leads(ix.cols, want) {
			adv.Index = ix.name
			return adv, nil
		}
	}
	adv.Create = s.d.createIndex(s.spec.Table, want)
	return adv, nil
}

// index is one index of a table: its name and key columns in order ("" for an
// expression or a column prefix, which cannot serve the order).
type index struct {
	name string
	cols []string
}

// leads reports whether an index on cols serves ORDER BY want.
func (d *dialect) leads(cols, want []string) bool {
	if len(cols) < len(want) {
		return false
	}
	for i, w := range want {
		// PostgreSQL compares quoted identifiers exactly; MySQL and SQLite column
		// names are case-insensitive.
		if cols[i] != w && (d.caseSensitive || !strings.EqualFold(cols[i], w)) {
			return false
		}
	}
	return true
}

// createIndex is the statement that creates the recommended index, named as govx gen
// names it (<table>_<columns>).
func (d *dialect) createIndex(table string, cols []string) string {
	base := table[strings.LastIndex(table, ".")+1:]
	name := base + "_" + strings.Join(cols, "_")
	if len(name) > 60 { // identifier limits: PostgreSQL 63 bytes, MySQL 64
		name = name[:60]
	}
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = d.quote(c)
	}
	verb := "CREATE INDEX "
	if d.name == "postgres" {
		verb = "CREATE INDEX CONCURRENTLY " // builds without blocking the department's writes
	}
	return verb + d.quote(name) + " ON " + d.quoteTable(table) + " (" + strings.Join(quoted, ", ") + ");"
}

// collect reads (index name, column) rows, ordered by index then position, into indexes.
func collect(rows *sql.Rows, err error) ([]index, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []index
	for rows.Next() {
		var name, col string
		if err := rows.Scan(&name, &col); err != nil {
			return nil, err
		}
		if n := len(out); n == 0 || out[n-1].name != name {
			out = append(out, index{name: name})
		}
		out[len(out)-1].cols = append(out[len(out)-1].cols, col)
	}
	return out, rows.Err()
}

// postgresIndexes lists the valid, non-partial indexes of a table by their key columns
// (not INCLUDE columns).
func postgresIndexes(ctx context.Context, d *dialect, db *sql.DB, table string) ([]index, error) {
	return collect(db.QueryContext(ctx, `SELECT c.relname, COALESCE(a.attname, '')
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
WHERE i.indrelid = $1::regclass AND i.indpred IS NULL AND i.indisvalid AND k.ord <= i.indnkeyatts
ORDER BY c.relname, k.ord`, d.quoteTable(table)))
}

// mysqlIndexes lists a table's indexes from information_schema; a table without a
// database part is in the connection's database.
func mysqlIndexes(ctx context.Context, _ *dialect, db *sql.DB, table string) ([]index, error) {
	var schema any
	if i := strings.LastIndex(table, "."); i >= 0 {
		schema, table = table[:i], table[i+1:]
	}
	return collect(db.QueryContext(ctx, `SELECT INDEX_NAME, CASE WHEN SUB_PART IS NULL THEN COALESCE(COLUMN_NAME, '') ELSE '' END
FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?
ORDER BY INDEX_NAME, SEQ_IN_INDEX`, schema, table))
}

// sqliteIndexes lists a table's non-partial indexes (including the primary key's).
func sqliteIndexes(ctx context.Context, _ *dialect, db *sql.DB, table string) ([]index, error) {
	schema := "main"
	if i := strings.LastIndex(table, "."); i >= 0 {
		schema, table = table[:i], table[i+1:]
	}
	return collect(db.QueryContext(ctx, `SELECT il.name, COALESCE(ii.name, '')
FROM pragma_index_list(?, ?) AS il, pragma_index_info(il.name, ?) AS ii
WHERE il.partial = 0
ORDER BY il.name, ii.seqno`, table, schema, schema))
}
