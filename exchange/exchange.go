// Package exchange is the core vocabulary shared by the exchange's parts: who asks
// (Subject), what they ask for (Request), what the sharing policy answers (Decision) and
// the one typed error (Error) that the Flight and HTTP edges map to protocol codes.
// Implementations live in sub-packages (exchange/policy, exchange/store, exchange/flight,
// …); this package holds only types, so every part can import it and it imports nothing
// of ours.
package exchange

import "time"

// Subject is the caller of a request: a department and, optionally, one of its systems.
// It comes from the caller's token or client certificate only, never from the request
// body, so a department cannot speak for another.
type Subject struct {
	Department string `json:"department"`
	System     string `json:"system,omitempty"`
}

// String returns "dept" or "dept/system", the form the CLI's --as flag takes.
func (s Subject) String() string {
	if s.System == "" {
		return s.Department
	}
	return s.Department + "/" + s.System
}

// Action is what a request does with a dataset. The policy grants actions one by one.
type Action string

// The actions. Verify (核验) checks claims against stored values and never returns the
// values; discover lists a dataset in the caller's catalog; aggregate answers counts and
// sums over groups no smaller than the decision's minimum, never rows.
const (
	ActionRead      Action = "read"
	ActionChanges   Action = "changes"
	ActionLookup    Action = "lookup"
	ActionVerify    Action = "verify"
	ActionDiscover  Action = "discover"
	ActionAggregate Action = "aggregate"
)

// Actions returns every action, in the order the documentation lists them.
func Actions() []Action {
	return []Action{ActionRead, ActionChanges, ActionLookup, ActionVerify, ActionDiscover, ActionAggregate}
}

// Valid reports whether a is one of the defined actions.
func (a Action) Valid() bool {
	switch a {
	case ActionRead, ActionChanges, ActionLookup, ActionVerify, ActionDiscover, ActionAggregate:
		return true
	}
	return false
}

// The filter operators. A filter is structured data, never SQL text.
const (
	OpEq     = "eq"
	OpNe     = "ne"
	OpIn     = "in"
	OpPrefix = "prefix"
	OpLt     = "lt"
	OpLe     = "le"
	OpGt     = "gt"
	OpGe     = "ge"
	OpIsNull = "is_null"
)

// ValidOp reports whether op is one of the filter operators.
func ValidOp(op string) bool {
	switch op {
	case OpEq, OpNe, OpIn, OpPrefix, OpLt, OpLe, OpGt, OpGe, OpIsNull:
		return true
	}
	return false
}

// Filter is one condition on a column. Filters in a list are ANDed.
type Filter struct {
	Column string `json:"column"`
	Op     string `json:"op"`
	Value  any    `json:"value,omitempty"`
}

// Request is one request to the exchange, as the policy sees it.
type Request struct {
	Subject
	Action  Action
	Dataset string
	// Columns lists the columns asked for; none means every granted column.
	Columns []string
	Filter  []Filter
	// Purpose names why the data is needed (e.g. "minimum-living-allowance-review");
	// conditional datasets are shared per purpose.
	Purpose string
	// CaseRef is the case (办件编号) the request serves, for the audit log.
	CaseRef string
	Limit   int64
	// Time is when the request is decided; agreement validity is judged at this time.
	Time time.Time
}

// Decision is the policy's answer to a Request. A zero Decision denies.
type Decision struct {
	Allow bool `json:"allow"`
	// Reasons explain a denial; each has a stable code (see docs/policies.md).
	Reasons []Reason `json:"reasons"`
	// Columns are the columns to return, in order.
	Columns []string `json:"columns"`
	// Masks maps a column to the mask applied to it; columns not named are returned as
	// stored.
	Masks map[string]string `json:"masks"`
	// RowFilter is ANDed with the caller's own filter by the exchange, on the server.
	RowFilter []Filter `json:"row_filter"`
	// MaxRows caps a result; a larger result is refused, never truncated. 0: no cap.
	MaxRows int64 `json:"max_rows"`
	// Agreement is the sharing agreement (共享协议) that granted the request, if any.
	Agreement string `json:"agreement"`
	// Revision identifies the policies and data that made the decision.
	Revision string `json:"revision"`
	// Aggregate is set by an allowing decision for action aggregate: what the caller may
	// group by and measure, and the smallest group it may see.
	Aggregate *AggregateTerms `json:"aggregate,omitempty"`
}

// AggregateTerms are an aggregate decision's terms. GroupBy is the fixed partition
// suppression works on; Measures are "count" or "fn:column" with fn sum, avg, min or max.
type AggregateTerms struct {
	GroupBy      []string `json:"group_by"`
	Measures     []string `json:"measures"`
	MinGroupSize int64    `json:"min_group_size"`
}

// Reason is one explanation of a denial: a stable code for programs and a message for
// people.
type Reason struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
