package main

import (
	"strings"
	"testing"
)

// TestAuditQueryHelpListsEveryAction: --action names every action an event records,
// aggregate among them.
func TestAuditQueryHelpListsEveryAction(t *testing.T) {
	out, code := runAudit(t, "query", "--help")
	if code != 0 || !strings.Contains(out, "read | changes | lookup | verify | discover | aggregate") {
		t.Errorf("exit %d; --action help does not list every action:\n%s", code, out)
	}
}
