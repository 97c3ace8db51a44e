package review

import (
	"encoding/json"
	"errors"
	"strings"

	"govx/exchange"
	"govx/exchange/audit"
)

// ErrScopeCut is RecordedScope's error for a scope that is not a filter list: it was
// cut when recorded (over the event's field bound).
var ErrScopeCut = errors.New("the recorded scope is not a filter list; it was cut when recorded")

// RecordedScope returns the scope an allowed pull's decision event recorded in its
// filter field — the decision's row filter and the caller's filter — as filters the
// store applies; none means every row. Numbers keep their digits (json.Number), as the
// filter code reads them.
func RecordedScope(ev *audit.Event) ([]exchange.Filter, error) {
	if ev.Filter == "" {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(ev.Filter))
	dec.UseNumber()
	var filters []exchange.Filter
	if err := dec.Decode(&filters); err != nil {
		return nil, ErrScopeCut
	}
	return filters, nil
}
