package policies

import (
	"fmt"
	"time"
)

// KeyBudget limits how many record keys one department may check in a dataset by lookup
// and verify within a sliding window. Verify answers only true or false, but answered
// without limit it recovers a value by trying candidates against one key (every name,
// every birth date of a year), and lookups and verifies over many keys map which records
// exist. A budget makes both slow, and the refusals show in `govx audit report`.
//
// In the policy data a budget is `key_budget:` on a catalog entry (the dataset's
// default) or on an agreement (for the consumer it names, overriding the catalog per
// field); a field left out or 0 takes the next default, ending at DefaultKeyBudget. No
// budget means unlimited: a steward who wants more sets a larger number.
type KeyBudget struct {
	// VerifyPerKey is the most verifies of one key in the window.
	VerifyPerKey int `yaml:"verify_per_key"`
	// LookupPerKey is the most lookups of one key in the window.
	LookupPerKey int `yaml:"lookup_per_key"`
	// DistinctKeys is the most distinct keys looked up or verified in the window.
	DistinctKeys int `yaml:"distinct_keys"`
	// Window is the window as a Go duration ("1h", "30m").
	Window string `yaml:"window"`

	// Every is Window parsed.
	Every time.Duration `yaml:"-"`
}

// DefaultKeyBudget applies where the policy data sets no budget: five verifies and
// twenty lookups of one key, and a thousand distinct keys, per department and dataset
// per hour.
var DefaultKeyBudget = KeyBudget{VerifyPerKey: 5, LookupPerKey: 20, DistinctKeys: 1000, Window: "1h", Every: time.Hour}

// parse fills Every and reports what is wrong with the budget.
func (k *KeyBudget) parse() []string {
	var probs []string
	if k.Window != "" {
		d, err := time.ParseDuration(k.Window)
		switch {
		case err != nil:
			probs = append(probs, fmt.Sprintf("key_budget window %q is not a duration such as 1h or 30m", k.Window))
		case d < time.Minute || d > 31*24*time.Hour:
			probs = append(probs, fmt.Sprintf("key_budget window %s must be between 1m and 744h", k.Window))
		default:
			k.Every = d
		}
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"verify_per_key", k.VerifyPerKey}, {"lookup_per_key", k.LookupPerKey}, {"distinct_keys", k.DistinctKeys}} {
		if f.v < 0 {
			probs = append(probs, fmt.Sprintf("key_budget %s %d must not be negative (leave it out for the default)", f.name, f.v))
		}
	}
	return probs
}

// over returns k with every field k leaves unset taken from def.
func (k *KeyBudget) over(def KeyBudget) KeyBudget {
	if k == nil {
		return def
	}
	out := def
	if k.VerifyPerKey > 0 {
		out.VerifyPerKey = k.VerifyPerKey
	}
	if k.LookupPerKey > 0 {
		out.LookupPerKey = k.LookupPerKey
	}
	if k.DistinctKeys > 0 {
		out.DistinctKeys = k.DistinctKeys
	}
	if k.Every > 0 {
		out.Window, out.Every = k.Window, k.Every
	}
	return out
}

// KeyBudget returns the budget of the department holding agreement (the agreement
// that allowed its request; "" for none) for lookups and verifies of dataset: the
// agreement's key_budget over the catalog's over DefaultKeyBudget.
func (b *Bundle) KeyBudget(dataset, agreement string) KeyBudget {
	kb := DefaultKeyBudget
	for i := range b.Datasets {
		if b.Datasets[i].Dataset == dataset {
			kb = b.Datasets[i].KeyBudget.over(kb)
			break
		}
	}
	if a, ok := b.agreementByID[agreement]; ok && a.Dataset == dataset {
		kb = a.KeyBudget.over(kb)
	}
	return kb
}
