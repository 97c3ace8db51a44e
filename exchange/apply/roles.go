package apply

import (
	"context"

	"govx/exchange"
)

// The roles a person signed in to the exchange's console (exchange/console) may hold.
// Each is decided by the process policy — the same Rego, roles.yaml and decision that
// decide every step — so the console has no role system of its own.
const (
	RoleDepartment = "department"     // a registered department: applies, disputes, flags
	RoleSteward    = "steward"        // a provider's data steward: answers its datasets' applications
	RoleAuthority  = "data_authority" // the data authority: reviews and coordinates
	RoleAuditor    = "auditor"        // reads the audit log
)

// ActAuditRead is the policy action of reading the audit log in the console.
const ActAuditRead = "audit.read"

// Roles lists the roles subj holds, in the order of the constants above.
func (s *Service) Roles(ctx context.Context, subj exchange.Subject) []string {
	var out []string
	for _, r := range []string{RoleDepartment, RoleSteward, RoleAuthority, RoleAuditor} {
		if s.Role(ctx, subj, r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// Role returns nil when subj holds role, and otherwise the policy's permission_denied
// error with its one reason. Each role is asked as the step only its holder may take on
// a matter the subject is not party to: an unknown role is refused (fail closed).
func (s *Service) Role(ctx context.Context, subj exchange.Subject, role string) error {
	reg := s.registered(subj.Department)
	switch role {
	case RoleDepartment:
		// Any registered department may apply for itself.
		return s.authz.decide(ctx, subj, reg, ActSubmit, caseOf{Applicant: subj.Department})
	case RoleSteward:
		// A steward answers applications for what its own department provides.
		return s.authz.decide(ctx, subj, reg, ActApprove, caseOf{Provider: subj.Department})
	case RoleAuthority:
		return s.authz.decide(ctx, subj, reg, ActReview, caseOf{})
	case RoleAuditor:
		return s.authz.decide(ctx, subj, reg, ActAuditRead, caseOf{})
	}
	return &exchange.Error{Kind: exchange.PermissionDenied, Code: "permission_denied", Message: "the sharing process policy refused the step",
		Reasons: []exchange.Reason{{Code: "unknown_role", Message: "no such role: " + role}}}
}
