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

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
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
	waitFor(t, "the revision changes", func() bool { return eng.Revision() != rev0 })
	rev1 := eng.Revision()
	d := eng.Decide(ctx, phoneReq)
	if !d.Allow || d.Masks["phone"] != "phone" || d.Revision != rev1 {
		t.Fatalf("after the edit: %+v", d)
	}

	// A broken edit: an agreement naming a column the dataset does not have.
	errs := eng.ReloadErrors()
	replaceIn(t, agreements, "birth_date, phone]", "birth_date, phone, shoe_size]")
	waitFor(t, "the reload error is counted", func() bool { return eng.ReloadErrors() > errs })
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
	waitFor(t, "the Rego error is counted", func() bool { return eng.ReloadErrors() > errs })
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
	waitFor(t, "the fixed policy loads", func() bool { return eng.LastReloadError() == nil && eng.Revision() != rev1 })
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

// TestCachedEqualsUncached is the property that makes the cache safe: over random
// requests at random times, many of them on agreement validity boundaries, and across
// reloads that move those boundaries, a cached decision equals a fresh evaluation.
func TestCachedEqualsUncached(t *testing.T) {
	t.Run("shipped policy", func(t *testing.T) { testCachedEqualsUncached(t, copyPolicies(t, false), 2500) })
	// A policy that reads case_ref, filter and limit: they must then be part of the key.
	t.Run("policy reading case_ref, filter and limit", func(t *testing.T) {
		dir := copyPolicies(t, false)
		replaceIn(t, filepath.Join(dir, "sharing.rego"), "\tactions[input.action]\n\tdepartment\n",
			"\tactions[input.action]\n\tdepartment\n\tinput.request.case_ref != \"none\"\n\tcount(input.request.filter) < 2\n\tinput.request.limit != 7\n")
		// Fewer hits: most requests now differ in their key.
		testCachedEqualsUncached(t, dir, 500)
	})
}

func testCachedEqualsUncached(t *testing.T, dir string, minHits uint64) {
	eng, err := policy.New(cat, policy.WithDir(dir), policy.WithPollInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
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
	check("shipped policy", 10000)
	hits := eng.Stats().CacheHits
	if hits < minHits {
		t.Fatalf("only %d of 10000 decisions came from the cache; the property is not exercised", hits)
	}

	// Reload with moved boundaries: AGR-2026-0002 now ends a month earlier, AGR-2027-0001
	// starts a month earlier, and AGR-2026-0001 gains a column.
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
	times = append(times, boundaryTimes()...)
	check("after reload", 10000)
	if eng.Stats().CacheHits-hits < minHits {
		t.Fatal("the cache was not used after the reload")
	}
	t.Logf("%s", fmt.Sprint(eng.Stats()))
}
