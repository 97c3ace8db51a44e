package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/prometheus/client_golang/prometheus"

	"govx/exchange"
	"govx/exchange/audit"
	"govx/exchange/audit/review"
	"govx/internal/testenv"
	"govx/policies"
	"govx/schemas/ident"
)

// TestDecisionRecordedAfterClientGone: a request whose client went away (its context
// cancelled) still leaves its decision event, and an allowed pull whose client is gone
// its complete event.
func TestDecisionRecordedAfterClientGone(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	bad := invalid("malformed_request", "not JSON")
	for i := 0; i < 50; i++ {
		c := hz
		c.ClientAddr = fmt.Sprintf("127.0.0.1:%d", 10000+i)
		if err := f.svc.Rejected(ctx, c, exchange.ActionLookup, "population.person", bad); err != bad {
			t.Fatalf("a rejected request whose client went away: %v, want its own error", err)
		}
	}
	g, err := f.svc.Open(context.Background(), hz, pullCmd())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Stream(ctx, g, &countSink{}); err == nil {
		t.Fatal("a pull on a cancelled request streamed to the end")
	}
	evs := events(t, f.dir)
	seen := map[string]bool{}
	var complete *audit.Event
	for _, ev := range evs {
		if ev.Kind == audit.KindDecision {
			seen[ev.ClientAddr] = true
		}
		if ev.Kind == audit.KindComplete && ev.RequestID == g.RequestID {
			complete = ev
		}
	}
	for i := 0; i < 50; i++ {
		if addr := fmt.Sprintf("127.0.0.1:%d", 10000+i); !seen[addr] {
			t.Errorf("no decision event for the request from %s", addr)
		}
	}
	if complete == nil || complete.Status != audit.StatusAborted {
		t.Fatalf("the cancelled pull's complete event: %+v, want aborted", complete)
	}
}

type panicSink struct{ countSink }

func (panicSink) Write(arrow.Record) error { panic("encoder bug") }

// TestAllowedRequestsAlwaysComplete: every way an allowed request can end writes its
// complete event with the outcome — a panic in the stream, a lookup whose reply could
// not be sent, a lookup that was sent, a pull that failed before its first byte.
func TestAllowedRequestsAlwaysComplete(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g, err := f.svc.Open(ctx, hz, pullCmd())
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the sink's panic was swallowed")
			}
		}()
		f.svc.Stream(ctx, g, &panicSink{})
	}()
	key, _ := json.Marshal(f.ids["3301"][0])
	cmd := exchange.LookupCmd{Key: key, Purpose: "minimum-living-allowance-review"}
	var sentID, goneID string
	err = f.svc.Lookup(ctx, hz, "population.person", cmd, func(rec map[string]any) (int64, error) {
		return 12, exchange.ClientGone(io.ErrClosedPipe)
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a lookup whose reply failed: %v, want the reply's error", err)
	}
	if err := f.svc.Lookup(ctx, hz, "population.person", cmd, func(rec map[string]any) (int64, error) { return 80, nil }); err != nil {
		t.Fatal(err)
	}
	failed, err := f.svc.Open(ctx, hz, pullCmd())
	if err != nil {
		t.Fatal(err)
	}
	f.svc.Fail(ctx, failed, exchange.E(exchange.Internal, "internal", "no schema"))
	f.svc.Wait() // the lookups' complete events are written after their replies

	decisions, completes := map[string]*audit.Event{}, map[string]*audit.Event{}
	for _, ev := range events(t, f.dir) {
		if ev.Kind == audit.KindDecision && ev.Decision == audit.Allow {
			decisions[ev.RequestID] = ev
			if ev.Action == "lookup" && goneID == "" {
				goneID = ev.RequestID
			} else if ev.Action == "lookup" {
				sentID = ev.RequestID
			}
		}
		if ev.Kind == audit.KindComplete {
			completes[ev.RequestID] = ev
		}
	}
	for id, d := range decisions {
		if completes[id] == nil {
			t.Errorf("allowed %s %s has no complete event", d.Action, id)
		}
	}
	for _, tc := range []struct {
		id, status, code string
		rows             int64 // -1: any
	}{
		{g.RequestID, audit.StatusError, "internal", -1}, // rows: the batch being sent counts
		{goneID, audit.StatusAborted, "client went away", 0},
		{sentID, audit.StatusOK, "", 1},
		{failed.RequestID, audit.StatusError, "internal", 0},
	} {
		c := completes[tc.id]
		if c == nil || c.Status != tc.status || c.Error != tc.code || tc.rows >= 0 && c.Rows != uint64(tc.rows) {
			t.Errorf("complete of %s: %+v, want status %s, error %q, %d rows", tc.id, c, tc.status, tc.code, tc.rows)
		}
	}
}

// ackLost is a spool that writes an allowing decision and then fails to say so, as a
// spool does whose acknowledgement arrives after its caller's deadline.
type ackLost struct {
	*audit.Spool
	once sync.Once
}

func (a *ackLost) Append(ctx context.Context, ev *audit.Event) error {
	err := a.Spool.Append(ctx, ev)
	lost := false
	if ev.Kind == audit.KindDecision && ev.Decision == audit.Allow {
		a.once.Do(func() { lost = true })
	}
	if lost {
		return context.DeadlineExceeded
	}
	return err
}

// TestAllowWithoutAckIsClosed: when the spool took an allowing decision but failed to
// acknowledge it, the caller gets 503 audit_unavailable and the log holds a complete
// event saying the request returned nothing: never an allow that reads as data served.
func TestAllowWithoutAckIsClosed(t *testing.T) {
	f := newFixture(t)
	f.svc.audit = &ackLost{Spool: f.spool}
	_, err := f.svc.Open(context.Background(), hz, pullCmd())
	if exchange.KindOf(err) != exchange.Unavailable || !strings.Contains(err.Error(), "audit_unavailable") {
		t.Fatalf("pull with a lost acknowledgement: %v, want audit_unavailable", err)
	}
	evs := events(t, f.dir)
	if len(evs) != 2 || evs[0].Decision != audit.Allow || evs[1].Kind != audit.KindComplete || evs[1].RequestID != evs[0].RequestID ||
		evs[1].Status != audit.StatusError || evs[1].Error != "audit_unavailable" || evs[1].Rows != 0 {
		for _, ev := range evs {
			t.Logf("%s %s %s %s rows %d", ev.Kind, ev.Decision, ev.Status, ev.Error, ev.Rows)
		}
		t.Fatal("want the allow decision closed by a complete event with audit_unavailable and no rows")
	}
}

// citizenID returns a valid citizen ID of county born 1990 with sequence n.
func citizenID(t *testing.T, county string, n int) string {
	body := fmt.Sprintf("%s1990%02d%02d%03d", county, 1+n/28%12, 1+n%28, n%1000)
	c, err := ident.CitizenIDCheckChar(body)
	if err != nil {
		t.Fatal(err)
	}
	return body + string(c)
}

func reportOf(t *testing.T, dir string) *review.Report {
	t.Helper()
	st, err := audit.OpenSpoolStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	it, err := st.Events(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := review.BuildReport(context.Background(), it, review.ReportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func findings(rep *review.Report, kind, dept string) []review.Finding {
	var out []review.Finding
	for _, f := range rep.Findings {
		if f.Kind == kind && f.Department == dept {
			out = append(out, f)
		}
	}
	return out
}

// TestVerifyGuessingBudget: 300 different name claims against one key are answered 5
// times (the shipped budget), then refused with 429 verify_budget_exhausted, each
// refusal audited; the report flags the guessing and the refusals; an hour later the
// key may be checked again.
func TestVerifyGuessingBudget(t *testing.T) {
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f := newFixture(t, WithClock(clock))
	nb := Caller{Subject: exchange.Subject{Department: "wj-3302", System: "birth-cert"}, ClientAddr: "127.0.0.1:5"}
	key, _ := json.Marshal(f.ids["3302"][0])
	verify := func(i int) error {
		_, err := f.svc.Verify(context.Background(), nb, "population.person", exchange.VerifyCmd{Key: key,
			Purpose: "birth-certificate-issuance", Claims: map[string]any{"name": fmt.Sprintf("王%d", i)}})
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, 300)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = verify(i) }()
	}
	wg.Wait()
	answered, refused := 0, 0
	for _, err := range errs {
		switch xe, _ := err.(*exchange.Error); {
		case err == nil:
			answered++
		case xe != nil && xe.Code == "verify_budget_exhausted" && xe.Kind == exchange.ResourceExhausted:
			refused++
		default:
			t.Fatalf("verify: %v", err)
		}
	}
	if answered != 5 || refused != 295 {
		t.Fatalf("%d answered, %d refused; want 5 and 295", answered, refused)
	}
	denials := 0
	for _, ev := range events(t, f.dir) {
		if ev.Decision == audit.Deny && ev.Error == "verify_budget_exhausted" && len(ev.Keys) == 1 {
			denials++
		}
	}
	if denials != 295 {
		t.Errorf("%d refusals audited with the key, want 295", denials)
	}
	rep := reportOf(t, f.dir)
	if g := findings(rep, review.FindingKeyGuessing, "wj-3302"); len(g) != 1 || g[0].Count != 300 {
		t.Errorf("key-guessing findings %+v, want one of 300 verifies", g)
	}
	if b := findings(rep, review.FindingBudget, "wj-3302"); len(b) != 1 || b[0].Count != 295 {
		t.Errorf("budget-exhausted findings %+v, want one of 295 refusals", b)
	}
	mu.Lock()
	now = now.Add(time.Hour + time.Second)
	mu.Unlock()
	if err := verify(301); err != nil {
		t.Fatalf("an hour later: %v", err)
	}
}

// TestLookupDistinctKeysBudget: with a budget of 200 distinct keys an hour in the policy
// data, a department's 250 lookups of distinct keys are answered 200 times (found or
// not: guessing keys is guessing) and refused 50 times with 429 lookup_budget_exhausted;
// the same key may still be looked up again within its own budget, and the report flags
// the sweep and the refusals.
func TestLookupDistinctKeysBudget(t *testing.T) {
	dir := t.TempDir()
	if err := policies.CopyEmbedded(dir); err != nil {
		t.Fatal(err)
	}
	cat := filepath.Join(dir, "catalog.yaml")
	raw, _ := os.ReadFile(cat)
	edited := strings.Replace(string(raw), "distinct_keys: 1000, window: 1h", "distinct_keys: 200, window: 1h", 1)
	if edited == string(raw) {
		t.Fatal("catalog.yaml has no population.person key_budget to edit")
	}
	os.WriteFile(cat, []byte(edited), 0o644)
	b, err := policies.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureWith(t, b)
	lookupKey := func(id string) error {
		key, _ := json.Marshal(id)
		_, err := lookup(f, context.Background(), hz, exchange.LookupCmd{Key: key, Purpose: "minimum-living-allowance-review"})
		return err
	}
	answered, refused := 0, 0
	for i := 0; i < 250; i++ {
		switch err := lookupKey(citizenID(t, "330106", 500+i)); {
		case err == nil || exchange.KindOf(err) == exchange.NotFound:
			answered++
		case strings.Contains(err.Error(), "lookup_budget_exhausted") && exchange.KindOf(err) == exchange.ResourceExhausted:
			refused++
		default:
			t.Fatalf("lookup %d: %v", i, err)
		}
	}
	if answered != 200 || refused != 50 {
		t.Fatalf("%d answered, %d refused; want 200 and 50", answered, refused)
	}
	if err := lookupKey(citizenID(t, "330106", 500)); exchange.KindOf(err) != exchange.NotFound {
		t.Fatalf("a key already counted, looked up again: %v, want it answered (not found)", err)
	}
	f.svc.Wait()
	rep := reportOf(t, f.dir)
	if e := findings(rep, review.FindingEnumeration, "mz-3301"); len(e) != 1 || e[0].Count != 250 {
		t.Errorf("enumeration findings %+v, want one of 250 distinct keys", e)
	}
	if r := findings(rep, review.FindingBudget, "mz-3301"); len(r) != 1 || r[0].Count != 50 {
		t.Errorf("budget-exhausted findings %+v, want one of 50 refusals", r)
	}
}

// TestAuthFailuresCounted: failed authentications beyond the per-address audit budget
// are not audited one by one, but every one is counted by govx_auth_failures_total.
func TestAuthFailuresCounted(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.svc.Collectors()...)
	unauth := exchange.E(exchange.Unauthenticated, "unauthenticated", "no token")
	anon := Caller{ClientAddr: "192.0.2.7:4000"}
	for i := 0; i < 200; i++ {
		f.svc.Unauthenticated(context.Background(), anon, exchange.ActionRead, "population.person", unauth)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "govx_auth_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			counts[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	audited := float64(len(events(t, f.dir)))
	if counts["yes"] != audited || counts["no"] != 200-audited || counts["no"] < 150 {
		t.Fatalf("govx_auth_failures_total %v with %v audited events; want every one of 200 counted, most of them unaudited", counts, audited)
	}
}

// TestAllowedPullRecordsScope: an allowed pull's decision event records the whole scope
// it could return — the decision's row filter, marked as the policy's, and the
// caller's filter — so that who-read-my-record can be answered whatever the policy
// becomes later.
func TestAllowedPullRecordsScope(t *testing.T) {
	f := newFixture(t)
	cmd := pullCmd()
	cmd.Filter = []exchange.Filter{{Column: "household_region", Op: "eq", Value: "330106"}}
	if _, err := f.svc.Open(context.Background(), hz, cmd); err != nil {
		t.Fatal(err)
	}
	ev := events(t, f.dir)[0]
	var scope []struct {
		exchange.Filter
		By string `json:"by"`
	}
	if err := json.Unmarshal([]byte(ev.Filter), &scope); err != nil {
		t.Fatalf("filter %q: %v", ev.Filter, err)
	}
	if len(scope) != 2 || scope[0].By != "policy" || scope[0].Column != "household_region" || scope[0].Op != "prefix" ||
		scope[1].By != "" || scope[1].Column != "household_region" || scope[1].Value != "330106" {
		t.Fatalf("recorded scope %s, want the policy's region filter then the caller's filter", ev.Filter)
	}
}

// TestBoundEventsOfRequests: a request's own text is bounded before it is recorded: a
// 900,000-character dataset name from an authenticated caller is kept as a prefix, its
// length and its SHA-256; from an unauthenticated one the whole event stays within
// 2 KiB.
func TestBoundEventsOfRequests(t *testing.T) {
	f := newFixture(t)
	huge := strings.Repeat("\x1bA", 450000)
	f.svc.Rejected(context.Background(), hz, exchange.ActionRead, huge, invalid("unknown_dataset", "no"))
	f.svc.Unauthenticated(context.Background(), Caller{ClientAddr: "198.51.100.1:1"}, exchange.ActionRead, huge,
		exchange.E(exchange.Unauthenticated, "unauthenticated", "no token"))
	evs := events(t, f.dir)
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2", len(evs))
	}
	if d := evs[0].Dataset; len(d) > audit.DefaultLimits.Text || !strings.HasPrefix(d, "\x1bA\x1bA") || !strings.Contains(d, "[cut: 900000 bytes, sha256 ") {
		t.Errorf("authenticated event's dataset: %d bytes, %.60q…", len(d), d)
	}
	if n := len(evs[1].Canonical()); n > audit.MaxUnauthenticatedEventBytes || !strings.Contains(evs[1].Dataset, "[cut: 900000 bytes") {
		t.Errorf("unauthenticated event: %d bytes (cap %d), dataset %.60q…", n, audit.MaxUnauthenticatedEventBytes, evs[1].Dataset)
	}
}

// TestTicketRefusedWhileAuditDown: a Flight ticket issued while the audit log worked is
// not served once the log cannot record (its spool directory removed here): no data
// leaves that no complete event could close, nor after the log holding its decision may
// have gone.
func TestTicketRefusedWhileAuditDown(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tkt := f.pullTicket(t)
	if err := os.RemoveAll(f.dir); err != nil {
		t.Fatal(err)
	}
	testenv.WaitForState(t, 5*time.Second, "the spool says it cannot write", func() (bool, string) { return f.spool.Writable() != nil, "" })
	_, err := f.svc.Redeem(ctx, hz, tkt)
	if xe, ok := errors.AsType[*exchange.Error](err); !ok || xe.Code != "audit_unavailable" {
		t.Fatalf("ticket redeemed while the audit log cannot record: %v, want audit_unavailable", err)
	}
}
