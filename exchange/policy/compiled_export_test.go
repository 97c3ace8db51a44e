package policy

import (
	"context"

	"govx/exchange"
	"govx/policies"
	"govx/schemas"
)

// Unchecked decides one bundle both ways, the compiled decision and the Rego, without
// policies.Check: the differential tests put data to both that no engine would load
// (an unknown share type, a negative row cap, an agreement of an unknown department),
// where the compiled decision must decide as the Rego does or decline.
type Unchecked struct {
	e  *Engine
	st *state
	c  *compiled
}

// NewUnchecked prepares b's Rego and its compiled decision against cat.
func NewUnchecked(b *policies.Bundle, cat *schemas.Catalog) (*Unchecked, error) {
	_, pq, err := prepareQuery(b)
	if err != nil {
		return nil, err
	}
	c, err := compileDecision(b, cat)
	if err != nil {
		return nil, err
	}
	return &Unchecked{e: &Engine{cat: cat}, st: &state{bundle: b, pq: pq}, c: c}, nil
}

// Compiled is the compiled decision, and whether it decides req; req.Time must be set.
func (u *Unchecked) Compiled(req exchange.Request) (exchange.Decision, bool) {
	ds, _ := u.e.cat.Dataset(req.Dataset)
	return u.c.decide(req, ds)
}

// Rego is a fresh evaluation of the Rego; req.Time must be set.
func (u *Unchecked) Rego(req exchange.Request) exchange.Decision {
	ds, _ := u.e.cat.Dataset(req.Dataset)
	return u.e.eval(context.Background(), u.st, req, ds)
}

// SetTestHookCompiled makes f change every compiled decision until the returned func
// is called.
func SetTestHookCompiled(f func(exchange.Request, *exchange.Decision)) (restore func()) {
	testHookCompiled = f
	return func() { testHookCompiled = nil }
}
