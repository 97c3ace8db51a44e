package service

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"govx/exchange"
	"govx/exchange/aggregate"
	"govx/exchange/audit"
	"govx/exchange/auth"
)

// AggregateCmd is an aggregate query as the edges receive it: the SQL text and why it is
// asked. Flight SQL carries the purpose and case in call headers, HTTP in the body.
type AggregateCmd struct {
	SQL     string `json:"sql"`
	Purpose string `json:"purpose"`
	CaseRef string `json:"case_ref,omitempty"`
	// Dataset, when set, is the dataset the edge addressed (HTTP's URL): the query
	// must read it.
	Dataset string `json:"-"`
}

// ParseAggregateCmd decodes an aggregate command ({"sql":…, "purpose":…, "case_ref":…})
// strictly.
func ParseAggregateCmd(data []byte) (AggregateCmd, error) {
	var cmd AggregateCmd
	err := decodeStrict(data, &cmd)
	return cmd, err
}

// Metadata keys of an aggregate answer's schema, besides the request id, agreement and
// policy revision every answer carries. The answer never says how many cells were
// suppressed: for a cell a WHERE addresses, that number tells an empty cell (0) from
// one of a few rows (1). The audit keeps it.
const (
	MetaSuppression  = "govx.suppression"
	MetaMinGroupSize = "govx.min_group_size"
)

// suppressionNote is what every aggregate answer says about suppression, whatever it
// suppressed.
func suppressionNote(minGroupSize int64) string {
	return fmt.Sprintf("cells of fewer than %d rows are suppressed: not shown and counted in no group", minGroupSize)
}

// AggregateGrant is an allowed, audited aggregate query, planned and ready to run.
// Flight seals it into a ticket (the plan is made again when it is redeemed).
type AggregateGrant struct {
	auth.Expiring
	RequestID  string                  `json:"rid"`
	Subject    exchange.Subject        `json:"sub"`
	ClientAddr string                  `json:"addr,omitempty"`
	Dataset    string                  `json:"ds"`
	SQL        string                  `json:"sql"`
	Purpose    string                  `json:"purpose,omitempty"`
	CaseRef    string                  `json:"case,omitempty"`
	Agreement  string                  `json:"agr,omitempty"`
	Revision   string                  `json:"rev,omitempty"`
	Terms      exchange.AggregateTerms `json:"terms"`
	// Instance and Boot name the replica, and its run, that issued the ticket, as for
	// pull tickets: only there is its single use recorded.
	Instance string `json:"inst,omitempty"`
	Boot     string `json:"boot,omitempty"`

	plan *aggregate.Plan
}

// Schema is the schema the grant's answer has.
func (g *AggregateGrant) Schema() *arrow.Schema { return g.plan.Schema() }

const aggregateTicketPurpose = "govx-aggregate-ticket-v1"

// aggregateLimits bound an aggregate decision's event: its text fields may hold a whole
// query (aggregate.Parse refuses longer ones), so that the audit keeps the text as sent.
var aggregateLimits = func() audit.Limits {
	l := audit.DefaultLimits
	l.Text = len("query: ") + aggregate.MaxQueryBytes
	return l
}()

// OpenAggregate decides an aggregate query: it parses the SQL, asks the policy (action
// aggregate, for every column the query reads), plans the query against the decision,
// and durably audits the decision with the query text and the plan. Only an allowed,
// planned, audited query returns a grant.
func (s *Service) OpenAggregate(ctx context.Context, c Caller, cmd AggregateCmd) (*AggregateGrant, error) {
	g, _, err := s.planAggregate(ctx, c, cmd, newRequestID(), true)
	return g, err
}

// planAggregate is OpenAggregate; audit false plans without recording (a redeemed
// ticket, whose decision was recorded when it was issued).
func (s *Service) planAggregate(ctx context.Context, c Caller, cmd AggregateCmd, rid string, record bool) (*AggregateGrant, exchange.Decision, error) {
	req := exchange.Request{Subject: c.Subject, Action: exchange.ActionAggregate, Purpose: cmd.Purpose, CaseRef: cmd.CaseRef, Time: s.now()}
	notes := []string{"query: " + cmd.SQL}
	refuse := func(dec exchange.Decision, err error) (*AggregateGrant, exchange.Decision, error) {
		if record {
			if aerr := s.auditDecisionLimited(ctx, c, rid, req, dec, nil, err, aggregateLimits, notes...); aerr != nil {
				return nil, dec, aerr
			}
		}
		return nil, dec, err
	}
	q, err := aggregate.Parse(cmd.SQL)
	if err == nil && cmd.Dataset != "" && q.Dataset != cmd.Dataset {
		req.Dataset = cmd.Dataset
		err = invalid("dataset_mismatch", "the query reads dataset "+quote(q.Dataset)+" but the request names "+quote(cmd.Dataset))
	}
	if err != nil {
		return refuse(exchange.Decision{}, err)
	}
	req.Dataset, req.Columns, req.Filter = q.Dataset, q.Columns(), q.Where
	d, _, dec, err := s.decide(ctx, c, req)
	if err != nil {
		return refuse(dec, err)
	}
	if dec.Aggregate == nil {
		s.log.Error("policy allowed aggregate without terms", "dataset", d.ID, "revision", dec.Revision)
		return refuse(exchange.Decision{Revision: dec.Revision}, exchange.E(exchange.PermissionDenied, "policy_error",
			"the sharing policy allowed an aggregate without its terms; ask the data steward"))
	}
	p, err := aggregate.NewPlan(q, d, dec)
	if err != nil {
		return refuse(dec, err)
	}
	notes = append(notes, planNote(dec))
	if record {
		if err := s.auditDecisionLimited(ctx, c, rid, req, dec, nil, nil, aggregateLimits, notes...); err != nil {
			return nil, dec, err
		}
	}
	return &AggregateGrant{RequestID: rid, Subject: c.Subject, ClientAddr: c.ClientAddr, Dataset: d.ID, SQL: cmd.SQL,
		Purpose: cmd.Purpose, CaseRef: cmd.CaseRef, Agreement: dec.Agreement, Revision: dec.Revision, Terms: *dec.Aggregate, plan: p}, dec, nil
}

// planNote is the audit note of an aggregate's plan: the terms it was planned against.
func planNote(dec exchange.Decision) string {
	t := dec.Aggregate
	return fmt.Sprintf("plan: group_by [%s]; measures [%s]; min_group_size %d; row scope %s",
		strings.Join(t.GroupBy, ","), strings.Join(t.Measures, ","), t.MinGroupSize, filterJSON(dec.RowFilter))
}

// AggregateTicket seals an aggregate grant for Flight: signed, short-lived, bound to the
// caller.
func (s *Service) AggregateTicket(g *AggregateGrant) ([]byte, error) {
	g.Expires = s.now().Add(s.ticketTTL)
	g.Instance, g.Boot = s.instance, s.boot
	t, err := s.signer.Seal(aggregateTicketPurpose, g)
	return []byte(t), err
}

// RedeemAggregate opens an aggregate ticket presented by c. A forged, expired, foreign
// or used ticket is refused and the refusal audited; a query the policy no longer
// grants on the same terms is refused too, its decision closed by a complete event.
func (s *Service) RedeemAggregate(ctx context.Context, c Caller, ticket []byte) (*AggregateGrant, error) {
	var g AggregateGrant
	oerr := s.signer.Open(aggregateTicketPurpose, string(ticket), &g)
	err := s.checkTicket(oerr, sealedTicket{g.Expiring, g.Subject, g.Instance, g.Boot, g.RequestID}, c)
	if err != nil {
		req := exchange.Request{Action: exchange.ActionAggregate, Dataset: g.Dataset, Purpose: g.Purpose, CaseRef: g.CaseRef}
		return nil, s.auditTicketRefused(ctx, c, oerr == nil, req, g.Subject, g.RequestID, err)
	}
	g.ClientAddr = c.ClientAddr
	if err := s.redeemable(); err != nil {
		s.auditAggregateComplete(ctx, &g, 0, 0, s.now(), 0, err)
		return nil, err
	}
	// Planned again against the policy as it is now: an agreement may have lapsed since
	// the ticket was issued. The answer is served only on the terms audited then.
	ng, dec, err := s.planAggregate(ctx, Caller{Subject: c.Subject, ClientAddr: c.ClientAddr}, AggregateCmd{SQL: g.SQL, Purpose: g.Purpose, CaseRef: g.CaseRef}, g.RequestID, false)
	if err == nil && !sameTerms(dec, &g) {
		err = exchange.Denied(exchange.Decision{Agreement: dec.Agreement, Revision: dec.Revision, Reasons: []exchange.Reason{{Code: "policy_changed",
			Message: "the sharing policy changed since this ticket was issued and no longer grants it as it was; call GetFlightInfo for a new decision"}}})
	}
	if err != nil {
		s.auditAggregateComplete(ctx, &g, 0, 0, s.now(), 0, err)
		return nil, err
	}
	g.plan = ng.plan
	return &g, nil
}

func sameTerms(dec exchange.Decision, g *AggregateGrant) bool {
	t := dec.Aggregate
	return t != nil && dec.Agreement == g.Agreement && t.MinGroupSize == g.Terms.MinGroupSize &&
		slices.Equal(t.GroupBy, g.Terms.GroupBy) && slices.Equal(t.Measures, g.Terms.Measures)
}

// RunAggregate executes an allowed aggregate on one consistent version of its dataset,
// sends the answer to sink (one batch; the schema carries the request id, agreement,
// policy revision, minimum group size and the suppression note), and audits its
// completion with the number of suppressed cells, which only the audit keeps.
func (s *Service) RunAggregate(ctx context.Context, g *AggregateGrant, sink Sink) (groups int64, err error) {
	started := time.Now()
	suppressed := 0
	defer func() {
		r := recover()
		if r != nil {
			err = fmt.Errorf("aggregate panicked: %v", r)
		}
		s.auditAggregateComplete(ctx, g, groups, sink.Bytes(), started, suppressed, err)
		if r != nil {
			panic(r)
		}
	}()
	_, t, err := s.dataset(g.Dataset)
	if err != nil {
		return 0, err
	}
	snap := t.Snapshot()
	defer snap.Release()
	res, err := g.plan.Execute(ctx, snap, s.alloc)
	if err != nil {
		return 0, err
	}
	defer res.Record.Release()
	suppressed = res.SuppressedCells
	schema := withMetadata(res.Record.Schema(), map[string]string{exchange.MetaRequestID: g.RequestID,
		exchange.MetaAgreement: g.Agreement, exchange.MetaPolicyRevision: g.Revision,
		MetaSuppression: suppressionNote(g.Terms.MinGroupSize), MetaMinGroupSize: strconv.FormatInt(g.Terms.MinGroupSize, 10)})
	if err := sink.Begin(schema); err != nil {
		return 0, err
	}
	if err := sink.Write(res.Record); err != nil {
		return 0, err
	}
	return res.Record.NumRows(), nil
}

// FailAggregate closes the decision of an allowed aggregate whose answer was never sent:
// err says why (nil: only its schema was asked for).
func (s *Service) FailAggregate(ctx context.Context, g *AggregateGrant, err error) {
	s.auditAggregateComplete(ctx, g, 0, 0, s.now(), 0, err)
}

// auditAggregateComplete closes an aggregate's decision: groups returned, bytes, and
// the suppressed cells as a note.
func (s *Service) auditAggregateComplete(ctx context.Context, g *AggregateGrant, groups, bytes int64, started time.Time, suppressed int, err error) {
	grant := &Grant{RequestID: g.RequestID, Subject: g.Subject, ClientAddr: g.ClientAddr, Action: exchange.ActionAggregate,
		Dataset: g.Dataset, Purpose: g.Purpose, CaseRef: g.CaseRef, Agreement: g.Agreement, Revision: g.Revision}
	s.auditComplete(ctx, grant, groups, bytes, started, err, "suppressed_cells: "+strconv.Itoa(suppressed))
}

// AggregateTable is a dataset the caller may aggregate, with the columns it may group by
// and measure: what Flight SQL's catalog calls list.
type AggregateTable struct {
	Dataset string
	Terms   exchange.AggregateTerms
	// Schema has the group-by columns, then each measured column, with their types.
	Schema *arrow.Schema
}

// AggregateCatalog lists the datasets c may aggregate for purpose: one aggregate
// decision per served dataset, each audited (an allowed one closed at once by a complete
// event of no rows: a listing returns no data).
func (s *Service) AggregateCatalog(ctx context.Context, c Caller, purpose, caseRef string) ([]AggregateTable, error) {
	if err := s.admit(c); err != nil {
		return nil, s.auditRejected(ctx, c, exchange.ActionAggregate, "", err)
	}
	if err := checkText(exchange.Request{Purpose: purpose, CaseRef: caseRef}); err != nil {
		return nil, s.auditRejected(ctx, c, exchange.ActionAggregate, "", err)
	}
	rid := newRequestID()
	var out []AggregateTable
	for _, d := range s.cat.Datasets() {
		if _, ok := s.tables[d.ID]; !ok {
			continue
		}
		req := exchange.Request{Subject: c.Subject, Action: exchange.ActionAggregate, Dataset: d.ID, Purpose: purpose, CaseRef: caseRef, Time: s.now()}
		dec := s.ask(ctx, req)
		if err := s.auditDecision(ctx, c, rid, req, dec, nil, nil, "listing"); err != nil {
			return nil, err
		}
		if !dec.Allow || dec.Aggregate == nil {
			continue
		}
		s.auditComplete(ctx, &Grant{RequestID: rid, Subject: c.Subject, ClientAddr: c.ClientAddr, Action: exchange.ActionAggregate,
			Dataset: d.ID, Purpose: purpose, CaseRef: caseRef, Agreement: dec.Agreement, Revision: dec.Revision}, 0, 0, s.now(), nil, "listing")
		t := AggregateTable{Dataset: d.ID, Terms: *dec.Aggregate}
		var fields []arrow.Field
		for _, col := range dec.Aggregate.GroupBy {
			if f, ok := d.Field(col); ok {
				fields = append(fields, arrow.Field{Name: col, Type: f.ArrowType(), Nullable: f.Nullable})
			}
		}
		for _, m := range dec.Aggregate.Measures {
			_, col, _ := strings.Cut(m, ":")
			if f, ok := d.Field(col); ok && !slices.ContainsFunc(fields, func(x arrow.Field) bool { return x.Name == col }) {
				fields = append(fields, arrow.Field{Name: col, Type: f.ArrowType(), Nullable: f.Nullable})
			}
		}
		t.Schema = arrow.NewSchema(fields, nil)
		out = append(out, t)
	}
	return out, nil
}
