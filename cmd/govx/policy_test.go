package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runPolicy runs `govx policy ARGS…` on a fresh command tree and returns its output and
// exit status.
func runPolicy(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := newPolicyCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	if err != nil {
		out.WriteString("govx: " + err.Error() + "\n")
		return out.String(), exitCode(err)
	}
	return out.String(), 0
}

// copyPolicyDir copies the shipped policy directory into a temporary one.
func copyPolicyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, pat := range []string{"*.rego", "*.yaml"} {
		files, _ := filepath.Glob(filepath.Join("../../policies", pat))
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), raw, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func TestPolicyTestEmbeddedPasses(t *testing.T) {
	out, code := runPolicy(t, "test")
	if code != 0 || !strings.Contains(out, "0 failed") || !strings.Contains(out, "coverage") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestPolicyTestFailingRegoExitsNonZero(t *testing.T) {
	dir := copyPolicyDir(t)
	planted := "package govx.sharing_test\n\nimport data.govx.sharing\n\n" +
		"test_planted_failure if {\n\td := sharing.decision with input as dibao\n\tnot d.allow\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "planted_test.rego"), []byte(planted), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runPolicy(t, "test", dir)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	if !strings.Contains(out, "FAIL  data.govx.sharing_test.test_planted_failure (planted_test.rego:") || !strings.Contains(out, "1 failed") {
		t.Errorf("the failure is not reported:\n%s", out)
	}
}

func TestPolicyCheck(t *testing.T) {
	if out, code := runPolicy(t, "check"); code != 0 || !strings.Contains(out, "ok: (embedded)") {
		t.Fatalf("the embedded policy: exit %d:\n%s", code, out)
	} else if !strings.Contains(out, "\ndecision cache: on — ") {
		t.Errorf("the embedded policy's decisions are not reported cached:\n%s", out)
	}
	if out, _ := runPolicy(t, "check"); !strings.Contains(out, "\ndecision index: on — ") {
		t.Errorf("the embedded policy's decisions are not reported indexed:\n%s", out)
	} else if !strings.Contains(out, "\ncompiled decision: on — the policy is the shipped sharing.rego") {
		t.Errorf("the embedded policy is not reported compiled:\n%s", out)
	}
	dir := copyPolicyDir(t)
	file := filepath.Join(dir, "agreements.yaml")
	raw, _ := os.ReadFile(file)
	edited := strings.Replace(string(raw), "columns: [parcel_code, region_code, land_use, area_m2, right_type, holder_uscc]",
		"columns: [parcel_code, region_code, land_use, area_m2, right_type, holder_uscc, owner_phone]", 1)
	if edited == string(raw) {
		t.Fatal("the agreement to edit is gone")
	}
	os.WriteFile(file, []byte(edited), 0o644)
	out, code := runPolicy(t, "check", dir)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	if !strings.Contains(out, "agreements.yaml:") || !strings.Contains(out, "agreement AGR-2026-0007") || !strings.Contains(out, "unknown column owner_phone") {
		t.Errorf("the problem does not name file, entry and column:\n%s", out)
	}
}

func TestPolicyExplain(t *testing.T) {
	out, code := runPolicy(t, "explain", "--as", "mz-3301/dibao-review", "--dataset", "population.person",
		"--purpose", "minimum-living-allowance-review", "--columns", "id_number,name,household_region", "--time", "2026-11-26T12:00:00Z")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{"decision    ALLOW", "agreement   AGR-2026-0001", "杭数资共〔2026〕1号",
		"masks       id_number → id_card", `row filter  household_region prefix "3301"`, "max rows    100000", "revision    "} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}

	// Times the policy cannot read as Unix nanoseconds are refused, not explained as a
	// policy error, and not as now (year 1 at midnight is Go's zero time, which the
	// engine reads as now); the last instant it can read is explained.
	for _, at := range []string{"0001-01-01T00:00:00Z", "0001-01-01T00:00:01Z", "1677-09-21T00:12:43Z", "2262-04-11T23:47:17Z", "9999-12-31"} {
		out, code = runPolicy(t, "explain", "--as", "mz-3301/dibao-review", "--dataset", "population.person",
			"--purpose", "minimum-living-allowance-review", "--time", at)
		if code == 0 || strings.Contains(out, "ALLOW") || !strings.Contains(out, "from 1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z") {
			t.Errorf("--time %s: exit %d:\n%s", at, code, out)
		}
	}
	if out, code = runPolicy(t, "explain", "--as", "mz-3301/dibao-review", "--dataset", "population.person",
		"--purpose", "minimum-living-allowance-review", "--time", "2262-04-11T23:47:16Z"); code != 0 || strings.Contains(out, "policy_error") {
		t.Errorf("--time 2262-04-11T23:47:16Z, within range: exit %d:\n%s", code, out)
	}

	out, _ = runPolicy(t, "explain", "--as", "wj-3302", "--dataset", "population.person",
		"--purpose", "birth-certificate-issuance", "--time", "2026-11-26")
	if !strings.Contains(out, "decision    DENY") || !strings.Contains(out, "reason      verify_only: agreement AGR-2026-0003") {
		t.Errorf("a verify-only agreement asked to read:\n%s", out)
	}

	out, _ = runPolicy(t, "explain", "--as", "tj-33", "--dataset", "resource.land_parcel", "--action", "aggregate",
		"--purpose", "land-resource-statistics", "--columns", "region_code,area_m2", "--time", "2026-11-26")
	if !strings.Contains(out, "decision    ALLOW") || !strings.Contains(out, "aggregate   group by region_code, land_use, right_type; measures count, sum:area_m2") ||
		!strings.Contains(out, "groups under 10 suppressed") {
		t.Errorf("an aggregate-only agreement explained:\n%s", out)
	}

	out, code = runPolicy(t, "explain", "--as", "mz-3301", "--dataset", "population.person", "--time", "tomorrow")
	if code != 2 || !strings.Contains(out, "--time") {
		t.Errorf("a bad --time: exit %d:\n%s", code, out)
	}
}

// TestPolicyCheckCacheMode: a policy that uses the time of day passes the check (it is
// decided correctly), and the check says its decisions are not cached, and where.
func TestPolicyCheckCacheMode(t *testing.T) {
	dir := copyPolicyDir(t)
	file := filepath.Join(dir, "sharing.rego")
	raw, _ := os.ReadFile(file)
	edited := strings.Replace(string(raw), "\tgrant_ok\n}\n", "\tgrant_ok\n\toffice_hours\n\tworkday\n}\n\n"+
		"office_hours if {\n\t[hour, _, _] := time.clock(now)\n\thour >= 8\n\thour < 18\n}\n\n"+
		"workday if not time.weekday(now) in {\"Saturday\", \"Sunday\"}\n", 1)
	if edited == string(raw) {
		t.Fatal("the grant to edit is gone")
	}
	if err := os.WriteFile(file, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	lineOf := func(s string) int {
		for i, l := range strings.Split(edited, "\n") {
			if strings.Contains(l, s) {
				return i + 1
			}
		}
		t.Fatalf("no line with %q", s)
		return 0
	}
	out, code := runPolicy(t, "check", dir)
	if code != 0 || !strings.Contains(out, "ok: "+dir) {
		t.Fatalf("exit %d, want 0:\n%s", code, out)
	}
	want := fmt.Sprintf("decision cache: off — sharing.rego:%d reads input.time via time.clock\n"+
		"                      sharing.rego:%d reads input.time via time.weekday\n",
		lineOf("time.clock(now)"), lineOf("time.weekday(now)"))
	if !strings.HasSuffix(out, want) {
		t.Errorf("check output does not end with\n%s\ngot:\n%s", want, out)
	}
}
