package apply

import (
	"fmt"
	"strings"

	"govx/exchange"
)

// legal says from which states each step may be taken. Which state it leads to depends
// on the step's outcome (a review passes or fails; a dispute ends granted or not), and is
// decided by the step itself.
var legal = map[string][]State{
	ActReview:     {Submitted},
	ActApprove:    {WithProvider},
	ActRefuse:     {WithProvider},
	ActWithdraw:   {Submitted, WithProvider},
	ActDispute:    {Refused},
	ActNegotiate:  {Disputed},
	ActCoordinate: {Disputed},

	ActAnswerFix: {Flagged},
	ActCloseFix:  {Corrected},
}

// checkLegal returns the illegal_transition error when step cannot be taken from state.
func checkLegal(id string, state State, step string) error {
	from := legal[step]
	for _, s := range from {
		if s == state {
			return nil
		}
	}
	names := make([]string, len(from))
	for i, s := range from {
		names[i] = string(s)
	}
	return exchange.E(exchange.Invalid, "illegal_transition",
		fmt.Sprintf("%s is %s: %s is possible only from %s", id, state, step, strings.Join(names, " or ")))
}
