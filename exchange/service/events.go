package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"govx/exchange"
	"govx/exchange/audit"
)

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return "req-" + hex.EncodeToString(b[:])
}

func quote(s string) string { return strconv.Quote(s) }

// auditDecision durably records the decision for a request before anything is
// returned. err, when set, is why the request was refused after (or instead of) the
// policy: the event then says deny whatever the policy said.
func (s *Service) auditDecision(ctx context.Context, c Caller, requestID string, req exchange.Request, dec exchange.Decision, keys []string, refused error) error {
	ev := &audit.Event{
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
	if err := s.audit.Append(ctx, ev); err != nil {
		s.log.Error("audit spool refused an event; refusing the request", "err", err, "request_id", requestID)
		return &exchange.Error{Kind: exchange.Unavailable, Code: "audit_unavailable",
			Message: "the exchange cannot record this access in its audit log, so it refuses it; retry later", Err: err}
	}
	return nil
}

// auditRejected records a request refused before the policy was asked (rate limit,
// unknown dataset, malformed input). The caller's error is returned either way; a
// failure to audit makes it an audit_unavailable error instead.
func (s *Service) auditRejected(ctx context.Context, c Caller, action exchange.Action, dataset string, refused error) error {
	req := exchange.Request{Subject: c.Subject, Action: action, Dataset: dataset}
	if err := s.auditDecision(ctx, c, newRequestID(), req, exchange.Decision{}, nil, refused); err != nil {
		return err
	}
	return refused
}

// auditComplete records the end of a data-bearing response. It cannot refuse anything
// any more, so a failure is logged.
func (s *Service) auditComplete(ctx context.Context, g *Grant, rows, bytes int64, started time.Time, err error) {
	ev := &audit.Event{
		Kind:           audit.KindComplete,
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
		Decision:       audit.Allow,
		Agreement:      g.Agreement,
		PolicyRevision: g.Revision,
		Rows:           uint64(rows),
		Bytes:          uint64(bytes),
		DurationMS:     uint64(time.Since(started).Milliseconds()),
		Status:         audit.StatusOK,
	}
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		ev.Status, ev.Error = audit.StatusAborted, "client went away"
	default:
		ev.Status, ev.Error = audit.StatusError, codeOf(err)
	}
	// The response has ended; a cancelled request context must not lose its record.
	if aerr := s.audit.Append(context.WithoutCancel(ctx), ev); aerr != nil {
		s.log.Error("audit spool refused a complete event", "err", aerr, "request_id", g.RequestID)
	}
}

func filterJSON(f []exchange.Filter) string {
	if len(f) == 0 {
		return ""
	}
	b, _ := json.Marshal(f)
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
