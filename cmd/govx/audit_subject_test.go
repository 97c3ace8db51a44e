package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"govx/exchange/audit"
	"govx/exchange/audit/review"
	"govx/schemas/ident"
)

// TestAuditSubjectListsBulkPulls: `govx audit subject` given the record's values lists
// the lookups and verifies of its key and the pulls whose recorded scope (the policy's
// row filter and the caller's filter) included it — and not the pulls whose scope
// excluded it — each with its outcome, escaping what a caller sent.
func TestAuditSubjectListsBulkPulls(t *testing.T) {
	body := "330106199003150021"[:17]
	c, err := ident.CitizenIDCheckChar(body)
	if err != nil {
		t.Fatal(err)
	}
	id := body + string(c)
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	s, err := audit.OpenSpool(spool, audit.WithFreeSpaceReserve(0))
	if err != nil {
		t.Fatal(err)
	}
	hz := `{"column":"household_region","op":"prefix","value":"3301","by":"policy"}`
	nj := `{"column":"household_region","op":"prefix","value":"3201","by":"policy"}`
	access := func(rid, dept, action, filter, caseRef string, keys []string, complete *audit.Event) {
		ev := &audit.Event{Kind: audit.KindDecision, RequestID: rid, Department: dept, System: "sys", Action: action,
			Dataset: "population.person", Filter: filter, Keys: keys, CaseRef: caseRef, Decision: audit.Allow, Agreement: "AGR-1"}
		if err := s.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		if complete != nil {
			complete.Kind, complete.RequestID, complete.Department, complete.Action, complete.Dataset = audit.KindComplete, rid, dept, action, "population.person"
			if err := s.Append(context.Background(), complete); err != nil {
				t.Fatal(err)
			}
		}
	}
	ok := func(rows uint64) *audit.Event { return &audit.Event{Rows: rows, Status: audit.StatusOK} }
	access("req-lookup", "mz-3301", "lookup", "["+hz+"]", "330106-2026-000123", []string{id}, ok(1))
	access("req-hz-pull", "mz-3301", "read", "["+hz+"]", "", nil, ok(500))
	access("req-nj-pull", "mz-3201", "read", "["+nj+"]", "", nil, ok(500))
	access("req-older", "mz-3301", "read", "["+hz+`,{"column":"birth_date","op":"lt","value":"1980-01-01"}]`, "", nil, ok(80))
	access("req-younger", "rs-33", "changes", `[{"column":"birth_date","op":"ge","value":"1990-01-01"}]`, "", nil, ok(40))
	access("req-gone", "mz-3301", "read", "["+hz+"]", "", nil, &audit.Event{Status: audit.StatusAborted, Error: "client went away"})
	access("req-verify", "wj-3302", "verify", "", "\x1b[2Jcase\u202e", []string{id}, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rec := map[string]any{"id_number": id, "name": "张三", "gender": "2", "birth_date": "1990-03-15",
		"household_region": "330106", "status": "alive", "updated_at": "2026-11-01T00:00:00Z"}
	recFile := filepath.Join(dir, "person.json")
	b, _ := json.Marshal(rec)
	os.WriteFile(recFile, b, 0o600)

	out, err := runGovx(t, "audit", "subject", "--spool", spool, "--key", id, "--dataset", "population.person", "--record", recFile)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"req-lookup", "req-hz-pull", "req-younger", "req-gone", "req-verify", "3 reads", "1 verifies", "1 that returned nothing",
		`\x1b[2Jcase\u202e`, "returned nothing (aborted: client went away)"} {
		if !strings.Contains(out, want) {
			t.Errorf("the subject report lacks %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"req-nj-pull", "req-older", "\x1b"} {
		if strings.Contains(out, not) {
			t.Errorf("the subject report shows %q:\n%s", not, out)
		}
	}
	if n := strings.Count(out, review.HowPull); n != 3 {
		t.Errorf("%d lines say %q, want 3:\n%s", n, review.HowPull, out)
	}

	// A person who moved from Nanjing: given both versions, Nanjing's pull is listed too.
	moved := map[string]any{}
	for k, v := range rec {
		moved[k] = v
	}
	moved["household_region"] = "320102"
	b, _ = json.Marshal([]any{moved, rec})
	os.WriteFile(recFile, b, 0o600)
	out, err = runGovx(t, "audit", "subject", "--spool", spool, "--key", id, "--dataset", "population.person", "--record", recFile, "--format", "jsonl")
	if err != nil || !strings.Contains(out, "req-nj-pull") || strings.Count(out, "\n") != 6 {
		t.Errorf("with both versions of the record: %v\n%s", err, out)
	}

	// Without the record: the keyed accesses only, and a note saying so.
	out, err = runGovx(t, "audit", "subject", "--spool", spool, "--key", id)
	if err != nil || strings.Contains(out, "req-hz-pull") || !strings.Contains(out, "req-lookup") || !strings.Contains(out, "bulk pulls not matched") {
		t.Errorf("without --record: %v\n%s", err, out)
	}
	if _, err := runGovx(t, "audit", "subject", "--spool", spool, "--key", id, "--record", recFile); err == nil || !strings.Contains(err.Error(), "--dataset") {
		t.Errorf("--record without --dataset: %v", err)
	}
	if _, err := runGovx(t, "audit", "subject", "--spool", spool, "--key", "330106199001011234", "--dataset", "population.person", "--record", recFile); err == nil || !strings.Contains(err.Error(), "not the --key") {
		t.Errorf("a record of another key: %v", err)
	}
}
