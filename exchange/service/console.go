package service

import (
	"context"
	"errors"

	"govx/exchange"
)

// ConsoleAction records an action taken in the exchange's console (exchange/console) —
// a sign-in, a page opened, a search run, a decision explained — through the same audit
// writer as every request: allowed, or denied with refused's code and the policy's
// reasons; keys are the record keys the action named (a data-subject report's). Nothing
// of the data path runs. It returns refused, or audit_unavailable when
// the event cannot be written: the console then refuses the action, as every edge does.
func (s *Service) ConsoleAction(ctx context.Context, c Caller, action, dataset, purpose, caseRef string, keys []string, refused error) error {
	req := exchange.Request{Subject: c.Subject, Action: exchange.Action(action), Dataset: dataset, Purpose: purpose, CaseRef: caseRef}
	dec := exchange.Decision{Allow: refused == nil}
	if xe, ok := errors.AsType[*exchange.Error](refused); ok {
		dec.Reasons = xe.Reasons
	}
	if err := s.auditDecision(ctx, c, newRequestID(), req, dec, keys, refused); err != nil {
		return err
	}
	return refused
}
