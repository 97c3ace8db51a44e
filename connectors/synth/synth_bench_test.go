package synth_test

import (
	"context"
	"testing"

	"govx/connectors/synth"
)

// BenchmarkGenerate measures the generator alone (into a discard writer) per person of
// scale, all four registers included: the ceiling for every target.
func BenchmarkGenerate(b *testing.B) {
	g := newGen(b, 100_000, 1, synth.DefaultInvalidRate)
	rows := 0
	for _, d := range g.Departments() {
		rows += g.Count(d)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := synth.Generate(context.Background(), g, synth.Discard(), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}
