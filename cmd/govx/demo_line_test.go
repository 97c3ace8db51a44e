package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"govx/exchange"
	"govx/exchange/policy"
	"govx/policies"
	"govx/schemas"
)

// TestDecisionLineMatchesAgreements: the line the demo prints above each pull says what
// the shipped agreements grant. The expected line is worked out here from
// policies/agreements.yaml and the schema by the rule docs/policies.md states (a column
// is masked when the agreement names a mask for it, or when it is personal and not
// granted unmasked), not from the policy's decision the line is made of.
func TestDecisionLineMatchesAgreements(t *testing.T) {
	cat := schemas.MustLoad()
	eng, err := policy.New(cat)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	b := eng.Bundle()
	person, _ := cat.Dataset("population.person")
	at := time.Date(2026, 6, 1, 2, 0, 0, 0, time.UTC) // inside AGR-2026-0001's validity
	const purpose = "minimum-living-allowance-review"

	var agr *policies.Agreement
	for i, a := range b.Agreements {
		if a.Consumer == "mz-3301" && a.Dataset == person.ID && slices.Contains(a.Purposes, purpose) && a.ValidFrom <= "2026-06-01" {
			agr = &b.Agreements[i]
		}
	}
	if agr == nil {
		t.Fatal("no agreement grants mz-3301 population.person for " + purpose)
	}
	var masked []string
	for _, c := range agr.Columns {
		f, _ := person.Field(c)
		m, named := agr.Masks[c]
		if !named && !slices.Contains(agr.Unmasked, c) && (f.Sensitivity == "personal" || f.Sensitivity == "sensitive_personal") {
			m, named = f.Mask, true
		}
		if named {
			masked = append(masked, c+" ("+m+")")
		}
	}
	subject := exchange.Subject{Department: "mz-3301", System: demoSystem(b, "mz-3301")}
	if subject.System != agr.System {
		t.Fatalf("the demo runs mz-3301 as system %q, the agreement names %q", subject.System, agr.System)
	}
	// mz-3301 is 杭州市民政局, a city department: rows of its own city, Hangzhou (3301).
	want := "# Granted to 杭州市民政局 (mz-3301) by " + agr.ID + ": " + strings.Join(agr.Columns, ", ") +
		"; rows in 杭州市 (household_region prefix 3301); masked: " + strings.Join(masked, ", ") + ":"
	got := decisionLine(context.Background(), eng, b, subject, person.ID, purpose, at)
	if got != want {
		t.Errorf("the demo says\n  %s\nthe agreement grants\n  %s", got, want)
	}
	// What the issue saw: names are granted unmasked and must not be called masked.
	if strings.Contains(got, "name (") {
		t.Errorf("the demo calls names masked: %s", got)
	}

	// Suzhou's housing bureau holds no agreement for the population register.
	got = decisionLine(context.Background(), eng, b, exchange.Subject{Department: "zj-3205", System: demoSystem(b, "zj-3205")}, person.ID, purpose, at)
	if want := "# Denied to 苏州市住房和城乡建设局 (zj-3205), reading population.person for " + purpose + ": no_agreement"; got != want {
		t.Errorf("denied line:\n  got  %s\n  want %s", got, want)
	}
}
