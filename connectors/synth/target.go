package synth

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Writer is a target database (or folder) that department tables are loaded into.
// Implementations live one per file: target_sqlite.go, target_postgres.go,
// target_mysql.go, target_csv.go.
type Writer interface {
	// Create replaces t in the target (drop, then create empty) and returns the loader
	// for its rows.
	Create(ctx context.Context, t *Table) (TableWriter, error)
	// Close releases the target's connections.
	Close() error
	// String describes the target for logs; it never contains a password.
	String() string
}

// TableWriter loads one table's rows, in batches, in order.
type TableWriter interface {
	Write(ctx context.Context, rows [][]any) error
	// Commit makes the loaded rows visible and final.
	Commit(ctx context.Context) error
	// Abort gives up, leaving the table empty or partly loaded.
	Abort()
}

// ErrTarget reports a target string that names no known kind.
var ErrTarget = errors.New("unknown target: use sqlite:DIR, csv:DIR, postgres://user:pass@host:port/db or mysql://user:pass@host:port/")

// Open opens the target named by a `govx gen --to` string:
//
//	sqlite:DIR                      DIR/<dept>.db, one SQLite file per department
//	csv:DIR                         DIR/<dept>/<table>.csv with a header row
//	postgres://user:pass@host/db    one schema per department, named by its code
//	mysql://user:pass@host:port/    one database per department, govx_<dept>
//	                                (?prefix=P names them P<dept> instead)
//
// Errors never contain the password.
func Open(ctx context.Context, target string) (Writer, error) {
	switch {
	case strings.HasPrefix(target, "sqlite:"):
		return openSQLite(strings.TrimPrefix(target, "sqlite:"))
	case strings.HasPrefix(target, "csv:"):
		return openCSV(strings.TrimPrefix(target, "csv:"))
	case strings.HasPrefix(target, "postgres://"), strings.HasPrefix(target, "postgresql://"):
		w, err := openPostgres(ctx, target)
		return w, scrub(err, target)
	case strings.HasPrefix(target, "mysql://"):
		w, err := openMySQL(ctx, target)
		return w, scrub(err, target)
	}
	return nil, fmt.Errorf("%w (got %q)", ErrTarget, Redact(target))
}

// Redact returns target with any password replaced by "xxxxx", for logs and errors.
func Redact(target string) string {
	if !strings.Contains(target, "://") {
		return target
	}
	if u, err := url.Parse(target); err == nil {
		return u.Redacted()
	}
	// Unparseable: hide all credentials rather than guess where the password ends.
	scheme, rest, _ := strings.Cut(target, "://")
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = "xxxxx" + rest[at:]
	}
	return scheme + "://" + rest
}

// password returns the password in a URL target, if any.
func password(target string) string {
	if u, err := url.Parse(target); err == nil && u.User != nil {
		p, _ := u.User.Password()
		return p
	}
	return ""
}

// scrub removes the target's password (and the raw target) from err's text: drivers
// sometimes echo their connection string, and secrets must never reach a log.
func scrub(err error, target string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	// Set the redacted target aside first, so that scrubbing the password does not
	// also mangle a user or database name that happens to contain it.
	const mark = "\x00target\x00"
	clean := strings.ReplaceAll(strings.ReplaceAll(msg, target, mark), Redact(target), mark)
	if p := password(target); p != "" {
		clean = strings.ReplaceAll(clean, p, "xxxxx")
		if esc := url.QueryEscape(p); esc != p {
			clean = strings.ReplaceAll(clean, esc, "xxxxx")
		}
	}
	clean = strings.ReplaceAll(clean, mark, Redact(target))
	if clean == msg {
		return err
	}
	return &scrubbedError{msg: clean, err: err}
}

// scrubbedError keeps the cause for errors.Is/As while showing only the clean text.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// Discard returns a Writer that keeps nothing: the generator's own speed, the ceiling
// any target can reach, for benchmarks.
func Discard() Writer { return discard{} }

type discard struct{}

func (discard) Create(context.Context, *Table) (TableWriter, error) { return discardTable{}, nil }
func (discard) Close() error                                        { return nil }
func (discard) String() string                                      { return "discard" }

type discardTable struct{}

func (discardTable) Write(context.Context, [][]any) error { return nil }
func (discardTable) Commit(context.Context) error         { return nil }
func (discardTable) Abort()                               {}

// Text forms shared by targets that store dates and times as text (SQLite, CSV).
const (
	textDate      = time.DateOnly
	textTimestamp = time.DateTime
)
