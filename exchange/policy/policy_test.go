package policy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"govx/exchange"
	"govx/exchange/policy"
	"govx/internal/testenv"
	"govx/policies"
	"govx/schemas"
)

var cat = schemas.MustLoad()

var day = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// copyPolicies copies the shipped policy directory into a temporary one a test may edit.
func copyPolicies(t *testing.T, withTests bool) string {
	t.Helper()
	dir := t.TempDir()
	for _, pat := range []string{"*.rego", "*.yaml"} {
		files, _ := filepath.Glob(filepath.Join("../../policies", pat))
		for _, f := range files {
			if !withTests && strings.HasSuffix(f, "_test.rego") {
				continue
			}
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, filepath.Base(f)), string(raw))
		}
	}
	return dir
}

func writeFile(t *testing.T, file, content string) {
	t.Helper()
	// Write then rename, as editors do, so a poll never reads half a file.
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

func replaceIn(t *testing.T, file, old, new string) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), old) {
		t.Fatalf("%s does not contain %q", file, old)
	}
	writeFile(t, file, strings.Replace(string(raw), old, new, 1))
}

var phoneReq = exchange.Request{
	Subject: exchange.Subject{Department: "mz-3301", System: "dibao-review"},
	Action:  exchange.ActionRead, Dataset: "population.person",
	Columns: []string{"id_number", "phone"}, Purpose: "minimum-living-allowance-review", Time: day,
}

func TestReloadSwitchesAndKeepsLastGood(t *testing.T) {
	dir := copyPolicies(t, true)
	eng, err := policy.New(cat, policy.WithDir(dir), policy.WithPollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx := context.Background()
	rev0 := eng.Revision()
	if d := eng.Decide(ctx, phoneReq); d.Allow || d.Reasons[0].Code != "column_not_granted" {
		t.Fatalf("before the edit: %+v", d)
	}

	// The steward adds phone to the agreement.
	agreements := filepath.Join(dir, "agreements.yaml")
	replaceIn(t, agreements, "columns: [id_number, name, household_region, birth_date]", "columns: [id_number, name, household_region, birth_date, phone]")
	testenv.WaitFor(t, 10*time.Second, "the revision changes", func() bool { return eng.Revision() != rev0 })
	rev1 := eng.Revision()
	d := eng.Decide(ctx, phoneReq)
	if !d.Allow || d.Masks["phone"] != "phone" || d.Revision != rev1 {
		t.Fatalf("after the edit: %+v", d)
	}

	// A broken edit: an agreement naming a column the dataset does not have.
	errs := eng.ReloadErrors()
	replaceIn(t, agreements, "birth_date, phone]", "birth_date, phone, shoe_size]")
	testenv.WaitFor(t, 10*time.Second, "the reload error is counted", func() bool { return eng.ReloadErrors() > errs })
	if eng.Revision() != rev1 {
		t.Fatalf("a broken edit changed the revision to %s", eng.Revision())
	}
	if err := eng.LastReloadError(); err == nil || !strings.Contains(err.Error(), "shoe_size") || !strings.Contains(err.Error(), "agreements.yaml") {
		t.Errorf("last reload error %v does not name the file and the column", err)
	}
	if d2 := eng.Decide(ctx, phoneReq); !reflect.DeepEqual(d2, d) {
		t.Fatalf("a broken edit changed the decision:\n%+v\n%+v", d2, d)
	}

	// A broken Rego edit keeps the last good policy too.
	errs = eng.ReloadErrors()
	replaceIn(t, filepath.Join(dir, "sharing.rego"), "actions := {", "actions := {{")
	testenv.WaitFor(t, 10*time.Second, "the Rego error is counted", func() bool { return eng.ReloadErrors() > errs })
	if eng.Revision() != rev1 || !eng.Decide(ctx, phoneReq).Allow {
		t.Fatal("a Rego syntax error replaced the last good policy")
	}
	// The broken version is counted once, not on every poll.
	n := eng.ReloadErrors()
	if err := eng.Reload(); err == nil {
		t.Error("Reload of the broken directory reported no error")
	}
	if eng.ReloadErrors() != n {
		t.Error("polling the same broken content counted another error")
	}

	// Fixing both, and capping the rows, brings a new revision.
	replaceIn(t, filepath.Join(dir, "sharing.rego"), "actions := {{", "actions := {")
	replaceIn(t, agreements, "phone, shoe_size]", "phone]")
	replaceIn(t, agreements, "max_rows: 100000", "max_rows: 500")
	testenv.WaitFor(t, 10*time.Second, "the fixed policy loads", func() bool { return eng.LastReloadError() == nil && eng.Revision() != rev1 })
	if d := eng.Decide(ctx, phoneReq); !d.Allow || d.MaxRows != 500 || d.Revision == rev1 {
		t.Fatalf("after the fix: %+v", d)
	}
}

func TestFailClosed(t *testing.T) {
	cases := []struct {
		name, rego, want string
	}{
		{"undefined", "package govx.sharing\n\ndecision := {\"allow\": true} if { input.action == \"never\" }\n", "undefined"},
		{"malformed allow", "package govx.sharing\n\ndecision := {\"allow\": \"yes\"}\n", "malformed"},
		{"allow without columns", "package govx.sharing\n\ndecision := {\"allow\": true, \"reasons\": []}\n", "without columns"},
		{"allow of a column the dataset lacks", "package govx.sharing\n\ndecision := {\"allow\": true, \"columns\": [\"password\"]}\n", "password"},
		{"unknown mask", "package govx.sharing\n\ndecision := {\"allow\": true, \"columns\": [\"name\"], \"masks\": {\"name\": \"blur\"}}\n", "blur"},
		{"bad row filter op", "package govx.sharing\n\ndecision := {\"allow\": true, \"columns\": [\"name\"], \"row_filter\": [{\"column\": \"name\", \"op\": \"like\", \"value\": \"%\"}]}\n", "known op"},
		{"aggregate without a minimum group size", "package govx.sharing\n\ndecision := {\"allow\": true, \"columns\": [\"name\"], \"aggregate\": {\"group_by\": [\"gender\"], \"measures\": [\"count\"]}}\n", "min_group_size"},
		{"aggregate minimum group size of one", "package govx.sharing\n\ndecision := {\"allow\": true, \"columns\": [\"name\"], \"aggregate\": {\"group_by\": [\"gender\"], \"measures\": [\"count\"], \"min_group_size\": 1}}\n", "at least 2"},
		{"aggregate by a column the dataset lacks", "package govx.sharing\n\ndecision := {\"allow\": true, \"columns\": [\"name\"], \"aggregate\": {\"group_by\": [\"income\"], \"measures\": [\"count\"], \"min_group_size\": 10}}\n", "income"},
		{"aggregate unknown measure", "package govx.sharing\n\ndecision := {\"allow\": true, \"columns\": [\"name\"], \"aggregate\": {\"group_by\": [\"gender\"], \"measures\": [\"median:name\"], \"min_group_size\": 10}}\n", "median:name"},
		{"deny without reason", "package govx.sharing\n\ndecision := {\"allow\": false}\n", "without a reason"},
		{"evaluation error", "package govx.sharing\n\ndecision := {\"allow\": true, \"columns\": [\"name\"], \"max_rows\": to_number(input.subject.department)}\n", "evaluate"},
		{"conflicting rules", "package govx.sharing\n\ndecision := {\"allow\": true, \"columns\": [\"name\"]} if { true }\n\ndecision := {\"allow\": false, \"reasons\": [{\"code\": \"x\", \"message\": \"y\"}]} if { true }\n", "evaluate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyPolicies(t, false)
			writeFile(t, filepath.Join(dir, "sharing.rego"), tc.rego)
			b, err := policies.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			eng, err := policy.New(cat, policy.WithBundle(b))
			if err != nil {
				t.Fatal(err)
			}
			for range 2 { // the second time would come from the cache if it were cached
				d := eng.Decide(context.Background(), exchange.Request{
					Subject: exchange.Subject{Department: "mz-3301"}, Action: exchange.ActionRead,
					Dataset: "population.person", Columns: []string{"name"}, Time: day,
				})
				if d.Allow || len(d.Reasons) != 1 || d.Reasons[0].Code != policy.CodePolicyError || !strings.Contains(d.Reasons[0].Message, tc.want) {
					t.Fatalf("decision %+v, want a policy_error denial mentioning %q", d, tc.want)
				}
				if d.Revision != b.Revision {
					t.Errorf("revision %q, want %q", d.Revision, b.Revision)
				}
			}
			if eng.Stats().CacheHits != 0 {
				t.Error("a policy_error decision was cached")
			}
		})
	}
}

func TestNewRejectsBrokenPolicy(t *testing.T) {
	dir := copyPolicies(t, false)
	replaceIn(t, filepath.Join(dir, "agreements.yaml"), "consumer: wj-3302", "consumer: wj-9999")
	if _, err := policy.New(cat, policy.WithDir(dir)); err == nil || !strings.Contains(err.Error(), "wj-9999") {
		t.Fatalf("New with an agreement for an unknown department: %v", err)
	}
}

// timePolicies are edits of the shipped policy that use the time beyond agreement
// validity, each with a request it allows at one time and denies at another within the
// same validity interval: what an exact cache keyed on validity would get wrong.
var timePolicies = []struct {
	name       string
	cond, rule string // cond is added to the grant; rule defines it
	at, why    string // the line the engine must name (a substring of it) and what it says
	allow      time.Time
	deny       time.Time
}{
	{
		name: "office hours (time.clock)", cond: "office_hours",
		rule: "office_hours if {\n\t[hour, _, _] := time.clock(now)\n\thour >= 8\n\thour < 18\n}",
		at:   "time.clock(now)", why: "reads input.time via time.clock",
		allow: day, deny: time.Date(2026, 11, 26, 23, 0, 0, 0, time.UTC),
	},
	{
		name: "weekdays (time.weekday)", cond: "workday",
		rule: "workday if not time.weekday(now) in {\"Saturday\", \"Sunday\"}",
		at:   "time.weekday(now)", why: "reads input.time via time.weekday",
		allow: day, deny: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), // a Saturday
	},
	{
		name: "dates (time.date)", cond: "not_month_end",
		rule: "not_month_end if {\n\t[_, _, mday] := time.date(now)\n\tmday != 31\n}",
		at:   "time.date(now)", why: "reads input.time via time.date",
		allow: time.Date(2026, 12, 30, 12, 0, 0, 0, time.UTC), deny: time.Date(2026, 12, 31, 12, 0, 0, 0, time.UTC),
	},
	{
		name: "aliased input", cond: "before_eight_pm",
		rule: "req := input\n\nbefore_eight_pm if {\n\t[hour, _, _] := time.clock(time.parse_rfc3339_ns(req.time))\n\thour < 20\n}",
		at:   "req := input", why: "reads input as a whole, which holds the time",
		allow: day, deny: time.Date(2026, 11, 26, 21, 0, 0, 0, time.UTC),
	},
}

// addTimeRule adds one of timePolicies to the sharing.rego in dir and returns the line
// the engine must name.
func addTimeRule(t *testing.T, dir, cond, rule, at string) int {
	t.Helper()
	file := filepath.Join(dir, "sharing.rego")
	replaceIn(t, file, "\tgrant_ok\n}\n", "\tgrant_ok\n\t"+cond+"\n}\n\n"+rule+"\n")
	return lineWith(t, file, at)
}

// TestCachedEqualsUncached is the property that makes the cache safe: over random
// requests at random times, many of them on agreement validity boundaries, and across
// reloads that move those boundaries, a cached decision equals a fresh evaluation. For
// policies that use the time otherwise, it holds because the engine finds that it
// cannot cache them.
func TestCachedEqualsUncached(t *testing.T) {
	t.Run("shipped policy", func(t *testing.T) { testCachedEqualsUncached(t, copyPolicies(t, false), 10000, 2500) })
	// A policy that reads case_ref, filter and limit: they must then be part of the key.
	t.Run("policy reading case_ref, filter and limit", func(t *testing.T) {
		dir := copyPolicies(t, false)
		replaceIn(t, filepath.Join(dir, "sharing.rego"), "\tactions[input.action]\n\tdepartment\n",
			"\tactions[input.action]\n\tdepartment\n\tinput.request.case_ref != \"none\"\n\tcount(input.request.filter) < 2\n\tinput.request.limit != 7\n")
		// Fewer hits: most requests now differ in their key.
		testCachedEqualsUncached(t, dir, 10000, 500)
	})
	// The shipped comparisons written the other way round stay cacheable.
	t.Run("policy comparing with >= and >", func(t *testing.T) {
		dir := copyPolicies(t, false)
		replaceIn(t, filepath.Join(dir, "sharing.rego"), "live := [a | some a in by_purpose; a.valid_from_ns <= now; now < a.valid_until_ns]",
			"live := [a | some a in by_purpose; now >= a.valid_from_ns; a.valid_until_ns > now]")
		replaceIn(t, filepath.Join(dir, "sharing.rego"), "\ta.valid_from_ns <= now\n\tnow < a.valid_until_ns\n\ta.action_set",
			"\tnow >= a.valid_from_ns\n\ta.valid_until_ns > now\n\ta.action_set")
		testCachedEqualsUncached(t, dir, 3000, 600)
	})
	for _, tc := range timePolicies {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyPolicies(t, false)
			line := addTimeRule(t, dir, tc.cond, tc.rule, tc.at)
			eng, err := policy.New(cat, policy.WithDir(dir), policy.WithPollInterval(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close()
			mode := eng.CacheMode()
			if want := fmt.Sprintf("sharing.rego:%d %s", line, tc.why); mode.On || len(mode.Why) == 0 || mode.Why[0] != want {
				t.Fatalf("cache mode %v, want off — %s", mode, want)
			}
			// The request is allowed, then denied later the same day (or week), then
			// allowed again: a cache that kept the first decision would allow it all day.
			ctx := context.Background()
			req := phoneReq
			req.Columns = []string{"id_number", "name"}
			for _, step := range []struct {
				at    time.Time
				allow bool
			}{{tc.allow, true}, {tc.deny, false}, {tc.allow, true}, {tc.deny, false}} {
				req.Time = step.at
				if d := eng.Decide(ctx, req); d.Allow != step.allow {
					t.Fatalf("at %s: %+v, want allow=%v", step.at, d, step.allow)
				}
			}
			testCachedEqualsUncached(t, dir, 1500, 0)
		})
	}
}

// testCachedEqualsUncached compares n cached and fresh decisions, twice: before and after
// a reload. minHits > 0 requires that many to come from the cache each time; 0 requires
// the policy to be uncached and none to.
func testCachedEqualsUncached(t *testing.T, dir string, n int, minHits uint64) {
	// Without the index, which would answer many of these first (index_test.go holds
	// the index to the same property).
	eng, err := policy.New(cat, policy.WithDir(dir), policy.WithPollInterval(time.Hour), policy.WithIndex(false))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if on := eng.CacheMode().On; on != (minHits > 0) {
		t.Fatalf("cache mode %v", eng.CacheMode())
	}
	hitsOK := func(hits uint64) bool {
		if minHits == 0 {
			return hits == 0
		}
		return hits >= minHits
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(s []string) string { return s[rng.IntN(len(s))] }

	depts := []string{"mz-3301", "mz-3201", "rs-33", "sw-33", "zj-3205", "wj-3302", "gxq-3301", "fgw-33", "tjj", "xx-0000"}
	systems := []string{"", "dibao-review", "housing-security", "other"}
	datasets := []string{"population.person", "legal_entity.organization", "resource.land_parcel", "economy.indicator", "license.certificate"}
	actions := []string{"read", "changes", "lookup", "verify", "discover", "delete"}
	purposes := []string{"", "minimum-living-allowance-review", "temporary-assistance", "birth-certificate-issuance",
		"housing-security-qualification", "social-insurance-enrollment", "pension-qualification-review",
		"tax-registration-check", "industrial-land-review", "regional-economic-comparison", "marketing"}
	columnSets := [][]string{nil, {"id_number"}, {"id_number", "name"}, {"name", "household_region", "birth_date"},
		{"region_code"}, {"parcel_code", "holder_id_number"}, {"uscc", "legal_rep_id_number"}, {"value"}, {"phone"}, {"shoe_size"}}

	// Times: every validity boundary of the policy (and one nanosecond either side),
	// plus random instants between 2024 and 2029.
	boundaryTimes := func() []time.Time {
		var ts []time.Time
		for _, a := range eng.Bundle().Agreements {
			for _, b := range []time.Time{a.From, a.Until} {
				ts = append(ts, b.Add(-time.Nanosecond), b, b.Add(time.Nanosecond))
			}
		}
		return ts
	}
	times := boundaryTimes()
	randomTime := func() time.Time {
		if rng.IntN(2) == 0 {
			return times[rng.IntN(len(times))]
		}
		return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.Int64N(int64(5 * 365 * 24 * time.Hour))))
	}

	// A pool of requests, so that the same input comes back at other times.
	pool := make([]exchange.Request, 400)
	for i := range pool {
		pool[i] = exchange.Request{
			Subject: exchange.Subject{Department: pick(depts), System: pick(systems)},
			Action:  exchange.Action(pick(actions)), Dataset: pick(datasets),
			Columns: columnSets[rng.IntN(len(columnSets))], Purpose: pick(purposes),
		}
	}
	ctx := context.Background()
	check := func(round string, n int) {
		for i := range n {
			req := pool[rng.IntN(len(pool))]
			req.Time = randomTime()
			req.CaseRef = pick([]string{"", "none", "330106-2026-000123", fmt.Sprint(rng.IntN(1000))})
			req.Limit = int64(rng.IntN(10))
			req.Filter = [][]exchange.Filter{nil, {{Column: "name", Op: "eq", Value: "张三"}},
				{{Column: "name", Op: "eq", Value: "张三"}, {Column: "status", Op: "eq", Value: "alive"}}}[rng.IntN(3)]
			cached, fresh := eng.Decide(ctx, req), eng.DecideUncached(ctx, req)
			if len(fresh.Reasons) > 0 && fresh.Reasons[0].Code == policy.CodePolicyError {
				t.Fatalf("%s, request %+v: the policy failed: %v", round, req, fresh.Reasons)
			}
			if !reflect.DeepEqual(cached, fresh) {
				t.Fatalf("%s, request %d %+v:\ncached %+v\nfresh  %+v", round, i, req, cached, fresh)
			}
		}
	}
	check("before reload", n)
	hits := eng.Stats().CacheHits
	if !hitsOK(hits) {
		t.Fatalf("%d of %d decisions came from the cache, want at least %d (0: none)", hits, n, minHits)
	}

	reloadMovedBoundaries(t, eng, dir)
	times = append(times, boundaryTimes()...)
	check("after reload", n)
	if h := eng.Stats().CacheHits - hits; !hitsOK(h) {
		t.Fatalf("after the reload %d of %d decisions came from the cache, want at least %d (0: none)", h, n, minHits)
	}
	t.Logf("%s", fmt.Sprint(eng.Stats()))
}

// TestDecisionCacheMode follows a steward's edit: the shipped policy is cached; an
// office-hours rule hot-reloaded into it turns the cache off, which the engine reports
// (method and metric), and the evening's request is denied after the noon one was
// allowed.
func TestDecisionCacheMode(t *testing.T) {
	dir := copyPolicies(t, false)
	eng, err := policy.New(cat, policy.WithDir(dir), policy.WithPollInterval(10*time.Millisecond), policy.WithIndex(false))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx := context.Background()
	req := phoneReq
	req.Columns = []string{"id_number", "name"}

	if m := eng.CacheMode(); !m.On || !strings.Contains(m.String(), "on the time only through the validity of the department's agreements") {
		t.Fatalf("the shipped policy: cache mode %v, want on", m)
	}
	if g := gauge(t, eng, "govx_policy_decision_cache_on"); g != 1 {
		t.Errorf("govx_policy_decision_cache_on = %v with the shipped policy, want 1", g)
	}
	for range 2 {
		if d := eng.Decide(ctx, req); !d.Allow {
			t.Fatalf("the shipped policy at noon: %+v", d)
		}
	}
	if eng.Stats().CacheHits != 1 {
		t.Fatalf("the shipped policy's second decision did not come from the cache: %+v", eng.Stats())
	}

	rev := eng.Revision()
	tp := timePolicies[0]
	line := addTimeRule(t, dir, tp.cond, tp.rule, tp.at)
	testenv.WaitFor(t, 10*time.Second, "the office-hours policy loads", func() bool { return eng.Revision() != rev })
	m := eng.CacheMode()
	if want := fmt.Sprintf("off — sharing.rego:%d reads input.time via time.clock", line); m.On || m.String() != want {
		t.Fatalf("after the edit: cache mode %q, want %q", m, want)
	}
	if g := gauge(t, eng, "govx_policy_decision_cache_on"); g != 0 {
		t.Errorf("govx_policy_decision_cache_on = %v with the office-hours policy, want 0", g)
	}
	hits := eng.Stats().CacheHits
	req.Time = tp.allow
	if d := eng.Decide(ctx, req); !d.Allow {
		t.Fatalf("office hours at noon: %+v", d)
	}
	req.Time = tp.deny
	if d := eng.Decide(ctx, req); d.Allow || d.Reasons[0].Code != "no_grant" {
		t.Fatalf("office hours at 23:00: %+v, want denied", d)
	}
	if eng.Stats().CacheHits != hits {
		t.Error("a decision of the office-hours policy came from the cache")
	}

	// Reverting the edit brings the cache back.
	rev = eng.Revision()
	replaceIn(t, filepath.Join(dir, "sharing.rego"), "\tgrant_ok\n\t"+tp.cond+"\n}\n\n"+tp.rule+"\n", "\tgrant_ok\n}\n")
	testenv.WaitFor(t, 10*time.Second, "the shipped policy loads again", func() bool { return eng.Revision() != rev })
	if !eng.CacheMode().On || gauge(t, eng, "govx_policy_decision_cache_on") != 1 {
		t.Errorf("after reverting: cache mode %v", eng.CacheMode())
	}

	off, err := policy.New(cat, policy.WithCacheSize(0))
	if err != nil {
		t.Fatal(err)
	}
	if m := off.CacheMode(); m.On || m.String() != "off — the cache size is 0" {
		t.Errorf("WithCacheSize(0): cache mode %q", m)
	}
}

// TestCacheModeIsConservative runs the analysis on edits of the shipped policy that
// reach the time, or something outside the input, in ways other than the agreement
// validity comparisons, each of which must turn the cache off, naming file and line;
// and on edits that keep to those comparisons, which must not.
func TestCacheModeIsConservative(t *testing.T) {
	const grant = "\tgrant_ok\n}\n"
	cases := []struct {
		name      string
		file      string // "" is sharing.rego
		old, new  string
		at        string // a substring of the line named; "" when the cache stays on
		why       string
		extraFile string // another module, clock.rego, when set
	}{
		{name: "input.time read directly", old: grant, new: "\tgrant_ok\n\tlate\n}\n\nlate if {\n\t[hour, _, _] := time.clock(time.parse_rfc3339_ns(input.time))\n\thour >= 6\n}\n",
			at: "time.clock(time.parse", why: "reads input.time via time.clock"},
		{name: "input.time imported", old: "package govx.sharing\n", new: "package govx.sharing\n\nimport input.time as t\n\nlate if t > \"2026-06\"\n",
			at: "late if t", why: "reads input.time via >"},
		{name: "input with a variable key", old: grant, new: "\tgrant_ok\n\tcount([k | input[k]]) < 9\n}\n",
			at: "input[k]", why: "reads input[k] with a variable key, which can reach input.time"},
		{name: "walk(input)", old: grant, new: "\tgrant_ok\n\tcount([p | walk(input, [p, _])]) > 0\n}\n",
			at: "walk(input", why: "reads input as a whole, which holds the time"},
		{name: "object.get(input, \"time\")", old: grant, new: "\tgrant_ok\n\tobject.get(input, \"time\", \"\") != \"\"\n}\n",
			at: "object.get(input", why: "reads input as a whole, which holds the time"},
		{name: "the time compared with a constant", old: grant, new: "\tgrant_ok\n\tnow < 1830000000000000000\n}\n",
			at: "now < 18300", why: "compares input.time with something other than the valid_from_ns or valid_until_ns of the department's agreements for the dataset"},
		{name: "the time compared with a bound one nanosecond later", old: "live := [a | some a in by_purpose; a.valid_from_ns <= now; now < a.valid_until_ns]",
			new: "live := [a | some a in by_purpose; now > a.valid_from_ns; now < a.valid_until_ns]",
			at:  "live := [a", why: "compares input.time as time > bound: only bound <= time and time < bound keep their value between two validity boundaries"},
		{name: "another department's agreements", old: grant, new: "\tgrant_ok\n\tsome x in data.agreements_by_key[\"mz-3201\"][input.resource.dataset]\n\tx.valid_from_ns <= now\n}\n",
			at: "x.valid_from_ns <= now", why: "compares input.time with something other than the valid_from_ns or valid_until_ns of the department's agreements for the dataset"},
		{name: "a list that only looks like agreements", old: grant, new: "\tgrant_ok\n\tsome x in fake\n\tx.valid_from_ns <= now\n}\n\nfake := [{\"valid_from_ns\": 0}]\n",
			at: "x.valid_from_ns <= now", why: "compares input.time with something other than the valid_from_ns or valid_until_ns of the department's agreements for the dataset"},
		{name: "with", old: grant, new: "\tgrant_ok\n}\n\nnoon if {\n\tdecision.allow with input.time as \"2026-01-01T12:00:00Z\"\n}\n",
			at: "decision.allow with", why: "uses `with`, which can replace the input, data or a built-in inside a decision"},
		{name: "a time built-in on a constant", old: grant, new: "\tgrant_ok\n\ttime.parse_rfc3339_ns(\"2027-01-01T00:00:00Z\") > 0\n}\n",
			at: "time.parse_rfc3339_ns(\"2027", why: "calls time.parse_rfc3339_ns, a time built-in"},
		{name: "a built-in whose result the input does not fix", old: grant, new: "\tgrant_ok\n\tnot_expired\n}\n\nnot_expired if {\n\t[valid, _, _] := io.jwt.decode_verify(\"x.y.z\", {\"secret\": \"k\"})\n\tnot valid\n}\n",
			at: "io.jwt.decode_verify", why: "calls io.jwt.decode_verify, whose result the input does not determine"},
		{name: "the time rule's package read whole", old: "package govx.sharing\n", new: "package govx.sharing\n\nimport data.govx.clock\n\nlate if object.get(clock, \"now\", 0) > 5\n",
			extraFile: "package govx.clock\n\nnow := time.parse_rfc3339_ns(input.time)\n",
			at:        "late if object.get", why: "reads data.govx.clock as a whole, which holds the time (data.govx.clock.now)"},
		{name: "rules under data.agreements_by_key", old: grant, new: grant, file: "clock.rego",
			extraFile: "package agreements_by_key\n\nfake := {\"population.person\": [{\"valid_from_ns\": 0}]}\n",
			at:        "fake := ", why: "defines rules under data.agreements_by_key, where the exchange keeps the agreements whose validity the cache relies on"},
		{name: "the time rule aliased", old: "now := time.parse_rfc3339_ns(input.time)\n", new: "now := data.govx.clock.instant\n",
			extraFile: "package govx.clock\n\ninstant := time.parse_rfc3339_ns(input.time)\n",
			at:        "now := data.govx.clock", why: "reads input.time outside a comparison with an agreement's validity"},
		// Cacheable: the time rule in another file of the package, and other ways of
		// writing the same comparisons.
		{name: "the time rule in another file", old: "now := time.parse_rfc3339_ns(input.time)\n", new: "",
			extraFile: "package govx.sharing\n\nnow := time.parse_rfc3339_ns(input.time)\n"},
		{name: "the comparisons reordered", old: "live := [a | some a in by_purpose; a.valid_from_ns <= now; now < a.valid_until_ns]",
			new: "live := [a | some a in by_purpose; now >= a.valid_from_ns; a.valid_until_ns > now]"},
		{name: "agreements looked up through a variable", old: grant, new: "\tgrant_ok\n\tsome x in own\n\tx.valid_from_ns <= now\n}\n\nown := l if {\n\td := input.subject.department\n\tl := data.agreements_by_key[d][input.resource.dataset]\n} else := []\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyPolicies(t, false)
			if tc.extraFile != "" {
				writeFile(t, filepath.Join(dir, "clock.rego"), tc.extraFile)
			}
			file := tc.file
			if file == "" {
				file = "sharing.rego"
				replaceIn(t, filepath.Join(dir, file), tc.old, tc.new)
			}
			b, err := policies.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if probs := policies.Check(b, cat); len(probs) > 0 {
				t.Fatalf("the edit does not pass policy check: %v", policies.Problems(probs))
			}
			m, err := policy.CacheModeOf(b)
			if err != nil {
				t.Fatal(err)
			}
			if tc.at == "" {
				if !m.On {
					t.Fatalf("cache mode %v, want on", m)
				}
				return
			}
			raw, _ := os.ReadFile(filepath.Join(dir, file))
			line := 0
			for i, l := range strings.Split(string(raw), "\n") {
				if strings.Contains(l, tc.at) {
					line = i + 1
					break
				}
			}
			want := fmt.Sprintf("%s:%d %s", file, line, tc.why)
			if m.On || len(m.Why) == 0 || !strings.HasPrefix(m.Why[0], want) {
				t.Fatalf("cache mode %v, want off — %s", m, want)
			}
		})
	}
}

// reloadMovedBoundaries edits the agreements in dir and reloads eng: AGR-2026-0002 now
// ends a month earlier, AGR-2027-0001 starts a month earlier, and AGR-2026-0001 gains a
// column.
func reloadMovedBoundaries(t *testing.T, eng *policy.Engine, dir string) {
	t.Helper()
	rev := eng.Revision()
	agreements := filepath.Join(dir, "agreements.yaml")
	replaceIn(t, agreements, "valid_until: 2026-12-31\n    approval: 宁数共", "valid_until: 2026-11-30\n    approval: 宁数共")
	replaceIn(t, agreements, "valid_from: 2027-01-01", "valid_from: 2026-12-01")
	replaceIn(t, agreements, "columns: [id_number, name, household_region, birth_date]", "columns: [id_number, name, household_region, birth_date, phone]")
	if err := eng.Reload(); err != nil {
		t.Fatal(err)
	}
	if eng.Revision() == rev {
		t.Fatal("the edit did not change the revision")
	}
}
