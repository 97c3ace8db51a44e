package policies_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"govx/policies"
	"govx/schemas"
)

func TestEmbeddedChecks(t *testing.T) {
	b, err := policies.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	if probs := policies.Check(b, schemas.MustLoad()); len(probs) > 0 {
		t.Fatalf("the shipped policy has problems:\n%s", policies.Problems(probs))
	}
	if len(b.Revision) != 64 {
		t.Errorf("revision %q is not a SHA-256 in hex", b.Revision)
	}
}

func TestRegoTests(t *testing.T) {
	b, err := policies.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := policies.RunTests(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) < 20 {
		t.Errorf("only %d Rego tests ran", len(rep.Results))
	}
	for _, r := range rep.Results {
		if !r.Pass {
			t.Errorf("%s (%s:%d) failed: %s %v", r.Name, r.File, r.Line, r.Failed, r.Err)
		}
	}
	t.Logf("%d tests, coverage %.1f%%, not covered: %v", len(rep.Results), rep.Coverage, rep.NotCovered)
	if rep.Coverage < 95 {
		t.Errorf("coverage %.1f%% < 95%%; not covered: %v", rep.Coverage, rep.NotCovered)
	}
}

// copyEmbedded writes the shipped bundle into a temporary directory a test may edit.
func copyEmbedded(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, pat := range []string{"*.rego", "*.yaml"} {
		files, _ := filepath.Glob(pat)
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), raw, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func edit(t *testing.T, file, old, new string) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), old) {
		t.Fatalf("%s does not contain %q", file, old)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(raw), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCheckFindsProblems(t *testing.T) {
	cases := []struct {
		name, file, old, new string
		want                 []string // substrings of one problem's text
	}{
		{"unknown column", "agreements.yaml",
			"columns: [id_number, name, household_region, birth_date]",
			"columns: [id_number, name, household_region, birth_date, shoe_size]",
			[]string{"agreements.yaml:", "agreement AGR-2026-0001", "unknown column shoe_size"}},
		{"unknown department", "agreements.yaml", "consumer: zj-3205", "consumer: zj-9999",
			[]string{"agreement AGR-2026-0004", `consumer "zj-9999"`}},
		{"unknown dataset", "agreements.yaml", "dataset: resource.land_parcel\n    purposes: [housing", "dataset: resource.parcels\n    purposes: [housing",
			[]string{"agreement AGR-2026-0004", `dataset "resource.parcels" is not in the sharing catalog`}},
		{"unknown action", "agreements.yaml", "actions: [verify]", "actions: [verify, download]",
			[]string{"agreement AGR-2026-0003", `unknown action "download"`}},
		{"agreement on a none dataset", "agreements.yaml", "dataset: economy.indicator", "dataset: population.criminal_record",
			[]string{"agreement AGR-2026-0008", "not shared"}},
		{"none without legal basis", "catalog.yaml", "share: none\n    legal_basis: ", "share: none\n    # legal_basis: ",
			[]string{"dataset population.criminal_record", "legal_basis"}},
		{"issuer code", "issuers.yaml", "{code: mz-3301,", "{code: MZ_3301,",
			[]string{"issuers.yaml:", "issuer MZ_3301", "lower-case"}},
		{"issuer region", "issuers.yaml", `region: "330100", public_key`, `region: "990100", public_key`,
			[]string{"issuers.yaml:", "issuer bb-3301", "region"}},
		{"issuer without a name", "issuers.yaml", "name: 杭州市民政局, ", "",
			[]string{"issuer mz-3301", "name is missing"}},
		{"bad mask", "agreements.yaml", "masks: {holder_id_number: hash}", "masks: {holder_id_number: blur}",
			[]string{"agreement AGR-2026-0004", `mask "blur"`}},
		{"validity reversed", "agreements.yaml", "valid_until: 2027-06-30", "valid_until: 2025-06-30",
			[]string{"agreement AGR-2026-0004", "before valid_from"}},
		{"city region not a city", "departments.yaml", `region: "330100", level: city`, `region: "330106", level: city`,
			[]string{"department mz-3301", "not a city-level code"}},
		{"aggregate without terms", "agreements.yaml", "actions: [aggregate, discover]\n    aggregate:\n      group_by: [household_region, gender, status]\n      measures: [count]\n",
			"actions: [aggregate, discover]\n",
			[]string{"agreement AGR-2026-0016", "without aggregate terms"}},
		{"aggregate measure of text", "agreements.yaml", "measures: [count]", "measures: [count, sum:gender]",
			[]string{"agreement AGR-2026-0016", "sum:gender needs a numeric column"}},
		{"aggregate measure unknown", "agreements.yaml", "measures: [count]", "measures: [median:area_m2]",
			[]string{"agreement AGR-2026-0016", `measure "median:area_m2"`}},
		{"aggregate group outside columns", "agreements.yaml", "group_by: [household_region, gender, status]", "group_by: [household_region, birth_date]",
			[]string{"agreement AGR-2026-0016", "group_by column birth_date is not among"}},
		{"aggregate group size below the catalog", "agreements.yaml", "measures: [count]\n", "measures: [count]\n      min_group_size: 3\n",
			[]string{"agreement AGR-2026-0016", "min_group_size 3 is below the catalog's 10"}},
		{"aggregate terms without the action", "agreements.yaml", "actions: [aggregate, discover]\n    aggregate:\n      group_by: [household_region, gender, status]",
			"actions: [discover]\n    aggregate:\n      group_by: [household_region, gender, status]",
			[]string{"agreement AGR-2026-0016", "does not grant the action aggregate"}},
		{"two aggregate partitions", "agreements.yaml", "  - id: AGR-2026-0017\n",
			"  - id: AGR-2026-0018\n    title: t\n    consumer: tj-33\n    dataset: population.person\n    purposes: [population-statistics]\n    columns: [household_region, gender]\n    actions: [aggregate]\n    aggregate: {group_by: [household_region], measures: [count]}\n    valid_from: 2026-01-01\n    valid_until: 2026-12-31\n    approval: x\n\n  - id: AGR-2026-0017\n",
			[]string{"agreement AGR-2026-0018", "could be recovered by subtracting"}},
		{"catalog group size of one", "catalog.yaml", "min_group_size: 10", "min_group_size: 1",
			[]string{"dataset population.person", "min_group_size 1 must be at least 2"}},
		{"rego strict", "sharing.rego", "actions := {", "unused_thing(x) := 1 if { some y; true }\n\nactions := {",
			[]string{"sharing.rego:"}},
	}
	cat := schemas.MustLoad()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyEmbedded(t)
			edit(t, filepath.Join(dir, tc.file), tc.old, tc.new)
			b, err := policies.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			probs := policies.Check(b, cat)
			for _, p := range probs {
				s := p.String()
				ok := true
				for _, w := range tc.want {
					ok = ok && strings.Contains(s, w)
				}
				if ok {
					return
				}
			}
			t.Errorf("no problem contains %q; got:\n%s", tc.want, policies.Problems(probs))
		})
	}
}

func TestLoadRejectsUnknownKeysWithLine(t *testing.T) {
	dir := copyEmbedded(t)
	edit(t, filepath.Join(dir, "agreements.yaml"), "    approval: 苏住建共〔2026〕21号", "    approval: 苏住建共〔2026〕21号\n    colums: [name]")
	_, err := policies.Load(dir)
	if err == nil {
		t.Fatal("an unknown key loaded")
	}
	probs := policies.AsProblems(err)
	if len(probs) != 1 || probs[0].File != "agreements.yaml" || probs[0].Line == 0 || !strings.Contains(probs[0].Message, `unknown key "colums"`) {
		t.Fatalf("want one problem naming agreements.yaml, a line and the key; got %v", err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "agreements.yaml"))
	line := strings.Split(string(raw), "\n")[probs[0].Line-1]
	if !strings.Contains(line, "colums") {
		t.Errorf("line %d is %q, not the unknown key", probs[0].Line, line)
	}
}

func TestRevisionFollowsContentNotTests(t *testing.T) {
	dir := copyEmbedded(t)
	b1, err := policies.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	emb, _ := policies.Embedded()
	if b1.Revision != emb.Revision {
		t.Errorf("a copy of the embedded policy has revision %s, embedded %s", b1.Revision, emb.Revision)
	}
	edit(t, filepath.Join(dir, "sharing_test.rego"), "package govx.sharing_test", "package govx.sharing_test\n\n# a comment")
	b2, _ := policies.Load(dir)
	if b2.Revision != b1.Revision {
		t.Error("editing a test file changed the revision")
	}
	edit(t, filepath.Join(dir, "agreements.yaml"), "max_rows: 50000", "max_rows: 40000")
	b3, _ := policies.Load(dir)
	if b3.Revision == b1.Revision {
		t.Error("editing an agreement left the revision unchanged")
	}
}

func TestPolicyMayNotCallNondeterministicBuiltins(t *testing.T) {
	for _, call := range []string{`http.send({"method": "get", "url": "http://127.0.0.1:1"})`, `time.now_ns()`, `rand.intn("x", 10)`} {
		b := &policies.Bundle{Modules: []policies.Module{{File: "bad.rego", Source: "package govx.sharing\n\nx := " + call + "\n"}}}
		_, _, err := b.Compile(false)
		if err == nil || !strings.Contains(err.Error(), strings.SplitN(call, "(", 2)[0]) {
			t.Errorf("a policy calling %s compiled: %v", call, err)
		}
	}
}

// TestIssuers: the shipped issuers' keys load into the keyring; a key that does not
// parse, an issuer listed twice or an unknown key is a load problem naming file and line.
func TestIssuers(t *testing.T) {
	b, err := policies.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	is, ok := b.Issuer("mz-3301")
	if !ok || is.Name != "杭州市民政局" || is.Region != "330100" {
		t.Fatalf("issuer mz-3301 = %+v, %v", is, ok)
	}
	if key, ok := b.Keyring().Key("mz-3301"); !ok || !key.Equal(is.Key) {
		t.Fatalf("keyring key of mz-3301 = %v, %v; want %v", key, ok, is.Key)
	}
	if got := len(b.Keyring().Issuers()); got != len(b.Issuers) || got < 30 {
		t.Errorf("keyring holds %d issuers, the data lists %d", got, len(b.Issuers))
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"key of another algorithm", `public_key: "ed25519:`, `public_key: "rsa:`, `must start with "ed25519:"`},
		{"key without its padding", `="}`, `"}`, "public_key"},
		{"listed twice", "issuers:\n", "issuers:\n  - {code: mz-3301, name: 杭州市民政局, region: \"330100\", public_key: \"ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}\n", "listed twice"},
		{"unknown key", "{code: mz-3301,", "{code: mz-3301, level: city,", `unknown key "level"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyEmbedded(t)
			edit(t, filepath.Join(dir, "issuers.yaml"), tc.old, tc.new)
			_, err := policies.Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "issuers.yaml:") {
				t.Fatalf("load = %v, want a problem in issuers.yaml saying %q", err, tc.want)
			}
		})
	}
}
