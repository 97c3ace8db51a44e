package review

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"govx/exchange/audit"
	"govx/policies"
	"govx/schemas"
)

type sysID struct{ dep, sys, ds string }

var bgSystems = []sysID{
	{"mz-3301", "dibao-review", "population.person"},
	{"rs-33", "pension", "population.person"},
	{"sw-33", "tax-check", "legal_entity.organization"},
	{"zj-3205", "housing", "resource.land_parcel"},
	{"wj-3302", "health", "population.person"},
}

type gen struct {
	rng *rand.Rand
	evs []*audit.Event
	n   int
}

func (g *gen) access(s sysID, at time.Time, action string, keys []string, decision string, rows uint64) {
	g.n++
	id := fmt.Sprintf("req-%d", g.n)
	d := &audit.Event{EventID: audit.NewEventID(), Kind: audit.KindDecision, Time: at, RequestID: id, Department: s.dep,
		System: s.sys, Action: action, Dataset: s.ds, Keys: keys, Decision: decision, Agreement: "agr-" + s.dep}
	g.evs = append(g.evs, d)
	if decision == audit.Allow && audit.DataBearing(action) {
		g.evs = append(g.evs, &audit.Event{EventID: audit.NewEventID(), Kind: audit.KindComplete, Time: at.Add(200 * time.Millisecond),
			RequestID: id, Department: s.dep, System: s.sys, Action: action, Dataset: s.ds, Rows: rows, Status: audit.StatusOK})
	}
}

// background makes ten days of ordinary use: working-hours traffic on weekdays, a few
// stray evening requests, rare denials.
func background(seed uint64) *gen {
	g := &gen{rng: rand.New(rand.NewPCG(seed, 42))}
	loc := schemas.ChinaTime
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, loc) // a Monday
	for day := 0; day < 10; day++ {
		d := start.AddDate(0, 0, day)
		weekday := d.Weekday() != time.Saturday && d.Weekday() != time.Sunday
		for _, s := range bgSystems {
			if weekday {
				n := 40 + g.rng.IntN(40)
				for i := 0; i < n; i++ {
					at := d.Add(9*time.Hour + time.Duration(g.rng.Int64N(int64(8*time.Hour+20*time.Minute))))
					dec := audit.Allow
					if g.rng.IntN(50) == 0 {
						dec = audit.Deny
					}
					switch g.rng.IntN(3) {
					case 0:
						g.access(s, at, "read", nil, dec, uint64(100+g.rng.IntN(5000)))
					case 1:
						g.access(s, at, "lookup", []string{fmt.Sprintf("k%09d", g.rng.IntN(1e9))}, dec, 1)
					default:
						g.access(s, at, "verify", []string{fmt.Sprintf("k%09d", g.rng.IntN(1e9))}, dec, 0)
					}
				}
			}
			if g.rng.IntN(10) < 3 { // someone working late, now and then
				for i := 0; i < 1+g.rng.IntN(3); i++ {
					at := d.Add(19*time.Hour + time.Duration(g.rng.Int64N(int64(3*time.Hour))))
					g.access(s, at, "read", nil, audit.Allow, uint64(10+g.rng.IntN(100)))
				}
			}
		}
	}
	return g
}

func report(t *testing.T, evs []*audit.Event, opt ReportOptions) *Report {
	t.Helper()
	it, _ := audit.SliceStore(evs).Events(context.Background(), audit.Filter{})
	r, err := BuildReport(context.Background(), it, opt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestReportFindsPlantedAnomalies: over several seeds, the ordinary background alone
// raises no finding; with an off-hours burst and an enumeration planted into it, the
// report names exactly those.
func TestReportFindsPlantedAnomalies(t *testing.T) {
	loc := schemas.ChinaTime
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			g := background(seed)
			clean := report(t, g.evs, ReportOptions{})
			if len(clean.Findings) != 0 {
				var b strings.Builder
				clean.WriteText(&b, loc)
				t.Fatalf("the ordinary background raised findings:\n%s", b.String())
			}
			// Saturday 02:00–03:00: the pension system reads personal data all night.
			night := time.Date(2026, 3, 7, 2, 0, 0, 0, loc)
			for i := 0; i < 60; i++ {
				g.access(bgSystems[1], night.Add(time.Duration(i)*time.Minute), "read", nil, audit.Allow, 1000)
			}
			// Wednesday 10:00–11:00: the tax system verifies 600 sequential ID numbers.
			wed := time.Date(2026, 3, 4, 10, 0, 0, 0, loc)
			for i := 0; i < 600; i++ {
				g.access(bgSystems[2], wed.Add(time.Duration(i)*5*time.Second), "verify",
					[]string{fmt.Sprintf("3301061990%08d", i)}, audit.Allow, 0)
			}
			r := report(t, g.evs, ReportOptions{})
			var off, enum bool
			for _, f := range r.Findings {
				switch {
				case f.Kind == FindingOffHours && f.System == "pension" && f.Count >= 60 && f.Count < 70:
					off = true
				case f.Kind == FindingEnumeration && f.System == "tax-check" && f.Count >= 600 && f.Count < 700 && f.Start.Equal(wed):
					// the 600 planted keys and the background's few in the same hour
					enum = true
				case f.System == "pension" || f.System == "tax-check" || f.Department == "rs-33":
					// another view of the planted traffic (e.g. volume) is fair
				default:
					t.Errorf("unexpected finding: %s", f.Message)
				}
			}
			if !off || !enum {
				var b strings.Builder
				r.WriteText(&b, loc)
				t.Fatalf("off-hours found %v, enumeration found %v:\n%s", off, enum, b.String())
			}
		})
	}
}

func TestReportDenyBurstUnfinishedAndExpiry(t *testing.T) {
	loc := schemas.ChinaTime
	g := background(7)
	at := time.Date(2026, 3, 3, 14, 0, 0, 0, loc)
	for i := 0; i < 25; i++ {
		g.access(bgSystems[3], at.Add(time.Duration(i)*10*time.Second), "read", nil, audit.Deny, 0)
	}
	// A stream that never completed: a decision without its complete.
	g.evs = append(g.evs, &audit.Event{EventID: audit.NewEventID(), Kind: audit.KindDecision, Time: at, RequestID: "crashed",
		Department: "wj-3302", System: "health", Action: "read", Dataset: "population.person", Decision: audit.Allow, Agreement: "agr-wj-3302"})
	// Validity as the policies package computes it: a valid_until date ends at the next
	// midnight in China Standard Time.
	day := func(y int, m time.Month, d int) time.Time {
		return time.Date(y, m, d, 0, 0, 0, 0, loc).AddDate(0, 0, 1)
	}
	b := &policies.Bundle{Agreements: []policies.Agreement{
		{ID: "agr-mz-3301", Until: day(2027, 1, 1)},
		{ID: "agr-rs-33", Until: day(2026, 3, 20)},
		{ID: "agr-sw-33", Until: day(2026, 3, 5)},
		{ID: "agr-zj-3205", Until: day(2030, 1, 1)},
		{ID: "agr-wj-3302", From: time.Date(2025, 1, 1, 0, 0, 0, 0, loc), Until: day(2030, 1, 1)},
	}}
	agreements := AgreementsOf(b)
	r := report(t, g.evs, ReportOptions{Agreements: agreements})
	kinds := map[string]string{}
	for _, f := range r.Findings {
		kinds[f.Kind+"/"+f.Department] = f.Message
	}
	for _, want := range []string{FindingDenyBurst + "/zj-3205", FindingNearExpiry + "/rs-33", FindingExpiredUse + "/sw-33", FindingNearExpiry + "/sw-33"} {
		if kinds[want] == "" {
			t.Errorf("missing finding %s; got %v", want, kinds)
		}
	}
	if len(kinds) != 4 {
		t.Errorf("want exactly 4 findings, got %v", kinds)
	}
	unfinished := 0
	for _, row := range r.Rows {
		unfinished += row.Unfinished
		if row.Department == "wj-3302" && row.Unfinished != 1 {
			t.Errorf("wj-3302: %d unfinished, want 1", row.Unfinished)
		}
	}
	if unfinished != 1 {
		t.Errorf("%d unfinished streams, want 1", unfinished)
	}
	r = report(t, g.evs, ReportOptions{})
	if len(r.Notes) == 0 || !strings.Contains(r.Notes[0], "--policies") {
		t.Errorf("without agreements the report must say expiry was not checked; notes %v", r.Notes)
	}
}

func TestParseWorkHours(t *testing.T) {
	for _, tc := range []struct {
		in         string
		start, end time.Duration
		ok         bool
	}{
		{"08:30-18:00", 8*time.Hour + 30*time.Minute, 18 * time.Hour, true},
		{"9:00-17:00", 9 * time.Hour, 17 * time.Hour, true},
		{"18:00-08:00", 0, 0, false},
		{"0830-1800", 0, 0, false},
	} {
		s, e, err := ParseWorkHours(tc.in)
		if (err == nil) != tc.ok || s != tc.start || e != tc.end {
			t.Errorf("%q: %v %v %v", tc.in, s, e, err)
		}
	}
}

// TestReportFindsGuessingAndSweeps: many verifies of one key (some refused by the key
// budget), a first-ever sweep of 250 keys by a system with no other hours, and a
// department whose every hour is a sweep of 1,200 keys are each flagged; the background
// alone raises none of these.
func TestReportFindsGuessingAndSweeps(t *testing.T) {
	loc := schemas.ChinaTime
	g := background(3)
	health := bgSystems[4] // wj-3302/health verifies persons
	at := time.Date(2026, 3, 5, 14, 0, 0, 0, loc)
	for i := 0; i < 30; i++ {
		dec := audit.Allow
		if i >= 5 {
			dec = audit.Deny
		}
		g.access(health, at.Add(time.Duration(i)*4*time.Minute), "verify", []string{"330203199001010018"}, dec, 0)
		if dec == audit.Deny {
			g.evs[len(g.evs)-1].Error = "verify_budget_exhausted"
		}
	}
	newcomer := sysID{"mz-3201", "case-system", "population.person"}
	sweep := time.Date(2026, 3, 6, 10, 0, 0, 0, loc)
	for i := 0; i < 250; i++ {
		g.access(newcomer, sweep.Add(time.Duration(i)*10*time.Second), "lookup", []string{fmt.Sprintf("3201021990%08d", i)}, audit.Allow, 1)
	}
	steady := sysID{"fgw-33", "matcher", "legal_entity.organization"}
	for h := 0; h < 3; h++ {
		for i := 0; i < 1200; i++ {
			g.access(steady, sweep.Add(time.Duration(h)*time.Hour+time.Duration(i)*2*time.Second), "verify", []string{fmt.Sprintf("h%d-%d", h, i)}, audit.Allow, 0)
		}
	}
	r := report(t, g.evs, ReportOptions{})
	got := map[string]Finding{}
	for _, f := range r.Findings {
		got[f.Kind+"/"+f.Department] = f
	}
	if f, ok := got[FindingKeyGuessing+"/wj-3302"]; !ok || f.Count != 30 || !strings.Contains(f.Message, "(5 answered)") {
		t.Errorf("key-guessing of wj-3302: %+v", f)
	}
	if f, ok := got[FindingBudget+"/wj-3302"]; !ok || f.Count != 25 {
		t.Errorf("budget-exhausted of wj-3302: %+v", f)
	}
	if f, ok := got[FindingEnumeration+"/mz-3201"]; !ok || f.Count != 250 || !f.Start.Equal(sweep) {
		t.Errorf("a first sweep of 250 keys is measured against no baseline and flagged: %+v", f)
	}
	sweeps := 0
	for _, f := range r.Findings {
		if f.Kind == FindingKeySweep && f.Department == "fgw-33" && f.Count == 1200 {
			sweeps++
		}
		if f.Kind == FindingEnumeration && f.Department == "fgw-33" {
			t.Errorf("fgw-33's sweeps are its baseline; the relative rule should not fire: %s", f.Message)
		}
	}
	if sweeps != 3 {
		t.Errorf("%d key-sweep findings for fgw-33's three hours of 1,200 keys, want 3", sweeps)
	}
	for _, f := range r.Findings {
		switch f.Department {
		case "wj-3302", "mz-3201", "fgw-33":
		default:
			t.Errorf("unexpected finding: %s", f.Message)
		}
	}
}

// TestReportCountsFailedApart: an allowed read whose client went away has a complete
// saying so; the report counts it as failed, neither unfinished nor rows read.
func TestReportCountsFailedApart(t *testing.T) {
	at := time.Date(2026, 3, 3, 10, 0, 0, 0, schemas.ChinaTime)
	evs := []*audit.Event{
		{EventID: audit.NewEventID(), Kind: audit.KindDecision, Time: at, RequestID: "r1", Department: "mz-3301", Action: "lookup", Dataset: "population.person", Decision: audit.Allow},
		{EventID: audit.NewEventID(), Kind: audit.KindComplete, Time: at, RequestID: "r1", Department: "mz-3301", Action: "lookup", Dataset: "population.person", Status: audit.StatusAborted},
		{EventID: audit.NewEventID(), Kind: audit.KindDecision, Time: at, RequestID: "r2", Department: "mz-3301", Action: "read", Dataset: "population.person", Decision: audit.Allow},
		{EventID: audit.NewEventID(), Kind: audit.KindComplete, Time: at, RequestID: "r2", Department: "mz-3301", Action: "read", Dataset: "population.person", Status: audit.StatusOK, Rows: 7},
	}
	r := report(t, evs, ReportOptions{})
	if len(r.Rows) != 1 || r.Rows[0].Failed != 1 || r.Rows[0].Unfinished != 0 || r.Rows[0].Rows != 7 || r.Rows[0].Requests != 2 {
		t.Fatalf("rows %+v, want 2 requests, 1 failed, 0 unfinished, 7 rows", r.Rows)
	}
}

// TestAgreementsReadThroughPolicies: the report takes every agreement's validity from the
// policy bundle as the policy parsed it, the shipped agreements included.
func TestAgreementsReadThroughPolicies(t *testing.T) {
	b, err := policies.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	got := AgreementsOf(b)
	if len(got) != len(b.Agreements) || len(got) == 0 {
		t.Fatalf("%d agreements from a bundle of %d", len(got), len(b.Agreements))
	}
	for i, a := range b.Agreements {
		if got[i].ID != a.ID || !got[i].ValidUntil.Equal(a.Until) || !got[i].ValidFrom.Equal(a.From) {
			t.Errorf("agreement %s: report has %v..%v, the policy %v..%v", a.ID, got[i].ValidFrom, got[i].ValidUntil, a.From, a.Until)
		}
		if a.ValidUntil != "" && len(a.ValidUntil) == len("2006-01-02") {
			last, _ := time.ParseInLocation("2006-01-02", a.ValidUntil, schemas.ChinaTime)
			if !got[i].ValidUntil.Equal(last.AddDate(0, 0, 1)) {
				t.Errorf("agreement %s valid_until %s: the report ends it at %v, not at the end of that day in China", a.ID, a.ValidUntil, got[i].ValidUntil)
			}
		}
	}
}

// TestCatalogListingsAreNotDenials: a catalog listing records one decision per dataset
// under one request id; the datasets it did not show are not a run of denials (25
// listings raise no deny-burst), while 25 listings that showed nothing are 25 denied
// requests, not 75.
func TestCatalogListingsAreNotDenials(t *testing.T) {
	at := time.Date(2026, 3, 3, 10, 0, 0, 0, schemas.ChinaTime)
	listing := func(i int, allowFirst bool) []*audit.Event {
		rid := fmt.Sprintf("req-%d", i)
		var out []*audit.Event
		for j, ds := range []string{"population.person", "resource.land_parcel", "license.certificate"} {
			dec := audit.Deny
			if allowFirst && j == 0 {
				dec = audit.Allow
			}
			out = append(out, &audit.Event{EventID: audit.NewEventID(), Kind: audit.KindDecision, Time: at.Add(time.Duration(i) * 10 * time.Second),
				RequestID: rid, Department: "mz-3301", System: "dibao-review", Action: "discover", Dataset: ds, Decision: dec})
		}
		return out
	}
	var shown, empty []*audit.Event
	for i := 0; i < 25; i++ {
		shown = append(shown, listing(i, true)...)
		empty = append(empty, listing(i, false)...)
	}
	for _, f := range report(t, shown, ReportOptions{}).Findings {
		if f.Kind == FindingDenyBurst {
			t.Fatalf("catalog listings that showed a dataset raised %s", f.Message)
		}
	}
	var burst *Finding
	for _, f := range report(t, empty, ReportOptions{}).Findings {
		if f.Kind == FindingDenyBurst {
			burst = &f
		}
	}
	if burst == nil || burst.Count != 25 {
		t.Fatalf("25 listings that showed nothing: finding %+v, want a deny-burst of 25 requests", burst)
	}
}

// TestReportFindsOverdueMatters: the application and correction steps' events name the
// deadline of the clock they start (a "due:" reason, as exchange/apply writes it); a
// matter whose next step came at or after it was answered late, one with no step before
// Now is overdue and still open; on time, withdrawn in time, not yet due, a refused step
// and a step that named no deadline raise nothing.
func TestReportFindsOverdueMatters(t *testing.T) {
	loc := schemas.ChinaTime
	at := func(day, hour int) time.Time { return time.Date(2026, 3, day, hour, 0, 0, 0, loc) }
	due := func(clock string, day int) string {
		return duePrefix + clock + ":" + time.Date(2026, 3, day+1, 0, 0, 0, 0, loc).UTC().Format(time.RFC3339)
	}
	var evs []*audit.Event
	step := func(id, dep, sys, action string, t time.Time, decision string, reasons ...string) {
		evs = append(evs, &audit.Event{EventID: audit.NewEventID(), Kind: audit.KindDecision, Time: t, RequestID: audit.NewEventID(),
			Department: dep, System: sys, Action: action, Dataset: "population.person", CaseRef: id, Decision: decision, Reasons: reasons})
	}
	// Reviewed in time, answered two days after the answer limit (the end of 03-11).
	step("APP-2026-000001", "zj-3205", "housing", "application.submit", at(2, 10), audit.Allow, "state:->submitted", due("review", 4))
	step("APP-2026-000001", "zwfw", "sharing-review", "application.review", at(3, 10), audit.Allow, "state:submitted->with_provider", due("answer", 11))
	step("APP-2026-000001", "scjgj", "steward", "application.approve", at(12, 9), audit.Deny, "not_provider")
	step("APP-2026-000001", "gab", "steward", "application.approve", at(13, 10), audit.Allow, "state:with_provider->approved")
	// Never reviewed: overdue, still open.
	step("APP-2026-000002", "rs-33", "pension", "application.submit", at(2, 11), audit.Allow, "state:->submitted", due("review", 4))
	// Withdrawn in time; not yet due at Now; written before steps named deadlines.
	step("APP-2026-000003", "sw-33", "tax", "application.submit", at(2, 12), audit.Allow, "state:->submitted", due("review", 4))
	step("APP-2026-000003", "sw-33", "tax", "application.withdraw", at(4, 12), audit.Allow, "state:submitted->withdrawn")
	step("APP-2026-000004", "fgw-33", "planning", "application.submit", at(19, 12), audit.Allow, "state:->submitted", due("review", 23))
	step("APP-2026-000005", "mz-3201", "demo", "application.submit", at(2, 13), audit.Allow, "state:->submitted")
	// A flag nobody answered.
	step("COR-2026-000001", "mz-3301", "dibao-review", "correction.flag", at(2, 14), audit.Allow, "state:->flagged", due("correction", 6))

	r := report(t, evs, ReportOptions{Now: at(20, 12)})
	var got []string
	for _, f := range r.Findings {
		got = append(got, f.Kind+" "+f.Department+" "+f.Message)
	}
	if len(got) != 3 {
		t.Fatalf("findings:\n%s", strings.Join(got, "\n"))
	}
	for i, want := range []string{
		"application-overdue zj-3205 application APP-2026-000001 of zj-3205 for population.person: the answer time limit ended 2026-03-12 00:00; the next step (application.approve by gab/steward, with_provider->approved) came 1d10h late",
		"application-overdue rs-33 application APP-2026-000002 of rs-33 for population.person: the review time limit ended 2026-03-05 00:00 and the matter is still open (15d12h overdue at 2026-03-20 12:00)",
		"correction-overdue mz-3301 correction COR-2026-000001 of population.person (flagged by mz-3301): the correction time limit ended 2026-03-07 00:00 and the matter is still open (13d12h overdue at 2026-03-20 12:00)",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("finding %d missing: %s\ngot:\n%s", i, want, strings.Join(got, "\n"))
		}
	}
	// Judged at a Now before the open matters' limits ran out, only the late answer (a
	// fact of the log) is flagged.
	if r := report(t, evs, ReportOptions{Now: at(4, 12)}); len(r.Findings) != 1 || r.Findings[0].Kind != FindingAppOverdue || !strings.Contains(r.Findings[0].Message, "APP-2026-000001") {
		t.Errorf("before the open matters' limits ran out: %+v", r.Findings)
	}
}
