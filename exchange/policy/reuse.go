package policy

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"govx/exchange"
	"govx/policies"
)

// A reload usually changes the data of one department and dataset (an agreement signed,
// renewed or revoked). For a policy that reads the data documents only at the requesting
// department and dataset (pairLocal), a decision is a function of the Rego modules, the
// request, the time and that department's and dataset's slice of the data: departments
// [dept], catalog[dataset] and agreements_by_key[dept][dataset]. When a reload keeps the
// modules and a pair's slice, every decision for that pair stays what it was, so the new
// revision takes over the old one's index entries and cache entries for the pair
// (stamped with the new revision) instead of evaluating them again: a reload then costs
// the evaluations of the pairs it changed, and the requests it did not touch stay warm.

// dataRoots are the documents a pair-local policy may read, each with how many keys
// select the pair's slice of it.
var dataRoots = map[string][]ast.Ref{
	"departments":       {inputDept},
	"catalog":           {inputDataset},
	"agreements_by_key": {inputDept, inputDataset},
}

// pairLocal reports whether every read of the data documents (the top-level keys of
// data, the rest being rules) is data.departments[input.subject.department],
// data.catalog[input.resource.dataset] or
// data.agreements_by_key[input.subject.department][input.resource.dataset], or a part of
// one, each key written as the input reference or a variable unified with it in the
// same body or an enclosing one.
func pairLocal(c *ast.Compiler, dataKeys []string) bool {
	ok := true
	for _, m := range c.Modules {
		for _, r := range m.Rules {
			for x := r; x != nil && ok; x = x.Else {
				ok = pairLocalRule(x, dataKeys)
			}
			if !ok {
				return false
			}
		}
	}
	return ok
}

func pairLocalRule(r *ast.Rule, dataKeys []string) bool {
	ok := true
	var body func(b ast.Body, extra []*ast.Term, defs map[ast.Var]ast.Ref)
	check := func(t *ast.Term, defs map[ast.Var]ast.Ref) bool {
		ref, isRef := t.Value.(ast.Ref)
		if !isRef || !ref[0].Equal(ast.DefaultRootDocument) {
			return false
		}
		if len(ref) == 1 {
			ok = false
			return true
		}
		s, isStr := ref[1].Value.(ast.String)
		if !isStr {
			ok = false
			return true
		}
		keys, isRoot := dataRoots[string(s)]
		if !isRoot {
			if slices.Contains(dataKeys, string(s)) {
				ok = false // a data document no pair-local read is known for
			}
			return false // a rule: its own reads are checked where it is defined
		}
		if len(ref) < 2+len(keys) {
			ok = false
			return true
		}
		for i, want := range keys {
			k := ref[2+i]
			if r, isRef := k.Value.(ast.Ref); isRef && r.Equal(want) {
				continue
			}
			if v, isVar := k.Value.(ast.Var); isVar && defs[v].Equal(want) {
				continue
			}
			ok = false
		}
		// The rest of the ref selects within the slice; walkOwn goes on into its terms,
		// so a ref nested in it is checked on its own.
		return false
	}
	body = func(b ast.Body, extra []*ast.Term, outer map[ast.Var]ast.Ref) {
		defs := make(map[ast.Var]ast.Ref, len(outer))
		for k, v := range outer {
			defs[k] = v
		}
		for _, e := range b {
			if e.Negated || len(e.With) > 0 || !isUnify(e) {
				continue
			}
			ops := e.Operands()
			for i := range 2 {
				v, isVar := ops[i].Value.(ast.Var)
				ref, isRef := ops[1-i].Value.(ast.Ref)
				if isVar && isRef && ref[0].Equal(ast.InputRootDocument) {
					defs[v] = ref
				}
			}
		}
		walk := func(x any) {
			walkOwn(x, func(t *ast.Term) bool { return check(t, defs) }, func(cl closure) {
				if cl.unknown != "" {
					ok = false
					return
				}
				body(cl.body, append(cl.head, cl.pre...), defs)
			})
		}
		for _, t := range extra {
			walk(t)
		}
		for _, e := range b {
			for _, part := range exprParts(e) {
				walk(part)
			}
			for _, w := range e.With {
				walk(w.Target)
				walk(w.Value)
			}
		}
	}
	head := []*ast.Term{r.Head.Value, r.Head.Key}
	head = append(head, r.Head.Args...)
	head = append(head, r.Head.Reference[1:]...)
	body(r.Body, slices.DeleteFunc(head, func(t *ast.Term) bool { return t == nil }), nil)
	return ok
}

// pairSlices compares two revisions' data pair by pair.
type pairSlices struct {
	old, new map[string]any
	memo     map[string]bool
}

func newPairSlices(old, new *policies.Bundle) *pairSlices {
	return &pairSlices{old: old.Data(), new: new.Data(), memo: map[string]bool{}}
}

// same reports whether dept's and dataset's slice of the data is the same in both.
func (p *pairSlices) same(dept, dataset string) bool {
	k := dept + "\x00" + dataset
	if s, ok := p.memo[k]; ok {
		return s
	}
	a, errA := json.Marshal(slice(p.old, dept, dataset))
	b, errB := json.Marshal(slice(p.new, dept, dataset))
	s := errA == nil && errB == nil && string(a) == string(b)
	p.memo[k] = s
	return s
}

func slice(data map[string]any, dept, dataset string) [3]any {
	get := func(v any, k string) any {
		if m, ok := v.(map[string]any); ok {
			return m[k]
		}
		return nil
	}
	return [3]any{get(data["departments"], dept), get(data["catalog"], dataset), get(get(data["agreements_by_key"], dept), dataset)}
}

// sameModules reports whether two revisions evaluate the same Rego.
func sameModules(a, b *policies.Bundle) bool {
	ma, mb := a.PolicyModules(), b.PolicyModules()
	return slices.EqualFunc(ma, mb, func(x, y policies.Module) bool { return x.File == y.File && x.Source == y.Source })
}

// dataKeys returns the top-level keys of a bundle's data document.
func dataKeys(b *policies.Bundle) []string {
	var ks []string
	for k := range b.Data() {
		ks = append(ks, k)
	}
	return ks
}

// pairOfKey returns the department and dataset a cache key (cacheKey) is for: its first
// and fourth length-prefixed strings.
func pairOfKey(key string) (dept, dataset string, ok bool) {
	var parts [4]string
	for i := range parts {
		if parts[i], key, ok = cutString(key); !ok {
			return "", "", false
		}
	}
	return parts[0], parts[3], true
}

// cutString cuts the length-prefixed string cacheKey writes off the front of key.
func cutString(key string) (s, rest string, ok bool) {
	n, rest, found := strings.Cut(key, ":")
	if !found {
		return "", "", false
	}
	l, err := strconv.Atoi(n)
	if err != nil || l < 0 || l > len(rest) {
		return "", "", false
	}
	return rest[:l], rest[l:], true
}

// requestOfKey reads back the request (without its time) a cache key was made from, for
// a policy that reads none of case_ref, filter and limit (the key then holds every other
// part of the request). ok is false for anything cacheKey could not have written.
func requestOfKey(key string) (req exchange.Request, ok bool) {
	var parts [5]string
	for i := range parts {
		if parts[i], key, ok = cutString(key); !ok {
			return req, false
		}
	}
	n, key, found := strings.Cut(key, "[")
	cols, err := strconv.Atoi(n)
	if !found || err != nil || cols < 0 || cols > len(key) {
		return req, false
	}
	if cols > 0 {
		req.Columns = make([]string, cols)
	}
	for i := range req.Columns {
		if req.Columns[i], key, ok = cutString(key); !ok {
			return req, false
		}
	}
	if key != "" {
		return req, false
	}
	req.Department, req.System, req.Action, req.Dataset, req.Purpose = parts[0], parts[1], exchange.Action(parts[2]), parts[3], parts[4]
	return req, true
}

// maxRewarm bounds the requests a reload evaluates again for the departments and
// datasets it changed, so that a reload stays short whatever the cache holds.
const maxRewarm = 1000

// rewarm evaluates with the new revision st, at now, the requests prev's cache holds for
// departments and datasets the reload changed (up to maxRewarm), and caches the
// decisions: the requests seen before a reload stay warm after it, also where it
// changed something. Only for a policy whose cache key holds the whole request.
func (e *Engine) rewarm(prev, st *state, now time.Time, same func(dept, dataset string) bool) {
	if st.cache == nil || st.reads != (keyParts{}) || prev.reads != (keyParts{}) {
		return
	}
	var reqs []exchange.Request
	prev.cache.mu.RLock()
	for k := range prev.cache.entries {
		if len(reqs) == maxRewarm {
			break
		}
		if r, ok := requestOfKey(k); ok && !same(r.Department, r.Dataset) {
			reqs = append(reqs, r)
		}
	}
	prev.cache.mu.RUnlock()
	ctx := context.Background()
	for _, r := range reqs {
		r.Time = now
		key, err := cacheKey(r, st.reads)
		if err != nil {
			continue
		}
		ds, _ := e.cat.Dataset(r.Dataset)
		if d := e.eval(ctx, st, r, ds); !isPolicyError(d) {
			lo, hi := interval(st.bundle.Boundaries(r.Department, r.Dataset), now.UnixNano())
			st.cache.put(key, d, lo, hi)
		}
	}
}
