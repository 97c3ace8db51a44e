package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"govx/policies"
)

// CacheMode says whether an engine caches a policy's decisions, and why.
type CacheMode struct {
	// On reports whether decisions are cached.
	On bool
	// Why is what the mode rests on: for a cached policy, what the analysis proved; for
	// an uncached one, every place the analysis could not prove safe ("sharing.rego:42
	// reads input.time via time.clock"), in source order.
	Why []string
}

// String is the mode in one line: "on — …" or "off — …".
func (m CacheMode) String() string {
	s := "off"
	if m.On {
		s = "on"
	}
	if len(m.Why) == 0 {
		return s
	}
	return s + " — " + strings.Join(m.Why, "; ")
}

// CacheModeOf reports whether an engine would cache the decisions of b, and why. It runs
// the analysis an engine runs when it loads or reloads a policy.
func CacheModeOf(b *policies.Bundle) (CacheMode, error) {
	comp, _, err := b.Compile(false)
	if err != nil {
		return CacheMode{}, fmt.Errorf("compile policy %s: %w", b.Source, err)
	}
	return analyzeCache(comp, requestReads(comp)), nil
}

// analyzeCache proves, from the compiled policy, that a decision depends on nothing but
// the cache key (keyParts) and on where the time falls between the validity boundaries
// of the requesting department's agreements for the dataset (policies.Bundle.Boundaries),
// which is what the cache assumes. It accepts the time only in the form the shipped
// policy uses it:
//
//   - read once, by a rule `now := time.parse_rfc3339_ns(input.time)`, and nowhere else;
//   - that rule's value used only in `bound <= now` or `now < bound` (or the same
//     written with >= and >), where bound is the valid_from_ns or valid_until_ns of an
//     element of data.agreements_by_key[input.subject.department][input.resource.dataset],
//     directly or through rules and comprehensions that only ever select from it.
//
// Between two consecutive boundaries every such comparison keeps its truth value, and
// the time is observable in no other way, so the whole evaluation, errors included, is
// the same. Anything else that could reach the time, or make the decision depend on
// something outside the input, turns the cache off: another read of input.time, any
// other time built-in, input read whole or with a variable key, the time rule read
// through its package or a variable key, `with`, built-ins whose result the input does
// not fix (http.send, rand.intn, …), rules under data.agreements_by_key, and any
// construct the analysis does not know. It is deliberately conservative: what it cannot
// prove is uncached, never guessed.
func analyzeCache(c *ast.Compiler, kp keyParts) CacheMode {
	a := &analyzer{c: c, nowRules: map[*ast.Rule]bool{}, lists: map[string]bool{}, seen: map[string]bool{}}
	names := make([]string, 0, len(c.Modules))
	for name := range c.Modules {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, r := range c.Modules[name].Rules {
			if a.isNowRule(r) {
				a.nowRules[r] = true
				a.nowPaths = append(a.nowPaths, r.Ref())
			}
		}
	}
	a.findLists(names)
	for _, r := range c.GetRulesWithPrefix(agreementsRoot) {
		a.add(r.Location, nil, "defines rules under data.agreements_by_key, where the exchange keeps the agreements whose validity the cache relies on")
	}
	for _, name := range names {
		a.scanModule(c.Modules[name])
	}
	if len(a.found) > 0 {
		return CacheMode{Why: a.why()}
	}
	key := "department, system, action, dataset, purpose"
	for _, p := range []struct {
		read bool
		name string
	}{{kp.caseRef, "case_ref"}, {kp.filter, "filter"}, {kp.limit, "limit"}} {
		if p.read {
			key += ", " + p.name
		}
	}
	return CacheMode{On: true, Why: []string{"decisions depend only on the request's " + key + " and columns, and on the time" +
		" only through the validity of the department's agreements for the dataset"}}
}

// why returns the findings in source order, without the weak ones on a line that has
// another.
func (a *analyzer) why() []string {
	type line struct {
		file string
		n    int
	}
	strong := map[line]bool{}
	for _, f := range a.found {
		if !f.weak {
			strong[line{f.file, f.line}] = true
		}
	}
	var out []finding
	for _, f := range a.found {
		if !f.weak || !strong[line{f.file, f.line}] {
			out = append(out, f)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].file != out[j].file {
			return out[i].file < out[j].file
		}
		return out[i].line < out[j].line
	})
	why := make([]string, len(out))
	for i, f := range out {
		why[i] = f.String()
	}
	return why
}

var (
	inputTime      = ast.MustParseRef("input.time")
	inputDept      = ast.MustParseRef("input.subject.department")
	inputDataset   = ast.MustParseRef("input.resource.dataset")
	agreementsRoot = ast.MustParseRef("data.agreements_by_key")
	validFrom      = ast.StringTerm("valid_from_ns")
	validUntil     = ast.StringTerm("valid_until_ns")
)

type analyzer struct {
	c *ast.Compiler
	// nowRules are the rules `now := time.parse_rfc3339_ns(input.time)`, under any name;
	// nowPaths their refs.
	nowRules map[*ast.Rule]bool
	nowPaths []ast.Ref
	// lists are the refs (as strings) of the rules whose value is always a list of the
	// requesting department's agreements for the dataset, or a part of it.
	lists map[string]bool
	// timeVars are the variables of the module being scanned that hold the time: bound
	// by unification to a now rule or to another time variable. The compiler names
	// local variables uniquely within a module.
	timeVars map[ast.Var]bool

	found []finding
	seen  map[string]bool
}

type finding struct {
	file string
	line int
	msg  string
	// weak: shown only when nothing else was found on the same line, where it would
	// repeat what the other finding says.
	weak bool
}

func (f finding) String() string {
	if f.file == "" {
		return f.msg
	}
	return fmt.Sprintf("%s:%d %s", f.file, f.line, f.msg)
}

// add records a finding at the first location known of loc and t.
func (a *analyzer) add(loc *ast.Location, t *ast.Term, format string, args ...any) {
	a.record(loc, t, false, format, args...)
}

func (a *analyzer) record(loc *ast.Location, t *ast.Term, weak bool, format string, args ...any) {
	if loc == nil && t != nil {
		loc = t.Location
	}
	f := finding{msg: fmt.Sprintf(format, args...), weak: weak}
	if loc != nil {
		f.file, f.line = loc.File, loc.Row
	}
	if k := f.String(); !a.seen[k] {
		a.seen[k] = true
		a.found = append(a.found, f)
	}
}

// scope is a body being analysed: a rule's, or a closure's within it. pre are the terms
// bound before the body runs (a function's arguments, an every's key and value).
type scope struct {
	body   ast.Body
	pre    []*ast.Term
	parent *scope
	rule   *ast.Rule
}

// closure is a body nested in an expression, with the terms that belong to it; or, with
// unknown set, a construct that nests expressions in a way walkOwn does not know.
type closure struct {
	head, pre []*ast.Term
	body      ast.Body
	unknown   string
}

// walkOwn calls term for every term of x that belongs to the body x is in (returning
// true skips what is under the term), and nested for each body nested in it.
func walkOwn(x any, term func(*ast.Term) bool, nested func(closure)) {
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(n any) bool {
		switch n := n.(type) {
		case *ast.Term:
			return term(n)
		case *ast.ArrayComprehension:
			nested(closure{head: []*ast.Term{n.Term}, body: n.Body})
		case *ast.SetComprehension:
			nested(closure{head: []*ast.Term{n.Term}, body: n.Body})
		case *ast.ObjectComprehension:
			nested(closure{head: []*ast.Term{n.Key, n.Value}, body: n.Body})
		case *ast.Every:
			vis.Walk(n.Domain) // evaluated in the enclosing body
			pre := []*ast.Term{n.Value}
			if n.Key != nil {
				pre = append(pre, n.Key)
			}
			nested(closure{pre: pre, body: n.Body})
		case *ast.Not:
			nested(closure{body: n.Body})
		case *ast.LogicalAnd:
			nested(closure{body: n.Lhs})
			nested(closure{body: n.Rhs})
		case *ast.LogicalOr:
			nested(closure{body: n.Lhs})
			nested(closure{body: n.Rhs})
		case ast.Body, *ast.Expr:
			// Reached only through a construct not handled above.
			nested(closure{unknown: fmt.Sprintf("%T", n)})
		default:
			return false
		}
		return true
	})
	vis.Walk(x)
}

// exprParts returns what an expression is made of, for walkOwn.
func exprParts(e *ast.Expr) []any {
	switch ts := e.Terms.(type) {
	case []*ast.Term:
		out := make([]any, len(ts))
		for i, t := range ts {
			out[i] = t
		}
		return out
	case nil:
		return nil
	default:
		return []any{ts}
	}
}

func isCallTo(e *ast.Expr, names ...string) bool {
	if !e.IsCall() {
		return false
	}
	op := e.Operator()
	if op == nil {
		return false
	}
	s := op.String()
	for _, n := range names {
		if s == n {
			return true
		}
	}
	return false
}

// isUnify reports whether e unifies two terms (= or :=).
func isUnify(e *ast.Expr) bool {
	return isCallTo(e, ast.Equality.Name, ast.Assign.Name) && len(e.Operands()) == 2
}

func refEqual(t *ast.Term, r ast.Ref) bool {
	x, ok := t.Value.(ast.Ref)
	return ok && x.Equal(r)
}

func mentions(x any, v ast.Var) bool {
	found := false
	ast.WalkVars(x, func(u ast.Var) bool {
		if u.Equal(v) {
			found = true
		}
		return found
	})
	return found
}

// ownMentions reports whether v occurs in the terms that belong to x itself, outside any
// body nested in it.
func ownMentions(x any, v ast.Var) bool {
	found := false
	walkOwn(x, func(t *ast.Term) bool {
		if u, ok := t.Value.(ast.Var); ok && u.Equal(v) {
			found = true
		}
		return found
	}, func(closure) {})
	return found
}

// boundBefore reports whether v may be bound before s's body runs: it is one of s's
// pre-bound terms, or a variable of an enclosing body.
func boundBefore(v ast.Var, s *scope) bool {
	for _, t := range s.pre {
		if mentions(t, v) {
			return true
		}
	}
	for p := s.parent; p != nil; p = p.parent {
		for _, t := range p.pre {
			if mentions(t, v) {
				return true
			}
		}
		for _, e := range p.body {
			for _, part := range exprParts(e) {
				if ownMentions(part, v) {
					return true
				}
			}
		}
	}
	return false
}

// binding returns the expression that binds v in s: the first in s's body to mention v,
// provided v is not bound before the body runs. Bodies are compiled so that a variable
// is bound where it first appears.
func binding(v ast.Var, s *scope) (*ast.Expr, bool) {
	if boundBefore(v, s) {
		return nil, false
	}
	for _, e := range s.body {
		if mentions(e, v) {
			if e.Negated || len(e.With) > 0 {
				return nil, false
			}
			return e, true
		}
	}
	return nil, false
}

// definition returns the term v is bound to by unification in s.
func definition(v ast.Var, s *scope) (*ast.Term, bool) {
	e, ok := binding(v, s)
	if !ok || !isUnify(e) {
		return nil, false
	}
	ops := e.Operands()
	for i, t := range ops {
		if u, ok := t.Value.(ast.Var); ok && u.Equal(v) && !mentions(ops[1-i], v) {
			return ops[1-i], true
		}
	}
	return nil, false
}

// is reports whether t is the ref r, or a variable bound to it in s.
func is(t *ast.Term, r ast.Ref, s *scope) bool {
	if v, ok := t.Value.(ast.Var); ok {
		d, ok := definition(v, s)
		return ok && refEqual(d, r)
	}
	return refEqual(t, r)
}

// isNowRule reports whether r is `NAME := time.parse_rfc3339_ns(input.time)`, the one
// way a policy may read the time, and the only rule at its path. Compiled, its body is
// `x = input.time; time.parse_rfc3339_ns(x, value)`.
func (a *analyzer) isNowRule(r *ast.Rule) bool {
	if r.Default || r.Else != nil || len(r.Head.Args) > 0 || r.Head.Key != nil || !r.Ref().IsGround() {
		return false
	}
	if rules := a.c.GetRules(r.Ref()); len(rules) != 1 || rules[0] != r {
		return false
	}
	out, ok := r.Head.Value.Value.(ast.Var)
	if !ok {
		return false
	}
	var in ast.Var
	parsed := false
	for _, e := range r.Body {
		if e.Negated || len(e.With) > 0 || parsed {
			return false
		}
		ops := e.Operands()
		switch {
		case isUnify(e) && in == "":
			v, ok := ops[0].Value.(ast.Var)
			other := ops[1]
			if !ok {
				v, ok = ops[1].Value.(ast.Var)
				other = ops[0]
			}
			if !ok || !refEqual(other, inputTime) {
				return false
			}
			in = v
		case isCallTo(e, ast.ParseRFC3339Nanos.Name) && len(ops) == 2:
			arg := ops[0]
			if v, ok := arg.Value.(ast.Var); !(refEqual(arg, inputTime) || (in != "" && ok && v.Equal(in))) {
				return false
			}
			if v, ok := ops[1].Value.(ast.Var); !ok || !v.Equal(out) {
				return false
			}
			parsed = true
		default:
			return false
		}
	}
	return parsed
}

// findLists finds, to a fixpoint, the rules whose every value is a list of the requesting
// department's agreements for the dataset or a selection from one.
func (a *analyzer) findLists(modules []string) {
	var paths []ast.Ref
	for _, name := range modules {
		for _, r := range a.c.Modules[name].Rules {
			if ref := r.Ref(); ref.IsGround() && len(r.Head.Args) == 0 {
				paths = append(paths, ref)
			}
		}
	}
	for changed := true; changed; {
		changed = false
		for _, p := range paths {
			if k := p.String(); !a.lists[k] && a.isListRule(p) {
				a.lists[k] = true
				changed = true
			}
		}
	}
}

func (a *analyzer) isListRule(p ast.Ref) bool {
	rules := a.c.GetRules(p)
	if len(rules) == 0 {
		return false
	}
	for _, r := range rules {
		if !r.Ref().Equal(p) || len(r.Head.Args) > 0 || r.Head.Key != nil {
			return false
		}
		for x := r; x != nil; x = x.Else {
			if !a.isList(x.Head.Value, &scope{body: x.Body, rule: x}, 0) {
				return false
			}
		}
	}
	return true
}

// maxDepth bounds the chains of variables and comprehensions followed; a policy that
// needs more is uncached.
const maxDepth = 8

// isList reports whether t, in s, is always a list of the requesting department's
// agreements for the dataset, or a selection from one.
func (a *analyzer) isList(t *ast.Term, s *scope, depth int) bool {
	if t == nil || depth > maxDepth {
		return false
	}
	switch v := t.Value.(type) {
	case ast.Ref:
		return a.isListRef(v, s)
	case ast.Var:
		d, ok := definition(v, s)
		return ok && a.isList(d, s, depth+1)
	case *ast.Array:
		return v.Len() == 0
	case *ast.ArrayComprehension:
		x, ok := v.Term.Value.(ast.Var)
		return ok && a.isElement(x, &scope{body: v.Body, parent: s, rule: s.rule}, depth+1)
	}
	return false
}

// isListRef reports whether r is a list rule, or
// data.agreements_by_key[input.subject.department][input.resource.dataset].
func (a *analyzer) isListRef(r ast.Ref, s *scope) bool {
	if r.IsGround() && a.lists[r.String()] {
		return true
	}
	return len(r) == 4 && r[:2].Equal(agreementsRoot) && is(r[2], inputDept, s) && is(r[3], inputDataset, s)
}

// isElement reports whether x, in s, is bound to an element of such a list: by
// `x = list[i]` or `x in list`.
func (a *analyzer) isElement(x ast.Var, s *scope, depth int) bool {
	if depth > maxDepth {
		return false
	}
	if d, ok := definition(x, s); ok {
		r, ok := d.Value.(ast.Ref)
		return ok && len(r) >= 2 && a.isListRef(r[:len(r)-1], s)
	}
	e, ok := binding(x, s)
	if !ok || !isCallTo(e, ast.Member.Name) {
		return false
	}
	ops := e.Operands()
	v, ok := ops[0].Value.(ast.Var)
	return ok && v.Equal(x) && len(ops) == 2 && a.isList(ops[1], s, depth+1)
}

// isBound reports whether t, in s, is the valid_from_ns or valid_until_ns of an element
// of such a list: one of the boundaries the cache's intervals are cut at.
func (a *analyzer) isBound(t *ast.Term, s *scope) bool {
	if v, ok := t.Value.(ast.Var); ok {
		d, ok := definition(v, s)
		if !ok {
			return false
		}
		t = d
	}
	r, ok := t.Value.(ast.Ref)
	if !ok || len(r) != 2 || !(r[1].Equal(validFrom) || r[1].Equal(validUntil)) {
		return false
	}
	x, ok := r[0].Value.(ast.Var)
	return ok && a.isElement(x, s, 0)
}

// isTime reports whether t holds the time: a ref to a now rule or a time variable.
func (a *analyzer) isTime(t *ast.Term) bool {
	switch v := t.Value.(type) {
	case ast.Var:
		return a.timeVars[v]
	case ast.Ref:
		for _, p := range a.nowPaths {
			if v.Equal(p) {
				return true
			}
		}
	}
	return false
}

func (a *analyzer) scanModule(m *ast.Module) {
	a.timeVars = map[ast.Var]bool{}
	for changed := true; changed; {
		changed = false
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if !isUnify(e) {
				return false
			}
			ops := e.Operands()
			for i, t := range ops {
				if v, ok := t.Value.(ast.Var); ok && !a.timeVars[v] && a.isTime(ops[1-i]) {
					a.timeVars[v] = true
					changed = true
				}
			}
			return false
		})
	}
	for _, r := range m.Rules {
		for x := r; x != nil; x = x.Else {
			s := &scope{body: x.Body, pre: x.Head.Args, rule: x}
			for _, t := range append(append([]*ast.Term{}, x.Head.Args...), x.Head.Key, x.Head.Value) {
				if t != nil {
					a.scanTerm(t, nil, s, x.Head.Location)
				}
			}
			a.scanBody(s)
		}
	}
}

func (a *analyzer) scanBody(s *scope) {
	for _, e := range s.body {
		if len(e.With) > 0 {
			a.add(e.Location, nil, "uses `with`, which can replace the input, data or a built-in inside a decision")
		}
		if e.IsCall() {
			a.checkCall(ast.Call(e.Terms.([]*ast.Term)), e, s, e.Location)
		}
		for _, part := range exprParts(e) {
			a.scanTerm(part, e, s, e.Location)
		}
	}
}

// scanTerm checks the terms of x, a part of expression e (nil for a rule's or a
// comprehension's head) in s.
func (a *analyzer) scanTerm(x any, e *ast.Expr, s *scope, loc *ast.Location) {
	walkOwn(x, func(t *ast.Term) bool {
		at := loc
		if at == nil {
			at = t.Location
		}
		if a.isTime(t) {
			a.checkTimeUse(t, e, s, at)
		}
		switch v := t.Value.(type) {
		case ast.Var:
			if v.Equal(ast.InputRootDocument.Value) {
				a.add(at, t, "reads input as a whole, which holds the time")
			}
		case ast.Ref:
			a.checkRef(v, t, e, s, at)
			for _, elem := range v[1:] {
				a.scanTerm(elem, e, s, at)
			}
			return true
		case ast.Call:
			a.checkCall(v, e, s, at)
		}
		return false
	}, func(c closure) {
		if c.unknown != "" {
			a.add(loc, nil, "uses a construct the cache analysis does not follow (%s)", c.unknown)
			return
		}
		inner := &scope{body: c.body, pre: c.pre, parent: s, rule: s.rule}
		for _, t := range append(append([]*ast.Term{}, c.pre...), c.head...) {
			a.scanTerm(t, nil, inner, loc)
		}
		a.scanBody(inner)
	})
}

// checkRef checks a reference to input or data.
func (a *analyzer) checkRef(r ast.Ref, t *ast.Term, e *ast.Expr, s *scope, loc *ast.Location) {
	switch {
	case r[0].Equal(ast.InputRootDocument):
		switch {
		case len(r) == 1:
			a.add(loc, t, "reads input as a whole, which holds the time")
		case !r[1].IsGround():
			a.add(loc, t, "reads input[%v] with a variable key, which can reach input.time", r[1])
		case r[1].Equal(inputTime[1]) && !a.nowRules[s.rule]:
			a.add(loc, t, "reads input.time %s", a.how(t, e, s))
		}
	case r[0].Equal(ast.DefaultRootDocument):
		for _, p := range a.nowPaths {
			if r.Equal(p) || !overlaps(r, p) {
				continue
			}
			if len(r) < len(p) && r.IsGround() {
				a.add(loc, t, "reads %v as a whole, which holds the time (%v)", r, p)
			} else {
				a.add(loc, t, "reads %v, which can reach the time (%v)", r, p)
			}
		}
	}
}

// overlaps reports whether the documents r and p may share a part: each position up to
// the shorter is equal or a variable.
func overlaps(r, p ast.Ref) bool {
	for i := 0; i < len(r) && i < len(p); i++ {
		if r[i].IsGround() && p[i].IsGround() && !r[i].Equal(p[i]) {
			return false
		}
	}
	return true
}

// checkCall checks a call of a built-in: one whose result the input does not determine,
// or a time built-in anywhere but in a now rule. A time built-in given the time itself is
// reported by checkTimeUse, more precisely.
func (a *analyzer) checkCall(c ast.Call, e *ast.Expr, s *scope, loc *ast.Location) {
	op, ok := c[0].Value.(ast.Ref)
	if !ok {
		return
	}
	name := op.String()
	b, builtin := ast.BuiltinMap[name]
	switch {
	case builtin && b.Nondeterministic:
		a.add(loc, c[0], "calls %s, whose result the input does not determine", name)
	case builtin && strings.HasPrefix(name, "time.") && !a.nowRules[s.rule]:
		a.record(loc, c[0], true, "calls %s, a time built-in", name)
	}
}

// checkTimeUse checks one occurrence t of the time in expression e (nil for a head).
func (a *analyzer) checkTimeUse(t *ast.Term, e *ast.Expr, s *scope, loc *ast.Location) {
	if e == nil {
		a.add(loc, t, "reads input.time %s", a.how(t, e, s))
		return
	}
	ops := e.Operands()
	pos := -1
	for i, o := range ops {
		if o == t {
			pos = i
		}
	}
	if pos < 0 {
		a.add(loc, t, "reads input.time %s", a.how(t, e, s))
		return
	}
	if isUnify(e) {
		if _, ok := ops[1-pos].Value.(ast.Var); ok || a.isTime(ops[1-pos]) {
			return // binds a time variable, whose uses are checked in turn
		}
		a.add(loc, t, "reads input.time %s", a.how(t, e, s))
		return
	}
	if !isCallTo(e, ast.LessThan.Name, ast.LessThanEq.Name, ast.GreaterThan.Name, ast.GreaterThanEq.Name) || len(ops) != 2 {
		a.add(loc, t, "reads input.time %s", a.how(t, e, s))
		return
	}
	bound := ops[1-pos]
	if !a.isBound(bound, s) {
		a.add(loc, t, "compares input.time with something other than the valid_from_ns or valid_until_ns of the department's agreements for the dataset")
		return
	}
	// Between boundaries lo <= t < hi, `b <= t` and `t < b` keep their value for every
	// boundary b; `b < t` and `t <= b` change at b+1.
	op := e.Operator().String()
	var sym string
	switch {
	case op == ast.LessThanEq.Name && pos == 1, op == ast.GreaterThanEq.Name && pos == 0,
		op == ast.LessThan.Name && pos == 0, op == ast.GreaterThan.Name && pos == 1:
		return
	case op == ast.LessThan.Name:
		sym = "bound < time"
	case op == ast.LessThanEq.Name:
		sym = "time <= bound"
	case op == ast.GreaterThan.Name:
		sym = "time > bound"
	default:
		sym = "bound >= time"
	}
	a.add(loc, t, "compares input.time as %s: only bound <= time and time < bound keep their value between two validity boundaries", sym)
}

// how says how the time at t, in expression e, is used: through the built-ins or
// functions it flows into, following the variables it is bound to.
func (a *analyzer) how(t *ast.Term, e *ast.Expr, s *scope) string {
	var names []string
	for range maxDepth {
		if e == nil {
			break
		}
		if isUnify(e) {
			v, ok := otherVar(e, t)
			if !ok {
				break
			}
			e, t = nextUse(v, e, s), ast.VarTerm(string(v))
			continue
		}
		if !e.IsCall() {
			break
		}
		name := e.Operator().String()
		if b, ok := ast.BuiltinMap[name]; ok && b.Infix != "" {
			name = b.Infix
		}
		names = append(names, name)
		// Through the parse, to what the time is used for.
		if name != ast.ParseRFC3339Nanos.Name {
			break
		}
		ops := e.Operands()
		out, ok := ops[len(ops)-1].Value.(ast.Var)
		if !ok || len(ops) != 2 {
			break
		}
		e, t = nextUse(out, e, s), ast.VarTerm(string(out))
	}
	if len(names) == 0 {
		return "outside a comparison with an agreement's validity"
	}
	return "via " + names[len(names)-1]
}

// otherVar returns the variable unified, in e, with the term holding t.
func otherVar(e *ast.Expr, t *ast.Term) (ast.Var, bool) {
	ops := e.Operands()
	for i, o := range ops {
		if o == t || mentionsTerm(o, t) {
			v, ok := ops[1-i].Value.(ast.Var)
			return v, ok
		}
	}
	return "", false
}

func mentionsTerm(x *ast.Term, t *ast.Term) bool {
	found := false
	ast.WalkTerms(x, func(u *ast.Term) bool {
		if u == t {
			found = true
		}
		return found
	})
	return found
}

// nextUse returns the expression after e, in s or a body nested in it, that uses v.
func nextUse(v ast.Var, e *ast.Expr, s *scope) *ast.Expr {
	after := false
	var next *ast.Expr
	ast.WalkExprs(s.body, func(x *ast.Expr) bool {
		switch {
		case next != nil:
		case x == e:
			after = true
		case after && !x.IsCall():
		case after && mentions(x, v):
			next = x
		}
		return next != nil
	})
	return next
}
