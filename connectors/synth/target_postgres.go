package synth

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// postgresTarget loads each department into its own schema, named by the department
// code, of the database the URL names, with COPY (pgx CopyFrom).
type postgresTarget struct {
	url  string
	conn *pgx.Conn
}

func openPostgres(ctx context.Context, url string) (Writer, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse the PostgreSQL URL %s: %w", Redact(url), err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %w; check the server is up and the URL's user, password and database", Redact(url), err)
	}
	return &postgresTarget{url: url, conn: conn}, nil
}

func (p *postgresTarget) String() string { return Redact(p.url) }

func (p *postgresTarget) Close() error { return p.conn.Close(context.Background()) }

func postgresType(c Column) string {
	switch c.Type {
	case Date:
		return "date"
	case Timestamp:
		return "timestamp"
	case Numeric:
		return fmt.Sprintf("numeric(%d,%d)", c.Size, c.Scale)
	case Float:
		return "double precision"
	}
	return fmt.Sprintf("varchar(%d)", c.Size)
}

// Create drops and recreates the table in one transaction with the load: readers see
// the old table or the new one, never an empty one. The primary key and the secondary
// indexes are added after the load, which builds each once instead of row by row.
func (p *postgresTarget) Create(ctx context.Context, t *Table) (TableWriter, error) {
	schema := pgx.Identifier{t.Dept}.Sanitize()
	qualified := pgx.Identifier{t.Dept, t.Name}.Sanitize()
	tx, err := p.conn.Begin(ctx)
	if err != nil {
		return nil, scrub(err, p.url)
	}
	var ddl []string
	ddl = append(ddl,
		"CREATE SCHEMA IF NOT EXISTS "+schema,
		"DROP TABLE IF EXISTS "+qualified,
		strings.Replace(createTableSQL(t, qualified, postgresType, ""), ",\n  PRIMARY KEY ("+strings.Join(t.Key(), ", ")+")", "", 1),
		"COMMENT ON TABLE "+qualified+" IS "+quoteLiteral(t.Comment),
	)
	for _, c := range t.Columns {
		ddl = append(ddl, "COMMENT ON COLUMN "+qualified+"."+c.Name+" IS "+quoteLiteral(c.Comment))
	}
	for _, q := range ddl {
		if _, err := tx.Exec(ctx, q); err != nil {
			tx.Rollback(ctx)
			return nil, fmt.Errorf("postgres %s: %w", qualified, scrub(err, p.url))
		}
	}
	return &postgresTable{tx: tx, t: t, url: p.url, ident: pgx.Identifier{t.Dept, t.Name}, qualified: qualified}, nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

type postgresTable struct {
	tx        pgx.Tx
	t         *Table
	url       string
	ident     pgx.Identifier
	qualified string
}

func (p *postgresTable) Write(ctx context.Context, rows [][]any) error {
	// Decimals travel as strings in rows; pgx's binary COPY wants a Numeric.
	for _, row := range rows {
		for k, c := range p.t.Columns {
			if s, ok := row[k].(string); ok && c.Type == Numeric {
				var n pgtype.Numeric
				if err := n.Scan(s); err != nil {
					return fmt.Errorf("postgres %s.%s: decimal %q: %w", p.qualified, c.Name, s, err)
				}
				row[k] = n
			}
		}
	}
	if _, err := p.tx.CopyFrom(ctx, p.ident, p.t.ColumnNames(), pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("postgres copy into %s: %w", p.qualified, scrub(err, p.url))
	}
	return nil
}

func (p *postgresTable) Commit(ctx context.Context) error {
	pk := "ALTER TABLE " + p.qualified + " ADD PRIMARY KEY (" + strings.Join(p.t.Key(), ", ") + ")"
	for _, q := range append([]string{pk}, indexSQL(p.t, p.qualified)...) {
		if _, err := p.tx.Exec(ctx, q); err != nil {
			p.Abort()
			return fmt.Errorf("postgres %s: %w", p.qualified, scrub(err, p.url))
		}
	}
	if err := p.tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres %s: commit: %w", p.qualified, scrub(err, p.url))
	}
	return nil
}

func (p *postgresTable) Abort() { p.tx.Rollback(context.Background()) }
