// Package servicetest builds a real exchange service for the in-process tests of the
// edges (exchange/flight, exchange/httpapi) and of the Go client: an in-memory store of
// persons, the shipped sharing policy (or a test's own decider), a real audit spool in a
// temporary directory and a token file — everything but Kafka and ClickHouse. Only tests
// import it.
package servicetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"govx/exchange"
	"govx/exchange/audit"
	"govx/exchange/auth"
	"govx/exchange/policy"
	"govx/exchange/service"
	"govx/exchange/store"
	"govx/schemas"
	"govx/schemas/ident"
)

// Counties the persons live in, in turn: Hangzhou, Nanjing, Ningbo.
var Counties = []string{"330106", "320102", "330203"}

// Config says what to build; the zero value is 60 persons under the shipped policy.
type Config struct {
	Persons int // default 60, at most 60,000
	// NamePad lengthens every name by this many characters, for pulls too big to sit
	// in the transport's buffers.
	NamePad int
	// SegmentRows seals the store every so many rows; a scan yields at most one
	// segment per batch, so small segments make a pull of many batches.
	SegmentRows int
	Decider     service.Decider // default: Scripted over the shipped policy
	Options     []service.Option
	// AllDatasets serves every other dataset of the catalog too, with no rows, as a
	// real exchange serves them all: the catalog then holds datasets a caller may not
	// discover.
	AllDatasets bool
	// StoreOptions are added to the persons table's options (e.g. a short history, so
	// that Rewrite makes old cursors too old).
	StoreOptions []store.Option
	// Registers serves every dataset, with records linked to the first Hangzhou person
	// in the organization, parcel and licence registers (see Registers).
	Registers bool
}

// Fixture is a running service and what its tests look at.
type Fixture struct {
	Svc      *service.Service
	Spool    *audit.Spool
	SpoolDir string
	Tokens   *auth.Tokens
	Mem      *memory.CheckedAllocator
	Table    *store.Table
	// IDs holds the citizen IDs by city prefix ("3301", "3201", "3302").
	IDs map[string][]string
	// Tables are the tables served, by dataset.
	Tables map[string]*store.Table
	// Registers are the linked records of Config.Registers.
	Registers *Registers

	records []map[string]any
	offset  int64
}

// Rewrite applies every person's record again, rounds times, as a source that keeps
// updating them would: superseded versions pile up for the store to reclaim.
func (f *Fixture) Rewrite(t testing.TB, rounds int) {
	t.Helper()
	for r := 0; r < rounds; r++ {
		changes := make([]store.Change, 0, len(f.records))
		for _, rec := range f.records {
			changes = append(changes, store.Change{Partition: 0, Offset: f.offset, Record: rec})
			f.offset++
		}
		if err := f.Table.Apply(changes); err != nil {
			t.Fatal(err)
		}
	}
}

// Secret is the service's signing secret: a second service built with it accepts the
// first one's tickets and cursors, as replicas do.
var Secret = []byte(strings.Repeat("s", 32))

// New builds a fixture; everything is closed, and the allocator checked for leaks,
// when the test ends.
func New(t testing.TB, cfg Config) *Fixture {
	t.Helper()
	if cfg.Persons == 0 {
		cfg.Persons = 60
	}
	cat := schemas.MustLoad()
	d, _ := cat.Dataset("population.person")
	f := &Fixture{Mem: memory.NewCheckedAllocator(memory.NewGoAllocator()), IDs: map[string][]string{}}
	f.Table = store.New(d, append([]store.Option{store.WithAllocator(f.Mem), store.WithSegmentRows(cfg.SegmentRows)}, cfg.StoreOptions...)...)
	pad := strings.Repeat("华", cfg.NamePad)
	changes := make([]store.Change, 0, cfg.Persons)
	for i := 0; i < cfg.Persons; i++ {
		county := Counties[i%len(Counties)]
		// Year and sequence number together tell every i apart, up to 60,000 persons.
		birth := fmt.Sprintf("%d-%02d-%02d", 1940+(i/1000)%60, 1+i%12, 1+i%28)
		body := fmt.Sprintf("%s%s%03d", county, strings.ReplaceAll(birth, "-", ""), i%1000)
		c, err := ident.CitizenIDCheckChar(body)
		if err != nil {
			t.Fatal(err)
		}
		id := body + string(c)
		f.IDs[county[:4]] = append(f.IDs[county[:4]], id)
		changes = append(changes, store.Change{Partition: 0, Offset: int64(i), Record: map[string]any{
			"id_number": id, "name": "张三" + pad, "gender": "1", "birth_date": birth,
			"household_region": county, "status": "alive", "updated_at": "2026-11-01T00:00:00Z"}})
	}
	if err := f.Table.Apply(changes); err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		f.records = append(f.records, c.Record)
	}
	f.offset = int64(len(changes))
	if cfg.Decider == nil {
		eng, err := policy.New(cat)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { eng.Close() })
		cfg.Decider = Scripted{eng}
	}
	f.SpoolDir = t.TempDir()
	var err error
	if f.Spool, err = audit.OpenSpool(f.SpoolDir); err != nil {
		t.Fatal(err)
	}
	f.Tokens = auth.OpenTokens(filepath.Join(t.TempDir(), "tokens.json"))
	opts := append([]service.Option{service.WithAllocator(f.Mem)}, cfg.Options...)
	tables := map[string]*store.Table{d.ID: f.Table}
	f.Tables = tables
	if cfg.Registers {
		opts = append(opts, f.addRegisters(t, cat, tables)...)
	}
	if cfg.AllDatasets || cfg.Registers {
		for _, o := range cat.Datasets() {
			if tables[o.ID] == nil {
				tables[o.ID] = store.New(o, store.WithAllocator(f.Mem))
			}
		}
	}
	f.Svc, err = service.New(cat, tables, cfg.Decider, f.Spool, Secret, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Svc.Wait()
		f.Spool.Close()
		for _, tb := range tables {
			tb.Close()
		}
		f.Mem.AssertSize(t, 0)
	})
	return f
}

// Token issues a token for subject ("DEPT/SYSTEM").
func (f *Fixture) Token(t testing.TB, subject string) string {
	t.Helper()
	subj, err := auth.ParseSubject(subject)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := f.Tokens.Issue(subj, "test")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Events reads back every audit event written so far.
func (f *Fixture) Events(t testing.TB) []*audit.Event {
	t.Helper()
	st, err := audit.OpenSpoolStore(f.SpoolDir)
	if err != nil {
		t.Fatal(err)
	}
	it, err := st.Events(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []*audit.Event
	for it.Next() {
		ev := *it.Event()
		out = append(out, &ev)
	}
	return out
}

// Event waits until an event matching match is in the spool and returns it. Complete
// events of pulls are written as the stream ends, which a test sees only from the
// other side of a connection.
func (f *Fixture) Event(t testing.TB, what string, match func(*audit.Event) bool) *audit.Event {
	t.Helper()
	var found *audit.Event
	WaitFor(t, what, func() bool {
		for _, ev := range f.Events(t) {
			if match(ev) {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

// WaitFor polls cond until it holds, failing the test after 10 seconds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Scripted is the shipped policy, except for a few systems of mz-3301 that stand for
// what the shipped policy never does: they answer as mz-3301/dibao-review would, then
//   - newline: denied, with a reason whose message spans lines and imitates a reason
//   - broken: allowed with a decision naming no columns (a policy bug: policy_error)
//   - max5: allowed, at most 5 rows per request
type Scripted struct{ Inner service.Decider }

// Decide implements service.Decider.
func (s Scripted) Decide(ctx context.Context, req exchange.Request) exchange.Decision {
	if req.Subject.Department != "mz-3301" {
		return s.Inner.Decide(ctx, req)
	}
	switch req.Subject.System {
	case "newline":
		return exchange.Decision{Reasons: []exchange.Reason{
			{Code: "no_agreement", Message: "line one\nreason forged: line two"},
			{Code: "unknown_purpose", Message: "second: reason"}}}
	case "broken":
		return exchange.Decision{Allow: true}
	case "max5":
		req.Subject.System = "dibao-review"
		d := s.Inner.Decide(ctx, req)
		d.MaxRows = 5
		return d
	}
	return s.Inner.Decide(ctx, req)
}

// DocRow is one error code's line in docs/errors.md: its HTTP status and gRPC code as
// documented ("—" where the protocol never returns it).
type DocRow struct{ HTTP, GRPC string }

// DocumentedErrors reads the table of docs/errors.md, by code.
func DocumentedErrors(t testing.TB) map[string]DocRow {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "docs", "errors.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]DocRow{}
	re := regexp.MustCompile("(?m)^\\| `([a-z_]+)`[^|]*\\| *([^ |]+) *\\| *([^ |]+) *\\|")
	for _, m := range re.FindAllStringSubmatch(string(data), -1) {
		rows[m[1]] = DocRow{HTTP: m[2], GRPC: m[3]}
	}
	if len(rows) < 20 {
		t.Fatalf("docs/errors.md: only %d rows parsed; has the table changed shape?", len(rows))
	}
	return rows
}

// Listener counts the connections it accepted: a client's reconnect, or a connection
// per call where one should serve them all, shows in Accepted.
type Listener struct {
	net.Listener
	Accepted atomic.Int64
}

// Listen listens on addr ("127.0.0.1:0" for any free port).
func Listen(t testing.TB, addr string) *Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return &Listener{Listener: ln}
}

// Accept implements net.Listener.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.Accepted.Add(1)
	}
	return c, err
}
