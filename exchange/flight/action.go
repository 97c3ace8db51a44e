package flight

import (
	"encoding/json"

	"github.com/apache/arrow/go/v17/arrow/flight"

	"govx/exchange"
	"govx/exchange/service"
)

// actions are the Flight actions (DoAction) the exchange serves: the subject views and
// licence verification, with the same JSON bodies and answers as over HTTP.
var actions = []*flight.ActionType{
	{Type: exchange.ActionTypeSubjectPerson, Description: `subject view of a citizen ID: body {"id":…, "purpose":…, "case_ref":…}; one result, the JSON view`},
	{Type: exchange.ActionTypeSubjectOrganization, Description: `subject view of a USCC: body {"id":…, "purpose":…, "case_ref":…}; one result, the JSON view`},
	{Type: exchange.ActionTypeLicenceVerify, Description: `licence verification: body {"licence_no":…, "digest":…, "purpose":…}; one result, the JSON verdict`},
}

// ListActions lists the actions DoAction serves.
func (s *Server) ListActions(_ *flight.Empty, stream flight.FlightService_ListActionsServer) error {
	for _, a := range actions {
		if err := stream.Send(a); err != nil {
			return err
		}
	}
	return nil
}

// DoAction answers a subject view or a licence verification with one result.
func (s *Server) DoAction(a *flight.Action, stream flight.FlightService_DoActionServer) error {
	if sqlActions[a.GetType()] {
		return s.sql.DoAction(a, stream)
	}
	ctx := stream.Context()
	c := callerOf(ctx)
	send := func(v any) (int64, error) {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, err
		}
		if err := stream.Send(&flight.Result{Body: b}); err != nil {
			if ctx.Err() != nil {
				err = exchange.ClientGone(err)
			}
			return 0, err
		}
		return int64(len(b)), nil
	}
	switch a.GetType() {
	case exchange.ActionTypeSubjectPerson, exchange.ActionTypeSubjectOrganization:
		kind := exchange.SubjectPerson
		if a.GetType() == exchange.ActionTypeSubjectOrganization {
			kind = exchange.SubjectOrganization
		}
		cmd, err := service.ParseSubject(a.GetBody())
		if err != nil {
			return toStatus(s.svc.Rejected(ctx, c, exchange.ActionLookup, "", err))
		}
		// A failure to send after the answer was made is returned as it is: the
		// parts' complete events record it as aborted.
		return toStatus(s.svc.Subject(ctx, c, kind, cmd, func(v *exchange.SubjectView) (int64, error) { return send(v) }))
	case exchange.ActionTypeLicenceVerify:
		cmd, err := service.ParseLicenceVerify(a.GetBody())
		if err != nil {
			return toStatus(s.svc.Rejected(ctx, c, exchange.ActionVerify, "license.certificate", err))
		}
		v, err := s.svc.VerifyLicence(ctx, c, cmd)
		if err != nil {
			return toStatus(err)
		}
		_, err = send(v)
		return toStatus(err)
	}
	err := exchange.E(exchange.Invalid, "unknown_action", "no Flight action "+quoteAction(a.GetType())+"; ListActions lists them")
	return toStatus(s.svc.Rejected(ctx, c, exchange.ActionRead, "", err))
}

func quoteAction(t string) string {
	b, _ := json.Marshal(t)
	return string(b)
}
