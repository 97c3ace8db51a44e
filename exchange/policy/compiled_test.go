package policy_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"govx/exchange"
	"govx/exchange/policy"
	"govx/policies"
)

// TestCompiledEqualsRego is the property that makes the compiled decision safe: over
// the shipped policy data and random worlds (departments at every level, datasets of
// every share type and one the policy does not know, agreements with and without a
// system, several purposes, verify-only and aggregate-only ones, column lists, masks,
// unmasked columns, regions, row caps, validity in the past, around now and in the
// future) and random requests (every action and unknown ones, unknown departments,
// datasets and columns, empty and unnamed purposes and systems, column subsets,
// supersets, repeats and none, times on and a nanosecond either side of every validity
// boundary), every compiled decision equals a fresh Rego evaluation field by field.
// Worlds that pass policies.Check are also loaded into an engine, whose load-time check
// must pass and whose decisions must equal the Rego's. Thousands of decisions must come
// from the compiled decision, allowing and denying for most reason codes, or the
// property says nothing.
func TestCompiledEqualsRego(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 100))
	shipped, err := policies.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	worlds, perWorld := 40, 250
	if testing.Short() {
		worlds, perWorld = 12, 200
	}
	var total, compiledN, allowed int
	codes := map[string]int{}
	checked := 0
	for w := range worlds {
		b := shipped
		if w > 0 {
			b = randomWorld(t, rng, w%4 == 3)
		}
		u, err := policy.NewUnchecked(b, cat)
		if err != nil {
			t.Fatalf("world %d: %v", w, err)
		}
		var eng *policy.Engine
		// An engine builds an index, which takes a while: a few checked worlds suffice,
		// the rest are compared without one.
		probs := policies.Check(b, cat)
		if w > 0 && w%4 != 3 && len(probs) > 0 {
			t.Logf("world %d: %v", w, probs[0])
		}
		if len(probs) == 0 && checked < 4 {
			checked++
			eng, err = policy.New(cat, policy.WithBundle(b), policy.WithClock(clock), policy.WithCacheSize(0))
			if err != nil {
				t.Fatal(err)
			}
			if m := eng.CompiledMode(); !m.On {
				t.Fatalf("world %d: compiled mode %v, want on", w, m)
			}
		}
		reqs := randomRequests(rng, b, perWorld)
		if w == 0 {
			reqs = append(reqs, randomRequests(rng, b, 3*perWorld)...)
		}
		for _, req := range reqs {
			want := u.Rego(req)
			if len(want.Reasons) > 0 && want.Reasons[0].Code == policy.CodePolicyError && b == shipped {
				t.Fatalf("the shipped policy failed on %+v: %v", req, want.Reasons)
			}
			total++
			if got, ok := u.Compiled(req); ok {
				compiledN++
				if diff := decisionDiff(got, want); diff != "" {
					t.Fatalf("world %d, %+v:\n%s", w, req, diff)
				}
				if got.Allow {
					allowed++
				} else {
					codes[got.Reasons[0].Code]++
				}
			}
			if eng != nil {
				if diff := decisionDiff(eng.Decide(context.Background(), req), eng.DecideUncached(context.Background(), req)); diff != "" {
					t.Fatalf("world %d, engine, %+v:\n%s", w, req, diff)
				}
			}
		}
		if eng != nil && eng.Stats().Compiled == 0 {
			t.Fatalf("world %d: the engine decided nothing by the compiled decision: %+v", w, eng.Stats())
		}
	}
	t.Logf("%d requests in %d worlds (%d checked into an engine); the compiled decision made %d, %d allowing; denials by code: %v",
		total, worlds, checked, compiledN, allowed, codes)
	if compiledN < total*9/10 || allowed < total/20 || checked == 0 {
		t.Fatalf("of %d requests the compiled decision made %d, %d allowing; %d worlds in an engine: too few to compare", total, compiledN, allowed, checked)
	}
	for _, code := range []string{"unknown_action", "unknown_department", "unknown_dataset", "not_shared", "unknown_column",
		"no_agreement", "system_not_granted", "purpose_required", "unknown_purpose", "agreement_not_yet_valid", "agreement_expired",
		"verify_only", "action_not_granted", "column_not_granted", "verify_masked", "unknown_share_type"} {
		if codes[code] == 0 {
			t.Errorf("no compiled denial with code %s", code)
		}
	}
}

// dirEngine returns an engine on the policy directory dir at the tests' clock, which
// reloads when the test says; it is closed when the test ends.
func dirEngine(t *testing.T, dir string) *policy.Engine {
	t.Helper()
	eng, err := policy.New(cat, policy.WithDir(dir), policy.WithPollInterval(time.Hour), policy.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return eng
}

// regions are GB/T 2260 codes at every level.
var regions = []struct{ code, level string }{
	{"330000", "province"}, {"320000", "province"}, {"330100", "city"}, {"320100", "city"}, {"330106", "county"},
}

// randomWorld returns a random policy bundle with the shipped sharing.rego: the shipped
// catalog with its share types, row caps and group sizes drawn again, a few departments,
// and agreements between them. Unless odd, it is meant to pass policies.Check (most do);
// odd adds a dataset of an unknown share type and data Check refuses.
func randomWorld(t *testing.T, rng *rand.Rand, odd bool) *policies.Bundle {
	t.Helper()
	shipped, err := policies.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	var datasets []policies.CatalogEntry
	shares := []string{policies.ShareConditional, policies.ShareConditional, policies.ShareUnconditional, policies.ShareNone}
	for _, e := range shipped.Datasets {
		if _, ok := cat.Dataset(e.Dataset); ok { // one without a schema may only be none
			e.Share = pick(shares)
		}
		e.LegalBasis = "《数据安全法》第" + fmt.Sprint(rng.IntN(50)) + "条"
		e.MaxRows = []int64{0, 50, 10000}[rng.IntN(3)]
		e.MinGroupSize = []int64{0, 5}[rng.IntN(2)]
		e.KeyBudget = nil
		datasets = append(datasets, e)
	}
	if odd {
		datasets[rng.IntN(len(datasets))].Share = "partial"
		datasets[rng.IntN(len(datasets))].MaxRows = -1
	}
	depts := []policies.Department{{Code: "gab", Name: "公安部", Level: "national"}}
	for i := range 4 {
		r := regions[rng.IntN(len(regions))]
		depts = append(depts, policies.Department{Code: fmt.Sprintf("d-%d", i), Name: fmt.Sprintf("部门%d", i), Region: r.code, Level: r.level})
	}
	purposes := []string{"case-review", "audit", "statistics"}
	windows := [][2]string{
		{"2026-01-01", "2027-12-31"}, {"2026-01-01", "2027-12-31"}, {"2025-01-01", "2025-12-31"}, {"2027-01-01", "2027-12-31"},
		{"2026-11-26T20:00:00+08:00", "2027-06-30"}, {"2026-01-01", "2026-11-26T20:00:00+08:00"},
	}
	var agreements []policies.Agreement
	for i := range 10 + rng.IntN(25) {
		d := depts[rng.IntN(len(depts))]
		e := datasets[rng.IntN(len(datasets))]
		if e.Share == policies.ShareNone && !odd {
			continue
		}
		ds, ok := cat.Dataset(e.Dataset)
		if !ok {
			continue
		}
		names := ds.FieldNames()
		rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		a := policies.Agreement{
			ID: fmt.Sprintf("AGR-%02d", rng.IntN(60)), Title: "random", Consumer: d.Code, Dataset: e.Dataset,
			Columns: slices.Clone(names[:1+rng.IntN(len(names))]), Approval: fmt.Sprintf("测〔2026〕%d号", i),
		}
		if agreementIDTaken(agreements, a.ID) {
			a.ID = fmt.Sprintf("AGR-%02d-%d", rng.IntN(60), i)
		}
		for range 1 + rng.IntN(2) {
			if p := pick(purposes); !slices.Contains(a.Purposes, p) {
				a.Purposes = append(a.Purposes, p)
			}
		}
		if rng.IntN(4) == 0 {
			a.System = pick([]string{"sys-a", "sys-b"})
		}
		w := windows[rng.IntN(len(windows))]
		a.ValidFrom, a.ValidUntil = w[0], w[1]
		for _, c := range a.Columns {
			switch rng.IntN(6) {
			case 0:
				a.Unmasked = append(a.Unmasked, c)
			case 1:
				if a.Masks == nil {
					a.Masks = map[string]string{}
				}
				a.Masks[c] = pick([]string{"hash", "null", "name"})
			}
		}
		a.Region = pick([]string{"", "", "000000", regions[rng.IntN(len(regions))].code})
		a.MaxRows = []int64{0, 0, 20}[rng.IntN(3)]
		switch rng.IntN(6) {
		case 0:
			a.Actions = []string{"verify"}
		case 1:
			a.Actions = []string{"aggregate"}
		case 2:
			a.Actions = []string{"read", "lookup", "verify", "aggregate", "discover"}
		case 3:
			a.Actions = []string{"changes", "discover"}
		default:
			a.Actions = []string{"read", "lookup"}
		}
		if slices.Contains(a.Actions, "aggregate") {
			// One partition per department and dataset (policies.Check): the first text
			// column of the schema, and a group size of the pair's.
			g := ""
			for _, f := range ds.Fields {
				if f.Type == "string" {
					g = f.Name
					break
				}
			}
			if !slices.Contains(a.Columns, g) {
				a.Columns = append(a.Columns, g)
			}
			a.Aggregate = &policies.AggregateTerms{GroupBy: []string{g}, Measures: []string{"count"}, MinGroupSize: []int64{0, 20}[len(a.Consumer+a.Dataset)%2]}
		}
		agreements = append(agreements, a)
	}
	if odd {
		agreements = append(agreements, policies.Agreement{ID: "AGR-ODD", Consumer: "no-such-dept", Dataset: datasets[0].Dataset,
			Purposes: purposes, Columns: []string{"no_such_column"}, Actions: []string{"read", "teleport"}, MaxRows: -5,
			ValidFrom: "2026-01-01", ValidUntil: "2027-01-01"})
		agreements = append(agreements, policies.Agreement{ID: "AGR-ODD2", Consumer: depts[1].Code, Dataset: datasets[1].Dataset,
			Purposes: purposes, Columns: []string{"no_such_column"}, Actions: []string{"read", "verify", "aggregate"},
			Masks: map[string]string{"no_such_column": "scramble"}, ValidFrom: "2026-01-01", ValidUntil: "2027-01-01"})
	}
	dir := copyPolicies(t, false)
	for name, doc := range map[string]any{
		"catalog.yaml":     map[string]any{"datasets": datasets},
		"departments.yaml": map[string]any{"departments": depts},
		"agreements.yaml":  map[string]any{"agreements": agreements},
	} {
		raw, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := policies.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func agreementIDTaken(as []policies.Agreement, id string) bool {
	return slices.ContainsFunc(as, func(a policies.Agreement) bool { return a.ID == id })
}

// randomRequests draws n requests on b: mostly as a system asks under one of its
// department's agreements, with the agreement's columns, a part of them, more or none;
// otherwise anything, known or not.
func randomRequests(rng *rand.Rand, b *policies.Bundle, n int) []exchange.Request {
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	depts := []string{"", "no-such-dept"}
	for _, d := range b.Departments {
		depts = append(depts, d.Code, d.Code)
	}
	datasets := []string{"", "no.such_dataset"}
	for _, e := range b.Datasets {
		datasets = append(datasets, e.Dataset, e.Dataset)
	}
	actions := []string{"", "delete", "READ"}
	for _, a := range exchange.Actions() {
		actions = append(actions, string(a), string(a))
	}
	purposes, systems := requestNames(b)
	now := clock()
	out := make([]exchange.Request, 0, n)
	for range n {
		req := exchange.Request{
			Subject: exchange.Subject{Department: pick(depts), System: pick(systems)},
			Action:  exchange.Action(pick(actions)), Dataset: pick(datasets), Purpose: pick(purposes),
		}
		if rng.IntN(3) > 0 && len(b.Agreements) > 0 {
			a := b.Agreements[rng.IntN(len(b.Agreements))]
			req.Department, req.Dataset, req.Purpose = a.Consumer, a.Dataset, pick(a.Purposes)
			if rng.IntN(5) > 0 {
				req.System = a.System
			}
			switch rng.IntN(4) {
			case 0:
				req.Columns = slices.Clone(a.Columns)
			case 1:
				cols := slices.Clone(a.Columns)
				rng.Shuffle(len(cols), func(i, j int) { cols[i], cols[j] = cols[j], cols[i] })
				req.Columns = cols[:rng.IntN(len(cols)+1)]
			}
		}
		if req.Columns == nil {
			var fields []string
			if ds, ok := cat.Dataset(req.Dataset); ok {
				fields = ds.FieldNames()
			}
			req.Columns = randomColumns(rng, fields)
			if rng.IntN(10) == 0 {
				req.Columns = []string{}
			}
		}
		bounds := b.Boundaries(req.Department, req.Dataset)
		switch {
		case len(bounds) > 0 && rng.IntN(2) == 0:
			req.Time = time.Unix(0, bounds[rng.IntN(len(bounds))]+int64(rng.IntN(3)-1))
		case rng.IntN(4) == 0:
			req.Time = now
		default:
			req.Time = now.Add(time.Duration(rng.Int64N(int64(3*365*24*time.Hour))) - 2*365*24*time.Hour)
		}
		out = append(out, req)
	}
	return out
}

// requestNames returns the purposes and systems a request may name: none, one no
// agreement of b names, and every one that one does.
func requestNames(b *policies.Bundle) (purposes, systems []string) {
	purposes = []string{"", "marketing"}
	systems = []string{"", "other-system"}
	for _, a := range b.Agreements {
		purposes = append(purposes, a.Purposes...)
		if a.System != "" {
			systems = append(systems, a.System)
		}
	}
	return purposes, systems
}

// TestCompiledMode follows what a steward sees: the shipped policy is compiled, checked
// against every decision of its index (method, metric, the first request the index does
// not hold after start), also reformatted and
// with its comments edited; a changed rule or one more module turns it off, naming why,
// and the Rego decides; undoing the edit turns it on again.
func TestCompiledMode(t *testing.T) {
	dir := copyPolicies(t, false)
	eng := dirEngine(t, dir)
	ctx := context.Background()
	// A projection no agreement names: not in the index.
	req := phoneReq
	req.Time, req.Columns = clock(), []string{"name"}
	on := func(step string) {
		t.Helper()
		m := eng.CompiledMode()
		// Proven on the whole index domain: every decision of the index compared.
		all := fmt.Sprintf("equal to the Rego on all %d decisions of the index", eng.IndexStats().Entries)
		if !m.On || !strings.Contains(m.String(), all) || gauge(t, eng, "govx_policy_decision_compiled_on") != 1 {
			t.Fatalf("%s: compiled mode %v, gauge %v; want on", step, m, gauge(t, eng, "govx_policy_decision_compiled_on"))
		}
		s0 := eng.Stats()
		if d := eng.Decide(ctx, req); !d.Allow || eng.Stats().Compiled != s0.Compiled+1 || eng.Stats().IndexHits != s0.IndexHits {
			t.Fatalf("%s: decided %+v, stats %+v → %+v; want allowed by the compiled decision", step, d, s0, eng.Stats())
		}
	}
	on("the shipped policy")
	if m := policy.CompiledModeOf(eng.Bundle()); !m.On {
		t.Fatalf("CompiledModeOf the shipped policy: %v", m)
	}

	rego := filepath.Join(dir, "sharing.rego")
	raw, err := os.ReadFile(rego)
	if err != nil {
		t.Fatal(err)
	}
	shipped := string(raw)
	// Comments and layout are not the policy.
	writeFile(t, rego, "# edited by the steward\n"+strings.ReplaceAll(shipped, "\n\n", "\n\n\n"))
	if err := eng.Reload(); err != nil {
		t.Fatal(err)
	}
	on("comments and blank lines edited")

	for _, tc := range []struct {
		name, file, content, why string
	}{
		{name: "a rule changed", file: "sharing.rego", content: strings.Replace(shipped, "deny by default\"))", "deny.\"))", 1),
			why: "off — sharing.rego is not the shipped sharing.rego"},
		{name: "one more module", file: "extra.rego", content: "package govx.extra\n\nnote := 1\n",
			why: "off — the policy has 2 modules; the compiled decision is the shipped sharing.rego alone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, filepath.Join(dir, tc.file), tc.content)
			b, err := policies.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if m := policy.CompiledModeOf(b); m.String() != tc.why {
				t.Fatalf("CompiledModeOf: %q, want %q", m, tc.why)
			}
			if err := eng.Reload(); err != nil {
				t.Fatal(err)
			}
			if m := eng.CompiledMode(); m.String() != tc.why || gauge(t, eng, "govx_policy_decision_compiled_on") != 0 {
				t.Fatalf("after reloading it: compiled mode %q, want %q", m, tc.why)
			}
			s0 := eng.Stats()
			d := eng.Decide(ctx, req)
			if !d.Allow || eng.Stats().Compiled != s0.Compiled {
				t.Fatalf("decided %+v, compiled decisions %d → %d; want allowed by the Rego", d, s0.Compiled, eng.Stats().Compiled)
			}
			if diff := decisionDiff(d, eng.DecideUncached(ctx, req)); diff != "" {
				t.Fatal(diff)
			}
			if tc.file == "sharing.rego" {
				writeFile(t, rego, shipped)
			} else if err := os.Remove(filepath.Join(dir, tc.file)); err != nil {
				t.Fatal(err)
			}
			if err := eng.Reload(); err != nil {
				t.Fatal(err)
			}
			on("the edit undone")
		})
	}

	off, err := policy.New(cat, policy.WithIndex(false), policy.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	if m := off.CompiledMode(); m.On || !strings.Contains(m.String(), "WithIndex(false)") {
		t.Fatalf("without the index: compiled mode %v, want off", m)
	}
	if off.Decide(ctx, req); off.Stats().Compiled != 0 {
		t.Fatalf("without the index the compiled decision decided: %+v", off.Stats())
	}
}

// TestCompiledCheckedAtLoad: a compiled decision that differs from the Rego on one
// request of the index is caught when the policy loads; the engine turns it off, logs
// the request, says so in its mode, and decides by the Rego.
func TestCompiledCheckedAtLoad(t *testing.T) {
	restore := policy.SetTestHookCompiled(func(req exchange.Request, d *exchange.Decision) {
		if req.Action == exchange.ActionLookup && d.Allow {
			d.MaxRows++
		}
	})
	defer restore()
	var logs bytes.Buffer
	eng, err := policy.New(cat, policy.WithClock(clock), policy.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	m := eng.CompiledMode()
	if m.On || !strings.Contains(m.String(), "the compiled decision differs from the Rego on lookup ") {
		t.Fatalf("compiled mode %v, want off naming the request", m)
	}
	if !strings.Contains(logs.String(), "level=ERROR msg=\"the compiled policy decision differs from the Rego") || !strings.Contains(logs.String(), "first_difference=\"lookup ") {
		t.Fatalf("log:\n%s", logs.String())
	}
	req := phoneReq
	req.Action, req.Time, req.Columns = exchange.ActionLookup, clock(), []string{"name"}
	d := eng.Decide(context.Background(), req)
	if !d.Allow || eng.Stats().Compiled != 0 {
		t.Fatalf("decided %+v, stats %+v; want allowed by the Rego", d, eng.Stats())
	}
	if diff := decisionDiff(d, eng.DecideUncached(context.Background(), req)); diff != "" {
		t.Fatal(diff)
	}
}

// FuzzCompiledEqualsRego: whatever the request, the compiled decision of the shipped
// policy never panics, and decides as the Rego does or declines.
func FuzzCompiledEqualsRego(f *testing.F) {
	b, err := policies.Embedded()
	if err != nil {
		f.Fatal(err)
	}
	u, err := policy.NewUnchecked(b, cat)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("mz-3301", "dibao-review", "read", "population.person", "minimum-living-allowance-review", "id_number,name,phone", day.UnixNano())
	f.Add("mz-3301", "", "verify", "population.person", "", "", day.UnixNano())
	f.Add("", "", "", "", "", "", int64(0))
	f.Add("gab", "x", "discover", "population.person", "marketing", ",,", int64(-1))
	f.Add("mz-3201", "", "aggregate", "population.person", "temporary-assistance", "name,name,shoe_size", day.UnixNano()+1)
	f.Add("rs-33", "\xff", "delete", "no.such", "\x00", "phone", int64(1<<62))
	// The first and last instants the policy can read (Decidable): the compiled
	// decision decides them, as the Rego does.
	f.Add("mz-3301", "dibao-review", "read", "population.person", "minimum-living-allowance-review", "", int64(math.MinInt64))
	f.Add("mz-3301", "dibao-review", "read", "population.person", "minimum-living-allowance-review", "", int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, dept, system, action, dataset, purpose, cols string, at int64) {
		req := exchange.Request{Subject: exchange.Subject{Department: dept, System: system}, Action: exchange.Action(action),
			Dataset: dataset, Purpose: purpose, Time: time.Unix(0, at)}
		if cols != "" {
			req.Columns = strings.Split(cols, ",")
		}
		got, ok := u.Compiled(req)
		if !ok {
			return
		}
		if diff := decisionDiff(got, u.Rego(req)); diff != "" {
			t.Fatalf("%+v:\n%s", req, diff)
		}
	})
}

// BenchmarkDecideCompiled decides a request the index does not hold (a projection no
// agreement names), as the engine does by default: by the compiled decision.
func BenchmarkDecideCompiled(b *testing.B) {
	eng, err := policy.New(cat, policy.WithCacheSize(0))
	if err != nil {
		b.Fatal(err)
	}
	req := dibaoReq
	req.Columns = req.Columns[:2]
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := eng.Decide(ctx, req); !d.Allow {
			b.Fatal(d.Reasons)
		}
	}
	if eng.Stats().Compiled == 0 {
		b.Fatalf("not decided by the compiled decision: %+v", eng.Stats())
	}
}
