package synth

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// mysqlTarget loads each department into its own database, govx_<dept>, in utf8mb4,
// with multi-row INSERTs.
type mysqlTarget struct {
	url    string
	prefix string
	db     *sql.DB
}

// MySQLDatabase returns the database dept is loaded into on a MySQL/MariaDB target
// whose URL has no prefix parameter.
func MySQLDatabase(dept string) string { return DefaultMySQLPrefix + dept }

// DefaultMySQLPrefix starts every department database's name. A target URL may set
// another with ?prefix=…, so that tests and demos sharing one server stay apart.
const DefaultMySQLPrefix = "govx_"

// MySQLConfig turns mysql://user:pass@host:port/[db] into a driver config: UTF-8 in
// full (utf8mb4, so any Chinese character survives), times in UTC and parsed.
func MySQLConfig(target string) (*mysql.Config, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "mysql" || u.Host == "" {
		return nil, fmt.Errorf("MySQL target %s must look like mysql://user:pass@host:port/", Redact(target))
	}
	cfg := mysql.NewConfig()
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = u.Host + ":3306"
	}
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	cfg.Loc = time.UTC
	cfg.ParseTime = true
	if err := cfg.Apply(mysql.Charset("utf8mb4", "utf8mb4_unicode_ci")); err != nil {
		return nil, err
	}
	for k := range u.Query() {
		if k != "prefix" {
			return nil, fmt.Errorf("MySQL target %s: unknown parameter %q (only prefix is allowed)", Redact(target), k)
		}
	}
	return cfg, nil
}

func openMySQL(ctx context.Context, target string) (Writer, error) {
	cfg, err := MySQLConfig(target)
	if err != nil {
		return nil, err
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("MySQL target %s: %w", Redact(target), err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(2)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to MySQL at %s: %w; check the server is up and the URL's user and password", Redact(target), err)
	}
	prefix := DefaultMySQLPrefix
	if u, _ := url.Parse(target); u.Query().Has("prefix") {
		prefix = u.Query().Get("prefix")
		if !validIdent(prefix) {
			db.Close()
			return nil, fmt.Errorf("MySQL target prefix %q must be letters, digits and _", prefix)
		}
	}
	return &mysqlTarget{url: target, prefix: prefix, db: db}, nil
}

func (m *mysqlTarget) String() string { return Redact(m.url) }
func (m *mysqlTarget) Close() error   { return m.db.Close() }

// mysqlType uses DATETIME for timestamps: MySQL's TIMESTAMP converts through the
// session time zone and ends in 2038, and department systems keep local wall time.
func mysqlType(c Column) string {
	var s string
	switch c.Type {
	case Date:
		s = "DATE"
	case Timestamp:
		s = "DATETIME"
	case Numeric:
		s = fmt.Sprintf("DECIMAL(%d,%d)", c.Size, c.Scale)
	case Float:
		s = "DOUBLE"
	default:
		s = fmt.Sprintf("VARCHAR(%d)", c.Size)
	}
	return s + " COMMENT " + quoteLiteral(c.Comment)
}

// mysqlMaxParams stays under the protocol's 65535 placeholders per statement.
const mysqlMaxParams = 60000

func (m *mysqlTarget) Create(ctx context.Context, t *Table) (TableWriter, error) {
	dbName := "`" + m.prefix + t.Dept + "`"
	qualified := dbName + ".`" + t.Name + "`"
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return nil, scrub(err, m.url)
	}
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + dbName + " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
		"DROP TABLE IF EXISTS " + qualified,
		createTableSQL(t, qualified, mysqlType, " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci COMMENT="+quoteLiteral(t.Comment)),
		// The data is generated fresh: skip per-row uniqueness re-checks of secondary
		// structures for this session only.
		"SET SESSION unique_checks = 0",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			conn.Close()
			return nil, fmt.Errorf("mysql %s: %w", qualified, scrub(err, m.url))
		}
	}
	return &mysqlTable{conn: conn, t: t, url: m.url, qualified: qualified, perStmt: min(500, mysqlMaxParams/len(t.Columns))}, nil
}

type mysqlTable struct {
	conn      *sql.Conn
	t         *Table
	url       string
	qualified string
	perStmt   int
	full      *sql.Stmt
	args      []any
}

// Write loads one batch in one transaction: large enough to amortize the commit, small
// enough to keep InnoDB's undo log short.
func (m *mysqlTable) Write(ctx context.Context, rows [][]any) error {
	tx, err := m.conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("mysql %s: %w", m.qualified, scrub(err, m.url))
	}
	for len(rows) > 0 {
		n := min(len(rows), m.perStmt)
		m.args = m.args[:0]
		for _, row := range rows[:n] {
			m.args = append(m.args, row...)
		}
		if n == m.perStmt {
			if m.full == nil {
				if m.full, err = m.conn.PrepareContext(ctx, insertSQL(m.qualified, m.t, n)); err != nil {
					tx.Rollback()
					return fmt.Errorf("mysql %s: prepare insert: %w", m.qualified, scrub(err, m.url))
				}
			}
			_, err = tx.StmtContext(ctx, m.full).ExecContext(ctx, m.args...)
		} else {
			_, err = tx.ExecContext(ctx, insertSQL(m.qualified, m.t, n), m.args...)
		}
		if err != nil {
			tx.Rollback()
			return fmt.Errorf("mysql insert into %s: %w", m.qualified, scrub(err, m.url))
		}
		rows = rows[n:]
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("mysql %s: commit: %w", m.qualified, scrub(err, m.url))
	}
	return nil
}

func (m *mysqlTable) Commit(ctx context.Context) error {
	if m.full != nil {
		m.full.Close()
	}
	_, err := m.conn.ExecContext(ctx, "SET SESSION unique_checks = 1")
	// Secondary indexes after the load: InnoDB then builds each by sorting, once.
	for _, q := range indexSQL(m.t, m.qualified) {
		if err != nil {
			break
		}
		_, err = m.conn.ExecContext(ctx, q)
	}
	if cerr := m.conn.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("mysql %s: %w", m.qualified, scrub(err, m.url))
	}
	return nil
}

func (m *mysqlTable) Abort() {
	if m.full != nil {
		m.full.Close()
	}
	m.conn.Close()
}

func validIdent(s string) bool {
	for _, r := range s {
		if !(r == '_' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return s != ""
}
