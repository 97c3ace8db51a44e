package store

import (
	"fmt"
	"maps"
	"runtime"
	"testing"
	"time"
)

// BenchmarkLinkedLoad loads 1M organizations, each with a legal representative (about
// 1.4 organizations per representative), then measures what the collector must trace
// for the table: the live heap objects, the live heap, and a forced collection's time,
// which is about the mark phase that stalls lookups in govx demo. keysby-ns is one
// KeysBy on a snapshot of the loaded table.
func BenchmarkLinkedLoad(b *testing.B) {
	const n, reps, batch = 1_000_000, 700_000, 10_000
	d := dataset(b, "legal_entity.organization")
	base := (&gen{r: newRand(), d: d, keys: 1}).record()
	var objs, heap, gc, keysBy float64
	for range b.N {
		t := New(d)
		cs := make([]Change, batch)
		for start := 0; start < n; start += batch {
			for i := range cs {
				k := start + i
				rec := maps.Clone(base)
				rec["uscc"] = fmt.Sprintf("91330100%010d", k)
				rec["legal_rep_id_number"] = fmt.Sprintf("3301061990%08d", k*7%reps)
				cs[i] = Change{Record: rec, Partition: int32(k % 6), Offset: int64(k / 6)}
			}
			if err := t.Apply(cs); err != nil {
				b.Fatal(err)
			}
		}
		clear(cs)
		s := t.Snapshot()
		settle(t)
		b.StopTimer()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		objs += float64(ms.HeapObjects)
		heap += float64(ms.HeapAlloc) / (1 << 20)
		began := time.Now()
		runtime.GC()
		gc += float64(time.Since(began).Microseconds()) / 1000
		const asks = 100_000
		began = time.Now()
		for i := range asks {
			keys, err := s.KeysBy("legal_rep_id_number", fmt.Sprintf("3301061990%08d", i*7%reps))
			if err != nil || len(keys) == 0 {
				b.Fatalf("KeysBy: %v, %v", keys, err)
			}
		}
		keysBy += float64(time.Since(began).Nanoseconds()) / asks
		b.StartTimer()
		s.Release()
		t.Close()
	}
	b.ReportMetric(objs/float64(b.N), "heap-objects")
	b.ReportMetric(heap/float64(b.N), "heap-MB")
	b.ReportMetric(gc/float64(b.N), "gc-ms")
	b.ReportMetric(keysBy/float64(b.N), "keysby-ns")
}
