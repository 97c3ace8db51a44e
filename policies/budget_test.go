package policies_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"govx/policies"
)

// TestKeyBudgetLayers: an agreement's key_budget overrides the catalog's field by
// field, the catalog's overrides the built-in default, and a dataset without one gets
// the default: there is always a budget.
func TestKeyBudgetLayers(t *testing.T) {
	dir := copyEmbedded(t)
	edit(t, filepath.Join(dir, "agreements.yaml"), "    approval: 苏住建共〔2026〕21号",
		"    approval: 苏住建共〔2026〕21号\n    key_budget: {distinct_keys: 3000, window: 30m}")
	b, err := policies.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var agr *policies.Agreement
	for i := range b.Agreements {
		if b.Agreements[i].Approval == "苏住建共〔2026〕21号" {
			agr = &b.Agreements[i]
		}
	}
	if agr == nil {
		t.Fatal("the edited agreement is gone")
	}
	got := b.KeyBudget(agr.Dataset, agr.ID)
	cat := b.KeyBudget(agr.Dataset, "")
	if got.DistinctKeys != 3000 || got.Every != 30*time.Minute || got.VerifyPerKey != cat.VerifyPerKey || got.LookupPerKey != cat.LookupPerKey {
		t.Errorf("agreement over catalog: %+v (catalog %+v)", got, cat)
	}
	if p := b.KeyBudget("population.person", ""); p.VerifyPerKey != 5 || p.DistinctKeys != 1000 || p.Every != time.Hour {
		t.Errorf("population.person from the shipped catalog: %+v", p)
	}
	if e := b.KeyBudget("economy.indicator", ""); e != policies.DefaultKeyBudget {
		t.Errorf("a dataset without a key_budget: %+v, want the default %+v", e, policies.DefaultKeyBudget)
	}
	// Another dataset's agreement does not lend its budget.
	if x := b.KeyBudget("legal_entity.organization", agr.ID); x.DistinctKeys == 3000 {
		t.Errorf("an agreement for %s changed the budget of legal_entity.organization: %+v", agr.Dataset, x)
	}
}

func TestKeyBudgetRejectsBadValues(t *testing.T) {
	dir := copyEmbedded(t)
	edit(t, filepath.Join(dir, "catalog.yaml"), "key_budget: {verify_per_key: 5, lookup_per_key: 20, distinct_keys: 1000, window: 1h}", "key_budget: {verify_per_key: -1, window: soon}")
	_, err := policies.Load(dir)
	probs := policies.AsProblems(err)
	if len(probs) != 2 || !strings.Contains(probs[0].Message+probs[1].Message, `window "soon"`) || !strings.Contains(probs[0].Message+probs[1].Message, "verify_per_key -1") || probs[0].Line == 0 {
		t.Fatalf("want the bad window and the negative count, with a line; got %v", err)
	}
}
