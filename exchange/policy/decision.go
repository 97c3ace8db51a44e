package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"govx/exchange"
	"govx/schemas"
)

// CodePolicyError is the reason code of every denial the engine makes itself because
// the policy could not decide: an evaluation error, an undefined or malformed decision.
const CodePolicyError = "policy_error"

// masks are the masks the exchange knows how to apply; a decision naming another is
// malformed, since the exchange could not honour it.
var masks = []string{"id_card", "name", "phone", "address", "year", "hash", "null"}

// failClosed returns the deny decision for a policy that could not decide.
func failClosed(revision, format string, args ...any) exchange.Decision {
	return exchange.Decision{
		Reasons:  []exchange.Reason{{Code: CodePolicyError, Message: fmt.Sprintf(format, args...)}},
		Revision: revision,
	}
}

// parseDecision reads the policy's decision. Anything but a well-formed decision whose
// columns, masks and row filter fit the dataset is an error; the caller denies.
func parseDecision(t *ast.Term, ds *schemas.Dataset) (exchange.Decision, error) {
	var d exchange.Decision
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return d, fmt.Errorf("the decision is a %s, not an object", ast.ValueName(t.Value))
	}
	at := obj.Get(ast.StringTerm("allow"))
	if at == nil {
		return d, fmt.Errorf("the decision has no allow")
	}
	allow, ok := at.Value.(ast.Boolean)
	if !ok {
		return d, fmt.Errorf("the decision's allow is not a boolean")
	}
	if rs := obj.Get(ast.StringTerm("reasons")); rs != nil {
		arr, ok := rs.Value.(*ast.Array)
		if !ok {
			return d, fmt.Errorf("the decision's reasons is not an array")
		}
		for i := range arr.Len() {
			r, ok := arr.Elem(i).Value.(ast.Object)
			if !ok {
				return d, fmt.Errorf("reason %d is not an object", i)
			}
			code, ok1 := stringOf(r.Get(ast.StringTerm("code")))
			msg, ok2 := stringOf(r.Get(ast.StringTerm("message")))
			if !ok1 || !ok2 || code == "" {
				return d, fmt.Errorf("reason %d needs a code and a message", i)
			}
			d.Reasons = append(d.Reasons, exchange.Reason{Code: code, Message: msg})
		}
	}
	if !allow {
		if len(d.Reasons) == 0 {
			return d, fmt.Errorf("the decision denies without a reason")
		}
		return d, nil
	}
	if len(d.Reasons) > 0 {
		return d, fmt.Errorf("the decision allows but gives reasons to deny")
	}
	if ds == nil {
		return d, fmt.Errorf("the decision allows a dataset without a schema")
	}
	cols, ok := stringsOf(obj.Get(ast.StringTerm("columns")))
	if !ok || len(cols) == 0 {
		return d, fmt.Errorf("the decision allows without columns")
	}
	for _, c := range cols {
		if _, ok := ds.Field(c); !ok {
			return d, fmt.Errorf("the decision grants column %q, which %s does not have", c, ds.ID)
		}
	}
	d.Columns = cols
	if m := obj.Get(ast.StringTerm("masks")); m != nil {
		mo, ok := m.Value.(ast.Object)
		if !ok {
			return d, fmt.Errorf("the decision's masks is not an object")
		}
		d.Masks = make(map[string]string, mo.Len())
		var err error
		mo.Foreach(func(k, v *ast.Term) {
			c, ok1 := stringOf(k)
			mask, ok2 := stringOf(v)
			switch {
			case !ok1 || !ok2:
				err = fmt.Errorf("the decision's masks must map column names to mask names")
			case !slices.Contains(cols, c):
				err = fmt.Errorf("the decision masks column %q, which it does not grant", c)
			case !slices.Contains(masks, mask):
				err = fmt.Errorf("the decision names mask %q, which the exchange does not have", mask)
			}
			d.Masks[c] = mask
		})
		if err != nil {
			return d, err
		}
	}
	if rf := obj.Get(ast.StringTerm("row_filter")); rf != nil {
		arr, ok := rf.Value.(*ast.Array)
		if !ok {
			return d, fmt.Errorf("the decision's row_filter is not an array")
		}
		for i := range arr.Len() {
			f, ok := arr.Elem(i).Value.(ast.Object)
			if !ok {
				return d, fmt.Errorf("row filter %d is not an object", i)
			}
			col, ok1 := stringOf(f.Get(ast.StringTerm("column")))
			op, ok2 := stringOf(f.Get(ast.StringTerm("op")))
			if !ok1 || !ok2 || !exchange.ValidOp(op) {
				return d, fmt.Errorf("row filter %d needs a column and a known op", i)
			}
			if _, ok := ds.Field(col); !ok {
				return d, fmt.Errorf("row filter %d is on column %q, which %s does not have", i, col, ds.ID)
			}
			var val any
			if v := f.Get(ast.StringTerm("value")); v != nil {
				j, err := ast.JSON(v.Value)
				if err != nil {
					return d, fmt.Errorf("row filter %d: %w", i, err)
				}
				val = j
			}
			d.RowFilter = append(d.RowFilter, exchange.Filter{Column: col, Op: op, Value: val})
		}
	}
	if mr := obj.Get(ast.StringTerm("max_rows")); mr != nil {
		n, ok := mr.Value.(ast.Number)
		if !ok {
			return d, fmt.Errorf("the decision's max_rows is not a number")
		}
		v, err := json.Number(n).Int64()
		if err != nil || v < 0 {
			return d, fmt.Errorf("the decision's max_rows %s is not a count", n)
		}
		d.MaxRows = v
	}
	if a := obj.Get(ast.StringTerm("agreement")); a != nil {
		s, ok := stringOf(a)
		if !ok {
			return d, fmt.Errorf("the decision's agreement is not a string")
		}
		d.Agreement = s
	}
	if ag := obj.Get(ast.StringTerm("aggregate")); ag != nil {
		terms, err := parseAggregate(ag, ds)
		if err != nil {
			return d, err
		}
		d.Aggregate = terms
	}
	d.Allow = true
	return d, nil
}

// parseAggregate reads an aggregate decision's terms; an empty object (every other
// action's) is none. Group-by and measure columns must be the dataset's, a minimum group
// size at least 2: suppression is what makes an aggregate safe to share.
func parseAggregate(t *ast.Term, ds *schemas.Dataset) (*exchange.AggregateTerms, error) {
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("the decision's aggregate is not an object")
	}
	if obj.Len() == 0 {
		return nil, nil
	}
	groups, ok1 := stringsOf(obj.Get(ast.StringTerm("group_by")))
	measures, ok2 := stringsOf(obj.Get(ast.StringTerm("measures")))
	if !ok1 || !ok2 || len(groups) == 0 || len(measures) == 0 {
		return nil, fmt.Errorf("the decision's aggregate needs group_by and measures")
	}
	for _, c := range groups {
		if _, ok := ds.Field(c); !ok {
			return nil, fmt.Errorf("the decision's aggregate groups by %q, which %s does not have", c, ds.ID)
		}
	}
	for _, m := range measures {
		if m == "count" {
			continue
		}
		fn, col, ok := strings.Cut(m, ":")
		if _, known := ds.Field(col); !ok || !known || !slices.Contains([]string{"sum", "avg", "min", "max"}, fn) {
			return nil, fmt.Errorf("the decision's aggregate measure %q is not count or sum|avg|min|max of a column of %s", m, ds.ID)
		}
	}
	mg := obj.Get(ast.StringTerm("min_group_size"))
	if mg == nil {
		return nil, fmt.Errorf("the decision's aggregate has no min_group_size")
	}
	n, ok := mg.Value.(ast.Number)
	if !ok {
		return nil, fmt.Errorf("the decision's aggregate has no min_group_size")
	}
	k, err := json.Number(n).Int64()
	if err != nil || k < 2 {
		return nil, fmt.Errorf("the decision's aggregate min_group_size %s is not a count of at least 2", n)
	}
	return &exchange.AggregateTerms{GroupBy: groups, Measures: measures, MinGroupSize: k}, nil
}

func stringOf(t *ast.Term) (string, bool) {
	if t == nil {
		return "", false
	}
	s, ok := t.Value.(ast.String)
	return string(s), ok
}

func stringsOf(t *ast.Term) ([]string, bool) {
	if t == nil {
		return nil, false
	}
	arr, ok := t.Value.(*ast.Array)
	if !ok {
		return nil, false
	}
	out := make([]string, arr.Len())
	for i := range arr.Len() {
		s, ok := stringOf(arr.Elem(i))
		if !ok {
			return nil, false
		}
		out[i] = s
	}
	return out, true
}
