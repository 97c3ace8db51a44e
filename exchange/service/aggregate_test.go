package service

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"

	"govx/exchange"
	"govx/exchange/audit"
)

var stats = Caller{Subject: exchange.Subject{Department: "tj-33"}, ClientAddr: "127.0.0.1:2"}

// keepSink keeps the answer's rows as "v|v" text and its schema.
type keepSink struct {
	schema *arrow.Schema
	rows   []string
}

func (k *keepSink) Begin(s *arrow.Schema) error { k.schema = s; return nil }
func (k *keepSink) Write(rec arrow.Record) error {
	for r := range int(rec.NumRows()) {
		var cells []string
		for c := range int(rec.NumCols()) {
			cells = append(cells, rec.Column(c).ValueStr(r))
		}
		k.rows = append(k.rows, strings.Join(cells, "|"))
	}
	return nil
}
func (k *keepSink) Bytes() int64 { return int64(len(k.rows)) }

func TestAggregateAnsweredAndAudited(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// The fixture holds 20 persons in each of 330106, 320102 and 330203; the statistics
	// bureau's scope is Zhejiang (33).
	sql := "SELECT household_region, COUNT(*) FROM population.person GROUP BY household_region"
	g, err := f.svc.OpenAggregate(ctx, stats, AggregateCmd{SQL: sql, Purpose: "population-statistics"})
	if err != nil {
		t.Fatal(err)
	}
	var sink keepSink
	if _, err := f.svc.RunAggregate(ctx, g, &sink); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sink.rows, ","); got != "330106|20,330203|20" {
		t.Errorf("answer %s, want 330106|20,330203|20 (320102 is outside the scope)", got)
	}
	if v, _ := sink.schema.Metadata().GetValue(MetaMinGroupSize); v != "10" {
		t.Errorf("min group size in the schema %q, want 10", v)
	}
	f.svc.Wait()
	evs := events(t, f.dir)
	var dec, done *audit.Event
	for _, e := range evs {
		if e.RequestID == g.RequestID && e.Kind == audit.KindDecision {
			dec = e
		}
		if e.RequestID == g.RequestID && e.Kind == audit.KindComplete {
			done = e
		}
	}
	if dec == nil || dec.Decision != audit.Allow || dec.Action != "aggregate" || !slices.Contains(dec.Reasons, "query: "+sql) ||
		!slices.ContainsFunc(dec.Reasons, func(r string) bool { return strings.HasPrefix(r, "plan: group_by [household_region,gender,status]") }) {
		t.Errorf("decision event %+v: want allow with the query and the plan", dec)
	}
	if done == nil || done.Rows != 2 || !slices.Contains(done.Reasons, "suppressed_cells: 0") {
		t.Errorf("complete event %+v: want 2 groups and suppressed_cells: 0", done)
	}
}

func TestAggregateRefusalsAudited(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cases := map[string]string{
		"SELECT id_number, name FROM population.person":                                                "row_query",
		"SELECT birth_date, COUNT(*) FROM population.person GROUP BY birth_date":                       "column_not_granted",
		"SELECT COUNT(*) FROM population.person WHERE name = '张三'":                                     "column_not_granted",
		"SELECT household_region, COUNT(*) FROM population.person GROUP BY household_region; SELECT 1": "bad_query",
	}
	for sql, want := range cases {
		_, err := f.svc.OpenAggregate(ctx, stats, AggregateCmd{SQL: sql, Purpose: "population-statistics"})
		xe, ok := err.(*exchange.Error)
		code := ""
		if ok {
			code = xe.Code
			if len(xe.Reasons) > 0 {
				code = xe.Reasons[0].Code
			}
		}
		if code != want {
			t.Errorf("%s: %v, want %s", sql, err, want)
		}
	}
	// A long query is recorded whole, not cut at the usual 512 bytes.
	long := "SELECT household_region, COUNT(*) FROM population.person WHERE household_region IN (" + strings.Repeat("'330106', ", 100) + "'330203') GROUP BY household_region"
	if _, err := f.svc.OpenAggregate(ctx, stats, AggregateCmd{SQL: long, Purpose: "population-statistics"}); err != nil {
		t.Fatal(err)
	}
	// A department with a read agreement only may not aggregate.
	_, err := f.svc.OpenAggregate(ctx, hz, AggregateCmd{SQL: "SELECT COUNT(*) FROM population.person", Purpose: "minimum-living-allowance-review"})
	if xe, ok := err.(*exchange.Error); !ok || len(xe.Reasons) == 0 || xe.Reasons[0].Code != "action_not_granted" {
		t.Errorf("aggregate under a read agreement: %v, want action_not_granted", err)
	}
	f.svc.Wait()
	denied, whole := 0, false
	for _, e := range events(t, f.dir) {
		whole = whole || slices.Contains(e.Reasons, "query: "+long)
		if e.Action == "aggregate" && e.Decision == audit.Deny && slices.ContainsFunc(e.Reasons, func(r string) bool { return strings.HasPrefix(r, "query: ") }) {
			denied++
		}
	}
	if !whole {
		t.Error("the long query is not in its decision event whole")
	}
	if denied != len(cases)+1 {
		t.Errorf("%d denied aggregates audited with their query, want %d", denied, len(cases)+1)
	}
}

func TestAggregateTicketBoundAndOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g, err := f.svc.OpenAggregate(ctx, stats, AggregateCmd{SQL: "SELECT gender, COUNT(*) FROM population.person GROUP BY gender", Purpose: "population-statistics"})
	if err != nil {
		t.Fatal(err)
	}
	tkt, err := f.svc.AggregateTicket(g)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RedeemAggregate(ctx, hz, tkt); err == nil || err.(*exchange.Error).Code != "foreign_ticket" {
		t.Errorf("another department redeemed the ticket: %v", err)
	}
	rg, err := f.svc.RedeemAggregate(ctx, stats, tkt)
	if err != nil {
		t.Fatal(err)
	}
	var sink keepSink
	if _, err := f.svc.RunAggregate(ctx, rg, &sink); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sink.rows, ","); got != "1|40" {
		t.Errorf("answer %s, want 1|40", got)
	}
	if _, err := f.svc.RedeemAggregate(ctx, stats, tkt); err == nil || err.(*exchange.Error).Code != "ticket_used" {
		t.Errorf("ticket redeemed twice: %v", err)
	}
	tkt[len(tkt)/2] ^= 1
	if _, err := f.svc.RedeemAggregate(ctx, stats, tkt); err == nil || err.(*exchange.Error).Code != "bad_ticket" {
		t.Errorf("altered ticket: %v", err)
	}
}

func TestAggregateCatalogListsWhatMayBeAggregated(t *testing.T) {
	f := newFixture(t)
	list, err := f.svc.AggregateCatalog(context.Background(), stats, "population-statistics", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Dataset != "population.person" {
		t.Fatalf("catalog %+v, want population.person only", list)
	}
	var names []string
	for _, fl := range list[0].Schema.Fields() {
		names = append(names, fl.Name)
	}
	if strings.Join(names, ",") != "household_region,gender,status" {
		t.Errorf("columns %v", names)
	}
	other, err := f.svc.AggregateCatalog(context.Background(), hz, "minimum-living-allowance-review", "")
	if err != nil || len(other) != 0 {
		t.Errorf("a department without aggregate agreements sees %+v (%v), want nothing", other, err)
	}
}
