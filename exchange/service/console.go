package service

import (
	"context"
	"errors"

	"govx/exchange"
)

// ConsoleAction records an action taken in the exchange's console (exchange/console) —
// a sign-in, a page opened, a search run, a decision explained — through the same audit
// writer as every request: allowed, with notes as its reasons, or denied with refused's
// code and the policy's reasons. It names no record key (a console action reads no
// record, and a report of who read a record must not list the auditor who asked).
// Nothing of the data path runs. It returns refused, or audit_unavailable when the
// event cannot be written: the console then refuses the action, as every edge does.
func (s *Service) ConsoleAction(ctx context.Context, c Caller, action, dataset, purpose, caseRef string, notes []string, refused error) error {
	req := exchange.Request{Subject: c.Subject, Action: exchange.Action(action), Dataset: dataset, Purpose: purpose, CaseRef: caseRef}
	dec := exchange.Decision{Allow: refused == nil}
	for _, n := range notes {
		dec.Reasons = append(dec.Reasons, exchange.Reason{Code: n})
	}
	if xe, ok := errors.AsType[*exchange.Error](refused); ok {
		dec.Reasons = xe.Reasons
	}
	if err := s.auditDecision(ctx, c, newRequestID(), req, dec, nil, refused); err != nil {
		return err
	}
	return refused
}
