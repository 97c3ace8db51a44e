package client_test

import (
	"context"
	"errors"
	"testing"

	"govx/exchange/audit"
	"govx/exchange/client"
	"govx/exchange/service/servicetest"
)

// TestAggregateCaseRef: a Chinese case reference reaches the exchange and its audit
// event; one with a control character is refused by the exchange as bad_case_ref, not
// lost in gRPC (a plain header takes printable ASCII only).
func TestAggregateCaseRef(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Persons: 60})
	c := start(t, f).client(t, "tj-33")
	const sql = "SELECT household_region, COUNT(*) FROM population.person GROUP BY household_region"
	rec, err := c.Aggregate(context.Background(), sql, "population-statistics", "浙统〔2026〕12号")
	if err != nil {
		t.Fatal(err)
	}
	rec.Release()
	f.Svc.Wait()
	f.Event(t, "the decision with the Chinese case reference", func(e *audit.Event) bool {
		return e.Kind == audit.KindDecision && e.Action == "aggregate" && e.CaseRef == "浙统〔2026〕12号"
	})
	_, err = c.Aggregate(context.Background(), sql, "population-statistics", "a\nb")
	var cerr *client.Error
	if !errors.As(err, &cerr) || cerr.Code != "bad_case_ref" {
		t.Errorf("case reference with a newline: %v, want bad_case_ref", err)
	}
}
