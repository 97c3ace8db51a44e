package main

import (
	"math"
	"os"
	"path/filepath"
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

// TestChartsDrawALineBelowZeroAtSmallSizes: a fitted line with a negative fixed part
// (the first pull's: -7 ms + 62 ms per million) is negative at 100k; the charts leave
// those points out of the log axis instead of failing.
func TestChartsDrawALineBelowZeroAtSmallSizes(t *testing.T) {
	var points []point
	for i, n := range []int{100_000, 1_000_000, 3_000_000, 10_000_000} {
		x := float64(n)
		points = append(points, point{Persons: n, ReadyS: 0.3 + 1.8e-6*x, FirstPullS: []float64{0.014, 0.061, 0.147, 0.617}[i],
			WarmPullS: 0.002 + 0.0428e-9*x, HeapLiveMB: 40 + 220e-6*x, RSSReadyMB: 145 + 319e-6*x, LookupP99ms: 4})
	}
	if f := fitAll(points); slices.IndexFunc(f, func(f fit) bool { return f.linear && f.n == 4 && f.at(1e5) < 0 }) < 0 {
		t.Fatal("no fitted line is below zero at 100k: the test no longer covers the case")
	}
	dir := t.TempDir()
	if err := drawCharts(dir, points, fitAll(points)); err != nil {
		t.Fatal(err)
	}
	for _, c := range chartSet {
		if st, err := os.Stat(filepath.Join(dir, c.file)); err != nil || st.Size() == 0 {
			t.Errorf("chart %s not written: %v", c.file, err)
		}
	}
}
