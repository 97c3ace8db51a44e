package policy

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"govx/exchange"
	"govx/schemas"
)

// Input returns the policy input for a request on a dataset, as JSON-shaped Go values:
// the documented form that `govx policy explain` prints and Rego tests write. ds is nil
// for a dataset without a schema; the input then has no fields. It is built by the same
// function the engine evaluates, so what is shown is what is decided.
func Input(req exchange.Request, ds *schemas.Dataset) (map[string]any, error) {
	v, err := inputValue(req, ds)
	if err != nil {
		return nil, err
	}
	j, err := ast.JSON(v)
	if err != nil {
		return nil, err
	}
	m, _ := j.(map[string]any)
	return m, nil
}

// inputValue is the one place a request becomes the policy input. Subject comes from
// the caller's credentials; fields (with sensitivity and default mask) come from the
// schema, never from the caller.
func inputValue(req exchange.Request, ds *schemas.Dataset) (ast.Value, error) {
	cols := make([]*ast.Term, len(req.Columns))
	for i, c := range req.Columns {
		cols[i] = ast.StringTerm(c)
	}
	filters := make([]*ast.Term, len(req.Filter))
	for i, f := range req.Filter {
		fo := [][2]*ast.Term{
			{ast.StringTerm("column"), ast.StringTerm(f.Column)},
			{ast.StringTerm("op"), ast.StringTerm(f.Op)},
		}
		if f.Value != nil {
			v, err := ast.InterfaceToValue(f.Value)
			if err != nil {
				return nil, fmt.Errorf("filter on %s: value %v: %w", f.Column, f.Value, err)
			}
			fo = append(fo, [2]*ast.Term{ast.StringTerm("value"), ast.NewTerm(v)})
		}
		filters[i] = ast.ObjectTerm(fo...)
	}
	t := req.Time
	if t.IsZero() {
		t = time.Now()
	}
	return ast.NewObject(
		[2]*ast.Term{ast.StringTerm("subject"), ast.ObjectTerm(
			[2]*ast.Term{ast.StringTerm("department"), ast.StringTerm(req.Department)},
			[2]*ast.Term{ast.StringTerm("system"), ast.StringTerm(req.System)},
		)},
		[2]*ast.Term{ast.StringTerm("action"), ast.StringTerm(string(req.Action))},
		[2]*ast.Term{ast.StringTerm("resource"), ast.ObjectTerm(
			[2]*ast.Term{ast.StringTerm("dataset"), ast.StringTerm(req.Dataset)},
			[2]*ast.Term{ast.StringTerm("fields"), fieldsTerm(ds)},
		)},
		[2]*ast.Term{ast.StringTerm("request"), ast.ObjectTerm(
			[2]*ast.Term{ast.StringTerm("columns"), ast.ArrayTerm(cols...)},
			[2]*ast.Term{ast.StringTerm("filter"), ast.ArrayTerm(filters...)},
			[2]*ast.Term{ast.StringTerm("purpose"), ast.StringTerm(req.Purpose)},
			[2]*ast.Term{ast.StringTerm("case_ref"), ast.StringTerm(req.CaseRef)},
			[2]*ast.Term{ast.StringTerm("limit"), ast.IntNumberTerm(int(req.Limit))},
		)},
		[2]*ast.Term{ast.StringTerm("time"), ast.StringTerm(t.UTC().Format(time.RFC3339Nano))},
	), nil
}

// fieldsCache holds each dataset's fields term: a schema is immutable once loaded, and
// building the term is most of the cost of building an input.
var fieldsCache sync.Map // *schemas.Dataset -> *ast.Term

var emptyArray = ast.ArrayTerm()

func fieldsTerm(ds *schemas.Dataset) *ast.Term {
	if ds == nil {
		return emptyArray
	}
	if t, ok := fieldsCache.Load(ds); ok {
		return t.(*ast.Term)
	}
	terms := make([]*ast.Term, len(ds.Fields))
	for i, f := range ds.Fields {
		terms[i] = ast.ObjectTerm(
			[2]*ast.Term{ast.StringTerm("name"), ast.StringTerm(f.Name)},
			[2]*ast.Term{ast.StringTerm("sensitivity"), ast.StringTerm(string(f.Sensitivity))},
			[2]*ast.Term{ast.StringTerm("mask"), ast.StringTerm(f.Mask)},
		)
	}
	t := ast.ArrayTerm(terms...)
	fieldsCache.Store(ds, t)
	return t
}

// keyParts says which optional parts of a request the policy can read, and so which
// belong in the cache key.
type keyParts struct {
	caseRef, filter, limit bool
}

// requestReads finds which of input.request's case_ref, filter and limit the compiled
// policy can read. A part no rule can reach cannot change a decision, so leaving it out
// of the cache key keeps the cache exact, and lets requests that differ only in their
// case reference (办件编号), as most do, share an entry. Any reference that could reach
// a part dynamically (input or input.request as a whole, input.request[x]) counts as
// reading every part.
func requestReads(c *ast.Compiler) keyParts {
	var kp keyParts
	all := false
	for _, m := range c.Modules {
		ast.WalkRefs(m, func(r ast.Ref) bool {
			if !r[0].Equal(ast.InputRootDocument) {
				return false
			}
			if len(r) == 1 || !r[1].IsGround() {
				all = true
				return false
			}
			if !r[1].Equal(ast.StringTerm("request")) {
				return false
			}
			if len(r) == 2 || !r[2].IsGround() {
				all = true
				return false
			}
			switch r[2].Value {
			case ast.String("case_ref"):
				kp.caseRef = true
			case ast.String("filter"):
				kp.filter = true
			case ast.String("limit"):
				kp.limit = true
			}
			return false
		})
	}
	if all {
		return keyParts{true, true, true}
	}
	return kp
}

// cacheKey returns the exact cache key of a request: every part of the input the policy
// can read, except the time, which the cache handles by validity intervals. The fields
// need no part of their own: an engine's schema catalog is fixed, so the dataset id
// determines them.
func cacheKey(req exchange.Request, kp keyParts) (string, error) {
	var b strings.Builder
	b.Grow(128)
	// Each string is length-prefixed, so no two different requests share a key.
	str := func(s string) {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	for _, s := range []string{req.Department, req.System, string(req.Action), req.Dataset, req.Purpose} {
		str(s)
	}
	if kp.caseRef {
		str(req.CaseRef)
	}
	b.WriteString(strconv.Itoa(len(req.Columns)))
	b.WriteByte('[')
	for _, c := range req.Columns {
		str(c)
	}
	if kp.filter && len(req.Filter) > 0 {
		raw, err := json.Marshal(req.Filter)
		if err != nil {
			return "", err
		}
		b.Write(raw)
	}
	if kp.limit {
		b.WriteString(strconv.FormatInt(req.Limit, 10))
	}
	return b.String(), nil
}
