package service

import (
	"fmt"
	"sync"
	"time"

	"govx/exchange"
	"govx/policies"
)

// budgets counts, per department and dataset, the keys checked by lookup and verify
// within each budget's sliding window (see policies.KeyBudget). Memory is bounded by
// the budgets themselves: a key is remembered only while it counts, at most
// distinct_keys keys per department and dataset, each with at most its per-key uses.
type budgets struct {
	mu  sync.Mutex
	use map[budgetScope]map[string]*keyUses
}

type budgetScope struct{ department, dataset string }

// bundled is what a Decider offers when it decides by a policies.Bundle (the policy
// engine does): its budgets follow policy reloads.
type bundled interface {
	Bundle() *policies.Bundle
}

var (
	embeddedOnce   sync.Once
	embeddedBundle *policies.Bundle
)

// keyBudget returns the budget for a request allowed by agreement: from the policy now
// deciding, or, for a decider without policy data, from the shipped policy data (never
// none at all).
func (s *Service) keyBudget(dataset, agreement string) policies.KeyBudget {
	if b, ok := s.policy.(bundled); ok {
		if bb := b.Bundle(); bb != nil {
			return bb.KeyBudget(dataset, agreement)
		}
	}
	embeddedOnce.Do(func() { embeddedBundle, _ = policies.Embedded() })
	if embeddedBundle != nil {
		return embeddedBundle.KeyBudget(dataset, agreement)
	}
	return policies.DefaultKeyBudget
}

// keyUses are the lookups and verifies of one key in the window, oldest first.
type keyUses struct{ lookup, verify []time.Time }

func (u *keyUses) expire(since time.Time) bool {
	u.lookup, u.verify = unexpired(u.lookup, since), unexpired(u.verify, since)
	return len(u.lookup) == 0 && len(u.verify) == 0
}

// spendKey counts one lookup or verify of key by the caller's department, or refuses it
// when that would exceed the budget. A refused request counts nothing: it learns nothing.
func (s *Service) spendKey(c Caller, action exchange.Action, dataset, key, agreement string) error {
	kb := s.keyBudget(dataset, agreement)
	what := "lookups"
	if action == exchange.ActionVerify {
		what = "verifies"
	}
	exhausted := func(msg string) error {
		if action == exchange.ActionVerify {
			return exchange.E(exchange.ResourceExhausted, "verify_budget_exhausted", msg)
		}
		return exchange.E(exchange.ResourceExhausted, "lookup_budget_exhausted", msg)
	}
	now := s.now()
	since := now.Add(-kb.Every)
	b := &s.budgets
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.use == nil {
		b.use = map[budgetScope]map[string]*keyUses{}
	}
	scope := budgetScope{c.Subject.Department, dataset}
	keys := b.use[scope]
	if keys == nil {
		keys = map[string]*keyUses{}
		b.use[scope] = keys
	}
	u := keys[key]
	if u != nil && u.expire(since) {
		delete(keys, key)
		u = nil
	}
	if u == nil {
		if len(keys) >= kb.DistinctKeys {
			for k, ku := range keys { // at the budget: forget the keys whose uses expired
				if ku.expire(since) {
					delete(keys, k)
				}
			}
		}
		if len(keys) >= kb.DistinctKeys {
			return exhausted(fmt.Sprintf("your department has checked %d distinct keys of %s within %s, the most its key budget allows; retry later, or ask the data steward for a larger budget if this is your work",
				kb.DistinctKeys, dataset, kb.Window))
		}
		u = &keyUses{}
	}
	uses, perKey := &u.lookup, kb.LookupPerKey
	if action == exchange.ActionVerify {
		uses, perKey = &u.verify, kb.VerifyPerKey
	}
	if len(*uses) >= perKey {
		return exhausted(fmt.Sprintf("your department has made %d %s of this key of %s within %s, the most its key budget allows; retry later",
			perKey, what, dataset, kb.Window))
	}
	*uses = append(*uses, now)
	keys[key] = u
	return nil
}

// unexpired returns the uses at or after since (uses are in time order).
func unexpired(uses []time.Time, since time.Time) []time.Time {
	i := 0
	for i < len(uses) && uses[i].Before(since) {
		i++
	}
	return uses[i:]
}
