package apply

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"govx/exchange"
	"govx/exchange/audit"
)

var ctx = context.Background()

// An application goes submitted → reviewed → approved; the agreement lands in the policy
// directory naming the application, the engine serves it, and every step is audited.
func TestApplicationApprovedBecomesAgreement(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn)
		at := h.clock.now()
		if d := h.decide(at); d.Allow {
			t.Fatalf("allowed before any application: %+v", d)
		}
		a := h.submit(housing())
		if a.ID != "APP-2026-000001" || a.State != Submitted || a.Provider != "gab" || a.Clock != "review" {
			t.Fatalf("submitted: %+v", a)
		}
		// Monday 2026-03-02: review within 2 working days, to the end of Wednesday.
		if want := cst("2026-03-05T00:00"); !a.Due.Equal(want) {
			t.Errorf("review due %s, want %s", a.Due, want)
		}
		a = h.must(h.svc.Review(ctx, authority, a.ID, Outcome{Grant: true}))
		if a.State != WithProvider || a.Clock != "answer" || !a.Due.Equal(cst("2026-03-10T00:00")) {
			t.Fatalf("reviewed: state %s clock %s due %s, want with_provider, answer, end of 2026-03-09", a.State, a.Clock, a.Due)
		}
		a = h.must(h.svc.Approve(ctx, gab, a.ID, &Conditions{Columns: []string{"id_number", "name", "household_region"},
			Unmasked: []string{"name"}, RowScope: "320500", MaxRows: 50000, Access: []string{"read"}, Approval: "苏数共〔2026〕9号"}))
		if a.State != Approved || a.Agreement != "AGR-APP-2026-000001" || !a.Due.IsZero() || a.Overdue {
			t.Fatalf("approved: %+v", a)
		}
		if len(a.Steps) != 3 || a.Steps[2].Action != ActApprove || a.Steps[2].By != gab.Subject {
			t.Errorf("history: %+v", a.Steps)
		}
		file := h.agreementsFile()
		for _, want := range []string{"id: AGR-APP-2026-000001", "application: APP-2026-000001", "approval: 苏数共〔2026〕9号", "region: \"320500\""} {
			if !strings.Contains(file, want) {
				t.Errorf("agreements file lacks %q:\n%s", want, file)
			}
		}
		d := h.decide(at)
		if !d.Allow || d.Agreement != "AGR-APP-2026-000001" || !slices.Equal(d.Columns, []string{"id_number", "name", "household_region"}) {
			t.Fatalf("after approval the engine decides %+v", d)
		}
		if g, ok := h.engine.Bundle().Agreement(d.Agreement); !ok || g.Application != a.ID {
			t.Errorf("the deciding agreement does not name the application: %+v", g)
		}
		// Only what was granted: a column applied for but not granted is still denied.
		if d := h.engine.Decide(ctx, exchange.Request{Subject: applicant.Subject, Action: exchange.ActionRead, Dataset: "population.person",
			Purpose: "housing-security-qualification", Columns: []string{"status"}, Time: at}); d.Allow {
			t.Errorf("a column not granted is allowed: %+v", d)
		}
		var actions []string
		for _, ev := range h.audit.events {
			if ev.CaseRef != a.ID || ev.Decision != audit.Allow || ev.Kind != audit.KindDecision {
				t.Errorf("event %+v", ev)
			}
			actions = append(actions, ev.Action+" "+ev.Reasons[0])
		}
		want := []string{"application.submit state:->submitted", "application.review state:submitted->with_provider", "application.approve state:with_provider->approved"}
		if !slices.Equal(actions, want) {
			t.Errorf("audited %q, want %q", actions, want)
		}
		// The steps that start a clock name its deadline, so the audit report finds
		// overdue applications in the log alone; a grant stops the clock.
		var dues []string
		for _, ev := range h.audit.events {
			d := ""
			if len(ev.Reasons) > 1 && strings.HasPrefix(ev.Reasons[1], DuePrefix) {
				d = ev.Reasons[1]
			}
			dues = append(dues, d)
		}
		if !strings.HasPrefix(dues[0], "due:review:") || !strings.HasPrefix(dues[1], "due:answer:") || dues[2] != "" {
			t.Errorf("due reasons %q", dues)
		}
		if ev := h.audit.last(); ev.Department != "gab" || ev.Agreement != "AGR-APP-2026-000001" {
			t.Errorf("approval event %+v", ev)
		}
	})
}

// A refused application keeps the pull denied and shows its reasons; a dispute the data
// authority coordinates in the applicant's favour grants it.
func TestRefusedThenCoordinated(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn)
		a := h.submit(housing())
		h.must(h.svc.Review(ctx, authority, a.ID, Outcome{Grant: true}))
		a = h.must(h.svc.Refuse(ctx, gab, a.ID, []string{"申请字段超出住房保障资格审核所需", "应先通过核验方式获取"}))
		if a.State != Refused || len(a.Reasons) != 2 || a.Steps[2].Detail != "申请字段超出住房保障资格审核所需; 应先通过核验方式获取" {
			t.Fatalf("refused: %+v", a)
		}
		if d := h.decide(h.clock.now()); d.Allow {
			t.Fatalf("a refused application grants: %+v", d)
		}
		shown := h.must(h.svc.Show(ctx, applicant, a.ID))
		if !slices.Equal(shown.Reasons, a.Reasons) {
			t.Errorf("the applicant sees reasons %q", shown.Reasons)
		}
		a = h.must(h.svc.Dispute(ctx, applicant, a.ID, "审核须比对户籍状态，核验无法满足"))
		if a.State != Disputed {
			t.Fatalf("disputed: %+v", a)
		}
		if _, err := h.svc.Coordinate(ctx, gab, a.ID, Outcome{Grant: true, Conditions: &Conditions{Approval: "x"}}); reasonCode(err) != "not_data_authority" {
			t.Errorf("the provider coordinating: %v", err)
		}
		a = h.must(h.svc.Coordinate(ctx, authority, a.ID, Outcome{Grant: true, Conditions: &Conditions{
			Columns: []string{"id_number", "household_region", "status"}, Access: []string{"lookup"}, Approval: "浙数协〔2026〕2号"}}))
		if a.State != Coordinated || !a.Granted || !a.Grants() {
			t.Fatalf("coordinated: %+v", a)
		}
		d := h.engine.Decide(ctx, exchange.Request{Subject: applicant.Subject, Action: exchange.ActionLookup, Dataset: "population.person",
			Purpose: "housing-security-qualification", Time: h.clock.now()})
		if !d.Allow || d.Agreement != "AGR-APP-2026-000001" {
			t.Errorf("after coordination: %+v", d)
		}
		if d := h.decide(h.clock.now()); d.Allow {
			t.Errorf("read was not granted by the coordination, yet allowed: %+v", d)
		}
	})
}

// Datasets shared unconditionally are approved when they pass the review.
func TestUnconditionalApprovedOnReview(t *testing.T) {
	h := newHarness(t, t.TempDir()+"/a.db")
	r := housing()
	r.Dataset, r.Columns, r.Purpose = "legal_entity.organization", []string{"uscc", "name", "legal_rep_id_number"}, "enterprise-housing-check"
	a := h.submit(r)
	if a.Provider != "scjgj" {
		t.Fatalf("provider %q", a.Provider)
	}
	if _, err := h.svc.Review(ctx, authority, a.ID, Outcome{Grant: true}); reasonCode(err) != "approval_required" {
		t.Fatalf("a direct grant without an approval number: %v", err)
	}
	a = h.must(h.svc.Review(ctx, authority, a.ID, Outcome{Grant: true, Conditions: &Conditions{Approval: "苏数共〔2026〕10号"}}))
	if a.State != Approved || !strings.Contains(h.agreementsFile(), "dataset: legal_entity.organization") {
		t.Fatalf("unconditional after review: %+v", a)
	}
}

// snapshot is everything a refused step must leave as it was.
type snapshot struct {
	app    *Application
	file   string
	reload string
}

func (h *harness) snap(id string) snapshot {
	a, err := h.svc.show(ctx, id, h.clock.now())
	if err != nil {
		h.t.Fatal(err)
	}
	return snapshot{app: a, file: h.agreementsFile(), reload: h.engine.Revision()}
}

// Illegal transitions, missing reasons, an applicant answering its own application, a
// provider answering for another's dataset, grants beyond the application: each refused
// with its code, audited as denied, and nothing changed.
func TestRefusalsChangeNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn)
		submitted := h.submit(housing()).ID
		withProvider := h.submit(housing()).ID
		h.must(h.svc.Review(ctx, authority, withProvider, Outcome{Grant: true}))
		refused := h.submit(housing()).ID
		h.must(h.svc.Review(ctx, authority, refused, Outcome{Grant: false, Reasons: []string{"履职依据不足"}}))
		stranger := Caller{Subject: exchange.Subject{Department: "mz-3301", System: "dibao-review"}}
		nobody := Caller{Subject: exchange.Subject{Department: "xx-9999", System: "x"}}
		cond := &Conditions{Approval: "苏数共〔2026〕9号"}

		for _, tc := range []struct {
			name string
			id   string
			do   func(id string) error
			code string
		}{
			{"approve before review", submitted, func(id string) error { _, err := h.svc.Approve(ctx, gab, id, cond); return err }, "illegal_transition"},
			{"review twice", withProvider, func(id string) error { _, err := h.svc.Review(ctx, authority, id, Outcome{Grant: true}); return err }, "illegal_transition"},
			{"dispute before refusal", withProvider, func(id string) error { _, err := h.svc.Dispute(ctx, applicant, id, "x"); return err }, "illegal_transition"},
			{"withdraw a refused one", refused, func(id string) error { _, err := h.svc.Withdraw(ctx, applicant, id); return err }, "illegal_transition"},
			{"approve a refused one", refused, func(id string) error { _, err := h.svc.Approve(ctx, gab, id, cond); return err }, "illegal_transition"},
			{"refuse without reasons", withProvider, func(id string) error { _, err := h.svc.Refuse(ctx, gab, id, nil); return err }, "reasons_required"},
			{"refuse with a blank reason", withProvider, func(id string) error { _, err := h.svc.Refuse(ctx, gab, id, []string{" "}); return err }, "reasons_required"},
			{"fail a review without reasons", submitted, func(id string) error { _, err := h.svc.Review(ctx, authority, id, Outcome{}); return err }, "reasons_required"},
			{"dispute without grounds", refused, func(id string) error { _, err := h.svc.Dispute(ctx, applicant, id, ""); return err }, "grounds_required"},
			{"applicant approves its own", withProvider, func(id string) error { _, err := h.svc.Approve(ctx, applicant, id, cond); return err }, "own_application"},
			{"applicant refuses its own", withProvider, func(id string) error { _, err := h.svc.Refuse(ctx, applicant, id, []string{"x"}); return err }, "own_application"},
			{"another provider approves", withProvider, func(id string) error { _, err := h.svc.Approve(ctx, scjgj, id, cond); return err }, "not_provider"},
			{"a consumer approves", withProvider, func(id string) error { _, err := h.svc.Approve(ctx, stranger, id, cond); return err }, "not_provider"},
			{"the provider reviews", submitted, func(id string) error { _, err := h.svc.Review(ctx, gab, id, Outcome{Grant: true}); return err }, "not_data_authority"},
			{"the applicant reviews", submitted, func(id string) error { _, err := h.svc.Review(ctx, applicant, id, Outcome{Grant: true}); return err }, "not_data_authority"},
			{"another department withdraws", submitted, func(id string) error { _, err := h.svc.Withdraw(ctx, stranger, id); return err }, "not_applicant"},
			{"an unregistered department", submitted, func(id string) error { _, err := h.svc.Withdraw(ctx, nobody, id); return err }, "unknown_department"},
			{"another department reads", submitted, func(id string) error { _, err := h.svc.Show(ctx, stranger, id); return err }, "not_party"},
			{"grant a column not applied for", withProvider, func(id string) error {
				_, err := h.svc.Approve(ctx, gab, id, &Conditions{Columns: []string{"phone"}, Approval: "x"})
				return err
			}, "invalid_conditions"},
			{"grant an action not applied for", withProvider, func(id string) error {
				_, err := h.svc.Approve(ctx, gab, id, &Conditions{Access: []string{"verify"}, Approval: "x"})
				return err
			}, "invalid_conditions"},
			{"grant beyond the validity applied for", withProvider, func(id string) error {
				_, err := h.svc.Approve(ctx, gab, id, &Conditions{ValidUntil: "2030-01-01", Approval: "x"})
				return err
			}, "invalid_conditions"},
			{"grant a wider region", withProvider, func(id string) error {
				_, err := h.svc.Approve(ctx, gab, id, &Conditions{RowScope: "000000", Approval: "x"})
				return err
			}, "invalid_conditions"}, // applied for its own region, Suzhou
			{"grant without an approval number", withProvider, func(id string) error { _, err := h.svc.Approve(ctx, gab, id, &Conditions{}); return err }, "approval_required"},
			{"grant a mask the policy does not know", withProvider, func(id string) error {
				_, err := h.svc.Approve(ctx, gab, id, &Conditions{Masks: map[string]string{"name": "rot13"}, Approval: "x"})
				return err
			}, "agreement_rejected"},
		} {
			before := h.snap(tc.id)
			n := h.audit.count()
			err := tc.do(tc.id)
			if err == nil || reasonCode(err) != tc.code {
				t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
				continue
			}
			if after := h.snap(tc.id); !reflect.DeepEqual(before, after) {
				t.Errorf("%s changed something:\nbefore %+v\nafter  %+v", tc.name, before.app, after.app)
			}
			if strings.HasSuffix(tc.name, "reads") {
				continue // reading changes nothing, and is not a step of the log
			}
			ev := h.audit.last()
			if h.audit.count() != n+1 || ev.Decision != audit.Deny || ev.CaseRef != tc.id || !slices.Contains(ev.Reasons, tc.code) {
				t.Errorf("%s: audited %+v", tc.name, ev)
			}
		}

		// Bad submissions: refused, audited, nothing stored.
		for _, tc := range []struct {
			name string
			mod  func(*Request)
			code string
		}{
			{"unknown dataset", func(r *Request) { r.Dataset = "population.nobody" }, "unknown_dataset"},
			{"a dataset never shared", func(r *Request) { r.Dataset, r.Columns = "population.criminal_record", nil }, "dataset_not_shared"},
			{"unknown column", func(r *Request) { r.Columns = []string{"name", "shoe_size"} }, "unknown_column"},
			{"no legal basis", func(r *Request) { r.LegalBasis = " " }, "invalid_application"},
			{"no purpose", func(r *Request) { r.Purpose = "" }, "invalid_application"},
			{"validity backwards", func(r *Request) { r.ValidUntil = "2025-01-01" }, "invalid_application"},
			{"access not known", func(r *Request) { r.Access = []string{"delete"} }, "invalid_application"},
			{"renew something not granted", func(r *Request) { r.Renews = submitted }, "invalid_application"},
			{"another department's system", func(r *Request) { r.System = "gab/steward" }, "bad_system"},
			{"markup as a system", func(r *Request) { r.System = "<b>x</b>" }, "bad_system"},
			{"a legal basis over 4 KiB", func(r *Request) { r.LegalBasis = strings.Repeat("法", 1366) }, "text_too_long"},
		} {
			r := housing()
			tc.mod(&r)
			before, _ := h.svc.List(ctx, authority, Filter{})
			if _, err := h.svc.Submit(ctx, applicant, r); err == nil || reasonCode(err) != tc.code {
				t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
			}
			if after, _ := h.svc.List(ctx, authority, Filter{}); len(after) != len(before) {
				t.Errorf("%s stored an application", tc.name)
			}
			if ev := h.audit.last(); ev.Decision != audit.Deny || ev.Action != ActSubmit {
				t.Errorf("%s: audited %+v", tc.name, ev)
			}
		}
	})
}

// A step whose audit event cannot be written is refused and changes nothing.
func TestNoStepWithoutAudit(t *testing.T) {
	h := newHarness(t, t.TempDir()+"/a.db")
	a := h.submit(housing())
	h.must(h.svc.Review(ctx, authority, a.ID, Outcome{Grant: true}))
	before := h.snap(a.ID)
	h.audit.fail = true
	_, err := h.svc.Approve(ctx, gab, a.ID, &Conditions{Approval: "x"})
	if reasonCode(err) != "audit_unavailable" {
		t.Fatalf("approve with the spool down: %v", err)
	}
	if _, err := h.svc.Submit(ctx, applicant, housing()); reasonCode(err) != "audit_unavailable" {
		t.Fatalf("submit with the spool down: %v", err)
	}
	h.audit.fail = false
	if after := h.snap(a.ID); !reflect.DeepEqual(before, after) {
		t.Fatalf("changed without audit: %+v", after.app)
	}
	if as, _ := h.svc.List(ctx, authority, Filter{}); len(as) != 1 {
		t.Fatalf("%d applications, want the one submitted with the spool up", len(as))
	}
	h.must(h.svc.Approve(ctx, gab, a.ID, &Conditions{Approval: "x"}))
}

// An application left unanswered is overdue from the first instant after its last
// working day, not a moment before; lists, counts and the metric say so.
func TestOverdueOnTheRightDay(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn)
		// Friday before the 2026 Spring Festival: two working days are Saturday 14
		// February (调休) and Tuesday 24 February, after nine days off.
		h.clock.set(cst("2026-02-13T16:00"))
		a := h.submit(housing())
		if want := cst("2026-02-25T00:00"); !a.Due.Equal(want) {
			t.Fatalf("due %s, want the end of 2026-02-24", a.Due.In(chinaZone))
		}
		for _, tc := range []struct {
			at      string
			overdue bool
		}{
			{"2026-02-14T18:00", false},
			{"2026-02-23T12:00", false},
			{"2026-02-24T23:59", false},
			{"2026-02-25T00:00", true},
			{"2026-03-02T09:00", true},
		} {
			h.clock.set(cst(tc.at))
			shown := h.must(h.svc.Show(ctx, applicant, a.ID))
			list, err := h.svc.List(ctx, gab, Filter{Overdue: true})
			if err != nil {
				t.Fatal(err)
			}
			n, _, err := h.svc.Overdue(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if shown.Overdue != tc.overdue || (len(list) == 1) != tc.overdue || (n == 1) != tc.overdue {
				t.Errorf("at %s: overdue %v, listed %d, counted %d; want %v", tc.at, shown.Overdue, len(list), n, tc.overdue)
			}
		}
		// Reviewed late: the provider's clock starts from the review.
		h.clock.set(cst("2026-03-02T09:00"))
		a = h.must(h.svc.Review(ctx, authority, a.ID, Outcome{Grant: true}))
		if a.Overdue || !a.Due.Equal(cst("2026-03-10T00:00")) {
			t.Errorf("after review: overdue %v due %s", a.Overdue, a.Due.In(chinaZone))
		}
		// Outside the calendar: a clear error, nothing stored.
		h.clock.set(cst("2026-12-31T09:00"))
		if _, err := h.svc.Submit(ctx, applicant, housing()); reasonCode(err) != "outside_calendar" || !strings.Contains(err.Error(), "2027") {
			t.Errorf("a deadline in 2027: %v", err)
		}
	})
}

// Lists show each party its own: the applicant its applications, a provider those for
// its datasets, the data authority all.
func TestListsByParty(t *testing.T) {
	h := newHarness(t, t.TempDir()+"/a.db")
	h.submit(housing())
	r := housing()
	r.Dataset, r.Columns = "resource.land_parcel", []string{"parcel_code", "area_m2"}
	h.submit(r)
	for _, tc := range []struct {
		who  Caller
		want int
	}{{applicant, 2}, {gab, 1}, {Caller{Subject: exchange.Subject{Department: "zrzyb", System: "steward"}}, 1}, {scjgj, 0}, {authority, 2}} {
		as, err := h.svc.List(ctx, tc.who, Filter{})
		if err != nil || len(as) != tc.want {
			t.Errorf("%s sees %d (%v), want %d", tc.who.Subject, len(as), err, tc.want)
		}
	}
}

// Reopening a database applies no migration twice, and keeps what it holds.
func TestReopenKeepsState(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn)
		a := h.submit(housing())
		st, err := OpenStore(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		got, err := st.getApplication(ctx, st.db, a.ID)
		if err != nil || got.State != Submitted {
			t.Fatalf("after reopening: %+v, %v", got, err)
		}
		var n int
		if err := st.db.QueryRow(`SELECT COUNT(*) FROM apply_migrations`).Scan(&n); err != nil || n != len(migrations) {
			t.Errorf("%d migrations recorded (%v), want %d", n, err, len(migrations))
		}
	})
}

func TestCorrectionFlaggedAnsweredClosed(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn)
		served := "张三"
		h.svc.cfg.Values = func(dataset, key, column string) (string, bool) {
			return served, dataset == "population.person" && key == "33010619900101123X" && column == "name"
		}
		flagger := Caller{Subject: exchange.Subject{Department: "mz-3301", System: "dibao-review"}}
		f := Flag{Dataset: "population.person", Key: "33010619900101123X", Column: "name", Value: "张叁", Evidence: "户籍证明 杭民〔2026〕88号"}
		for _, bad := range []struct {
			mod  func(*Flag)
			code string
		}{
			{func(f *Flag) { f.Column = "id_number" }, "invalid_correction"},
			{func(f *Flag) { f.Column = "shoe" }, "unknown_column"},
			{func(f *Flag) { f.Evidence = "" }, "invalid_correction"},
			// The key is checked as the dataset's key field is in every record.
			{func(f *Flag) { f.Key = "not-a-key" }, "bad_key"},
			{func(f *Flag) { f.Key = "330106199001011234" }, "bad_key"}, // a wrong check digit
			{func(f *Flag) { f.Key = "" }, "bad_key"},
			{func(f *Flag) { f.Dataset = "population.nobody" }, "unknown_dataset"},
			// Only a department the dataset is shared with flags its records.
			{func(f *Flag) {
				f.Dataset = "economy.indicator"
				f.Key = `["GDP","330100","2024Q3"]`
				f.Column = "value"
			}, "no_agreement"},
		} {
			g := f
			bad.mod(&g)
			if _, err := h.svc.FlagRecord(ctx, flagger, g); reasonCode(err) != bad.code {
				t.Errorf("%+v: %v, want %s", g, err, bad.code)
			}
		}
		if _, err := h.svc.FlagRecord(ctx, Caller{Subject: exchange.Subject{Department: "fgw-33", System: "x"}}, f); codeOf(err) != "no_agreement" {
			t.Errorf("a department without an agreement for population.person flagging: %v, want no_agreement", err)
		}
		denied := 0
		for _, ev := range h.audit.events {
			if ev.Action == ActFlag && ev.Decision == audit.Deny {
				denied++
			}
		}
		if denied != 9 {
			t.Errorf("%d refused flags audited, want 9", denied)
		}
		lower := f
		lower.Key = "33010619900101123x" // normalized as the lookups' keys are
		x, err := h.svc.FlagRecord(ctx, flagger, lower)
		if err != nil {
			t.Fatal(err)
		}
		if x.ID != "COR-2026-000001" || x.State != Flagged || x.Provider != "gab" || !x.Due.Equal(cst("2026-03-10T00:00")) {
			t.Fatalf("flagged: %+v", x)
		}
		queue, _ := h.svc.ListFixes(ctx, gab, Filter{State: Flagged})
		if len(queue) != 1 {
			t.Fatalf("the provider's queue holds %d", len(queue))
		}
		if _, err := h.svc.AnswerFlag(ctx, flagger, x.ID, Answer{Corrected: true}); reasonCode(err) != "own_application" {
			t.Errorf("the flagger answering: %v", err)
		}
		if _, err := h.svc.AnswerFlag(ctx, gab, x.ID, Answer{}); reasonCode(err) != "reasons_required" {
			t.Errorf("a rejection without a reason: %v", err)
		}
		x = h.must2(h.svc.AnswerFlag(ctx, gab, x.ID, Answer{Corrected: true, Note: "已在户籍系统更正"}))
		if x.State != Corrected || !x.Due.IsZero() {
			t.Fatalf("answered: %+v", x)
		}
		if n, err := h.svc.CloseServed(ctx); n != 0 || err != nil {
			t.Fatalf("closed %d (%v) while the old value is served", n, err)
		}
		served = "张叁"
		if n, err := h.svc.CloseServed(ctx); n != 1 || err != nil {
			t.Fatalf("closed %d (%v) once the corrected value is served", n, err)
		}
		x = h.must2(h.svc.ShowFix(ctx, flagger, x.ID))
		if x.State != Closed || len(x.Steps) != 3 || x.Steps[2].By != exchangeSubject {
			t.Errorf("closed: %+v", x)
		}
		if ev := h.audit.last(); ev.Action != ActCloseFix || ev.Keys[0] != f.Key || ev.Decision != audit.Allow {
			t.Errorf("close event %+v", ev)
		}
	})
}

func (h *harness) must2(x *Correction, err error) *Correction {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
	return x
}

// TestNoOneGrantsThemselves: the data authority is also a department that may apply; it
// never reviews or coordinates its own application (it could grant itself what the
// provider refused), and a provider does not flag its own data (it corrects it at the
// source: a flag only it could answer would never be answered).
func TestNoOneGrantsThemselves(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		h := newHarness(t, dsn)
		self := Caller{Subject: exchange.Subject{Department: "zwfw", System: "other"}}
		a, err := h.svc.Submit(ctx, self, housing())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.Review(ctx, authority, a.ID, Outcome{Grant: true}); codeOf(err) != "own_application" {
			t.Fatalf("the data authority reviewing its own application: %v, want own_application", err)
		}
		if got, _ := h.svc.Show(ctx, self, a.ID); got == nil || got.State != Submitted {
			t.Fatalf("after the refused review the application is %+v, want still submitted", got)
		}
		_, err = h.svc.FlagRecord(ctx, gab, Flag{Dataset: "population.person", Key: "33010619900101123X", Column: "name", Value: "张三", Evidence: "户籍档案"})
		if codeOf(err) != "own_application" {
			t.Fatalf("a provider flagging its own data: %v, want own_application", err)
		}
	})
}

// codeOf returns the policy's reason code of a refusal (or the error's own code).
func codeOf(err error) string {
	xe, ok := errors.AsType[*exchange.Error](err)
	if !ok {
		return ""
	}
	if len(xe.Reasons) > 0 {
		return xe.Reasons[0].Code
	}
	return xe.Code
}
