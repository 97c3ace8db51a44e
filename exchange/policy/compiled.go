package policy

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"

	"govx/exchange"
	"govx/policies"
	"govx/schemas"
)

// The compiled decision is the shipped sharing policy (policies/sharing.rego) written
// out in Go over one revision's data, so that a request the decision index does not hold
// (a column list that is a subset of an agreement's, a purpose or system no agreement
// names) is decided in microseconds instead of by a Rego evaluation. The Rego stays the
// definition of the policy; the compiled decision is an optimisation that must prove
// itself on every load:
//
//   - it applies only while the bundle's policy modules are exactly the shipped
//     sharing.rego, compared as parsed Rego (compiledGate): any edit that changes what
//     the Rego means, or one more module, turns it off;
//   - once the index is built, every decision in it (a Rego evaluation, or one taken
//     over from the previous revision under the reuse proof) is compared with the
//     compiled decision for the same request at the same time (checkCompiled), before
//     the revision takes over; one difference turns it off for the revision. With the
//     index off there is nothing to compare with, and it stays off;
//   - the differential tests (compiled_*_test.go) compare it with the Rego over random
//     worlds and requests, and a fuzz target.
//
// It reads the data document the Rego reads (policies.Bundle.Data), not the Go structs
// behind it, so that sorting, defaults and encoding are the Rego's by construction. It
// declines, and the Rego decides, where it cannot decide exactly: a time the Rego cannot
// parse into nanoseconds, or a grant parseDecision would reject (which policies.Check
// rules out, so it never happens to a loaded policy).

// CompiledMode says whether an engine decides requests the decision index does not hold
// with the compiled decision, and why.
type CompiledMode struct {
	// On reports whether the compiled decision is used.
	On bool
	// Why is what the mode rests on: for a compiled policy what proves it, for any other
	// every reason it is not compiled.
	Why []string
}

// String is the mode in one line: "on — …" or "off — …".
func (m CompiledMode) String() string { return CacheMode(m).String() }

// CompiledModeOf reports whether an engine would decide b with the compiled decision, as
// far as it can be told without building the index: whether b's policy modules are the
// shipped ones. An engine also compares the compiled decision with every evaluation of
// the index build, and turns it off on a difference.
func CompiledModeOf(b *policies.Bundle) CompiledMode { return compiledGate(b) }

// shippedModule is the shipped sharing.rego, parsed once.
var shippedModule = sync.OnceValues(func() (*ast.Module, error) {
	b, err := policies.Embedded()
	if err != nil {
		return nil, err
	}
	mods := b.PolicyModules()
	if len(mods) != 1 {
		return nil, fmt.Errorf("the embedded policy has %d modules, not one", len(mods))
	}
	return parseModule(mods[0])
})

func parseModule(m policies.Module) (*ast.Module, error) {
	return ast.ParseModuleWithOpts(m.File, m.Source, ast.ParserOptions{RegoVersion: ast.RegoV1})
}

// compiledGate reports whether b's policy modules are the shipped sharing.rego. They are
// compared as parsed modules (package, imports, metadata annotations, rules), not as
// text: what the Rego decides depends on those alone, so a steward who reformats the
// file or edits a comment keeps the compiled decision, and any change to a rule, however
// small, turns it off. The load-time cross-check stands behind the comparison either way.
func compiledGate(b *policies.Bundle) CompiledMode {
	want, err := shippedModule()
	if err != nil {
		return CompiledMode{Why: []string{"the shipped policy does not parse: " + err.Error()}}
	}
	if mods := b.PolicyModules(); len(mods) != 1 {
		return CompiledMode{Why: []string{fmt.Sprintf("the policy has %d modules; the compiled decision is the shipped sharing.rego alone", len(mods))}}
	} else if got, err := parseModule(mods[0]); err != nil || !got.Equal(want) {
		return CompiledMode{Why: []string{mods[0].File + " is not the shipped sharing.rego"}}
	}
	return CompiledMode{On: true, Why: []string{"the policy is the shipped sharing.rego, so requests the index does not hold are decided by its Go translation," +
		" checked at load against every evaluation of the index"}}
}

// compiled is one revision's data arranged for the compiled decision. It is read-only
// once built.
type compiled struct {
	revision    string
	departments map[string]compiledDepartment
	catalog     map[string]*compiledEntry
	// agreements are data.agreements_by_key: by department, then dataset, sorted by id.
	agreements map[string]map[string][]*compiledAgreement
	// names are the field names of each dataset of the schemas, in order.
	names map[*schemas.Dataset][]string
}

type compiledDepartment struct{ name, region string }

type compiledEntry struct {
	share, legalBasis, regionColumn string
	maxRows, minGroupSize           int64
}

type compiledAgreement struct {
	id, system, region, validFrom, validUntil string
	purposes, actions, columns, unmasked      map[string]bool
	actionList, columnList, purposeList       []string
	masks                                     map[string]string
	maxRows, from, until                      int64
	// aggregate is the agreement's aggregate terms as a decision carries them (min group
	// size resolved against the catalog), or nil where parseDecision would reject them.
	aggregate *exchange.AggregateTerms
}

// compileDecision arranges b's data for the compiled decision against the schemas in cat.
func compileDecision(b *policies.Bundle, cat *schemas.Catalog) (*compiled, error) {
	raw, err := json.Marshal(b.Data())
	if err != nil {
		return nil, err
	}
	var doc struct {
		Catalog map[string]struct {
			Share        string `json:"share"`
			LegalBasis   string `json:"legal_basis"`
			RegionColumn string `json:"region_column"`
			MaxRows      int64  `json:"max_rows"`
			MinGroupSize int64  `json:"min_group_size"`
		} `json:"catalog"`
		Departments map[string]struct {
			Name   string `json:"name"`
			Region string `json:"region"`
		} `json:"departments"`
		AgreementsByKey map[string]map[string][]struct {
			ID           string            `json:"id"`
			System       string            `json:"system"`
			PurposeSet   map[string]bool   `json:"purpose_set"`
			ActionSet    map[string]bool   `json:"action_set"`
			ColumnSet    map[string]bool   `json:"column_set"`
			UnmaskedSet  map[string]bool   `json:"unmasked_set"`
			Purposes     []string          `json:"purposes"`
			Columns      []string          `json:"columns"`
			Actions      []string          `json:"actions"`
			Masks        map[string]string `json:"masks"`
			Region       string            `json:"region"`
			MaxRows      int64             `json:"max_rows"`
			ValidFrom    string            `json:"valid_from"`
			ValidUntil   string            `json:"valid_until"`
			ValidFromNs  int64             `json:"valid_from_ns"`
			ValidUntilNs int64             `json:"valid_until_ns"`
			Aggregate    struct {
				GroupBy      []string `json:"group_by"`
				Measures     []string `json:"measures"`
				MinGroupSize int64    `json:"min_group_size"`
			} `json:"aggregate"`
		} `json:"agreements_by_key"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("the policy data is not in the shape sharing.rego reads: %w", err)
	}
	c := &compiled{
		revision:    b.Revision,
		departments: make(map[string]compiledDepartment, len(doc.Departments)),
		catalog:     make(map[string]*compiledEntry, len(doc.Catalog)),
		agreements:  make(map[string]map[string][]*compiledAgreement, len(doc.AgreementsByKey)),
		names:       map[*schemas.Dataset][]string{},
	}
	for _, ds := range cat.Datasets() {
		c.names[ds] = ds.FieldNames()
	}
	for code, d := range doc.Departments {
		c.departments[code] = compiledDepartment{name: d.Name, region: d.Region}
	}
	for id, e := range doc.Catalog {
		c.catalog[id] = &compiledEntry{share: e.Share, legalBasis: e.LegalBasis, regionColumn: e.RegionColumn, maxRows: e.MaxRows, minGroupSize: e.MinGroupSize}
	}
	for dept, byDataset := range doc.AgreementsByKey {
		c.agreements[dept] = make(map[string][]*compiledAgreement, len(byDataset))
		for dataset, as := range byDataset {
			ds, _ := cat.Dataset(dataset)
			entry := c.catalog[dataset]
			out := make([]*compiledAgreement, len(as))
			for i, a := range as {
				ca := &compiledAgreement{
					id: a.ID, system: a.System, region: a.Region, validFrom: a.ValidFrom, validUntil: a.ValidUntil,
					purposes: a.PurposeSet, actions: a.ActionSet, columns: a.ColumnSet, unmasked: a.UnmaskedSet,
					actionList: a.Actions, columnList: a.Columns, purposeList: a.Purposes, masks: a.Masks,
					maxRows: a.MaxRows, from: a.ValidFromNs, until: a.ValidUntilNs,
				}
				if ds != nil && entry != nil {
					mg := a.Aggregate.MinGroupSize
					if mg <= 0 {
						mg = entry.minGroupSize
					}
					// parseDecision's own reading of the terms, so that what it would reject
					// the compiled decision declines.
					t := ast.ObjectTerm(
						[2]*ast.Term{ast.StringTerm("group_by"), stringsTerm(a.Aggregate.GroupBy)},
						[2]*ast.Term{ast.StringTerm("measures"), stringsTerm(a.Aggregate.Measures)},
						[2]*ast.Term{ast.StringTerm("min_group_size"), ast.IntNumberTerm(int(mg))},
					)
					if terms, err := parseAggregate(t, ds); err == nil {
						ca.aggregate = terms
					}
				}
				out[i] = ca
			}
			c.agreements[dept][dataset] = out
		}
	}
	return c, nil
}

func stringsTerm(s []string) *ast.Term {
	ts := make([]*ast.Term, len(s))
	for i, v := range s {
		ts[i] = ast.StringTerm(v)
	}
	return ast.ArrayTerm(ts...)
}

// Decidable reports whether the policy can decide a request at t: sharing.rego reads
// the time as Unix nanoseconds (time.parse_rfc3339_ns), which fails outside what an
// int64 holds, from 1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z.
// The compiled decision leaves other times to the Rego (which denies with
// policy_error), and `govx policy explain` refuses them.
func Decidable(t time.Time) bool {
	return !t.Before(time.Unix(0, math.MinInt64)) && !t.After(time.Unix(0, math.MaxInt64))
}

// decide returns the decision sharing.rego and parseDecision make for req on ds, and
// true; or false where it cannot decide exactly, and the Rego must. req.Time must be
// set. ds is the schema of req.Dataset, nil for a dataset without one.
func (c *compiled) decide(req exchange.Request, ds *schemas.Dataset) (exchange.Decision, bool) {
	if !Decidable(req.Time) {
		return exchange.Decision{}, false
	}
	names, ok := c.names[ds]
	if ds != nil && (!ok || ds.ID != req.Dataset) {
		return exchange.Decision{}, false
	}
	r := &request{c: c, req: req, act: string(req.Action), ds: ds, names: names, now: req.Time.UnixNano()}
	r.dept, r.hasDept = c.departments[req.Department]
	r.entry = c.catalog[req.Dataset]
	r.narrow()
	d, ok, exact := r.granted()
	if !exact {
		return exchange.Decision{}, false
	}
	if !ok {
		reason, ok := r.denial()
		if !ok {
			reason = exchange.Reason{Code: "no_grant", Message: "no rule grants this request; deny by default"}
		}
		d = exchange.Decision{Reasons: []exchange.Reason{reason}}
	}
	d.Revision = c.revision
	if testHookCompiled != nil {
		testHookCompiled(req, &d)
	}
	return d, true
}

// testHookCompiled, when set by a test, changes every compiled decision: for proving
// that the load-time check catches a compiled decision that differs from the Rego.
var testHookCompiled func(exchange.Request, *exchange.Decision)

// checkCompiled compares c with every decision of st's index (each a Rego evaluation,
// or taken over from the previous revision under the reuse proof), for its request at
// the time inside its interval the index evaluated. It returns how many it compared and
// the first difference, "" if none. A request c declines is left to the Rego anyway.
func (e *Engine) checkCompiled(st *state, c *compiled) (n int, diff string) {
	x := st.index
	indexRequests(st.bundle, probes(st.bundle), x.stats.From, func(indexProbe) bool { return diff == "" }, func(req exchange.Request, _, _ int64) {
		if diff != "" {
			return
		}
		key, err := cacheKey(req, st.reads)
		if err != nil {
			return
		}
		want, ok := x.get(key, req.Time.UnixNano())
		if !ok {
			return // a policy error: the Rego decides it
		}
		ds, _ := e.cat.Dataset(req.Dataset)
		got, ok := c.decide(req, ds)
		if !ok {
			return
		}
		n++
		if !reflect.DeepEqual(got, *want) {
			diff = fmt.Sprintf("%s %s by %q (system %q) for purpose %q, columns %q, at %s: compiled %+v, Rego %+v",
				req.Action, req.Dataset, req.Department, req.System, req.Purpose, req.Columns, req.Time.Format(time.RFC3339Nano), got, *want)
		}
	})
	return n, diff
}

// request is one evaluation of the compiled decision; its fields and methods are named
// after the rules of sharing.rego they stand for.
type request struct {
	c       *compiled
	req     exchange.Request
	act     string
	ds      *schemas.Dataset
	names   []string
	now     int64
	dept    compiledDepartment
	hasDept bool
	entry   *compiledEntry

	bySystem, byPurpose, live, byAction []*compiledAgreement
}

// actions is sharing.rego's actions, written out as the Rego has them rather than taken
// from exchange.Action, so that an action added to the exchange but not to the policy
// is unknown to both.
var actions = map[string]bool{"read": true, "changes": true, "lookup": true, "verify": true, "discover": true, "aggregate": true}

func knownAction(a string) bool { return actions[a] }

// narrow computes by_system, by_purpose, live and by_action; applicable is by_action,
// as the filters are the same.
func (r *request) narrow() {
	candidates := r.c.agreements[r.req.Department][r.req.Dataset]
	discover := r.act == string(exchange.ActionDiscover)
	for _, a := range candidates {
		if a.system != "" && a.system != r.req.System {
			continue
		}
		r.bySystem = append(r.bySystem, a)
		if !discover && !a.purposes[r.req.Purpose] {
			continue
		}
		r.byPurpose = append(r.byPurpose, a)
		if !(a.from <= r.now && r.now < a.until) {
			continue
		}
		r.live = append(r.live, a)
		if !discover && !a.actions[r.act] {
			continue
		}
		r.byAction = append(r.byAction, a)
	}
}

func (r *request) covers(a *compiledAgreement) bool {
	for _, c := range r.req.Columns {
		if !a.columns[c] {
			return false
		}
	}
	return true
}

func (r *request) firstCovering() *compiledAgreement {
	for _, a := range r.byAction {
		if r.covers(a) {
			return a
		}
	}
	return nil
}

// agreement is the agreement that applies, nil where the Rego's is undefined.
func (r *request) agreement() *compiledAgreement {
	if r.entry == nil {
		return nil
	}
	aggregate := r.act == string(exchange.ActionAggregate)
	switch {
	case r.entry.share == policies.ShareConditional, r.entry.share == policies.ShareUnconditional && aggregate:
		return r.firstCovering()
	case r.entry.share == policies.ShareUnconditional && len(r.byAction) > 0:
		return r.byAction[0]
	}
	return nil
}

func (r *request) field(c string) *schemas.Field {
	if r.ds == nil {
		return nil
	}
	f, _ := r.ds.Field(c)
	return f
}

func (r *request) unknownColumns() []string {
	var out []string
	for _, c := range r.req.Columns {
		if r.field(c) == nil {
			out = append(out, c)
		}
	}
	return out
}

// grantedColumns is granted_columns; agreement is nil where the Rego's is undefined.
func (r *request) grantedColumns(agr *compiledAgreement) []string {
	switch {
	case len(r.req.Columns) > 0:
		return r.req.Columns
	case r.entry.share == policies.ShareConditional && agr != nil:
		return agr.columnList
	}
	return r.names
}

// masks is sharing.rego's masks for the columns granted under agr (nil: the default
// terms, which unmask and mask nothing).
func (r *request) masks(cols []string, agr *compiledAgreement) map[string]string {
	m := map[string]string{}
	for _, c := range cols {
		if agr != nil && agr.unmasked[c] {
			continue
		}
		if f := r.field(c); f != nil && (f.Sensitivity == schemas.Personal || f.Sensitivity == schemas.SensitivePersonal) {
			m[c] = f.Mask
		}
	}
	if agr != nil {
		for _, c := range cols {
			if mk, ok := agr.masks[c]; ok {
				m[c] = mk
			}
		}
	}
	return m
}

// maskedVerifyColumns is masked_verify_columns, for an unconditional dataset.
func (r *request) maskedVerifyColumns(agr *compiledAgreement) []string {
	if r.act != string(exchange.ActionVerify) || agr != nil {
		return nil
	}
	cols := r.grantedColumns(nil)
	m := r.masks(cols, nil)
	var out []string
	for _, c := range cols {
		if _, ok := m[c]; ok {
			out = append(out, c)
		}
	}
	return out
}

// granted is sharing.rego's granted as parseDecision reads it: the decision and true
// when the Rego grants; exact is false for a grant parseDecision would reject.
func (r *request) granted() (d exchange.Decision, ok, exact bool) {
	if !knownAction(r.act) || !r.hasDept || r.entry == nil {
		return d, false, true
	}
	aggregate := r.act == string(exchange.ActionAggregate)
	agr := r.agreement()
	switch r.entry.share {
	case policies.ShareUnconditional:
		if !aggregate && (len(r.unknownColumns()) > 0 || len(r.maskedVerifyColumns(agr)) > 0) || aggregate && agr == nil {
			return d, false, true
		}
	case policies.ShareConditional:
		if agr == nil {
			return d, false, true
		}
	default:
		return d, false, true
	}
	if r.ds == nil {
		return d, false, false
	}
	cols := r.grantedColumns(agr)
	if len(cols) == 0 {
		return d, false, false
	}
	for _, c := range cols {
		if r.field(c) == nil {
			return d, false, false
		}
	}
	d = exchange.Decision{Allow: true, Columns: slices.Clone(cols), Masks: map[string]string{}}
	if !aggregate {
		d.Masks = r.masks(cols, agr)
		for _, mk := range d.Masks {
			if !slices.Contains(masks, mk) {
				return d, false, false
			}
		}
	}
	scope := r.dept.region
	d.MaxRows = r.entry.maxRows
	if agr != nil {
		d.Agreement = agr.id
		if agr.region != "" {
			scope = agr.region
		}
		if agr.maxRows > 0 {
			d.MaxRows = agr.maxRows
		}
	}
	if d.MaxRows < 0 {
		return d, false, false
	}
	if p := regionPrefix(scope); p != "" {
		if r.field(r.entry.regionColumn) == nil {
			return d, false, false
		}
		d.RowFilter = []exchange.Filter{{Column: r.entry.regionColumn, Op: exchange.OpPrefix, Value: p}}
	}
	if aggregate || r.aggregateOnly() {
		if agr.aggregate == nil {
			return d, false, false
		}
		t := *agr.aggregate
		t.GroupBy, t.Measures = slices.Clone(t.GroupBy), slices.Clone(t.Measures)
		d.Aggregate = &t
	}
	return d, true, true
}

// aggregateOnly is aggregate_only: discovering a conditional dataset under live
// agreements that all grant nothing but aggregate and discover.
func (r *request) aggregateOnly() bool {
	if r.act != string(exchange.ActionDiscover) || r.entry.share != policies.ShareConditional || len(r.byAction) == 0 {
		return false
	}
	for _, a := range r.byAction {
		for act := range a.actions {
			if act != string(exchange.ActionAggregate) && act != string(exchange.ActionDiscover) {
				return false
			}
		}
	}
	return true
}

// regionPrefix is sharing.rego's region_prefix; substring counts code points, as
// Rego's does.
func regionPrefix(code string) string {
	sub := func(n int) string {
		if utf8.RuneCountInString(code) <= n {
			return code
		}
		return string([]rune(code)[:n])
	}
	switch {
	case code == "" || code == "000000":
		return ""
	case strings.HasSuffix(code, "0000"):
		return sub(2)
	case strings.HasSuffix(code, "00"):
		return sub(4)
	}
	return code
}

func reason(code, format string, args ...any) (exchange.Reason, bool) {
	return exchange.Reason{Code: code, Message: fmt.Sprintf(format, args...)}, true
}

// denial is sharing.rego's denial: the first reason that applies, or false where it is
// undefined.
func (r *request) denial() (exchange.Reason, bool) {
	dataset := r.req.Dataset
	switch {
	case !knownAction(r.act):
		return reason("unknown_action", "action %v is not one of read, changes, lookup, verify, discover, aggregate", r.act)
	case !r.hasDept:
		return reason("unknown_department", "department %v is not registered with the exchange; the data steward adds departments to policies/departments.yaml", r.req.Department)
	case r.entry == nil:
		return reason("unknown_dataset", "dataset %v is not in the sharing catalog (policies/catalog.yaml), so it is not shared", dataset)
	case r.entry.share == policies.ShareNone:
		return reason("not_shared", "dataset %v is not shared (不予共享); legal basis: %v", dataset, r.entry.legalBasis)
	}
	if unknown := r.unknownColumns(); len(unknown) > 0 {
		return reason("unknown_column", "dataset %v has no column %v", dataset, strings.Join(unknown, ", "))
	}
	switch r.entry.share {
	case policies.ShareConditional:
		if rs, ok := r.conditionalDenial(); ok {
			return rs, true
		}
	case policies.ShareUnconditional:
		if r.act == string(exchange.ActionAggregate) {
			if rs, ok := r.aggregateDenial(); ok {
				return rs, true
			}
		}
		if cols := r.maskedVerifyColumns(r.agreement()); len(cols) > 0 {
			return reason("verify_masked", "verifying %v would reveal values %v shares only masked; verifying them needs an agreement (共享协议) that grants verify", strings.Join(cols, ", "), dataset)
		}
		return exchange.Reason{}, false
	default:
		return reason("unknown_share_type", "dataset %v has share type %v, which the policy does not know; deny by default", dataset, r.entry.share)
	}
	return exchange.Reason{}, false
}

func (r *request) conditionalDenial() (exchange.Reason, bool) {
	dept, dataset, act := r.req.Department, r.req.Dataset, r.act
	switch {
	case len(r.c.agreements[dept][dataset]) == 0:
		return reason("no_agreement", "%v (%v) holds no sharing agreement (共享协议) for %v, which is shared conditionally (有条件共享); apply to the data steward for one", r.dept.name, dept, dataset)
	case len(r.bySystem) == 0:
		label := r.req.System
		if label == "" {
			label = "(none)"
		}
		return reason("system_not_granted", "the agreements of %v for %v name other systems than %v", dept, dataset, label)
	case act != string(exchange.ActionDiscover) && r.req.Purpose == "":
		return reason("purpose_required", "%v is shared conditionally (有条件共享): state the purpose of the request", dataset)
	case len(r.byPurpose) == 0:
		return reason("unknown_purpose", "purpose %v is not agreed for %v on %v; agreed purposes: %v", r.req.Purpose, dept, dataset, strings.Join(r.agreedPurposes(), ", "))
	case len(r.live) == 0:
		for _, a := range r.byPurpose {
			if r.now < a.from {
				return reason("agreement_not_yet_valid", "agreement %v becomes valid on %v", a.id, a.validFrom)
			}
		}
		a := r.byPurpose[0]
		return reason("agreement_expired", "agreement %v expired after %v; renew it with the data steward", a.id, a.validUntil)
	case len(r.byAction) == 0:
		a := r.live[0]
		if slices.Equal(a.actionList, []string{string(exchange.ActionVerify)}) {
			return reason("verify_only", "agreement %v allows verification (核验) only; action %v would return values", a.id, act)
		}
		return reason("action_not_granted", "agreement %v does not grant action %v; granted: %v", a.id, act, strings.Join(a.actionList, ", "))
	}
	return r.columnNotGranted()
}

func (r *request) aggregateDenial() (exchange.Reason, bool) {
	if len(r.byAction) == 0 {
		return reason("no_agreement", "%v (%v) holds no agreement (共享协议) granting aggregate on %v; aggregates are answered only under one, which names the groups and measures", r.dept.name, r.req.Department, r.req.Dataset)
	}
	return r.columnNotGranted()
}

// columnNotGranted is the last denial of both verb_denial and aggregate_denial.
func (r *request) columnNotGranted() (exchange.Reason, bool) {
	a := r.byAction[0]
	var outside []string
	for _, c := range r.req.Columns {
		if !a.columns[c] {
			outside = append(outside, c)
		}
	}
	if len(outside) == 0 {
		return exchange.Reason{}, false
	}
	return reason("column_not_granted", "columns outside agreement %v: %v; the whole request is denied, ask only for granted columns or for none", a.id, strings.Join(outside, ", "))
}

// agreedPurposes is agreed_purposes: the purposes of by_system, each once, sorted as
// Rego sorts strings (by bytes).
func (r *request) agreedPurposes() []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range r.bySystem {
		for _, p := range a.purposeList {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sort.Strings(out)
	return out
}
