package apply

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"govx/exchange"
)

// The console's roles are the process policy's: each subject holds exactly the roles
// roles.yaml gives it, a department unknown to the exchange holds none, and a refused
// role carries the policy's reason.
func TestRolesAreThePolicys(t *testing.T) {
	h := newHarness(t, filepath.Join(t.TempDir(), "applications.db"))
	ctx := context.Background()
	for _, tt := range []struct {
		subj exchange.Subject
		want []string
	}{
		{exchange.Subject{Department: "mz-3201", System: "social-assistance"}, []string{RoleDepartment}},
		{exchange.Subject{Department: "gab", System: "steward"}, []string{RoleDepartment, RoleSteward}},
		{exchange.Subject{Department: "gab", System: "other"}, []string{RoleDepartment}},
		{exchange.Subject{Department: "zwfw", System: "sharing-review"}, []string{RoleDepartment, RoleAuthority}},
		{exchange.Subject{Department: "zwfw", System: "audit"}, []string{RoleDepartment, RoleAuditor}},
		{exchange.Subject{Department: "nowhere", System: "x"}, nil},
	} {
		if got := h.svc.Roles(ctx, tt.subj); !slices.Equal(got, tt.want) {
			t.Errorf("%s holds %v, want %v", tt.subj, got, tt.want)
		}
	}
	mz := exchange.Subject{Department: "mz-3201", System: "social-assistance"}
	for role, code := range map[string]string{RoleAuditor: "not_auditor", RoleSteward: "not_provider", RoleAuthority: "not_data_authority", "root": "unknown_role"} {
		if got := reasonCode(h.svc.Role(ctx, mz, role)); got != code {
			t.Errorf("mz-3201 as %s: refused with %q, want %q", role, got, code)
		}
	}
}
