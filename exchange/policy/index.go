package policy

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"govx/exchange"
	"govx/policies"
)

// The decision index is a policy revision's decisions computed when it is loaded, before
// it starts deciding, so that a request the index holds costs a map access and an
// interval check from the first request on, also right after a reload; the exact cache
// then only serves what the index does not hold.
//
// An index entry is exactly what the exact cache would store for its key, made ahead of
// time by the same Rego evaluation: the decision for one request (minus its time),
// standing for the interval between two validity boundaries of the department's
// agreements for the dataset. It rests on the proof the cache rests on (analyzeCache),
// plus one more: that the policy reads no part of the input the index cannot enumerate
// (indexReads). The index holds, for every registered department and every catalogued
// dataset, the requests the policy data name:
//
//   - no system, no purpose and no columns, for every action;
//   - for each of the department's agreements for the dataset, each of its purposes, with
//     no columns (every granted column) and with exactly the agreement's columns, for
//     every action, from the agreement's system, or, for an agreement naming no system,
//     from no system and from every system another of those agreements names.
//
// Any other request (another purpose, system or column list, an unknown department or
// dataset, a time before the index was built) is decided by the compiled decision of the
// shipped policy (compiled.go), which is checked against every entry when the index is
// built, or else by the Rego, and then by the exact cache: the index never guesses a
// decision it did not evaluate.

// IndexMode says whether an engine decides a policy's requests from a decision index
// built when the policy is loaded, and why.
type IndexMode struct {
	// On reports whether the policy's decisions are indexed.
	On bool
	// Why is what the mode rests on: for an indexed policy what the analysis proved, for
	// any other every reason it is not indexed, in source order.
	Why []string
}

// String is the mode in one line: "on — …" or "off — …".
func (m IndexMode) String() string { return CacheMode(m).String() }

// IndexModeOf reports whether an engine would index the decisions of b, and why. It
// runs the analysis an engine runs when it loads or reloads a policy.
func IndexModeOf(b *policies.Bundle) (IndexMode, error) {
	comp, _, err := b.Compile(false)
	if err != nil {
		return IndexMode{}, fmt.Errorf("compile policy %s: %w", b.Source, err)
	}
	kp := requestReads(comp)
	return analyzeIndex(comp, kp, analyzeCache(comp, kp)), nil
}

// indexedInput are the parts of the input an index enumerates or fixes: the index key
// (department, system, action, dataset, purpose, columns), the fields (fixed by the
// dataset), and the time (by validity interval).
var indexedInput = []ast.Ref{
	ast.MustParseRef("input.subject.department"),
	ast.MustParseRef("input.subject.system"),
	ast.MustParseRef("input.action"),
	ast.MustParseRef("input.resource.dataset"),
	ast.MustParseRef("input.resource.fields"),
	ast.MustParseRef("input.request.columns"),
	ast.MustParseRef("input.request.purpose"),
	inputTime,
}

// analyzeIndex proves that a policy's decisions can be indexed: the cache analysis
// holds (the time is read only through the validity of the department's agreements for
// the dataset), and every read of the input is of a part the index enumerates or fixes.
func analyzeIndex(c *ast.Compiler, kp keyParts, cm CacheMode) IndexMode {
	if !cm.On {
		why := []string{"decisions are not cacheable (see decision cache), and an index entry is a cache entry made ahead of time"}
		return IndexMode{Why: why}
	}
	why := indexReads(c)
	if kp.caseRef || kp.filter || kp.limit {
		// requestReads already found them; indexReads names the places.
		if len(why) == 0 {
			why = append(why, "the policy reads input.request's case_ref, filter or limit, which no index can enumerate")
		}
	}
	if len(why) > 0 {
		return IndexMode{Why: why}
	}
	return IndexMode{On: true, Why: []string{"decisions depend only on the request's department, system, action, dataset, purpose and columns" +
		" and on the validity of the department's agreements for the dataset, so the requests the policy data name are decided at load time"}}
}

// indexReads returns, in source order, every read of the input outside indexedInput.
func indexReads(c *ast.Compiler) []string {
	a := &analyzer{seen: map[string]bool{}}
	names := make([]string, 0, len(c.Modules))
	for name := range c.Modules {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ast.WalkTerms(c.Modules[name], func(t *ast.Term) bool {
			r, ok := t.Value.(ast.Ref)
			if !ok || !r[0].Equal(ast.InputRootDocument) {
				return false
			}
			for _, p := range indexedInput {
				if len(r) >= len(p) && r[:len(p)].Equal(p) {
					return false
				}
			}
			a.add(t.Location, t, "reads %s, which the decision index does not enumerate", r)
			return false
		})
	}
	return a.why()
}

// index is one policy revision's decisions computed at load time. It is read-only once
// built.
type index struct {
	entries map[string][]indexEntry // cache key -> entries by lo
	// pairs lists the keys of each department and dataset ("dept\x00dataset"), for the
	// next revision to take over (reuse.go).
	pairs map[string][]string
	stats IndexStats
}

type indexEntry struct {
	lo, hi int64 // Unix nanoseconds; lo <= t < hi
	d      *exchange.Decision
}

// IndexStats describe the index of the policy now deciding.
type IndexStats struct {
	// Requests is how many requests (without their time) the index holds; Entries how
	// many (request, validity interval) decisions; Distinct how many different decisions
	// they share.
	Requests, Entries, Distinct int
	// From is when the index was built: it holds no interval that ended before.
	From time.Time
	// Build is how long building it took, evaluations included.
	Build time.Duration
	// Evaluations is how many evaluations the build made; Reused how many requests it
	// took over from the previous revision, for departments and datasets a reload did
	// not change (reuse.go).
	Evaluations, Reused int
}

func (x *index) get(key string, t int64) (*exchange.Decision, bool) {
	for _, e := range x.entries[key] {
		if e.lo <= t && t < e.hi {
			return e.d, true
		}
	}
	return nil, false
}

// indexProbe is one request the index holds, without its action and time.
type indexProbe struct {
	dept, system, dataset, purpose string
	cols                           []string
}

// probes lists the requests an index holds (see the top of this file), each once.
func probes(b *policies.Bundle) []indexProbe {
	type pair struct{ dept, dataset string }
	byPair := map[pair][]*policies.Agreement{}
	for i := range b.Agreements {
		a := &b.Agreements[i]
		k := pair{a.Consumer, a.Dataset}
		byPair[k] = append(byPair[k], a)
	}
	seen := map[string]bool{}
	var out []indexProbe
	add := func(p indexProbe) {
		k := strings.Join(append([]string{p.dept, p.system, p.dataset, p.purpose}, p.cols...), "\x00")
		if !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	for _, d := range b.Departments {
		for _, e := range b.Datasets {
			agrs := byPair[pair{d.Code, e.Dataset}]
			systems := []string{""}
			for _, a := range agrs {
				if a.System != "" {
					systems = append(systems, a.System)
				}
			}
			add(indexProbe{dept: d.Code, dataset: e.Dataset})
			for _, a := range agrs {
				from := systems
				if a.System != "" {
					from = []string{a.System}
				}
				for _, s := range from {
					for _, p := range a.Purposes {
						add(indexProbe{dept: d.Code, system: s, dataset: e.Dataset, purpose: p})
						add(indexProbe{dept: d.Code, system: s, dataset: e.Dataset, purpose: p, cols: a.Columns})
					}
				}
			}
		}
	}
	return out
}

// buildIndex evaluates, with the revision's prepared query, every request probes lists
// for every action, in every validity interval that has not ended at now, on workers
// goroutines. A policy error leaves the request out: the Rego then decides it, failing
// closed as it would anyway.
//
// prev, when set, is the index of the revision being replaced, and same reports the
// departments and datasets whose decisions the reload provably left as they were: their
// entries are taken over, stamped with the new revision, instead of evaluated again.
func (e *Engine) buildIndex(ctx context.Context, st *state, now time.Time, workers int, prev *index, same func(dept, dataset string) bool) *index {
	t0 := time.Now()
	ps := probes(st.bundle)
	x := &index{entries: map[string][]indexEntry{}, pairs: map[string][]string{}}
	distinct := map[string]*exchange.Decision{}
	intern := func(d exchange.Decision) *exchange.Decision {
		// Identical decisions (most denials, the grants of one agreement in successive
		// intervals) share one copy. %#v prints maps sorted and every field, including
		// ones added to exchange.Decision later.
		fp := fmt.Sprintf("%#v", d)
		p, ok := distinct[fp]
		if !ok {
			p = &d
			distinct[fp] = p
		}
		return p
	}
	taken := map[string]bool{}
	if prev != nil {
		for _, p := range ps {
			pk := p.dept + "\x00" + p.dataset
			if taken[pk] || !same(p.dept, p.dataset) {
				continue
			}
			taken[pk] = true
			for _, key := range prev.pairs[pk] {
				es := make([]indexEntry, len(prev.entries[key]))
				for i, e := range prev.entries[key] {
					d := clone(*e.d)
					d.Revision = st.bundle.Revision
					es[i] = indexEntry{lo: e.lo, hi: e.hi, d: intern(d)}
				}
				x.entries[key] = es
				x.pairs[pk] = append(x.pairs[pk], key)
				x.stats.Entries += len(es)
				x.stats.Reused++
			}
		}
	}
	type job struct {
		req    exchange.Request
		lo, hi int64
	}
	type result struct {
		key, dept, dataset string
		lo, hi             int64
		d                  exchange.Decision
	}
	jobs := make(chan job, 256)
	results := make(chan result, 256)
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				ds, _ := e.cat.Dataset(j.req.Dataset)
				d := e.eval(ctx, st, j.req, ds)
				if isPolicyError(d) {
					continue
				}
				key, err := cacheKey(j.req, st.reads)
				if err != nil {
					continue
				}
				results <- result{key: key, dept: j.req.Department, dataset: j.req.Dataset, lo: j.lo, hi: j.hi, d: d}
			}
		}()
	}
	go func() {
		defer close(jobs)
		indexRequests(st.bundle, ps, now, func(p indexProbe) bool { return !taken[p.dept+"\x00"+p.dataset] }, func(req exchange.Request, lo, hi int64) {
			jobs <- job{req: req, lo: lo, hi: hi}
		})
	}()
	go func() {
		wg.Wait()
		close(results)
	}()
	for r := range results {
		x.stats.Evaluations++
		if _, ok := x.entries[r.key]; !ok {
			pk := r.dept + "\x00" + r.dataset
			x.pairs[pk] = append(x.pairs[pk], r.key)
		}
		x.entries[r.key] = append(x.entries[r.key], indexEntry{lo: r.lo, hi: r.hi, d: intern(r.d)})
		x.stats.Entries++
	}
	for k, es := range x.entries {
		sort.Slice(es, func(i, j int) bool { return es[i].lo < es[j].lo })
		x.entries[k] = es
	}
	x.stats.Requests = len(x.entries)
	x.stats.Distinct = len(distinct)
	x.stats.From = now
	x.stats.Build = time.Since(t0)
	return x
}

// indexRequests calls f with every request of the probes in ps that want accepts, for
// every action, at a time inside every validity interval [lo, hi) that has not ended at
// now: the requests an index built at now evaluates.
func indexRequests(b *policies.Bundle, ps []indexProbe, now time.Time, want func(indexProbe) bool, f func(req exchange.Request, lo, hi int64)) {
	nowNs := now.UnixNano()
	actions := exchange.Actions()
	for _, p := range ps {
		if !want(p) {
			continue
		}
		for _, iv := range intervalsFrom(b.Boundaries(p.dept, p.dataset), nowNs) {
			for _, act := range actions {
				f(exchange.Request{
					Subject: exchange.Subject{Department: p.dept, System: p.system},
					Action:  act, Dataset: p.dataset, Purpose: p.purpose, Columns: p.cols,
					Time: time.Unix(0, max(iv[0], nowNs)).UTC(),
				}, iv[0], iv[1])
			}
		}
	}
}

// intervalsFrom returns the validity intervals [lo, hi) between consecutive boundaries
// (and before the first and after the last) that have not ended at now.
func intervalsFrom(bounds []int64, now int64) [][2]int64 {
	var out [][2]int64
	lo := int64(-1 << 63)
	for _, b := range append(slices.Clip(bounds), 1<<63-1) { // Clip: never write into the bundle's slice
		if b > now && b > lo {
			out = append(out, [2]int64{lo, b})
		}
		lo = b
	}
	return out
}
