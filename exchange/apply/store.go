package apply

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // the "sqlite" database/sql driver

	"govx/exchange"
)

// migrations are the schema, in order; a database records how many it has applied
// (apply_migrations) and applies the rest at open, each in its own transaction. The SQL
// is the common ground of SQLite and PostgreSQL: TEXT and BIGINT, no dialect features.
// The whole application is kept as JSON in body; the columns beside it are what lists
// filter and sort on.
var migrations = []string{
	`CREATE TABLE apply_counters (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
CREATE TABLE applications (
  id TEXT PRIMARY KEY,
  applicant TEXT NOT NULL,
  dataset TEXT NOT NULL,
  provider TEXT NOT NULL,
  state TEXT NOT NULL,
  due_ms BIGINT,
  body TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL,
  version BIGINT NOT NULL);
CREATE INDEX applications_by_state ON applications (state, due_ms);
CREATE TABLE corrections (
  id TEXT PRIMARY KEY,
  flagger TEXT NOT NULL,
  dataset TEXT NOT NULL,
  provider TEXT NOT NULL,
  state TEXT NOT NULL,
  due_ms BIGINT,
  body TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL,
  version BIGINT NOT NULL);
CREATE INDEX corrections_by_state ON corrections (state, due_ms);
CREATE TABLE steps (
  subject_id TEXT NOT NULL,
  seq BIGINT NOT NULL,
  at_ms BIGINT NOT NULL,
  department TEXT NOT NULL,
  system TEXT NOT NULL,
  action TEXT NOT NULL,
  from_state TEXT NOT NULL,
  to_state TEXT NOT NULL,
  detail TEXT NOT NULL,
  PRIMARY KEY (subject_id, seq))`,
}

// Store keeps applications, corrections and their histories in one SQL database.
type Store struct {
	db *sql.DB
	pg bool
}

// OpenStore opens the database: a postgres:// or postgresql:// URL is PostgreSQL,
// anything else a SQLite file path (created if missing). Missing migrations are applied.
func OpenStore(ctx context.Context, dsn string) (*Store, error) {
	s := &Store{}
	var err error
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		s.pg = true
		s.db, err = sql.Open("pgx", dsn)
	} else {
		// WAL and a busy timeout: readers (lists) never wait for a writer, and two writers
		// queue instead of failing. One connection writes at a time anyway.
		s.db, err = sql.Open("sqlite", "file:"+dsn+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
		if err == nil {
			s.db.SetMaxOpenConns(1)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("applications database: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("applications database: %w", err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS apply_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)`); err != nil {
		return err
	}
	for i, m := range migrations {
		v := i + 1
		err := s.tx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM apply_migrations WHERE version = ?`), v).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range strings.Split(m, ";\n") {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("migration %d: %w", v, err)
				}
			}
			_, err := tx.ExecContext(ctx, s.q(`INSERT INTO apply_migrations (version, applied_ms) VALUES (?, ?)`), v, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// q rewrites ? placeholders as PostgreSQL's $n.
func (s *Store) q(query string) string {
	if !s.pg {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// tx runs fn in a transaction, committed when fn returns nil.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// nextID returns the next id of a kind for a year: APP-2026-000001, COR-2026-000001.
func (s *Store) nextID(ctx context.Context, tx *sql.Tx, prefix string, year int) (string, error) {
	name := fmt.Sprintf("%s-%d", prefix, year)
	res, err := tx.ExecContext(ctx, s.q(`UPDATE apply_counters SET n = n + 1 WHERE name = ?`), name)
	if err != nil {
		return "", err
	}
	if k, _ := res.RowsAffected(); k == 0 {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO apply_counters (name, n) VALUES (?, 1)`), name); err != nil {
			return "", err
		}
	}
	var n int64
	if err := tx.QueryRowContext(ctx, s.q(`SELECT n FROM apply_counters WHERE name = ?`), name).Scan(&n); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s-%06d", name, n), nil
}

func dueMS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// errStale is a write that lost a race: the record changed since it was read.
var errStale = exchange.E(exchange.Unavailable, "stale_state", "the record changed while this step was taken; read it again and retry")

func (s *Store) putApplication(ctx context.Context, tx *sql.Tx, a *Application, insert bool) error {
	body, err := json.Marshal(withoutSteps(a))
	if err != nil {
		return err
	}
	if insert {
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO applications (id, applicant, dataset, provider, state, due_ms, body, created_ms, updated_ms, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			a.ID, a.Applicant, a.Dataset, a.Provider, string(a.State), dueMS(a.Due), string(body), a.Submitted.UnixMilli(), a.Updated.UnixMilli(), a.Version)
		return err
	}
	res, err := tx.ExecContext(ctx, s.q(`UPDATE applications SET state = ?, due_ms = ?, body = ?, updated_ms = ?, version = ? WHERE id = ? AND version = ?`),
		string(a.State), dueMS(a.Due), string(body), a.Updated.UnixMilli(), a.Version, a.ID, a.Version-1)
	if err != nil {
		return err
	}
	if k, _ := res.RowsAffected(); k != 1 {
		return errStale
	}
	return nil
}

func withoutSteps(a *Application) *Application {
	c := *a
	c.Steps, c.Overdue = nil, false
	return &c
}

func (s *Store) putCorrection(ctx context.Context, tx *sql.Tx, c *Correction, insert bool) error {
	cc := *c
	cc.Steps, cc.Overdue = nil, false
	body, err := json.Marshal(&cc)
	if err != nil {
		return err
	}
	if insert {
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO corrections (id, flagger, dataset, provider, state, due_ms, body, created_ms, updated_ms, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			c.ID, c.Flagger, c.Dataset, c.Provider, string(c.State), dueMS(c.Due), string(body), c.Flagged.UnixMilli(), c.Updated.UnixMilli(), c.Version)
		return err
	}
	res, err := tx.ExecContext(ctx, s.q(`UPDATE corrections SET state = ?, due_ms = ?, body = ?, updated_ms = ?, version = ? WHERE id = ? AND version = ?`),
		string(c.State), dueMS(c.Due), string(body), c.Updated.UnixMilli(), c.Version, c.ID, c.Version-1)
	if err != nil {
		return err
	}
	if k, _ := res.RowsAffected(); k != 1 {
		return errStale
	}
	return nil
}

func (s *Store) addStep(ctx context.Context, tx *sql.Tx, id string, seq int64, st Step) error {
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO steps (subject_id, seq, at_ms, department, system, action, from_state, to_state, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		id, seq, st.At.UnixMilli(), st.By.Department, st.By.System, st.Action, st.From, st.To, st.Detail)
	return err
}

func (s *Store) steps(ctx context.Context, q queryer, id string) ([]Step, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT at_ms, department, system, action, from_state, to_state, detail FROM steps WHERE subject_id = ? ORDER BY seq`), id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Step
	for rows.Next() {
		var st Step
		var ms int64
		if err := rows.Scan(&ms, &st.By.Department, &st.By.System, &st.Action, &st.From, &st.To, &st.Detail); err != nil {
			return nil, err
		}
		st.At = time.UnixMilli(ms).UTC()
		out = append(out, st)
	}
	return out, rows.Err()
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) getApplication(ctx context.Context, q queryer, id string) (*Application, error) {
	var body string
	err := q.QueryRowContext(ctx, s.q(`SELECT body FROM applications WHERE id = ?`), id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, exchange.E(exchange.NotFound, "application_not_found", "no application "+strconv.Quote(id))
	}
	if err != nil {
		return nil, err
	}
	var a Application
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		return nil, fmt.Errorf("application %s: stored body: %w", id, err)
	}
	return &a, nil
}

func (s *Store) getCorrection(ctx context.Context, q queryer, id string) (*Correction, error) {
	var body string
	err := q.QueryRowContext(ctx, s.q(`SELECT body FROM corrections WHERE id = ?`), id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, exchange.E(exchange.NotFound, "correction_not_found", "no correction "+strconv.Quote(id))
	}
	if err != nil {
		return nil, err
	}
	var c Correction
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		return nil, fmt.Errorf("correction %s: stored body: %w", id, err)
	}
	return &c, nil
}

// Filter selects applications or corrections in lists. Zero fields select all.
type Filter struct {
	State State
	// Party, when set, keeps what this department applied for (flagged) or provides.
	Party string
	// Overdue keeps only those whose clock ran out at Now.
	Overdue bool
	Now     time.Time
}

func (f Filter) where(partyCols ...string) (string, []any) {
	var conds []string
	var args []any
	if f.State != "" {
		conds = append(conds, "state = ?")
		args = append(args, string(f.State))
	}
	if f.Party != "" {
		var ors []string
		for _, c := range partyCols {
			ors = append(ors, c+" = ?")
			args = append(args, f.Party)
		}
		conds = append(conds, "("+strings.Join(ors, " OR ")+")")
	}
	if f.Overdue {
		conds = append(conds, "due_ms IS NOT NULL AND due_ms <= ?")
		args = append(args, f.Now.UnixMilli())
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

func (s *Store) listApplications(ctx context.Context, q queryer, f Filter) ([]*Application, error) {
	where, args := f.where("applicant", "provider")
	return listBodies[Application](ctx, q, s.q(`SELECT body FROM applications`+where+` ORDER BY id`), args)
}

func (s *Store) listCorrections(ctx context.Context, q queryer, f Filter) ([]*Correction, error) {
	where, args := f.where("flagger", "provider")
	return listBodies[Correction](ctx, q, s.q(`SELECT body FROM corrections`+where+` ORDER BY id`), args)
}

// listBodies decodes the JSON body column of every row query returns: applications and
// corrections are stored the same way.
func listBodies[T any](ctx context.Context, q queryer, query string, args []any) ([]*T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*T
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		v := new(T)
		if err := json.Unmarshal([]byte(body), v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// countOverdue counts open applications and corrections whose clock ran out at now.
func (s *Store) countOverdue(ctx context.Context, now time.Time) (apps, fixes int64, err error) {
	if err = s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM applications WHERE due_ms IS NOT NULL AND due_ms <= ?`), now.UnixMilli()).Scan(&apps); err != nil {
		return
	}
	err = s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM corrections WHERE due_ms IS NOT NULL AND due_ms <= ?`), now.UnixMilli()).Scan(&fixes)
	return
}
