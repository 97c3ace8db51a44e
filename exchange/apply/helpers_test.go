package apply

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"govx/exchange"
	"govx/exchange/audit"
	"govx/exchange/policy"
	"govx/internal/testenv"
	"govx/policies"
	"govx/schemas"
)

// recorder is an Auditor keeping events in memory; fail makes Append fail, as a full
// or broken spool does.
type recorder struct {
	mu     sync.Mutex
	events []*audit.Event
	fail   bool
}

func (r *recorder) Append(_ context.Context, ev *audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("spool not writable")
	}
	c := *ev
	r.events = append(r.events, &c)
	return nil
}

func (r *recorder) last() *audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return nil
	}
	return r.events[len(r.events)-1]
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// harness is a Service over a real policy directory and engine, one database, a
// recording auditor and a settable clock.
type harness struct {
	t      *testing.T
	svc    *Service
	engine *policy.Engine
	dir    string
	audit  *recorder
	clock  *clock
	store  *Store
	cat    *schemas.Catalog
}

func cst(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02T15:04", s, chinaZone)
	if err != nil {
		panic(err)
	}
	return t
}

func newHarness(t *testing.T, dsn string) *harness {
	t.Helper()
	return newHarnessAt(t, filepath.Join(t.TempDir(), "policies"), dsn)
}

// newHarnessAt is newHarness over the policy directory dir, created from the shipped
// policy when missing (a restarted exchange finds it as it was left).
func newHarnessAt(t *testing.T, dir, dsn string) *harness {
	t.Helper()
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		if err := policies.CopyEmbedded(dir); err != nil {
			t.Fatal(err)
		}
	}
	cat, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := policy.New(cat, policy.WithDir(dir), policy.WithPollInterval(time.Hour), policy.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	st, err := OpenStore(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	proc, err := policies.LoadProcess(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, engine: eng, dir: dir, audit: &recorder{}, clock: &clock{t: cst("2026-03-02T10:00")}, store: st, cat: cat}
	h.svc, err = New(context.Background(), Config{Store: st, Audit: h.audit, Policy: eng, Catalog: cat, Process: proc,
		PolicyDir: dir, Now: h.clock.now, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// eachBackend runs fn against SQLite (a file in the test's directory) and PostgreSQL
// (a schema of its own in GOVX_TEST_POSTGRES, dropped afterwards).
func eachBackend(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, filepath.Join(t.TempDir(), "applications.db")) })
	t.Run("postgres", func(t *testing.T) { fn(t, postgresSchema(t)) })
}

func postgresSchema(t *testing.T) string {
	t.Helper()
	base := testenv.Require(t, testenv.Postgres)
	var b [4]byte
	rand.Read(b[:])
	schema := "govx_apply_" + hex.EncodeToString(b[:])
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Exec("DROP SCHEMA " + schema + " CASCADE")
		db.Close()
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

var (
	applicant = Caller{Subject: exchange.Subject{Department: "zj-3205", System: "housing-security"}, ClientAddr: "127.0.0.1:1"}
	authority = Caller{Subject: exchange.Subject{Department: "zwfw", System: "sharing-review"}}
	gab       = Caller{Subject: exchange.Subject{Department: "gab", System: "steward"}}
	scjgj     = Caller{Subject: exchange.Subject{Department: "scjgj", System: "steward"}}
)

// housing is the README's application: the Suzhou housing bureau asks for population data.
func housing() Request {
	return Request{Dataset: "population.person", Columns: []string{"id_number", "name", "household_region", "status"},
		Purpose: "housing-security-qualification", LegalBasis: "《城镇住房保障条例》：住房保障资格审核须核查申请人户籍",
		Scenario: "住房保障资格审核", CaseVolume: 12000, Access: []string{"read", "lookup"},
		ValidFrom: "2026-03-01", ValidUntil: "2027-02-28", Attachments: []string{"苏建保〔2026〕12号"}}
}

func (h *harness) submit(r Request) *Application {
	h.t.Helper()
	a, err := h.svc.Submit(context.Background(), applicant, r)
	if err != nil {
		h.t.Fatalf("submit: %v", err)
	}
	return a
}

func (h *harness) must(a *Application, err error) *Application {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

// decide asks the exchange's policy engine whether the applicant may pull.
func (h *harness) decide(at time.Time) exchange.Decision {
	return h.engine.Decide(context.Background(), exchange.Request{Subject: applicant.Subject, Action: exchange.ActionRead,
		Dataset: "population.person", Purpose: "housing-security-qualification", Time: at})
}

func (h *harness) agreementsFile() string {
	raw, err := os.ReadFile(filepath.Join(h.dir, AgreementsFile))
	if err != nil {
		h.t.Fatal(err)
	}
	return string(raw)
}

// reasonCode returns the code a refusal carries: the policy's reason for a
// permission_denied, the error's own code otherwise.
func reasonCode(err error) string {
	xe, ok := errors.AsType[*exchange.Error](err)
	if !ok {
		return "not an exchange error: " + err.Error()
	}
	if len(xe.Reasons) > 0 {
		return xe.Reasons[0].Code
	}
	return xe.Code
}
