package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestSchemasCheck(t *testing.T) {
	out, err := runGovx(t, "schemas", "check", "population.person", "testdata/persons.jsonl")
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("check of a file with invalid rows: err %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{
		"line 3 (key 330106199003071230):\n  id_number: check character",
		"[check_char]",
		"line 4 ", "[date]",
		"line 5 ", "[province]",
		"line 6 ", "gender: must be a string, got a number [type]",
		"line 7:\n  id_number: is required [required]",
		"line 8:\n  (line): is not a JSON object",
		"8 records, 2 valid, 6 invalid",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "line 1 ") || strings.Contains(out, "line 2 ") {
		t.Errorf("valid rows reported as invalid:\n%s", out)
	}

	valid := filepath.Join(t.TempDir(), "valid.jsonl")
	data, _ := os.ReadFile("testdata/persons.jsonl")
	lines := strings.SplitAfter(string(data), "\n")
	os.WriteFile(valid, []byte(lines[0]+lines[1]), 0o600)
	out, err = runGovx(t, "schemas", "check", "population.person", valid)
	if err != nil || !strings.Contains(out, "2 records, 2 valid, 0 invalid") {
		t.Fatalf("valid file: %v\n%s", err, out)
	}

	if _, err := runGovx(t, "schemas", "check", "population.people", valid); err == nil || !strings.Contains(err.Error(), "known datasets: economy.indicator") {
		t.Fatalf("unknown dataset: %v", err)
	}
}

func TestSchemasListAndShow(t *testing.T) {
	out, err := runGovx(t, "schemas", "list")
	if err != nil || !strings.Contains(out, "legal_entity.organization") || !strings.Contains(out, "indicator_code,region_code,period") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = runGovx(t, "schemas", "show", "resource.land_parcel")
	if err != nil || !strings.Contains(out, "exactly one of: holder_uscc, holder_id_number") || !regexp.MustCompile(`holder_id_number +string +yes +sensitive_personal +id_card +citizen_id`).MatchString(out) {
		t.Fatalf("show: %v\n%s", err, out)
	}
}

func TestEveryCommandHasAGroupInHelp(t *testing.T) {
	groupCommands()
	for _, c := range rootCmd.Commands() {
		if c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		if c.GroupID == "" {
			t.Errorf("govx %s has no group in --help: add it to groups in root.go", c.Name())
		}
	}
}
