// Command policy measures sharing decisions: it generates 1,000 agreements among 100
// departments, decides a Zipf mix of requests (over departments, datasets and purposes)
// through exchange/policy — from an empty cache, right after a policy reload and warm,
// as shipped (the decision index built at load, the compiled decision for what it does
// not hold), with the index but not the compiled decision, and, as the baseline, with
// neither — and compares
// a fresh Rego evaluation and a hard-coded Go check of the same rules, the floor no
// policy engine can beat. It prints markdown rows for docs/BENCHMARKS.md, and @target
// lines for bench/run.sh.
//
//	go run ./bench/policy [-n 500000] [-cold 20000] [-uncached 20000] [-seed 1]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"govx/exchange"
	"govx/exchange/policy"
	"govx/policies"
	"govx/schemas"
)

// The target for a decision the exact cache has not seen (issue 17).
const targetP99 = 100 * time.Microsecond

func main() {
	n := flag.Int("n", 500_000, "requests decided through a warm engine")
	nCold := flag.Int("cold", 20_000, "requests decided first, from an empty cache and right after a reload")
	nUncached := flag.Int("uncached", 20_000, "requests decided by a fresh Rego evaluation (the baseline)")
	nAgreements := flag.Int("agreements", 1000, "agreements to generate")
	nDepts := flag.Int("departments", 100, "departments to generate")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()

	cat, err := schemas.Load()
	if err != nil {
		log.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(*seed, 42))
	dir, err := os.MkdirTemp("", "govx-bench-policy-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	world := generate(rng, cat, *nDepts, *nAgreements)
	if err := world.write(dir); err != nil {
		log.Fatal(err)
	}
	open := func(opts ...policy.Option) (*policy.Engine, uint64) {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		eng, err := policy.New(cat, append([]policy.Option{policy.WithDir(dir), policy.WithPollInterval(time.Hour)}, opts...)...)
		if err != nil {
			log.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		return eng, m1.HeapAlloc - min(m1.HeapAlloc, m0.HeapAlloc)
	}
	// The baseline engine first: the same policy, deciding as before the index.
	base, baseHeap := open(policy.WithIndex(false))
	defer base.Close()
	eng, engHeap := open()
	defer eng.Close()
	if m := eng.IndexMode(); !m.On {
		log.Fatalf("the bench policy is not indexed: %v", m)
	}
	if m := eng.CompiledMode(); !m.On {
		log.Fatalf("the bench policy is not compiled: %v", m)
	}
	startIndex := eng.IndexStats()
	// The engine before the compiled decision: index, then cache, then Rego.
	idx, _ := open(policy.WithCompiled(false))
	defer idx.Close()
	alone, _ := open(policy.WithCacheSize(0), policy.WithCompiled(false))
	defer alone.Close()
	compiledAlone, _ := open(policy.WithCacheSize(0))
	defer compiledAlone.Close()
	floor := newFloor(eng.Bundle(), cat)

	now := time.Now().UTC()
	mix := newMix(rng, world, cat, now)
	ctx := context.Background()

	// Sanity: the floor decides as the policy does, and the index and the compiled
	// decision as the Rego does, or the numbers mean nothing.
	same, sameIndex, sameCompiled := 0, 0, 0
	const sample = 5000
	for range sample {
		r := mix.next()
		fresh := eng.DecideUncached(ctx, r)
		if fresh.Allow == floor.decide(r).Allow {
			same++
		}
		if fmt.Sprintf("%#v", alone.Decide(ctx, r)) == fmt.Sprintf("%#v", fresh) {
			sameIndex++
		}
		if fmt.Sprintf("%#v", compiledAlone.Decide(ctx, r)) == fmt.Sprintf("%#v", fresh) {
			sameCompiled++
		}
	}
	if same != sample || sameIndex != sample || sameCompiled != sample {
		log.Fatalf("of %d requests the Go floor agrees with the policy on %d, the indexed engine on %d, the compiled one on %d; fix that first",
			sample, same, sameIndex, sameCompiled)
	}

	uncached := measure(*nUncached, mix, func(r exchange.Request) { eng.DecideUncached(ctx, r) })
	baseCold := measureStats(*nCold, mix, base, ctx)
	baseWarm := measureStats(*n, mix, base, ctx)
	cold := measureStats(*nCold, mix, eng, ctx)
	idxCold := measureStats(*nCold, mix, idx, ctx)
	aloneCold := measureStats(*nCold, mix, alone, ctx)
	warm := measureStats(*n, mix, eng, ctx)
	idxWarm := measureStats(*n, mix, idx, ctx)
	// What a decision costs where the index holds it: the requests of the mix it holds.
	var held []exchange.Request
	for len(held) < *nCold {
		r := mix.next()
		h := alone.Stats().IndexHits
		if alone.Decide(ctx, r); alone.Stats().IndexHits > h {
			held = append(held, r)
		}
	}
	heldRun := measureStats(len(held), newFixedMix(held), alone, ctx)
	misses := classifyMisses(*nCold, mix, alone, world, ctx)

	// A steward's edit: one more agreement. Reload builds the new revision's index
	// before switching to it; the first requests after it are measured.
	world.agreements = append(world.agreements, policies.Agreement{
		ID: "AGR-B-RELOAD", Title: "bench reload", Consumer: world.depts[1].Code, Dataset: world.datasetIDs[0],
		Purposes: []string{world.purposePool[0]}, Columns: []string{"id_number", "name"}, Actions: []string{"read"},
		ValidFrom: "2026-01-01", ValidUntil: "2027-12-31", Approval: "bench〔2026〕reload",
	})
	if err := world.write(dir); err != nil {
		log.Fatal(err)
	}
	rev := eng.Revision()
	t0 := time.Now()
	if err := eng.Reload(); err != nil {
		log.Fatal(err)
	}
	reloadTook := time.Since(t0)
	if eng.Revision() == rev {
		log.Fatal("the edit did not change the revision")
	}
	reloaded := measureStats(*nCold, mix, eng, ctx)
	if err := idx.Reload(); err != nil {
		log.Fatal(err)
	}
	idxReloaded := measureStats(*nCold, mix, idx, ctx)
	if err := base.Reload(); err != nil {
		log.Fatal(err)
	}
	baseReloaded := measureStats(*nCold, mix, base, ctx)
	fl := measure(*n, mix, func(r exchange.Request) { floor.decide(r) })

	allowed := 0
	for range 10000 {
		if eng.Decide(ctx, mix.next()).Allow {
			allowed++
		}
	}
	cmd := fmt.Sprintf("go run ./bench/policy -n %d -cold %d -uncached %d -agreements %d -departments %d -seed %d", *n, *nCold, *nUncached, *nAgreements, *nDepts, *seed)
	fmt.Printf("`%s` — %d agreements, %d departments, Zipf mix, %.0f%% of requests allowed, %d cores\n\n",
		cmd, *nAgreements, *nDepts, float64(allowed)/100, runtime.NumCPU())
	fmt.Println("| decision path | requests | p50 | p99 | index hits | cache hits | p99 vs target (≤ 100 µs) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	row := func(name string, r run) {
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %.2f× |\n", name, len(r.l), us(r.l.pct(50)), us(r.l.pct(99)),
			r.rate(r.index), r.rate(r.cache), float64(r.l.pct(99))/float64(targetP99))
	}
	row("Rego, prepared query, no cache (baseline)", run{l: uncached})
	row("Rego + exact cache (no index), from empty", baseCold)
	row("Rego + exact cache (no index), right after a reload", baseReloaded)
	row("Rego + exact cache (no index), warm", baseWarm)
	row("index + exact cache, from empty", idxCold)
	row("index + exact cache, right after a reload", idxReloaded)
	row("index + exact cache, warm", idxWarm)
	row("index + compiled decision (as shipped), from empty", cold)
	row("index + compiled decision (as shipped), right after a reload", reloaded)
	row("index + compiled decision (as shipped), warm", warm)
	row("index alone (cache off, no compiled decision), from empty", aloneCold)
	row("index alone, only the requests it holds", heldRun)
	row("hard-coded Go check (floor)", run{l: fl})
	st := eng.IndexStats()
	fmt.Printf("\nIndex of the bench policy: %d requests, %d decisions (request × validity interval), %d distinct; built in %s at start (%d evaluations); "+
		"engine heap %.1f MB with the index, %.1f MB without. The reload (one agreement added) took %s, of which the index %s: "+
		"%d evaluations, %d requests taken over from the previous revision.\n",
		startIndex.Requests, startIndex.Entries, startIndex.Distinct, startIndex.Build.Round(time.Millisecond), startIndex.Evaluations,
		float64(engHeap)/1e6, float64(baseHeap)/1e6, reloadTook.Round(time.Millisecond), st.Build.Round(time.Millisecond), st.Evaluations, st.Reused)
	fmt.Printf("Requests of the mix the index does not hold, %.1f%% of them: %s.\n", 100*float64(len(misses.all))/float64(misses.n), misses)
	left := func(r run) uint64 { return uint64(len(r.l)) - r.index - r.compiled }
	fmt.Printf("As shipped, the compiled decision made %s of the decisions from empty, %s right after the reload and %s warm; it left %d of them to the cache and the Rego.\n",
		cold.rate(cold.compiled), reloaded.rate(reloaded.compiled), warm.rate(warm.compiled), left(cold)+left(reloaded)+left(warm))
	demo, demoHeap := embeddedIndex(cat)
	fmt.Printf("Index of the shipped (demo) policy: %d requests, %d decisions, %d distinct; built in %s (%d evaluations); engine heap %.1f MB.\n\n",
		demo.Requests, demo.Entries, demo.Distinct, demo.Build.Round(time.Millisecond), demo.Evaluations, float64(demoHeap)/1e6)

	pass := func(ok bool) string {
		if ok {
			return "pass"
		}
		return "miss"
	}
	worst := max(cold.l.pct(99), reloaded.l.pct(99))
	fmt.Printf("@target|decision-cold|from empty: p50 %s, p99 %s; right after a reload: p50 %s, p99 %s (index hits %s / %s, the rest compiled)|exact cache, no index: from empty p99 %s, after a reload (its entries taken over) p99 %s; fresh Rego p99 %s|%.1f× (p99)|%s|%s\n",
		us(cold.l.pct(50)), us(cold.l.pct(99)), us(reloaded.l.pct(50)), us(reloaded.l.pct(99)), cold.rate(cold.index), reloaded.rate(reloaded.index),
		us(baseCold.l.pct(99)), us(baseReloaded.l.pct(99)), us(uncached.pct(99)),
		float64(max(baseCold.l.pct(99), baseReloaded.l.pct(99)))/float64(max(worst, 1)), pass(worst <= targetP99), cmd)
	fmt.Printf("@target|decision-warm|warm p50 %s, p99 %s|fresh Rego: p50 %s, p99 %s|%.1f× (p99)|%s|%s\n",
		us(warm.l.pct(50)), us(warm.l.pct(99)), us(uncached.pct(50)), us(uncached.pct(99)),
		float64(uncached.pct(99))/float64(max(warm.l.pct(99), 1)), pass(warm.l.pct(50) <= 20*time.Microsecond && warm.l.pct(99) <= targetP99), cmd)
}

// embeddedIndex builds the index of the shipped policy, and the heap its engine takes.
func embeddedIndex(cat *schemas.Catalog) (policy.IndexStats, uint64) {
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	eng, err := policy.New(cat)
	if err != nil {
		log.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	st := eng.IndexStats()
	runtime.KeepAlive(eng)
	return st, m1.HeapAlloc - min(m1.HeapAlloc, m0.HeapAlloc)
}

// run is a measured run of an engine: latencies and where its decisions came from.
type run struct {
	l                      latencies
	index, cache, compiled uint64
}

func (r run) rate(hits uint64) string {
	if len(r.l) == 0 || r.l.pct(50) == 0 && hits == 0 && r.index == 0 && r.cache == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(hits)/float64(len(r.l)))
}

func measureStats(n int, m *mix, eng *policy.Engine, ctx context.Context) run {
	s0 := eng.Stats()
	l := measure(n, m, func(r exchange.Request) { eng.Decide(ctx, r) })
	s1 := eng.Stats()
	return run{l: l, index: s1.IndexHits - s0.IndexHits, cache: s1.CacheHits - s0.CacheHits, compiled: s1.Compiled - s0.Compiled}
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }

type latencies []time.Duration

func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[min(len(l)-1, int(float64(len(l))*p/100))]
}

// measure times f on n requests drawn beforehand, so that drawing is not timed.
func measure(n int, m *mix, f func(exchange.Request)) latencies {
	reqs := make([]exchange.Request, n)
	for i := range reqs {
		reqs[i] = m.next()
	}
	runtime.GC()
	out := make(latencies, n)
	for i, r := range reqs {
		t0 := time.Now()
		f(r)
		out[i] = time.Since(t0)
	}
	slices.Sort(out)
	return out
}

// --- the generated world --------------------------------------------------------------

type world struct {
	cat         []policies.CatalogEntry
	depts       []policies.Department
	agreements  []policies.Agreement
	modules     []policies.Module
	byDeptDS    map[string][]*policies.Agreement
	datasetIDs  []string
	purposePool []string
}

var regions = []struct{ code, level string }{
	{"330000", "province"}, {"320000", "province"},
	{"330100", "city"}, {"330200", "city"}, {"320100", "city"}, {"320500", "city"},
	{"330102", "county"}, {"330106", "county"}, {"330108", "county"}, {"330212", "county"},
	{"320102", "county"}, {"320506", "county"},
}

func generate(rng *rand.Rand, cat *schemas.Catalog, nDepts, nAgreements int) *world {
	shipped, err := policies.Embedded()
	if err != nil {
		log.Fatal(err)
	}
	w := &world{cat: shipped.Datasets, modules: shipped.PolicyModules(), byDeptDS: map[string][]*policies.Agreement{}}
	for _, e := range shipped.Datasets {
		if e.Share != policies.ShareNone {
			w.datasetIDs = append(w.datasetIDs, e.Dataset)
		}
	}
	for i := range 20 {
		w.purposePool = append(w.purposePool, fmt.Sprintf("purpose-%02d", i))
	}
	w.depts = append(w.depts, shipped.Departments...)
	for i := len(w.depts); i < nDepts; i++ {
		r := regions[rng.IntN(len(regions))]
		w.depts = append(w.depts, policies.Department{Code: fmt.Sprintf("d-%03d", i), Name: fmt.Sprintf("部门%03d", i), Region: r.code, Level: r.level})
	}
	// Agreements go to departments and datasets by a Zipf law too: a few departments
	// hold many.
	zd := rand.NewZipf(rng, 1.1, 1, uint64(len(w.depts)-1))
	zs := rand.NewZipf(rng, 1.2, 1, uint64(len(w.datasetIDs)-1))
	for i := range nAgreements {
		d := w.depts[zd.Uint64()]
		dsID := w.datasetIDs[zs.Uint64()]
		ds, _ := cat.Dataset(dsID)
		names := ds.FieldNames()
		rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		cols := names[:3+rng.IntN(len(names)-2)]
		var unmasked []string
		for _, c := range cols {
			if rng.IntN(3) == 0 {
				unmasked = append(unmasked, c)
			}
		}
		a := policies.Agreement{
			ID: fmt.Sprintf("AGR-B-%04d", i), Title: "bench", Consumer: d.Code, Dataset: dsID,
			Purposes: []string{w.purposePool[rng.IntN(len(w.purposePool))]},
			Columns:  slices.Clone(cols), Unmasked: unmasked,
			Actions: []string{"read", "lookup", "changes"},
			MaxRows: int64(1000 * (1 + rng.IntN(100))), ValidFrom: "2026-01-01", ValidUntil: "2027-12-31",
			Approval: fmt.Sprintf("bench〔2026〕%d号", i),
		}
		switch p := rng.IntN(100); {
		case p < 5:
			a.ValidFrom, a.ValidUntil = "2025-01-01", "2025-12-31"
		case p < 8:
			a.ValidFrom, a.ValidUntil = "2027-01-01", "2027-12-31"
		case p < 15:
			a.Actions = []string{"verify"}
		case p < 25:
			a.Region = "000000"
		}
		if rng.IntN(10) == 0 {
			a.System = "sys-a"
		}
		w.agreements = append(w.agreements, a)
	}
	for i := range w.agreements {
		a := &w.agreements[i]
		k := a.Consumer + "\x00" + a.Dataset
		w.byDeptDS[k] = append(w.byDeptDS[k], a)
	}
	return w
}

func (w *world) write(dir string) error {
	for _, m := range w.modules {
		if err := os.WriteFile(filepath.Join(dir, m.File), []byte(m.Source), 0o644); err != nil {
			return err
		}
	}
	files := map[string]any{
		"catalog.yaml":     map[string]any{"datasets": w.cat},
		"departments.yaml": map[string]any{"departments": w.depts},
		"agreements.yaml":  map[string]any{"agreements": w.agreements},
	}
	for name, doc := range files {
		raw, err := yaml.Marshal(doc)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), raw, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// --- the request mix ------------------------------------------------------------------

type mix struct {
	rng     *rand.Rand
	w       *world
	cat     *schemas.Catalog
	now     time.Time
	zDept   *rand.Zipf
	zDS     *rand.Zipf
	zAgr    *rand.Zipf
	actions []exchange.Action
	// fixed, when set, are the requests drawn, in turn.
	fixed []exchange.Request
}

func newMix(rng *rand.Rand, w *world, cat *schemas.Catalog, now time.Time) *mix {
	return &mix{
		rng: rng, w: w, cat: cat, now: now,
		zDept: rand.NewZipf(rng, 1.1, 1, uint64(len(w.depts)-1)),
		zDS:   rand.NewZipf(rng, 1.2, 1, uint64(len(w.datasetIDs)-1)),
		zAgr:  rand.NewZipf(rng, 1.3, 1, 15),
		actions: []exchange.Action{
			exchange.ActionRead, exchange.ActionRead, exchange.ActionRead, exchange.ActionRead, exchange.ActionRead,
			exchange.ActionRead, exchange.ActionLookup, exchange.ActionChanges, exchange.ActionVerify, exchange.ActionDiscover,
		},
	}
}

// next draws a request: a department and dataset by Zipf; mostly a purpose, system and
// columns from one of that pair's agreements (picked by Zipf), sometimes a stray one.
func (m *mix) next() exchange.Request {
	if m.fixed != nil {
		r := m.fixed[0]
		m.fixed = append(m.fixed[1:], r)
		return r
	}
	d := m.w.depts[m.zDept.Uint64()]
	dsID := m.w.datasetIDs[m.zDS.Uint64()]
	r := exchange.Request{
		Subject: exchange.Subject{Department: d.Code},
		Action:  m.actions[m.rng.IntN(len(m.actions))], Dataset: dsID,
		Time: m.now.Add(time.Duration(m.rng.IntN(3600)) * time.Second),
	}
	agrs := m.w.byDeptDS[d.Code+"\x00"+dsID]
	if len(agrs) == 0 || m.rng.IntN(20) == 0 {
		r.Purpose = m.w.purposePool[m.zAgr.Uint64()%uint64(len(m.w.purposePool))]
		return r
	}
	a := agrs[m.zAgr.Uint64()%uint64(len(agrs))]
	r.Purpose = a.Purposes[0]
	r.System = a.System
	// A department system asks for every granted column or for its usual projection.
	if m.rng.IntN(2) == 0 {
		r.Columns = a.Columns[:min(len(a.Columns), 3)]
	}
	return r
}

// --- the floor: the same rules, hard-coded in Go ----------------------------------------

type floor struct {
	depts   map[string]*policies.Department
	catalog map[string]*policies.CatalogEntry
	byKey   map[string][]*policies.Agreement // sorted by id
	cat     *schemas.Catalog
}

func newFloor(b *policies.Bundle, cat *schemas.Catalog) *floor {
	f := &floor{depts: map[string]*policies.Department{}, catalog: map[string]*policies.CatalogEntry{}, byKey: map[string][]*policies.Agreement{}, cat: cat}
	for i := range b.Departments {
		f.depts[b.Departments[i].Code] = &b.Departments[i]
	}
	for i := range b.Datasets {
		f.catalog[b.Datasets[i].Dataset] = &b.Datasets[i]
	}
	for i := range b.Agreements {
		a := &b.Agreements[i]
		k := a.Consumer + "\x00" + a.Dataset
		f.byKey[k] = append(f.byKey[k], a)
	}
	for _, as := range f.byKey {
		sort.Slice(as, func(i, j int) bool { return as[i].ID < as[j].ID })
	}
	return f
}

func prefixOf(code string) string {
	switch {
	case code == "" || code == "000000":
		return ""
	case strings.HasSuffix(code, "0000"):
		return code[:2]
	case strings.HasSuffix(code, "00"):
		return code[:4]
	}
	return code
}

func (f *floor) decide(r exchange.Request) exchange.Decision {
	deny := func(code string) exchange.Decision {
		return exchange.Decision{Reasons: []exchange.Reason{{Code: code}}}
	}
	if !r.Action.Valid() {
		return deny("unknown_action")
	}
	dept, ok := f.depts[r.Department]
	if !ok {
		return deny("unknown_department")
	}
	e, ok := f.catalog[r.Dataset]
	if !ok {
		return deny("unknown_dataset")
	}
	if e.Share == policies.ShareNone {
		return deny("not_shared")
	}
	ds, _ := f.cat.Dataset(r.Dataset)
	for _, c := range r.Columns {
		if _, ok := ds.Field(c); !ok {
			return deny("unknown_column")
		}
	}
	t := r.Time
	var agr *policies.Agreement
	for _, a := range f.byKey[r.Department+"\x00"+r.Dataset] {
		if a.System != "" && a.System != r.System || t.Before(a.From) || !t.Before(a.Until) {
			continue
		}
		if r.Action != exchange.ActionDiscover && (!slices.Contains(a.Purposes, r.Purpose) || !slices.Contains(a.Actions, string(r.Action))) {
			continue
		}
		if e.Share == policies.ShareConditional {
			covered := true
			for _, c := range r.Columns {
				covered = covered && slices.Contains(a.Columns, c)
			}
			if !covered {
				continue
			}
		}
		agr = a
		break
	}
	if e.Share == policies.ShareConditional && agr == nil {
		return deny("no_grant")
	}
	d := exchange.Decision{Allow: true, Columns: r.Columns, Masks: map[string]string{}, MaxRows: e.MaxRows}
	scope := dept.Region
	if agr != nil {
		d.Agreement = agr.ID
		if len(d.Columns) == 0 && e.Share == policies.ShareConditional {
			d.Columns = agr.Columns
		}
		if agr.Region != "" {
			scope = agr.Region
		}
		if agr.MaxRows > 0 {
			d.MaxRows = agr.MaxRows
		}
	}
	if len(d.Columns) == 0 {
		d.Columns = ds.FieldNames()
	}
	for _, c := range d.Columns {
		if agr != nil && slices.Contains(agr.Unmasked, c) {
			continue
		}
		if agr != nil && agr.Masks[c] != "" {
			d.Masks[c] = agr.Masks[c]
			continue
		}
		if fl, _ := ds.Field(c); fl.Sensitivity == schemas.Personal || fl.Sensitivity == schemas.SensitivePersonal {
			d.Masks[c] = fl.Mask
		}
	}
	if r.Action == exchange.ActionVerify && agr == nil && len(d.Masks) > 0 {
		return deny("verify_masked") // a yes/no answer would reveal a masked value
	}
	if p := prefixOf(scope); p != "" {
		d.RowFilter = []exchange.Filter{{Column: e.RegionColumn, Op: exchange.OpPrefix, Value: p}}
	}
	return d
}

// newFixedMix returns a mix that draws reqs in turn.
func newFixedMix(reqs []exchange.Request) *mix { return &mix{fixed: reqs} }

// indexMisses counts why requests of the mix are not in the index.
type indexMisses struct {
	n   int
	all []exchange.Request
	// columns: a column list no agreement of the pair names; purpose: a purpose (or
	// system) none of them names; other: anything else (a time, an unknown name).
	columns, purpose, other int
}

func (m indexMisses) String() string {
	pct := func(k int) float64 { return 100 * float64(k) / float64(max(1, len(m.all))) }
	return fmt.Sprintf("%.0f%% ask for a column list none of the department's agreements for the dataset names, "+
		"%.0f%% name a purpose or system none of them names, %.0f%% other", pct(m.columns), pct(m.purpose), pct(m.other))
}

func classifyMisses(n int, m *mix, alone *policy.Engine, w *world, ctx context.Context) indexMisses {
	out := indexMisses{n: n}
	for range n {
		r := m.next()
		h := alone.Stats().IndexHits
		if alone.Decide(ctx, r); alone.Stats().IndexHits > h {
			continue
		}
		out.all = append(out.all, r)
		agrs := w.byDeptDS[r.Department+"\x00"+r.Dataset]
		named := r.Purpose == "" && r.System == ""
		for _, a := range agrs {
			if slices.Contains(a.Purposes, r.Purpose) && (a.System == "" || a.System == r.System) {
				named = true
			}
		}
		listed := len(r.Columns) == 0
		for _, a := range agrs {
			listed = listed || slices.Equal(a.Columns, r.Columns)
		}
		switch {
		case !named:
			out.purpose++
		case !listed:
			out.columns++
		default:
			out.other++
		}
	}
	return out
}
