package policy_test

import (
	"context"
	"testing"

	"govx/exchange"
	"govx/exchange/policy"
)

var dibaoReq = exchange.Request{
	Subject: exchange.Subject{Department: "mz-3301", System: "dibao-review"},
	Action:  exchange.ActionRead, Dataset: "population.person",
	Columns: []string{"id_number", "name", "household_region", "birth_date"},
	Purpose: "minimum-living-allowance-review", CaseRef: "330106-2026-000123", Time: day,
}

func BenchmarkDecideUncached(b *testing.B) {
	eng, err := policy.New(cat)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := eng.DecideUncached(ctx, dibaoReq); !d.Allow {
			b.Fatal(d.Reasons)
		}
	}
}

func BenchmarkDecideCached(b *testing.B) {
	eng, err := policy.New(cat)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := eng.Decide(ctx, dibaoReq); !d.Allow {
			b.Fatal(d.Reasons)
		}
	}
}
