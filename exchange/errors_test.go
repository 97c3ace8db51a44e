package exchange_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"govx/exchange"
)

func TestKindOf(t *testing.T) {
	denied := exchange.Denied(exchange.Decision{Reasons: []exchange.Reason{{Code: "no_agreement", Message: "apply for one"}}})
	wrapped := fmt.Errorf("pull population.person: %w", denied)
	if k := exchange.KindOf(wrapped); k != exchange.PermissionDenied {
		t.Errorf("KindOf(wrapped denial) = %v", k)
	}
	if !strings.Contains(wrapped.Error(), "no_agreement: apply for one") {
		t.Errorf("the message %q hides the policy's reason", wrapped)
	}
	if k := exchange.KindOf(errors.New("disk on fire")); k != exchange.Internal {
		t.Errorf("an unclassified error is %v, want internal", k)
	}
	if k := exchange.KindOf(nil); k != exchange.Other {
		t.Errorf("KindOf(nil) = %v", k)
	}
	e := exchange.E(exchange.NotFound, "unknown_dataset", "no dataset population.pets")
	if e.Error() != "unknown_dataset: no dataset population.pets" || exchange.KindOf(e).String() != "not_found" {
		t.Errorf("got %q, kind %v", e, exchange.KindOf(e))
	}
}
