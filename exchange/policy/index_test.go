package policy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"govx/exchange"
	"govx/exchange/policy"
	"govx/policies"
)

// clock is the engines' time in these tests: the day the cases are written for, so that
// what the index holds does not change as the calendar passes the agreements' validity.
func clock() time.Time { return day }

// TestIndexEqualsRego is the property that makes the decision index safe: for every
// department and dataset of the policy (and unknown ones) and every action (and an
// unknown one), requests drawn from the policy data and outside it — other purposes and
// systems, random column lists in random order, unknown columns, filters, case
// references, limits — at times on and around the validity boundaries, decided by the
// engine equal a fresh Rego evaluation field by field, before and after a reload that
// moves those boundaries. Thousands of them must come from the index, allowing and
// denying, or the property says nothing.
func TestIndexEqualsRego(t *testing.T) {
	dir := copyPolicies(t, false)
	eng, err := policy.New(cat, policy.WithDir(dir), policy.WithPollInterval(time.Hour), policy.WithCacheSize(0), policy.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if m := eng.IndexMode(); !m.On {
		t.Fatalf("the shipped policy: index mode %v, want on", m)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	checkIndexEqualsRego(t, eng, rng, "before reload")

	reloadMovedBoundaries(t, eng, dir)
	checkIndexEqualsRego(t, eng, rng, "after reload")
}

// checkIndexEqualsRego compares the engine's decisions (index or, outside it, Rego) with
// fresh evaluations.
func checkIndexEqualsRego(t *testing.T, eng *policy.Engine, rng *rand.Rand, round string) {
	t.Helper()
	b := eng.Bundle()
	pick := func(s []string) string { return s[rng.IntN(len(s))] }

	depts := []string{"no-such-dept"}
	for _, d := range b.Departments {
		depts = append(depts, d.Code)
	}
	datasets := []string{"no.such_dataset"}
	for _, e := range b.Datasets {
		datasets = append(datasets, e.Dataset)
	}
	actions := []exchange.Action{"delete"}
	actions = append(actions, exchange.Actions()...)
	purposes, systems := requestNames(b)
	now := clock()
	ctx := context.Background()
	var n, hits, allowHits, aggregateHits int
	for _, dept := range depts {
		for _, dsID := range datasets {
			var agrs []*policies.Agreement
			for i := range b.Agreements {
				if a := &b.Agreements[i]; a.Consumer == dept && a.Dataset == dsID {
					agrs = append(agrs, a)
				}
			}
			var fields []string
			if ds, ok := cat.Dataset(dsID); ok {
				fields = ds.FieldNames()
			}
			// Times on and a nanosecond either side of every boundary, now, and random
			// instants from a year ago to three years on.
			var times []time.Time
			for _, bd := range b.Boundaries(dept, dsID) {
				for _, d := range []int64{-1, 0, 1} {
					times = append(times, time.Unix(0, bd+d))
				}
			}
			times = append(times, now)
			for _, act := range actions {
				for range 12 {
					req := exchange.Request{
						Subject: exchange.Subject{Department: dept, System: pick(systems)},
						Action:  act, Dataset: dsID, Purpose: pick(purposes),
						Columns: randomColumns(rng, fields),
					}
					// Most of them as a system asks under one of the pair's agreements, or
					// with nothing but the department, as a catalog listing does.
					switch {
					case len(agrs) > 0 && rng.IntN(3) > 0:
						a := agrs[rng.IntN(len(agrs))]
						req.System, req.Purpose = a.System, pick(a.Purposes)
						switch rng.IntN(3) {
						case 0:
							req.Columns = nil
						case 1:
							req.Columns = a.Columns
						}
					case rng.IntN(2) == 0:
						req.System, req.Purpose, req.Columns = "", "", nil
					}
					if rng.IntN(2) == 0 {
						req.Time = times[rng.IntN(len(times))]
					} else {
						req.Time = now.Add(time.Duration(rng.Int64N(int64(4*365*24*time.Hour))) - 365*24*time.Hour)
					}
					req.CaseRef = pick([]string{"", "330106-2026-000123", fmt.Sprint(rng.IntN(1000))})
					req.Limit = int64(rng.IntN(3))
					if rng.IntN(3) == 0 && len(fields) > 0 {
						req.Filter = []exchange.Filter{{Column: pick(fields), Op: exchange.OpEq, Value: "x"}}
					}
					before := eng.Stats().IndexHits
					got := eng.Decide(ctx, req)
					fresh := eng.DecideUncached(ctx, req)
					n++
					if eng.Stats().IndexHits > before {
						hits++
						if got.Allow {
							allowHits++
						}
						if got.Aggregate != nil {
							aggregateHits++
						}
					}
					if len(fresh.Reasons) > 0 && fresh.Reasons[0].Code == policy.CodePolicyError {
						t.Fatalf("%s, %+v: the policy failed: %v", round, req, fresh.Reasons)
					}
					if diff := decisionDiff(got, fresh); diff != "" {
						t.Fatalf("%s, %+v (index hit: %v):\n%s", round, req, eng.Stats().IndexHits > before, diff)
					}
				}
			}
		}
	}
	t.Logf("%s: %d requests, %d from the index (%d allowed, %d with aggregate terms); index %+v", round, n, hits, allowHits, aggregateHits, eng.IndexStats())
	// A decision field added after the index (the aggregate terms) comes through it too.
	grantsAggregate := slices.ContainsFunc(b.Agreements, func(a policies.Agreement) bool { return slices.Contains(a.Actions, string(exchange.ActionAggregate)) })
	if grantsAggregate && aggregateHits == 0 {
		t.Errorf("%s: no decision from the index carried aggregate terms, though agreements grant aggregate", round)
	}
	if hits < n/4 || allowHits < 200 || hits-allowHits < 200 {
		t.Fatalf("%s: %d of %d decisions came from the index, %d of them allowing: too few to compare", round, hits, n, allowHits)
	}
}

// randomColumns returns no columns, or a few of fields in random order, sometimes with a
// repeat or a column the dataset does not have.
func randomColumns(rng *rand.Rand, fields []string) []string {
	if len(fields) == 0 || rng.IntN(4) == 0 {
		return nil
	}
	cols := slices.Clone(fields)
	rng.Shuffle(len(cols), func(i, j int) { cols[i], cols[j] = cols[j], cols[i] })
	cols = cols[:1+rng.IntN(len(cols))]
	switch rng.IntN(8) {
	case 0:
		cols = append(cols, cols[0])
	case 1:
		cols = append(cols, "shoe_size")
	}
	return cols
}

// decisionDiff names every field of exchange.Decision in which a and b differ, including
// fields added after this test was written.
func decisionDiff(a, b exchange.Decision) string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range va.NumField() {
		fa, fb := va.Field(i).Interface(), vb.Field(i).Interface()
		if !reflect.DeepEqual(fa, fb) {
			out = append(out, fmt.Sprintf("%s: index %#v, Rego %#v", va.Type().Field(i).Name, fa, fb))
		}
	}
	return strings.Join(out, "\n")
}

// TestIndexMode follows what a steward sees: the shipped policy is indexed (method,
// metric, and the first decision after start and after a reload come from the index);
// a policy reading a part of the request the index cannot enumerate, or using the time
// beyond agreement validity, is not, and the engine names the line; and such requests
// are still decided, by the Rego.
func TestIndexMode(t *testing.T) {
	dir := copyPolicies(t, false)
	eng := dirEngine(t, dir)
	ctx := context.Background()
	req := phoneReq
	req.Time = clock()
	req.Columns = nil
	if m := eng.IndexMode(); !m.On || !strings.Contains(m.String(), "the requests the policy data name are decided at load time") {
		t.Fatalf("the shipped policy: index mode %v, want on", m)
	}
	if g := gauge(t, eng, "govx_policy_decision_index_on"); g != 1 {
		t.Errorf("govx_policy_decision_index_on = %v with the shipped policy, want 1", g)
	}
	if g := gauge(t, eng, "govx_policy_decision_index_entries"); g < 100 {
		t.Errorf("govx_policy_decision_index_entries = %v with the shipped policy", g)
	}
	if d := eng.Decide(ctx, req); !d.Allow || eng.Stats().IndexHits != 1 {
		t.Fatalf("the first decision: %+v, stats %+v, want allowed from the index", d, eng.Stats())
	}

	// A reload switches to a revision whose index is built: its first decision is an
	// index hit too.
	replaceIn(t, filepath.Join(dir, "agreements.yaml"), "columns: [id_number, name, household_region, birth_date]",
		"columns: [id_number, name, household_region, birth_date, phone]")
	if err := eng.Reload(); err != nil {
		t.Fatal(err)
	}
	if d := eng.Decide(ctx, req); !d.Allow || eng.Stats().IndexHits != 2 || !slices.Contains(d.Columns, "phone") {
		t.Fatalf("the first decision after the reload: %+v, stats %+v, want allowed with phone from the index", d, eng.Stats())
	}

	rego := filepath.Join(dir, "sharing.rego")
	for _, tc := range []struct {
		name, old, new, at, why string
	}{
		{name: "case_ref read", old: "\tactions[input.action]\n\tdepartment\n", new: "\tactions[input.action]\n\tdepartment\n\tinput.request.case_ref != \"none\"\n",
			at: "input.request.case_ref != ", why: "reads input.request.case_ref, which the decision index does not enumerate"},
		{name: "office hours", old: "\tgrant_ok\n}\n", new: "\tgrant_ok\n\toffice_hours\n}\n\noffice_hours if {\n\t[hour, _, _] := time.clock(now)\n\thour >= 0\n}\n",
			why: "decisions are not cacheable (see decision cache), and an index entry is a cache entry made ahead of time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			replaceIn(t, rego, tc.old, tc.new)
			defer replaceIn(t, rego, tc.new, tc.old)
			b, err := policies.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			m, err := policy.IndexModeOf(b)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.why
			if tc.at != "" {
				want = fmt.Sprintf("sharing.rego:%d %s", lineWith(t, rego, tc.at), tc.why)
			}
			if m.On || len(m.Why) != 1 || m.Why[0] != want {
				t.Fatalf("index mode %q, want off — %s", m, want)
			}
			if err := eng.Reload(); err != nil {
				t.Fatal(err)
			}
			if eng.IndexMode().On || gauge(t, eng, "govx_policy_decision_index_on") != 0 || eng.IndexStats().Entries != 0 {
				t.Fatalf("after reloading it: index mode %v, stats %+v", eng.IndexMode(), eng.IndexStats())
			}
			hits := eng.Stats().IndexHits
			if d := eng.Decide(ctx, req); !d.Allow || eng.Stats().IndexHits != hits {
				t.Fatalf("decided %+v, index hits %d → %d, want allowed by the Rego", d, hits, eng.Stats().IndexHits)
			}
		})
	}
}

// lineWith returns the first line of file that contains s.
func lineWith(t *testing.T, file, s string) int {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(raw), "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%s has no line with %q", file, s)
	return 0
}

// gauge reads a gauge from the engine's collectors.
func gauge(t *testing.T, eng *policy.Engine, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(eng.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s metric", name)
	return 0
}

// TestReloadTakesOverUnchanged follows a steward's agreement edit: the new revision
// takes over the old one's index and cache entries for the departments and datasets the
// edit did not touch (so a request seen before the reload is not evaluated again, and a
// large policy reloads in the time of the pairs it changed), and evaluates the touched
// ones afresh, the requests its cache had seen for them included, before it takes over; a policy that reads the data beyond the requesting department and dataset
// takes nothing over, since an edit anywhere may change any decision.
func TestReloadTakesOverUnchanged(t *testing.T) {
	dir := copyPolicies(t, false)
	// Without the compiled decision, which would decide the requests this test follows
	// into the cache.
	eng, err := policy.New(cat, policy.WithDir(dir), policy.WithPollInterval(time.Hour), policy.WithClock(clock), policy.WithCompiled(false))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx := context.Background()
	indexed := phoneReq
	indexed.Time, indexed.Columns = clock(), nil
	cached := indexed
	cached.Columns = []string{"name", "id_number"} // not a list the index holds
	nanjing := exchange.Request{Subject: exchange.Subject{Department: "mz-3201"}, Action: exchange.ActionRead,
		Dataset: "population.person", Purpose: "temporary-assistance", Time: clock()}
	nanjingCols := nanjing
	nanjingCols.Columns = []string{"name", "status"} // seen before the reload, in the pair it changes
	full := eng.IndexStats().Evaluations
	eng.Decide(ctx, cached)
	eng.Decide(ctx, nanjingCols)

	// decide checks that req is decided as a fresh evaluation decides it, from the index
	// or the cache as from says ("" for neither), and returns the decision.
	decide := func(step string, req exchange.Request, from string) exchange.Decision {
		t.Helper()
		s0 := eng.Stats()
		d := eng.Decide(ctx, req)
		s1 := eng.Stats()
		got := ""
		switch {
		case s1.IndexHits > s0.IndexHits:
			got = "index"
		case s1.CacheHits > s0.CacheHits:
			got = "cache"
		}
		if got != from {
			t.Errorf("%s: %+v decided from %q, want %q", step, req, got, from)
		}
		if diff := decisionDiff(d, eng.DecideUncached(ctx, req)); diff != "" {
			t.Fatalf("%s: %+v:\n%s", step, req, diff)
		}
		if d.Revision != eng.Revision() {
			t.Fatalf("%s: decision of revision %s, the engine's is %s", step, d.Revision, eng.Revision())
		}
		return d
	}

	// Nanjing's agreement now ends a day earlier: only mz-3201's population.person
	// decisions are evaluated again.
	agreements := filepath.Join(dir, "agreements.yaml")
	replaceIn(t, agreements, "valid_until: 2026-12-31\n    approval: 宁数共", "valid_until: 2026-12-30\n    approval: 宁数共")
	if err := eng.Reload(); err != nil {
		t.Fatal(err)
	}
	st := eng.IndexStats()
	if st.Reused == 0 || st.Evaluations == 0 || st.Evaluations*5 > full {
		t.Fatalf("after editing one agreement: %+v; a full build made %d evaluations", st, full)
	}
	if d := decide("after the edit", indexed, "index"); !d.Allow {
		t.Fatalf("Hangzhou after the edit: %+v", d)
	}
	decide("after the edit", cached, "cache")
	if d := decide("after the edit", nanjing, "index"); !d.Allow {
		t.Fatalf("Nanjing after the edit: %+v", d)
	}
	// Evaluated again by the new revision before it took over.
	if d := decide("after the edit", nanjingCols, "cache"); !d.Allow {
		t.Fatalf("Nanjing's projection after the edit: %+v", d)
	}

	// A policy that grants only while fewer than 10 departments hold agreements: giving
	// one of Ningbo's agreements to another department changes every decision.
	replaceIn(t, filepath.Join(dir, "sharing.rego"), "\tactions[input.action]\n\tdepartment\n", "\tactions[input.action]\n\tdepartment\n\tcount(data.agreements_by_key) < 10\n")
	if err := eng.Reload(); err != nil {
		t.Fatal(err)
	}
	if d := decide("data read whole", cached, ""); !d.Allow {
		t.Fatalf("with 9 departments holding agreements: %+v", d)
	}
	replaceIn(t, agreements, "consumer: wj-3302\n    dataset: population.person\n    purposes: [birth-certificate-issuance]",
		"consumer: gab\n    dataset: population.person\n    purposes: [birth-certificate-issuance]")
	if err := eng.Reload(); err != nil {
		t.Fatal(err)
	}
	if st := eng.IndexStats(); st.Reused != 0 {
		t.Fatalf("a policy reading the data whole took %d requests over: %+v", st.Reused, st)
	}
	for _, req := range []exchange.Request{indexed, cached} {
		if d := decide("ten departments", req, map[bool]string{true: "", false: "index"}[len(req.Columns) > 0]); d.Allow {
			t.Fatalf("with 10 departments holding agreements: %+v allowed", req)
		}
	}
}
