package service

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"govx/exchange"
	"govx/exchange/audit"
)

func quote(s string) string { return strconv.Quote(s) }

// auditTimeout bounds how long a request's event may wait for the spool once the
// request itself no longer waits (its client went away): long enough for a busy spool's
// group commit, short enough that a wedged spool cannot pile up goroutines.
const auditTimeout = 10 * time.Second

// record is the one place events go to the spool. It bounds the event's request-derived
// fields (lim) and appends it on a context detached from the request's: a client that
// goes away mid-request must still leave its event, so the append gives up only on its
// own deadline, never on the caller's cancellation.
func (s *Service) record(ctx context.Context, ev *audit.Event, lim audit.Limits) error {
	audit.Bound(ev, lim)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	return s.audit.Append(ctx, ev)
}

// eventPool holds the events of the request path: every request records one or two, and
// once recorded an event is free again (the spool keeps its own copy).
var eventPool = sync.Pool{New: func() any { return new(audit.Event) }}

func newEvent() *audit.Event { return eventPool.Get().(*audit.Event) }

func freeEvent(ev *audit.Event) {
	*ev = audit.Event{}
	eventPool.Put(ev)
}

// auditDecision durably records the decision for a request before anything is
// returned. err, when set, is why the request was refused after (or instead of) the
// policy: the event then says deny whatever the policy said.
// notes follow the reasons: an aggregate's "query: …" and "plan: …" (docs/audit.md).
func (s *Service) auditDecision(ctx context.Context, c Caller, requestID string, req exchange.Request, dec exchange.Decision, keys []string, refused error, notes ...string) error {
	return s.auditDecisionLimited(ctx, c, requestID, req, dec, keys, refused, audit.DefaultLimits, notes...)
}

func (s *Service) auditDecisionLimited(ctx context.Context, c Caller, requestID string, req exchange.Request, dec exchange.Decision, keys []string, refused error, lim audit.Limits, notes ...string) error {
	ev := newEvent()
	defer freeEvent(ev)
	*ev = audit.Event{
		Kind:           audit.KindDecision,
		RequestID:      requestID,
		Department:     c.Subject.Department,
		System:         c.Subject.System,
		ClientAddr:     c.ClientAddr,
		Action:         string(req.Action),
		Dataset:        req.Dataset,
		Columns:        req.Columns,
		Filter:         filterJSON(req.Filter),
		Purpose:        req.Purpose,
		CaseRef:        req.CaseRef,
		Keys:           keys,
		Decision:       audit.Deny,
		Agreement:      dec.Agreement,
		PolicyRevision: dec.Revision,
	}
	for _, r := range dec.Reasons {
		ev.Reasons = append(ev.Reasons, r.Code)
	}
	if dec.Allow && refused == nil {
		ev.Decision = audit.Allow
		ev.Columns = dec.Columns
		ev.Filter = scopeJSON(dec.RowFilter, req.Filter)
	}
	if refused != nil {
		var xe *exchange.Error
		if errors.As(refused, &xe) {
			ev.Error = xe.Code
			if !dec.Allow && len(xe.Reasons) == 0 || dec.Allow {
				ev.Reasons = append(ev.Reasons, xe.Code)
			}
		} else {
			ev.Error = "internal"
		}
	}
	ev.Reasons = append(ev.Reasons, notes...)
	if err := s.record(ctx, ev, lim); err != nil {
		s.log.Error("audit spool refused an event; refusing the request", "err", err, "request_id", requestID)
		if ev.Decision == audit.Allow && dataBearing(req.Action) {
			// The spool may have taken the decision and failed only to say so in time:
			// close the request, so that it can never read as data served.
			s.recordComplete(ctx, ev, 0, 0, 0, audit.StatusError, "audit_unavailable")
		}
		return auditUnavailable(err)
	}
	return nil
}

// auditUnavailable is the refusal of a request the audit log cannot record.
func auditUnavailable(err error) *exchange.Error {
	return &exchange.Error{Kind: exchange.Unavailable, Code: "audit_unavailable",
		Message: "the exchange cannot record this access in its audit log, so it refuses it; retry later", Err: err}
}

// dataBearing reports whether an action's allowed request is followed by a complete
// event: it returns records (a verify answers only match or not, a discover the catalog).
func dataBearing(a exchange.Action) bool {
	return a == exchange.ActionRead || a == exchange.ActionChanges || a == exchange.ActionLookup || a == exchange.ActionAggregate
}

// auditComplete records the end of a data-bearing response: what went out and how it
// ended — ok, aborted (the client went away), or error with the error's code. It cannot
// refuse anything any more, so a failure is logged.
func (s *Service) auditComplete(ctx context.Context, g *Grant, rows, bytes int64, started time.Time, err error, notes ...string) {
	status, code := audit.StatusOK, ""
	switch {
	case err == nil:
	case errors.Is(err, exchange.ErrClientStalled):
		status, code = audit.StatusAborted, "client stopped reading"
		s.slots.stalled.Inc()
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		status, code = audit.StatusAborted, "client went away"
	default:
		status, code = audit.StatusError, codeOf(err)
	}
	ev := &audit.Event{
		RequestID:      g.RequestID,
		Department:     g.Subject.Department,
		System:         g.Subject.System,
		ClientAddr:     g.ClientAddr,
		Action:         string(g.Action),
		Dataset:        g.Dataset,
		Columns:        g.Columns,
		Purpose:        g.Purpose,
		CaseRef:        g.CaseRef,
		Keys:           g.Keys,
		Agreement:      g.Agreement,
		PolicyRevision: g.Revision,
	}
	s.recordComplete(ctx, ev, uint64(rows), uint64(bytes), uint64(time.Since(started).Milliseconds()), status, code, notes...)
}

// recordComplete writes the complete event of the request whose decision (or grant) ev
// describes; notes go in its reasons (an aggregate's "suppressed_cells: N").
func (s *Service) recordComplete(ctx context.Context, ev *audit.Event, rows, bytes, ms uint64, status, code string, notes ...string) {
	c := newEvent()
	defer freeEvent(c)
	*c = audit.Event{Kind: audit.KindComplete, RequestID: ev.RequestID, Department: ev.Department, System: ev.System,
		ClientAddr: ev.ClientAddr, Action: ev.Action, Dataset: ev.Dataset, Columns: ev.Columns, Purpose: ev.Purpose,
		CaseRef: ev.CaseRef, Keys: ev.Keys, Decision: audit.Allow, Agreement: ev.Agreement, PolicyRevision: ev.PolicyRevision,
		Rows: rows, Bytes: bytes, DurationMS: ms, Status: status, Error: code, Reasons: notes}
	if err := s.record(ctx, c, audit.DefaultLimits); err != nil {
		s.log.Error("audit spool refused a complete event", "err", err, "request_id", ev.RequestID)
	}
}

// Fail records that an allowed pull ended with err before any of its data was sent
// (its ticket or schema could not be made): its decision is closed by a complete event,
// never left to read as data served.
func (s *Service) Fail(ctx context.Context, g *Grant, err error) {
	s.auditComplete(ctx, g, 0, 0, time.Now(), err)
}

func filterJSON(f []exchange.Filter) string {
	if len(f) == 0 {
		return ""
	}
	b, _ := json.Marshal(f)
	return string(b)
}

// scopeFilter is one condition of the scope an allowed pull's event records: the
// caller's own filters, and those of the decision's row filter marked By "policy".
type scopeFilter struct {
	exchange.Filter
	By string `json:"by,omitempty"`
}

// scopeJSON is the filter field of an allowed request's decision event: the decision's
// row filter (marked "by":"policy") followed by the caller's filter — the whole scope of
// rows the request could return, so that `govx audit subject` can tell, years later and
// whatever the policy has become since, whether a record was within it. Readers that
// want only the caller's own filter skip the conditions marked by the policy.
func scopeJSON(rowFilter, own []exchange.Filter) string {
	if len(rowFilter) == 0 {
		return filterJSON(own)
	}
	out := make([]scopeFilter, 0, len(rowFilter)+len(own))
	for _, f := range rowFilter {
		out = append(out, scopeFilter{Filter: f, By: "policy"})
	}
	for _, f := range own {
		out = append(out, scopeFilter{Filter: f})
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// codeOf returns the stable code of err for the audit log; unclassified errors are
// "internal" and their text, which may hold anything, stays out of the log.
func codeOf(err error) string {
	if e, ok := errors.AsType[*exchange.Error](err); ok {
		return e.Code
	}
	return "internal"
}
