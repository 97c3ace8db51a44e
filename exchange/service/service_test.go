package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"govx/exchange"
	"govx/exchange/audit"
	"govx/exchange/policy"
	"govx/exchange/store"
	"govx/policies"
	"govx/schemas"
	"govx/schemas/ident"
)

// fixture is a service over an in-memory store of persons, the shipped policy and a
// real audit spool in a temporary directory: everything but Kafka and the edges.
type fixture struct {
	svc   *Service
	spool *audit.Spool
	dir   string
	mem   *memory.CheckedAllocator
	ids   map[string][]string // city prefix -> citizen IDs
}

func newFixture(t *testing.T, opts ...Option) *fixture {
	t.Helper()
	return newFixtureWith(t, nil, opts...)
}

// newFixtureWith is newFixture deciding by the policy bundle b (nil: the shipped one).
func newFixtureWith(t *testing.T, b *policies.Bundle, opts ...Option) *fixture {
	t.Helper()
	cat := schemas.MustLoad()
	d, _ := cat.Dataset("population.person")
	f := &fixture{mem: memory.NewCheckedAllocator(memory.NewGoAllocator()), ids: map[string][]string{}}
	tbl := store.New(d, store.WithAllocator(f.mem))
	var changes []store.Change
	for i := 0; i < 60; i++ {
		county := []string{"330106", "320102", "330203"}[i%3]
		body := fmt.Sprintf("%s1980%02d%02d%03d", county, 1+i%12, 1+i%28, i)
		c, err := ident.CitizenIDCheckChar(body)
		if err != nil {
			t.Fatal(err)
		}
		id := body + string(c)
		f.ids[county[:4]] = append(f.ids[county[:4]], id)
		changes = append(changes, store.Change{Partition: 0, Offset: int64(i), Record: map[string]any{
			"id_number": id, "name": "张三", "gender": "1", "birth_date": fmt.Sprintf("1980-%02d-%02d", 1+i%12, 1+i%28),
			"household_region": county, "status": "alive", "updated_at": "2026-11-01T00:00:00Z"}})
	}
	if err := tbl.Apply(changes); err != nil {
		t.Fatal(err)
	}
	var popts []policy.Option
	if b != nil {
		popts = append(popts, policy.WithBundle(b))
	}
	eng, err := policy.New(cat, popts...)
	if err != nil {
		t.Fatal(err)
	}
	f.dir = t.TempDir()
	f.spool, err = audit.OpenSpool(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	f.svc, err = New(cat, map[string]*store.Table{d.ID: tbl}, eng, f.spool, []byte(strings.Repeat("s", 32)),
		append([]Option{WithAllocator(f.mem)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.svc.Wait()
		f.spool.Close()
		tbl.Close()
		f.mem.AssertSize(t, 0)
	})
	return f
}

// lookup looks up a population.person record as an edge does, returning what was sent.
func lookup(f *fixture, ctx context.Context, c Caller, cmd exchange.LookupCmd) (map[string]any, error) {
	var got map[string]any
	err := f.svc.Lookup(ctx, c, "population.person", cmd, func(rec map[string]any) (int64, error) {
		got = rec
		b, err := json.Marshal(rec)
		return int64(len(b)), err
	})
	return got, err
}

var hz = Caller{Subject: exchange.Subject{Department: "mz-3301", System: "dibao-review"}, ClientAddr: "127.0.0.1:1"}

type countSink struct{ rows, bytes int64 }

func (c *countSink) Begin(*arrow.Schema) error    { return nil }
func (c *countSink) Write(rec arrow.Record) error { c.rows += rec.NumRows(); c.bytes += 1; return nil }
func (c *countSink) Bytes() int64                 { return c.bytes }

func pullCmd() exchange.PullCmd {
	return exchange.PullCmd{Dataset: "population.person", Purpose: "minimum-living-allowance-review"}
}

// events reads back every event of the spool.
func events(t *testing.T, dir string) []*audit.Event {
	t.Helper()
	st, err := audit.OpenSpoolStore(dir)
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

func TestNoAccessWithoutAudit(t *testing.T) {
	f := newFixture(t)
	f.spool.Close() // the spool can no longer be written
	_, err := f.svc.Open(context.Background(), hz, pullCmd())
	if xe, ok := err.(*exchange.Error); !ok || xe.Code != "audit_unavailable" || xe.Kind != exchange.Unavailable {
		t.Fatalf("pull with a dead audit spool: %v, want audit_unavailable", err)
	}
	key, _ := json.Marshal(f.ids["3301"][0])
	if _, err := lookup(f, context.Background(), hz, exchange.LookupCmd{Key: key, Purpose: "minimum-living-allowance-review"}); err == nil || !strings.Contains(err.Error(), "audit_unavailable") {
		t.Fatalf("lookup with a dead audit spool: %v", err)
	}
}

func TestDecisionAuditedBeforeData(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g, err := f.svc.Open(ctx, hz, pullCmd())
	if err != nil {
		t.Fatal(err)
	}
	evs := events(t, f.dir)
	if len(evs) != 1 || evs[0].Kind != audit.KindDecision || evs[0].Decision != audit.Allow || evs[0].RequestID != g.RequestID {
		t.Fatalf("after Open, before any data: events %+v, want exactly the allow decision", evs)
	}
	sink := &countSink{}
	rows, err := f.svc.Stream(ctx, g, sink)
	if err != nil || rows != int64(len(f.ids["3301"])) {
		t.Fatalf("stream: %d rows, %v; want the %d Hangzhou persons", rows, err, len(f.ids["3301"]))
	}
	evs = events(t, f.dir)
	last := evs[len(evs)-1]
	if last.Kind != audit.KindComplete || last.RequestID != g.RequestID || last.Rows != uint64(rows) || last.Status != audit.StatusOK {
		t.Fatalf("complete event %+v", last)
	}
}

func TestRateLimitPerDepartment(t *testing.T) {
	f := newFixture(t, WithRateLimit(1, 3))
	ctx := context.Background()
	limited := 0
	for i := 0; i < 6; i++ {
		if _, err := f.svc.Catalog(ctx, hz); err != nil {
			if !strings.Contains(err.Error(), "rate_limited") || exchange.KindOf(err) != exchange.ResourceExhausted {
				t.Fatalf("catalog %d: %v", i, err)
			}
			limited++
		}
	}
	if limited < 2 {
		t.Fatalf("%d of 6 back-to-back requests limited with burst 3", limited)
	}
	// Another department has its own budget.
	other := Caller{Subject: exchange.Subject{Department: "mz-3201"}}
	if _, err := f.svc.Catalog(ctx, other); err != nil {
		t.Fatalf("another department limited too: %v", err)
	}
}

func TestLimitIsHonouredNotTruncatedSilently(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cmd := pullCmd()
	cmd.Limit = 3
	g, err := f.svc.Open(ctx, hz, cmd)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := f.svc.Stream(ctx, g, &countSink{})
	if err != nil || rows != 3 {
		t.Fatalf("limit 3: %d rows, %v", rows, err)
	}
}

// pullTicket opens the fixture's usual pull for hz and returns its Flight ticket.
func (f *fixture) pullTicket(t *testing.T) []byte {
	t.Helper()
	g, err := f.svc.Open(context.Background(), hz, pullCmd())
	if err != nil {
		t.Fatal(err)
	}
	tkt, err := f.svc.Ticket(g)
	if err != nil {
		t.Fatal(err)
	}
	return tkt
}

func TestTicketRoundTripAndExpiry(t *testing.T) {
	now := time.Now()
	f := newFixture(t, WithClock(func() time.Time { return now }), WithTicketTTL(time.Minute))
	ctx := context.Background()
	tkt := f.pullTicket(t)
	if _, err := f.svc.Redeem(ctx, hz, tkt); err != nil {
		t.Fatalf("own fresh ticket: %v", err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := f.svc.Redeem(ctx, hz, tkt); err == nil || !strings.Contains(err.Error(), "ticket_expired") {
		t.Fatalf("expired ticket: %v", err)
	}
}

func FuzzParseCmd(f *testing.F) {
	f.Add([]byte(`{"dataset":"population.person","purpose":"p","columns":["a"],"filter":[{"column":"a","op":"eq","value":1}],"limit":5}`))
	f.Add([]byte(`{"dataset":1}`))
	f.Add([]byte(`{}{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := ParseCmd(data)
		if err != nil {
			if exchange.KindOf(err) != exchange.Invalid {
				t.Fatalf("ParseCmd error of kind %v: %v", exchange.KindOf(err), err)
			}
			return
		}
		if cmd.Limit < 0 {
			t.Fatalf("negative limit accepted: %d", cmd.Limit)
		}
		// What parses must survive a round trip unchanged: nothing is guessed.
		b, _ := json.Marshal(cmd)
		again, err := ParseCmd(b)
		if err != nil || again.Dataset != cmd.Dataset || again.Purpose != cmd.Purpose || len(again.Filter) != len(cmd.Filter) {
			t.Fatalf("round trip of %q: %+v, %v", data, again, err)
		}
	})
}

func TestNotSharedDatasetCitesItsLegalBasis(t *testing.T) {
	f := newFixture(t)
	cmd := exchange.PullCmd{Dataset: "population.criminal_record", Purpose: "minimum-living-allowance-review"}
	_, err := f.svc.Open(context.Background(), hz, cmd)
	xe, ok := err.(*exchange.Error)
	if !ok || xe.Kind != exchange.PermissionDenied || len(xe.Reasons) == 0 || xe.Reasons[0].Code != "not_shared" {
		t.Fatalf("pull of a dataset shared with none: %v, want permission_denied not_shared", err)
	}
	cmd.Dataset = "population.people"
	if _, err := f.svc.Open(context.Background(), hz, cmd); exchange.KindOf(err) != exchange.NotFound || !strings.Contains(err.Error(), "unknown_dataset") {
		t.Fatalf("pull of an unknown dataset: %v", err)
	}
}

func TestFiltersOnlyOnColumnsGrantedUnmasked(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := f.ids["3301"][0]
	for _, tt := range []struct {
		name   string
		filter exchange.Filter
		denied bool
	}{
		// A filter is a question: on a masked column it would recover the value.
		{"masked column", exchange.Filter{Column: "id_number", Op: "prefix", Value: id[:14]}, true},
		{"column outside the grant", exchange.Filter{Column: "phone", Op: "eq", Value: "13812345678"}, true},
		{"granted unmasked column", exchange.Filter{Column: "household_region", Op: "prefix", Value: "330106"}, false},
	} {
		cmd := pullCmd()
		cmd.Filter = []exchange.Filter{tt.filter}
		_, err := f.svc.Open(ctx, hz, cmd)
		xe, _ := err.(*exchange.Error)
		switch {
		case tt.denied && (xe == nil || xe.Kind != exchange.PermissionDenied || len(xe.Reasons) == 0 || xe.Reasons[0].Code != "filter_not_granted" || !strings.Contains(xe.Reasons[0].Message, tt.filter.Column)):
			t.Errorf("%s: %v, want permission_denied filter_not_granted naming %s", tt.name, err, tt.filter.Column)
		case !tt.denied && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestTicketServesOneStream(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g, err := f.svc.Open(ctx, hz, pullCmd())
	if err != nil {
		t.Fatal(err)
	}
	tkt, _ := f.svc.Ticket(g)
	if _, err := f.svc.Redeem(ctx, hz, tkt); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Redeem(ctx, hz, tkt); err == nil || !strings.Contains(err.Error(), "ticket_used") {
		t.Fatalf("second redemption of one ticket: %v, want ticket_used", err)
	}
	// Presented by another department, the same genuine ticket is foreign; a forged one
	// is bad. The refusals of the genuine one name the request it was issued to and what
	// for, so an auditor can follow a replay back to its decision; the forged one's
	// contents are not recorded.
	other := Caller{Subject: exchange.Subject{Department: "rs-33", System: "pension"}, ClientAddr: "127.0.0.1:2"}
	if _, err := f.svc.Redeem(ctx, other, tkt); err == nil || !strings.Contains(err.Error(), "foreign_ticket") {
		t.Fatalf("another department's redemption: %v, want foreign_ticket", err)
	}
	forged := append([]byte{}, tkt...)
	forged[len(forged)/2] ^= 1
	if _, err := f.svc.Redeem(ctx, hz, forged); err == nil || !strings.Contains(err.Error(), "bad_ticket") {
		t.Fatalf("a forged ticket: %v, want bad_ticket", err)
	}
	refusals := map[string]*audit.Event{}
	for _, ev := range events(t, f.dir) {
		if ev.Decision == audit.Deny && ev.Error != "" {
			refusals[ev.Error] = ev
		}
	}
	for code, wantNotes := range map[string][]string{
		"ticket_used":    {"ticket_of:" + g.RequestID},
		"foreign_ticket": {"ticket_of:" + g.RequestID, "ticket_issued_to:mz-3301/dibao-review"},
	} {
		ev := refusals[code]
		if ev == nil {
			t.Fatalf("no deny event with error %s", code)
		}
		if ev.Purpose != g.Purpose || ev.Dataset != g.Dataset || ev.RequestID == g.RequestID {
			t.Errorf("%s event: purpose %q dataset %q request %q; want the ticket's purpose and dataset under a request id of its own", code, ev.Purpose, ev.Dataset, ev.RequestID)
		}
		for _, n := range wantNotes {
			if !slices.Contains(ev.Reasons, n) {
				t.Errorf("%s event reasons %v: want %q", code, ev.Reasons, n)
			}
		}
	}
	if ev := refusals["bad_ticket"]; ev == nil || ev.Dataset != "" || ev.Purpose != "" || slices.ContainsFunc(ev.Reasons, func(r string) bool { return strings.HasPrefix(r, "ticket_of:") }) {
		t.Errorf("forged ticket's event %+v: want it recorded without anything read from the ticket", ev)
	}
}

func TestFreeTextIsBounded(t *testing.T) {
	f := newFixture(t)
	cmd := pullCmd()
	cmd.Purpose = strings.Repeat("a", 65)
	if _, err := f.svc.Open(context.Background(), hz, cmd); err == nil || !strings.Contains(err.Error(), "bad_purpose") {
		t.Fatalf("a 65-character purpose: %v", err)
	}
	cmd = pullCmd()
	cmd.CaseRef = "ok\x00"
	if _, err := f.svc.Open(context.Background(), hz, cmd); err == nil || !strings.Contains(err.Error(), "bad_case_ref") {
		t.Fatalf("a case reference with a control character: %v", err)
	}
}

func TestFilterOnGrantedColumnNotReturned(t *testing.T) {
	f := newFixture(t)
	cmd := pullCmd()
	cmd.Columns = []string{"name"}
	cmd.Filter = []exchange.Filter{{Column: "household_region", Op: "prefix", Value: "330106"}}
	g, err := f.svc.Open(context.Background(), hz, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(g.Columns, ",") != "name" {
		t.Fatalf("columns %v, want only the one asked for", g.Columns)
	}
	rows, err := f.svc.Stream(context.Background(), g, &countSink{})
	if err != nil || rows != int64(len(f.ids["3301"])) {
		t.Fatalf("%d rows, %v", rows, err)
	}
}

func TestCursorFromAnotherClusterRefused(t *testing.T) {
	a := newFixture(t, WithCursorEpoch("cluster-a"))
	g, err := a.svc.Open(context.Background(), hz, pullCmd())
	if err != nil {
		t.Fatal(err)
	}
	var cursor string
	if _, err := a.svc.Stream(context.Background(), g, &cursorSink{out: &cursor}); err != nil || cursor == "" {
		t.Fatalf("no cursor: %v", err)
	}
	b := newFixture(t, WithCursorEpoch("cluster-b")) // same secret, another Kafka cluster
	cmd := pullCmd()
	cmd.Since = cursor
	if _, err := b.svc.Open(context.Background(), hz, cmd); err == nil || !strings.Contains(err.Error(), "invalid_cursor") {
		t.Fatalf("a cursor of another cluster: %v, want invalid_cursor", err)
	}
	if _, err := a.svc.Open(context.Background(), hz, cmd); err != nil {
		t.Fatalf("the cursor on its own cluster: %v", err)
	}
	cmd.Limit = 5
	if _, err := a.svc.Open(context.Background(), hz, cmd); err == nil || !strings.Contains(err.Error(), "limit_with_since") {
		t.Fatalf("a limited changes pull: %v, want limit_with_since", err)
	}
}

type cursorSink struct {
	countSink
	out *string
}

func (c *cursorSink) Begin(s *arrow.Schema) error {
	if i := s.Metadata().FindKey(exchange.MetaCursor); i >= 0 {
		*c.out = s.Metadata().Values()[i]
	}
	return nil
}

// decideWith decides every request with fn: a policy that changed after a ticket was
// issued.
type decideWith func(exchange.Request) exchange.Decision

func (d decideWith) Decide(_ context.Context, req exchange.Request) exchange.Decision { return d(req) }

// TestTicketRedeemAsksThePolicyAgain: a Flight ticket carries the decision made at
// GetFlightInfo; if by DoGet the agreement lapsed or was revoked, or the policy now
// grants the pull differently, nothing is served and the grant's complete event says why.
func TestTicketRedeemAsksThePolicyAgain(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		then   func(orig Decider) Decider
		reason string
	}{
		{"agreement lapsed", func(Decider) Decider {
			return decideWith(func(exchange.Request) exchange.Decision {
				return exchange.Decision{Revision: "later", Reasons: []exchange.Reason{{Code: "agreement_expired", Message: "ended"}}}
			})
		}, "agreement_expired"},
		{"masks changed", func(orig Decider) Decider {
			return decideWith(func(req exchange.Request) exchange.Decision {
				dec := orig.Decide(ctx, req)
				dec.Revision, dec.Masks = "later", map[string]string{"name": "name"}
				return dec
			})
		}, "policy_changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			g, err := f.svc.Open(ctx, hz, pullCmd())
			if err != nil {
				t.Fatal(err)
			}
			tkt, err := f.svc.Ticket(g)
			if err != nil {
				t.Fatal(err)
			}
			f.svc.policy = tc.then(f.svc.policy)
			_, err = f.svc.Redeem(ctx, hz, tkt)
			xe, ok := errors.AsType[*exchange.Error](err)
			if !ok || xe.Kind != exchange.PermissionDenied || len(xe.Reasons) == 0 || xe.Reasons[0].Code != tc.reason {
				t.Fatalf("redeem after the policy changed: %v, want permission_denied %s", err, tc.reason)
			}
			f.svc.Wait()
			var complete *audit.Event
			for _, ev := range events(t, f.dir) {
				if ev.RequestID == g.RequestID && ev.Kind == audit.KindComplete {
					complete = ev
				}
			}
			if complete == nil || complete.Status != audit.StatusError || complete.Rows != 0 {
				t.Fatalf("the allowed decision has no complete event saying nothing was served: %+v", complete)
			}
		})
	}
}
