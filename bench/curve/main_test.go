package main

import (
	"math"
	"slices"
	"testing"
)

// The extrapolation in docs/BENCHMARKS.md is only as good as the fits: exact data must
// give back the law it was made from.
func TestFitsRecoverTheirLaw(t *testing.T) {
	var points []point
	for _, n := range []int{100_000, 1_000_000, 3_000_000, 10_000_000} {
		x := float64(n)
		points = append(points, point{Persons: n, ReadyS: 2 + 30e-6*x, LookupP99ms: 3 * math.Pow(x, 0.5)})
	}
	points = append(points, point{Persons: 20_000_000, Err: "not done within 20m0s"}) // left out
	fits := fitAll(points)
	ready, lookup := fits[0], fits[len(fits)-1]
	if ready.n != 4 || math.Abs(ready.c0-2) > 1e-6 || math.Abs(ready.c1-30e-6) > 1e-12 {
		t.Errorf("start → ready: fitted %v + %v·n over %d sizes, want 2 + 3e-05·n over 4", ready.c0, ready.c1, ready.n)
	}
	if got := ready.at(1e8); math.Abs(got-3002) > 1e-3 {
		t.Errorf("start → ready at 100M = %v, want 3002 (the line)", got)
	}
	if math.Abs(lookup.b-0.5) > 1e-9 || math.Abs(lookup.at(1e8)-3e4) > 1e-3 {
		t.Errorf("lookup p99: slope %v, %v at 100M; want 0.5 and 30000 (the power law)", lookup.b, lookup.at(1e8))
	}
	if fits[1].n != 0 {
		t.Errorf("RSS was never measured, yet %d sizes were fitted", fits[1].n)
	}
}

func TestParseSizes(t *testing.T) {
	got, err := parseSizes("100k, 1m,3M,10m")
	if err != nil || !slices.Equal(got, []int{100_000, 1_000_000, 3_000_000, 10_000_000}) {
		t.Errorf("parseSizes = %v, %v", got, err)
	}
	for _, bad := range []string{"", "1g", "0", "-5k", "11m"} {
		if _, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q) accepted", bad)
		}
	}
}
