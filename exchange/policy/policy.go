// Package policy is the exchange's one path to a sharing decision: it evaluates
// data.govx.sharing.decision of a policies.Bundle with embedded OPA, once per request.
// It builds the policy input from a request and the dataset's schema in one place
// (Input), fails closed (an evaluation error, an undefined or a malformed decision
// denies with reason code policy_error), hot-reloads a policy directory keeping the last
// good policy when an edit is broken, and caches decisions exactly, but only for a
// policy it proves cacheable (cachemode.go); any other is evaluated afresh every time.
//
// Flight, HTTP and the steward's `govx policy explain` all decide through an Engine.
package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/prometheus/client_golang/prometheus"

	"govx/exchange"
	"govx/policies"
	"govx/schemas"
)

// Query is the rule the exchange evaluates.
const Query = "data.govx.sharing.decision"

// Engine decides requests. It is safe for concurrent use.
type Engine struct {
	cat  *schemas.Catalog
	opts options

	state atomic.Pointer[state]

	decisions, hits, indexHits, compiledHits, reloads, reloadErrors atomic.Uint64

	mu         sync.Mutex // serializes reloads; guards lastErr and seen
	lastErr    error
	seen       [32]byte // fingerprint of the directory content last tried
	stop, done chan struct{}
	closeOnce  sync.Once
}

// state is one loaded policy revision with its prepared query and its cache.
type state struct {
	bundle *policies.Bundle
	pq     rego.PreparedEvalQuery
	cache  *cache // nil when caching is off
	index  *index // nil when indexing is off
	// compiled is the compiled decision (compiled.go), nil when it is off.
	compiled *compiled
	reads    keyParts
	mode     CacheMode
	imode    IndexMode
	cmode    CompiledMode
	// pairLocal: the policy reads the data only at the requesting department and
	// dataset (reuse.go).
	pairLocal bool
}

type options struct {
	dir      string
	bundle   *policies.Bundle
	poll     time.Duration
	cacheMax int
	noIndex  bool
	now      func() time.Time
	log      *slog.Logger
	// noCompiled turns the compiled decision (compiled.go) off.
	noCompiled bool
}

// An Option configures an Engine.
type Option func(*options)

// WithDir loads the policy from a directory and watches it: every poll interval the
// engine rereads it and, if it changed and passes policies.Check, switches to it. A
// broken edit is logged and counted, and the last good policy stays.
func WithDir(dir string) Option { return func(o *options) { o.dir = dir } }

// WithBundle uses an already loaded bundle; it is not watched.
func WithBundle(b *policies.Bundle) Option { return func(o *options) { o.bundle = b } }

// WithPollInterval sets how often a policy directory is checked for edits (default 1s).
func WithPollInterval(d time.Duration) Option { return func(o *options) { o.poll = d } }

// WithCacheSize sets the most decisions cached (default 100,000); 0 turns the cache off.
// A policy whose decisions the engine cannot prove cacheable is never cached.
func WithCacheSize(n int) Option { return func(o *options) { o.cacheMax = n } }

// WithIndex turns the decision index (index.go) on (the default) or off. Off, every
// decision the exact cache does not hold evaluates the Rego: for comparing the two, and
// for a policy directory so large that building the index would hold up its reloads.
func WithIndex(on bool) Option { return func(o *options) { o.noIndex = !on } }

// WithCompiled turns the compiled decision (compiled.go) on (the default) or off. Off, a
// request the index does not hold goes to the exact cache and the Rego: for comparing.
func WithCompiled(on bool) Option { return func(o *options) { o.noCompiled = !on } }

// WithClock sets the engine's clock (default time.Now): the time of a request that has
// none, and the instant from which an index holds validity intervals. For tests that
// decide at fixed instants.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLogger sets where reloads are logged (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// New returns an engine deciding with the embedded policy, or with the one named by
// WithDir or WithBundle. The policy must pass policies.Check against cat.
func New(cat *schemas.Catalog, opts ...Option) (*Engine, error) {
	o := options{poll: time.Second, cacheMax: 100_000, now: time.Now, log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	e := &Engine{cat: cat, opts: o}
	b := o.bundle
	var err error
	switch {
	case b != nil:
	case o.dir != "":
		e.seen, err = fingerprint(o.dir)
		if err != nil {
			return nil, err
		}
		b, err = policies.Load(o.dir)
	default:
		b, err = policies.Embedded()
	}
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	// Nothing is served yet: the index may take every core.
	st, err := e.prepare(b, runtime.GOMAXPROCS(0), nil)
	if err != nil {
		return nil, err
	}
	e.state.Store(st)
	if o.cacheMax > 0 && !st.mode.On {
		o.log.Warn("policy decisions are not cached: each request evaluates the policy", "source", b.Source, "revision", b.Revision, "decision_cache", st.mode.String())
	}
	if !o.noIndex && !st.imode.On {
		o.log.Warn("policy decisions are not indexed: a request the cache does not hold evaluates the policy", "source", b.Source, "revision", b.Revision, "decision_index", st.imode.String())
	}
	if !o.noIndex && !o.noCompiled && !st.cmode.On {
		o.log.Warn("policy decisions are not compiled: a request the index and the cache do not hold evaluates the policy", "source", b.Source, "revision", b.Revision, "decision_compiled", st.cmode.String())
	}
	if o.dir != "" && o.bundle == nil {
		e.stop, e.done = make(chan struct{}), make(chan struct{})
		go e.watch()
	}
	return e, nil
}

// prepare checks a bundle, prepares its query and, for a policy the analysis proves
// indexable, builds its decision index, so that the revision is ready to decide fast
// before it takes over. prev, on a reload, is the revision being replaced: what it
// decided for departments and datasets the reload provably did not change is taken
// over (reuse.go).
func (e *Engine) prepare(b *policies.Bundle, workers int, prev *state) (*state, error) {
	if probs := policies.Check(b, e.cat); len(probs) > 0 {
		return nil, fmt.Errorf("policy %s has problems:\n%w", b.Source, policies.Problems(probs))
	}
	comp, pq, err := prepareQuery(b)
	if err != nil {
		return nil, err
	}
	st := &state{bundle: b, pq: pq, reads: requestReads(comp)}
	st.mode = analyzeCache(comp, st.reads)
	st.pairLocal = st.mode.On && pairLocal(comp, dataKeys(b))
	var same func(dept, dataset string) bool
	if prev != nil && prev.pairLocal && st.pairLocal && sameModules(prev.bundle, b) {
		same = newPairSlices(prev.bundle, b).same
	}
	if e.opts.cacheMax > 0 && st.mode.On {
		st.cache = newCache(e.opts.cacheMax)
		if same != nil && prev.cache != nil {
			prev.cache.carry(st.cache, b.Revision, same)
			e.rewarm(prev, st, e.opts.now(), same)
		}
	}
	st.imode = analyzeIndex(comp, st.reads, st.mode)
	if !e.opts.noIndex && st.imode.On {
		var prevIndex *index
		if same != nil {
			prevIndex = prev.index
		}
		st.index = e.indexFor(st, workers, prevIndex, same)
	}
	e.compile(st)
	return st, nil
}

// compile turns the compiled decision on for a revision whose policy is the shipped one
// and whose index it decides exactly as the Rego did.
func (e *Engine) compile(st *state) {
	b := st.bundle
	if e.opts.noCompiled {
		st.cmode = CompiledMode{Why: []string{compiledOff}}
		return
	}
	if st.cmode = compiledGate(b); !st.cmode.On {
		return
	}
	if st.index == nil {
		// Off or unprovable: either way there are no evaluations to check against.
		st.cmode = CompiledMode{Why: []string{"the policy is not indexed, and the compiled decision is turned on only once it decides every request of the index as the Rego did"}}
		return
	}
	c, err := compileDecision(b, e.cat)
	if err != nil {
		st.cmode = CompiledMode{Why: []string{err.Error()}}
		return
	}
	n, diff := e.checkCompiled(st, c)
	if diff != "" {
		st.cmode = CompiledMode{Why: []string{"the compiled decision differs from the Rego on " + diff}}
		e.opts.log.Error("the compiled policy decision differs from the Rego; the Rego decides what the index does not hold",
			"source", b.Source, "revision", b.Revision, "first_difference", diff)
		return
	}
	st.compiled = c
	st.cmode.Why = append(st.cmode.Why, fmt.Sprintf("equal to the Rego on all %d decisions of the index", n))
}

// prepareQuery compiles a bundle's policy and prepares its query over its data.
func prepareQuery(b *policies.Bundle) (*ast.Compiler, rego.PreparedEvalQuery, error) {
	comp, _, err := b.Compile(false)
	if err != nil {
		return nil, rego.PreparedEvalQuery{}, fmt.Errorf("compile policy %s: %w", b.Source, err)
	}
	// The store keeps the data as AST values, so that reading an agreement during an
	// evaluation converts nothing.
	store := inmem.NewFromObjectWithOpts(b.Data(), inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	pq, err := rego.New(
		rego.Query(Query),
		rego.Compiler(comp),
		rego.Store(store),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(context.Background())
	if err != nil {
		return nil, rego.PreparedEvalQuery{}, fmt.Errorf("prepare policy %s: %w", b.Source, err)
	}
	return comp, pq, nil
}

// lastIndex is the index built last in this process, which an engine loading the same
// revision against the same schemas shares instead of building it again (tests and
// tools open many engines on the embedded policy). An index is read-only once built, and
// the revision and the schemas fix every decision in it.
var lastIndex struct {
	sync.Mutex
	revision string
	cat      *schemas.Catalog
	x        *index
}

func (e *Engine) indexFor(st *state, workers int, prev *index, same func(dept, dataset string) bool) *index {
	lastIndex.Lock()
	defer lastIndex.Unlock()
	// An index built at or before now holds every interval that has not ended at now.
	now := e.opts.now()
	if x := lastIndex.x; x != nil && lastIndex.revision == st.bundle.Revision && lastIndex.cat == e.cat && !x.stats.From.After(now) {
		return x
	}
	x := e.buildIndex(context.Background(), st, now, workers, prev, same)
	lastIndex.revision, lastIndex.cat, lastIndex.x = st.bundle.Revision, e.cat, x
	return x
}

// Revision returns the revision of the policy now deciding.
func (e *Engine) Revision() string { return e.state.Load().bundle.Revision }

// CacheMode reports whether the decisions of the policy now deciding are cached, and
// why: off for a policy the engine cannot prove cacheable, or when WithCacheSize(0).
func (e *Engine) CacheMode() CacheMode {
	if e.opts.cacheMax <= 0 {
		return CacheMode{Why: []string{"the cache size is 0"}}
	}
	return e.state.Load().mode
}

// IndexMode reports whether the decisions of the policy now deciding are indexed, and
// why: off for a policy the engine cannot prove indexable, or when WithIndex(false).
func (e *Engine) IndexMode() IndexMode {
	if e.opts.noIndex {
		return IndexMode{Why: []string{"the index is turned off (WithIndex(false))"}}
	}
	return e.state.Load().imode
}

// CompiledMode reports whether requests the index does not hold are decided by the
// compiled decision (compiled.go), and why: off for a policy other than the shipped
// one, for one whose compiled decision differed from the Rego when the index was built,
// or when WithIndex(false) or WithCompiled(false).
func (e *Engine) CompiledMode() CompiledMode {
	if e.opts.noIndex {
		return CompiledMode{Why: []string{"the index is turned off (WithIndex(false)), and the compiled decision is checked against it"}}
	}
	return e.state.Load().cmode
}

const compiledOff = "the compiled decision is turned off (WithCompiled(false))"

// IndexStats describes the decision index of the policy now deciding; zero when it has
// none.
func (e *Engine) IndexStats() IndexStats {
	if x := e.state.Load().index; x != nil {
		return x.stats
	}
	return IndexStats{}
}

// Bundle returns the policy now deciding. It must not be modified.
func (e *Engine) Bundle() *policies.Bundle { return e.state.Load().bundle }

// Decide decides a request. It never fails: whatever goes wrong denies, with reason
// code policy_error. A zero req.Time means now.
func (e *Engine) Decide(ctx context.Context, req exchange.Request) exchange.Decision {
	if req.Time.IsZero() {
		req.Time = e.opts.now()
	}
	e.decisions.Add(1)
	st := e.state.Load()
	var key string
	if st.index != nil || st.cache != nil {
		if k, err := cacheKey(req, st.reads); err == nil {
			key = k
		}
	}
	if key != "" && st.index != nil {
		if d, ok := st.index.get(key, req.Time.UnixNano()); ok {
			e.indexHits.Add(1)
			return clone(*d)
		}
	}
	ds, _ := e.cat.Dataset(req.Dataset)
	if st.compiled != nil {
		if d, ok := st.compiled.decide(req, ds); ok {
			e.compiledHits.Add(1)
			return d
		}
	}
	if key != "" && st.cache != nil {
		if d, ok := st.cache.get(key, req.Time.UnixNano()); ok {
			e.hits.Add(1)
			return clone(d)
		}
	}
	d := e.eval(ctx, st, req, ds)
	if key != "" && st.cache != nil && ctx.Err() == nil && !isPolicyError(d) {
		lo, hi := interval(st.bundle.Boundaries(req.Department, req.Dataset), req.Time.UnixNano())
		st.cache.put(key, clone(d), lo, hi)
	}
	return d
}

// DecideUncached decides a request by evaluating the Rego, without the index, the
// compiled decision and the cache, as Decide does on a miss of all three.
func (e *Engine) DecideUncached(ctx context.Context, req exchange.Request) exchange.Decision {
	if req.Time.IsZero() {
		req.Time = e.opts.now()
	}
	ds, _ := e.cat.Dataset(req.Dataset)
	return e.eval(ctx, e.state.Load(), req, ds)
}

func isPolicyError(d exchange.Decision) bool {
	return len(d.Reasons) == 1 && d.Reasons[0].Code == CodePolicyError
}

// returnTerm hands the evaluator's result term back as is: the decision is read from
// the AST, which skips converting it to Go values and back.
func returnTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

func (e *Engine) eval(ctx context.Context, st *state, req exchange.Request, ds *schemas.Dataset) exchange.Decision {
	rev := st.bundle.Revision
	in, err := inputValue(req, ds)
	if err != nil {
		return failClosed(rev, "the request could not be put to the policy: %v", err)
	}
	rs, err := st.pq.Eval(ctx, rego.EvalParsedInput(in), rego.EvalGenerateJSON(returnTerm))
	if err != nil {
		return failClosed(rev, "the policy failed to evaluate: %v", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return failClosed(rev, "the policy's decision is undefined")
	}
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return failClosed(rev, "the policy returned %T, not a decision", rs[0].Expressions[0].Value)
	}
	d, err := parseDecision(t, ds)
	if err != nil {
		return failClosed(rev, "the policy's decision is malformed: %v", err)
	}
	d.Revision = rev
	return d
}

// Stats are the engine's counters.
type Stats struct {
	Decisions, IndexHits, CacheHits, Reloads, ReloadErrors uint64
	// Compiled counts the decisions the compiled decision made (compiled.go).
	Compiled uint64
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	return Stats{
		Decisions:    e.decisions.Load(),
		IndexHits:    e.indexHits.Load(),
		Compiled:     e.compiledHits.Load(),
		CacheHits:    e.hits.Load(),
		Reloads:      e.reloads.Load(),
		ReloadErrors: e.reloadErrors.Load(),
	}
}

// ReloadErrors returns how many reloads failed: each broken version of the policy
// directory counts once.
func (e *Engine) ReloadErrors() uint64 { return e.reloadErrors.Load() }

// LastReloadError returns why the last reload failed, or nil if it succeeded.
func (e *Engine) LastReloadError() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastErr
}

// Collectors returns Prometheus collectors for the engine's counters, for the exchange
// to register.
func (e *Engine) Collectors() []prometheus.Collector {
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "govx", Subsystem: "policy", Name: name, Help: help},
			func() float64 { return float64(f()) })
	}
	return []prometheus.Collector{
		counter("decisions_total", "Sharing decisions made.", e.decisions.Load),
		counter("index_hits_total", "Sharing decisions answered from the decision index built when the policy was loaded.", e.indexHits.Load),
		counter("compiled_decisions_total", "Sharing decisions the index did not hold, made by the compiled decision of the shipped policy instead of a Rego evaluation.", e.compiledHits.Load),
		counter("cache_hits_total", "Sharing decisions answered from the exact decision cache.", e.hits.Load),
		counter("reloads_total", "Policy reloads that switched to a new revision.", e.reloads.Load),
		counter("reload_errors_total", "Policy reloads that failed; the last good policy stayed.", e.reloadErrors.Load),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "govx", Subsystem: "policy", Name: "decision_cache_on",
			Help: "1 while the decisions of the policy now deciding are cached; 0 while every request evaluates it (govx policy check says why)."},
			func() float64 { return b2f(e.CacheMode().On) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "govx", Subsystem: "policy", Name: "decision_index_on",
			Help: "1 while the decisions of the policy now deciding are indexed at load time; 0 while a request the cache does not hold evaluates it (govx policy check says why)."},
			func() float64 { return b2f(e.state.Load().index != nil) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "govx", Subsystem: "policy", Name: "decision_compiled_on",
			Help: "1 while requests the index does not hold are decided by the compiled decision of the shipped policy; 0 while they evaluate the Rego (the reload log says why)."},
			func() float64 { return b2f(e.state.Load().compiled != nil) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "govx", Subsystem: "policy", Name: "decision_index_entries",
			Help: "Decisions (request and validity interval) in the index of the policy now deciding."},
			func() float64 { return float64(e.IndexStats().Entries) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "govx", Subsystem: "policy", Name: "decision_index_build_seconds",
			Help: "How long building the index of the policy now deciding took; a reload switches only after it."},
			func() float64 { return e.IndexStats().Build.Seconds() }),
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ErrNoDir is returned by Reload for an engine not loaded from a directory.
var ErrNoDir = errors.New("policy: the engine was not loaded from a directory (use WithDir)")

// Reload rereads the policy directory now and switches to it if it changed and passes
// policies.Check. On failure the last good policy stays and the error is returned.
func (e *Engine) Reload() error {
	if e.opts.dir == "" || e.opts.bundle != nil {
		return ErrNoDir
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	fp, err := fingerprint(e.opts.dir)
	if err == nil && fp == e.seen {
		return e.lastErr
	}
	e.seen = fp
	if err == nil {
		err = e.reloadLocked()
	}
	if err != nil {
		e.reloadErrors.Add(1)
		e.lastErr = err
		e.opts.log.Error("policy reload failed; the last good policy stays", "dir", e.opts.dir, "revision", e.Revision(), "err", err)
		return err
	}
	e.lastErr = nil
	return nil
}

func (e *Engine) reloadLocked() error {
	b, err := policies.Load(e.opts.dir)
	if err != nil {
		return err
	}
	if b.Revision == e.Revision() {
		return nil // e.g. only a test file changed
	}
	// The old revision goes on deciding meanwhile: leave it half the cores.
	st, err := e.prepare(b, runtime.GOMAXPROCS(0)/2, e.state.Load())
	if err != nil {
		return err
	}
	old := e.Revision()
	e.state.Store(st)
	e.reloads.Add(1)
	e.opts.log.Info("policy reloaded", "dir", e.opts.dir, "from", old, "to", b.Revision, "decision_cache", e.CacheMode().String(),
		"decision_index", e.IndexMode().String(), "decision_compiled", e.CompiledMode().String(), "index_entries", e.IndexStats().Entries, "index_reused", e.IndexStats().Reused,
		"index_build", e.IndexStats().Build)
	return nil
}

func (e *Engine) watch() {
	defer close(e.done)
	tick := time.NewTicker(e.opts.poll)
	defer tick.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-tick.C:
			_ = e.Reload() // logged and counted by Reload
		}
	}
}

// Close stops watching the policy directory.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		if e.stop != nil {
			close(e.stop)
			<-e.done
		}
	})
	return nil
}

// fingerprint hashes the names and contents of the files a policy directory's bundle
// is loaded from, so that a poll that finds nothing changed costs a read and a hash.
func fingerprint(dir string) ([32]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return [32]byte{}, fmt.Errorf("read policy directory: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, ent := range entries {
		if ent.Type().IsRegular() || ent.Type()&fs.ModeSymlink != 0 {
			switch filepath.Ext(ent.Name()) {
			case ".rego", ".yaml", ".yml", ".json":
				names = append(names, ent.Name())
			}
		}
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		raw, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			// A file removed between listing and reading: the next poll sees the result.
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return [32]byte{}, err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(raw))
		h.Write(raw)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, nil
}

// String describes the engine for logs.
func (e *Engine) String() string {
	b := e.Bundle()
	return fmt.Sprintf("policy engine (%s, revision %.12s)", b.Source, b.Revision)
}
