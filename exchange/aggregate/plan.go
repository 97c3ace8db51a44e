package aggregate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"

	"govx/exchange"
	"govx/schemas"
)

// Plan is a query checked against the decision that allows it: ready to execute.
type Plan struct {
	Query   *Query
	Dataset *schemas.Dataset
	Terms   exchange.AggregateTerms
	// Filter is the decision's row filter ANDed with the query's WHERE.
	Filter []exchange.Filter

	// cols are the columns scanned: the partition's, then the measured ones.
	cols     []string
	measured []string // columns aggregated, once each
	group    []int    // for each GROUP BY column, its index in the partition
	schema   *arrow.Schema
}

// NewPlan plans q against dec, the policy's allowing decision for it. A query asking
// for more than the decision's aggregate terms is refused with a reason naming what:
// group_not_granted, measure_not_granted, or filter_not_groupable (a predicate on a
// column outside the partition could cut a suppressed cell out of an allowed group).
func NewPlan(q *Query, ds *schemas.Dataset, dec exchange.Decision) (*Plan, error) {
	if !dec.Allow || dec.Aggregate == nil {
		return nil, fmt.Errorf("aggregate: plan needs an allowing aggregate decision")
	}
	t := *dec.Aggregate
	deny := func(code, format string, args ...any) error {
		return exchange.Denied(exchange.Decision{Agreement: dec.Agreement, Revision: dec.Revision,
			Reasons: []exchange.Reason{{Code: code, Message: fmt.Sprintf(format, args...)}}})
	}
	p := &Plan{Query: q, Dataset: ds, Terms: t}
	for _, a := range q.aliases {
		if _, ok := ds.Field(a); ok {
			return nil, exchange.E(exchange.Invalid, "bad_query", fmt.Sprintf("GROUP BY %s names both a column of %s and an output alias; MySQL would group by the column: GROUP BY the column you mean by its own name", a, ds.ID))
		}
	}
	for _, c := range q.GroupBy {
		if !slices.Contains(t.GroupBy, c) {
			return nil, deny("group_not_granted", "agreement %s lets you group by %s only; not by %s", dec.Agreement, strings.Join(t.GroupBy, ", "), c)
		}
	}
	for _, it := range q.Items {
		if m := it.Measure(); m != "" && !slices.Contains(t.Measures, m) {
			return nil, deny("measure_not_granted", "agreement %s allows the measures %s; not %s", dec.Agreement, strings.Join(t.Measures, ", "), it.Name)
		}
	}
	for _, f := range q.Where {
		if !slices.Contains(t.GroupBy, f.Column) {
			return nil, deny("filter_not_groupable", "WHERE may test only the columns groups are formed by (%s), not %s: a predicate on another column could cut a suppressed group out of an allowed one, and two such answers subtracted would reveal it",
				strings.Join(t.GroupBy, ", "), f.Column)
		}
	}
	for _, c := range t.GroupBy {
		f, ok := ds.Field(c)
		if !ok || f.Kind() != schemas.KindString {
			return nil, fmt.Errorf("aggregate: the decision groups by %q, which is not a text column of %s", c, ds.ID)
		}
	}
	p.cols = slices.Clone(t.GroupBy)
	for _, it := range q.Items {
		if it.Column == "" || it.Fn == "" || slices.Contains(p.measured, it.Column) {
			continue
		}
		f, ok := ds.Field(it.Column)
		if !ok || !numeric(f) {
			return nil, deny("measure_not_granted", "%s needs a numeric column; %s is not one of %s", strings.ToUpper(it.Fn), it.Column, ds.ID)
		}
		p.measured = append(p.measured, it.Column)
		if !slices.Contains(p.cols, it.Column) {
			p.cols = append(p.cols, it.Column)
		}
	}
	for _, c := range q.GroupBy {
		p.group = append(p.group, slices.Index(t.GroupBy, c))
	}
	p.Filter = append(append([]exchange.Filter{}, dec.RowFilter...), q.Where...)
	p.schema = p.outputSchema()
	return p, nil
}

func numeric(f *schemas.Field) bool {
	k := f.Kind()
	return k == schemas.KindInt64 || k == schemas.KindFloat64 || k == schemas.KindDecimal
}

// Schema is the schema of the plan's answer: the output columns in SELECT order.
func (p *Plan) Schema() *arrow.Schema { return p.schema }

func (p *Plan) outputSchema() *arrow.Schema {
	fields := make([]arrow.Field, len(p.Query.Items))
	for i, it := range p.Query.Items {
		fields[i] = arrow.Field{Name: it.Name, Type: p.itemType(it), Nullable: it.Fn != FnCount}
	}
	return arrow.NewSchema(fields, nil)
}

// itemType is an output column's type: text for group columns, int64 for counts, the
// column's own type for sums (decimals widened to 38 digits), minima and maxima, and
// float64 for averages.
func (p *Plan) itemType(it Item) arrow.DataType {
	switch it.Fn {
	case "":
		return arrow.BinaryTypes.String
	case FnCount:
		return arrow.PrimitiveTypes.Int64
	case FnAvg:
		return arrow.PrimitiveTypes.Float64
	}
	f, _ := p.Dataset.Field(it.Column)
	t := f.ArrowType()
	if d, ok := t.(*arrow.Decimal128Type); ok && it.Fn == FnSum {
		return &arrow.Decimal128Type{Precision: 38, Scale: d.Scale}
	}
	return t
}
