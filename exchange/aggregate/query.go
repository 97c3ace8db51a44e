package aggregate

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/opcode"
	"github.com/pingcap/tidb/pkg/parser/test_driver" // the parser's literal values without TiDB's type system

	"govx/exchange"
)

// MaxQueryBytes bounds the text of one query: a query names a few columns.
const MaxQueryBytes = 8 << 10

// The aggregate functions.
const (
	FnCount = "count"
	FnSum   = "sum"
	FnAvg   = "avg"
	FnMin   = "min"
	FnMax   = "max"
)

// Item is one output column of a query: a group column (Fn empty) or an aggregate.
type Item struct {
	// Name is the output column's name: the alias, or the column, or fn(column).
	Name string
	// Column is the group column, or the aggregated column ("" for COUNT(*)).
	Column string
	// Fn is "" for a group column, else one of count, sum, avg, min, max.
	Fn string
}

// Measure is the item's measure as decisions name them: "count" or "fn:column"; "" for
// a group column.
func (it Item) Measure() string {
	switch {
	case it.Fn == "":
		return ""
	case it.Fn == FnCount:
		return FnCount
	}
	return it.Fn + ":" + it.Column
}

// Order is one ORDER BY key: an index into Items.
type Order struct {
	Item int
	Desc bool
}

// Query is a parsed aggregate query.
type Query struct {
	// Text is the query as given, for the audit log.
	Text    string
	Dataset string
	Items   []Item
	GroupBy []string
	Where   []exchange.Filter
	OrderBy []Order
	// Limit is the most groups returned; 0: no limit.
	Limit int64

	names tableNames
	// aliases are the GROUP BY names read as output aliases (MySQL looks for a column of
	// the table first): NewPlan refuses the query if one is a column of the dataset too.
	aliases []string
}

// Columns returns every column the query reads — group columns, aggregated columns and
// filtered columns — once each, in order of first mention: what the policy is asked for.
func (q *Query) Columns() []string {
	var cols []string
	add := func(c string) {
		if c != "" && !slices.Contains(cols, c) {
			cols = append(cols, c)
		}
	}
	for _, c := range q.GroupBy {
		add(c)
	}
	for _, it := range q.Items {
		add(it.Column)
	}
	for _, f := range q.Where {
		add(f.Column)
	}
	return cols
}

func invalid(code, format string, args ...any) *exchange.Error {
	return exchange.E(exchange.Invalid, code, fmt.Sprintf(format, args...))
}

// rowQuery is the refusal of a query that would return rows instead of aggregates.
func rowQuery(format string, args ...any) *exchange.Error {
	return exchange.Denied(exchange.Decision{Reasons: []exchange.Reason{{Code: "row_query",
		Message: fmt.Sprintf(format, args...) + "; aggregate access returns only group columns and COUNT(*), SUM, AVG, MIN, MAX over groups"}}})
}

// Parse parses one aggregate query. Anything outside the accepted subset is an error
// naming what is not accepted; a query that would return rows is refused with reason
// row_query. Parse never panics, whatever the input (FuzzParse).
func Parse(text string) (q *Query, err error) {
	if len(text) > MaxQueryBytes {
		return nil, invalid("query_too_large", "the query is longer than %d bytes", MaxQueryBytes)
	}
	if strings.TrimSpace(text) == "" {
		return nil, invalid("bad_query", "the query is empty; write SELECT <group columns>, COUNT(*) FROM <dataset> GROUP BY <group columns>")
	}
	if hasComment(text) {
		return nil, invalid("unsupported_sql", "comments (/* … */, -- and #) are not answered: MySQL runs some of them (/*! … */, /*+ … */), so the query audited would not say what was run; remove them")
	}
	defer func() {
		// The parser is a kept library, but its input is anyone's: a panic in it is an
		// invalid query, not a crashed exchange.
		if r := recover(); r != nil {
			q, err = nil, invalid("bad_query", "the query could not be parsed")
		}
	}()
	stmts, _, perr := parser.New().ParseSQL(text)
	if perr != nil {
		return nil, invalid("bad_query", "the query is not SQL the exchange reads: %s", firstLine(perr.Error()))
	}
	if len(stmts) != 1 {
		return nil, invalid("bad_query", "send one SELECT statement, not %d statements", len(stmts))
	}
	sel, ok := stmts[0].(*ast.SelectStmt)
	if !ok {
		return nil, invalid("unsupported_sql", "only SELECT is answered")
	}
	q = &Query{Text: text}
	if err := q.from(sel); err != nil {
		return nil, err
	}
	if err := q.qualifiers(sel); err != nil {
		return nil, err
	}
	if err := q.groupBy(sel); err != nil {
		return nil, err
	}
	if err := q.fields(sel); err != nil {
		return nil, err
	}
	if sel.Where != nil {
		if err := q.where(sel.Where); err != nil {
			return nil, err
		}
	}
	if err := q.orderBy(sel); err != nil {
		return nil, err
	}
	if err := q.limit(sel); err != nil {
		return nil, err
	}
	return q, nil
}

// hasComment reports whether text holds a comment outside its quoted strings and names,
// read as MySQL's lexer reads them: '…', "…" and `…`, a quote doubled or (in strings)
// escaped with a backslash.
func hasComment(text string) bool {
	var quote byte
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case quote != 0 && c == '\\' && quote != '`':
			i++ // the escaped character
		case quote != 0 && c == quote:
			if i+1 < len(text) && text[i+1] == quote {
				i++ // a doubled quote
			} else {
				quote = 0
			}
		case quote != 0:
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == '#', c == '/' && strings.HasPrefix(text[i:], "/*"):
			return true
		case c == '-' && strings.HasPrefix(text[i:], "--") && (i+2 == len(text) || text[i+2] <= ' '):
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// tableNames are the names a column may be qualified with: the dataset, its entity
// name and the table's alias.
type tableNames []string

func (q *Query) from(sel *ast.SelectStmt) error {
	switch {
	case sel.Kind != ast.SelectStmtKindSelect || sel.Lists != nil:
		return invalid("unsupported_sql", "only SELECT … FROM is answered (no VALUES or TABLE)")
	case sel.Distinct || sel.SelectStmtOpts != nil && (sel.SelectStmtOpts.Distinct || sel.SelectStmtOpts.CalcFoundRows || len(sel.SelectStmtOpts.TableHints) > 0):
		return invalid("unsupported_sql", "SELECT DISTINCT and SELECT options are not answered; GROUP BY the columns instead")
	case sel.Having != nil:
		return invalid("unsupported_sql", "HAVING is not answered: groups below the agreement's minimum size are suppressed by the exchange")
	case len(sel.WindowSpecs) > 0, sel.LockInfo != nil, len(sel.TableHints) > 0, sel.SelectIntoOpt != nil, sel.With != nil:
		return invalid("unsupported_sql", "WITH, WINDOW, INTO, locking clauses and hints are not answered")
	case sel.From == nil || sel.From.TableRefs == nil:
		return invalid("bad_query", "name the dataset: FROM <register>.<entity>, e.g. FROM population.person")
	}
	j := sel.From.TableRefs
	if j.Right != nil {
		return invalid("unsupported_sql", "joins are not answered: query one dataset")
	}
	ts, ok := j.Left.(*ast.TableSource)
	if !ok {
		return invalid("unsupported_sql", "FROM must name one dataset, not a subquery or a join")
	}
	tn, ok := ts.Source.(*ast.TableName)
	if !ok {
		return invalid("unsupported_sql", "FROM must name one dataset, not a subquery")
	}
	if len(tn.IndexHints) > 0 || len(tn.PartitionNames) > 0 || tn.TableSample != nil || tn.AsOf != nil || ts.Lateral {
		return invalid("unsupported_sql", "index hints, partitions, samples and AS OF are not answered")
	}
	q.Dataset = tn.Name.O
	if tn.Schema.O != "" {
		q.Dataset = tn.Schema.O + "." + tn.Name.O
	}
	q.names = tableNames{q.Dataset, tn.Name.O}
	if ts.AsName.O != "" {
		q.names = append(q.names, ts.AsName.O)
	}
	return nil
}

// column returns the name of a column reference, checking its qualifier. Column names
// are case-insensitive, as in MySQL: the catalog's are lower_snake_case.
func (q *Query) column(e ast.ExprNode) (string, bool) {
	c, ok := e.(*ast.ColumnNameExpr)
	if !ok || c.Name == nil || q.foreign(c.Name) != "" {
		return "", false
	}
	return c.Name.Name.L, true
}

// foreign returns the qualifier of a column reference that names another table than
// the dataset ("" when there is none or it names the dataset).
func (q *Query) foreign(n *ast.ColumnName) string {
	if n.Table.O == "" {
		return ""
	}
	qual := n.Table.O
	if n.Schema.O != "" {
		qual = n.Schema.O + "." + qual
	}
	if slices.Contains(q.names, qual) {
		return ""
	}
	return qual
}

// qualifiers refuses a column qualified with another table than the dataset, by name,
// before a clause refuses it as something it does not take.
func (q *Query) qualifiers(sel *ast.SelectStmt) error {
	v := &qualifierCheck{q: q}
	sel.Accept(v)
	if v.bad != "" {
		return invalid("bad_query", "unknown table %s: the query reads %s only; qualify its columns with %s, or not at all", v.bad, q.Dataset, strings.Join(q.names, " or "))
	}
	return nil
}

type qualifierCheck struct {
	q   *Query
	bad string
}

func (v *qualifierCheck) Enter(n ast.Node) (ast.Node, bool) {
	if c, ok := n.(*ast.ColumnName); ok && v.bad == "" {
		v.bad = v.q.foreign(c)
	}
	return n, v.bad != ""
}

func (v *qualifierCheck) Leave(n ast.Node) (ast.Node, bool) { return n, true }

func (q *Query) groupBy(sel *ast.SelectStmt) error {
	if sel.GroupBy == nil {
		return nil
	}
	if sel.GroupBy.Rollup {
		return invalid("unsupported_sql", "GROUP BY … WITH ROLLUP is not answered")
	}
	for _, it := range sel.GroupBy.Items {
		c, ok := q.column(it.Expr)
		if !ok {
			return invalid("unsupported_sql", "GROUP BY takes column names of %s, or aliases of selected columns, only", q.Dataset)
		}
		c = q.unalias(sel, c)
		if slices.Contains(q.GroupBy, c) {
			return invalid("duplicate_column", "GROUP BY names %q twice", c)
		}
		q.GroupBy = append(q.GroupBy, c)
	}
	return nil
}

// unalias returns the column a GROUP BY name stands for: the column selected AS that
// name, if one is and the name is not itself selected as a column; else the name.
func (q *Query) unalias(sel *ast.SelectStmt, name string) string {
	if sel.Fields == nil {
		return name
	}
	col := ""
	for _, f := range sel.Fields.Fields {
		c, ok := q.column(f.Expr)
		switch {
		case !ok:
		case c == name && f.AsName.O == "":
			return name
		case strings.EqualFold(f.AsName.O, name) && c != name:
			col = c
		}
	}
	if col == "" {
		return name
	}
	q.aliases = append(q.aliases, name)
	return col
}

func (q *Query) fields(sel *ast.SelectStmt) error {
	if sel.Fields == nil || len(sel.Fields.Fields) == 0 {
		return invalid("bad_query", "select group columns and aggregates")
	}
	aggregates := 0
	for _, f := range sel.Fields.Fields {
		if f.WildCard != nil {
			return rowQuery("SELECT * returns rows")
		}
		it, err := q.item(f.Expr)
		if err != nil {
			return err
		}
		if f.AsName.O != "" {
			it.Name = f.AsName.O
		}
		for _, prev := range q.Items {
			if prev.Name == it.Name {
				return invalid("duplicate_column", "two output columns are named %q; give one an alias (AS name)", it.Name)
			}
		}
		if it.Fn != "" {
			aggregates++
		}
		q.Items = append(q.Items, it)
	}
	if aggregates == 0 && len(q.GroupBy) == 0 {
		return rowQuery("the query selects columns without GROUP BY or an aggregate")
	}
	return nil
}

func (q *Query) item(e ast.ExprNode) (Item, error) {
	if c, ok := q.column(e); ok {
		if !slices.Contains(q.GroupBy, c) {
			return Item{}, rowQuery("column %q is selected but not grouped by, which would return rows", c)
		}
		return Item{Name: c, Column: c}, nil
	}
	a, ok := e.(*ast.AggregateFuncExpr)
	if !ok {
		return Item{}, invalid("unsupported_sql", "select group columns and COUNT(*), SUM(col), AVG(col), MIN(col), MAX(col) only; expressions are not answered")
	}
	fn := strings.ToLower(a.F)
	if !slices.Contains([]string{FnCount, FnSum, FnAvg, FnMin, FnMax}, fn) {
		return Item{}, invalid("unsupported_sql", "aggregate %s is not answered; use COUNT(*), SUM, AVG, MIN or MAX", strings.ToUpper(fn))
	}
	if a.Distinct || a.Order != nil || len(a.Args) != 1 {
		return Item{}, invalid("unsupported_sql", "%s takes one column, without DISTINCT or ORDER BY", strings.ToUpper(fn))
	}
	if fn == FnCount {
		if v, ok := a.Args[0].(*test_driver.ValueExpr); ok && isOne(v.GetValue()) {
			return Item{Name: "count(*)", Fn: FnCount}, nil
		}
		return Item{}, invalid("unsupported_sql", "count rows with COUNT(*); COUNT(column) is not answered")
	}
	c, ok := q.column(a.Args[0])
	if !ok {
		return Item{}, invalid("unsupported_sql", "%s takes a column name of %s", strings.ToUpper(fn), q.Dataset)
	}
	return Item{Name: fn + "(" + c + ")", Column: c, Fn: fn}, nil
}

func isOne(v any) bool {
	switch n := v.(type) {
	case int64:
		return n == 1
	case uint64:
		return n == 1
	}
	return false
}

func (q *Query) where(e ast.ExprNode) error {
	switch x := e.(type) {
	case *ast.ParenthesesExpr:
		return q.where(x.Expr)
	case *ast.BinaryOperationExpr:
		if x.Op == opcode.LogicAnd {
			if err := q.where(x.L); err != nil {
				return err
			}
			return q.where(x.R)
		}
		op, ok := compareOps[x.Op]
		if !ok {
			return invalid("unsupported_sql", "WHERE takes comparisons joined by AND; %s is not answered", x.Op)
		}
		col, okc := q.column(x.L)
		val, okv := literal(x.R)
		if !okc || !okv {
			// Written the other way round: 'v' = col.
			col, okc = q.column(x.R)
			val, okv = literal(x.L)
			op = flipped[op]
		}
		if !okc || !okv {
			return invalid("unsupported_sql", "WHERE compares a column with a literal value only")
		}
		q.Where = append(q.Where, exchange.Filter{Column: col, Op: op, Value: val})
	case *ast.PatternInExpr:
		col, ok := q.column(x.Expr)
		if !ok || x.Not || x.Sel != nil {
			return invalid("unsupported_sql", "IN takes a column and a list of literal values (NOT IN and subqueries are not answered)")
		}
		vals := make([]any, 0, len(x.List))
		for _, v := range x.List {
			lv, ok := literal(v)
			if !ok {
				return invalid("unsupported_sql", "IN takes literal values only")
			}
			vals = append(vals, lv)
		}
		q.Where = append(q.Where, exchange.Filter{Column: col, Op: exchange.OpIn, Value: vals})
	case *ast.PatternLikeOrIlikeExpr:
		col, okc := q.column(x.Expr)
		pat, okp := literal(x.Pattern)
		s, isString := pat.(string)
		if !okc || !okp || !isString || x.Not || !x.IsLike {
			return invalid("unsupported_sql", "LIKE takes a column and a literal pattern 'prefix%%' (NOT LIKE and ILIKE are not answered)")
		}
		prefix, wild, err := likePrefix(s, x.Escape)
		if err != nil {
			return err
		}
		op := exchange.OpPrefix
		if !wild {
			op = exchange.OpEq
		}
		q.Where = append(q.Where, exchange.Filter{Column: col, Op: op, Value: prefix})
	case *ast.IsNullExpr:
		col, ok := q.column(x.Expr)
		if !ok {
			return invalid("unsupported_sql", "IS NULL takes a column")
		}
		q.Where = append(q.Where, exchange.Filter{Column: col, Op: exchange.OpIsNull, Value: !x.Not})
	default:
		return invalid("unsupported_sql", "WHERE takes comparisons of columns with literal values joined by AND (=, <>, <, <=, >, >=, IN, LIKE 'prefix%%', IS [NOT] NULL)")
	}
	if n := len(q.Where); n > maxPredicates {
		return invalid("unsupported_sql", "WHERE takes at most %d predicates", maxPredicates)
	}
	return nil
}

const maxPredicates = 32

// likePrefix reads a LIKE pattern that matches a prefix: literal characters, each % or
// _ among them written after the escape character, and at most one trailing %. It
// returns the prefix and whether the pattern ended in %.
func likePrefix(pattern string, escape byte) (prefix string, wild bool, err error) {
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch {
		case c == escape && i+1 < len(pattern):
			i++
			b.WriteByte(pattern[i])
		case c == '%' && i == len(pattern)-1:
			wild = true
		case c == '%' || c == '_':
			return "", false, invalid("unsupported_sql", "LIKE answers only a prefix, 'abc%%': %q is a wildcard here; for the character itself write %c%c", c, escape, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), wild, nil
}

var compareOps = map[opcode.Op]string{
	opcode.EQ: exchange.OpEq, opcode.NE: exchange.OpNe, opcode.LT: exchange.OpLt,
	opcode.LE: exchange.OpLe, opcode.GT: exchange.OpGt, opcode.GE: exchange.OpGe,
}

var flipped = map[string]string{
	exchange.OpEq: exchange.OpEq, exchange.OpNe: exchange.OpNe, exchange.OpLt: exchange.OpGt,
	exchange.OpLe: exchange.OpGe, exchange.OpGt: exchange.OpLt, exchange.OpGe: exchange.OpLe,
}

// literal returns a literal's value as filters take it: a string, an int64 or a
// float64; a decimal literal is passed as its text, which the store reads exactly.
func literal(e ast.ExprNode) (any, bool) {
	v, ok := e.(*test_driver.ValueExpr)
	if !ok {
		return nil, false
	}
	switch x := v.GetValue().(type) {
	case string:
		return x, true
	case int64:
		return x, true
	case uint64:
		if x > math.MaxInt64 {
			return nil, false
		}
		return int64(x), true
	case float64:
		return x, true
	case *test_driver.MyDecimal:
		return x.String(), true
	}
	return nil, false
}

func (q *Query) orderBy(sel *ast.SelectStmt) error {
	if sel.OrderBy == nil {
		return nil
	}
	for _, it := range sel.OrderBy.Items {
		i := -1
		if p, ok := it.Expr.(*ast.PositionExpr); ok && p.P == nil {
			if p.N >= 1 && p.N <= len(q.Items) {
				i = p.N - 1
			}
		} else if c, ok := q.column(it.Expr); ok {
			i = slices.IndexFunc(q.Items, func(x Item) bool { return strings.EqualFold(x.Name, c) })
		} else if a, ok := it.Expr.(*ast.AggregateFuncExpr); ok {
			if x, err := q.item(a); err == nil {
				i = slices.IndexFunc(q.Items, func(y Item) bool { return y.Fn == x.Fn && y.Column == x.Column })
			}
		}
		if i < 0 {
			return invalid("unsupported_sql", "ORDER BY takes output columns: their names, aliases or positions (1…%d)", len(q.Items))
		}
		q.OrderBy = append(q.OrderBy, Order{Item: i, Desc: it.Desc})
	}
	return nil
}

func (q *Query) limit(sel *ast.SelectStmt) error {
	if sel.Limit == nil {
		return nil
	}
	if sel.Limit.Offset != nil {
		return invalid("unsupported_sql", "LIMIT takes a count only (no OFFSET)")
	}
	v, ok := literal(sel.Limit.Count)
	n, isInt := v.(int64)
	if !ok || !isInt || n < 1 {
		return invalid("unsupported_sql", "LIMIT takes a whole number of at least 1")
	}
	q.Limit = n
	return nil
}
