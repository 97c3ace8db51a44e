package audit

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchSpool returns a spool directory holding n chained events of both kinds, appended
// by concurrent writers as requests append them (group commit), and closed.
func benchSpool(b *testing.B, n int) string {
	b.Helper()
	dir := b.TempDir()
	s, err := OpenSpool(dir, WithInstance("bench"), WithFreeSpaceReserve(0))
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 64 {
				kind := KindDecision
				if i%2 == 1 {
					kind = KindComplete
				}
				if err := s.Append(context.Background(), sampleEvent(i, kind)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	return dir
}

const benchEvents = 8192

// benchSizes are the shipment sizes benchmarked: what the shipper sent every 500 ms near
// the head at 2,000 lookups/s (a decision and a complete event each), and what it sends
// every 2 s.
var benchSizes = []int{2048, 8192}

// BenchmarkShipmentRead reads shipments from the spool as the shipper does: a fresh
// reader per shipment (the worst case: it reopens the segment), events decoded into the
// shipment's reused blocks. allocs/event is what following the spool costs the collector.
func BenchmarkShipmentRead(b *testing.B) {
	dir := benchSpool(b, benchEvents)
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("events=%d", size), func(b *testing.B) {
			sh := newShipment(dir, 1, size)
			b.ReportAllocs()
			for b.Loop() {
				sh.r.seek(1)
				sh.start(uint64(size), size)
				n := 0
				for {
					evs, err := sh.next()
					if err != nil {
						b.Fatal(err)
					}
					if len(evs) == 0 {
						break
					}
					n += len(evs)
				}
				if n != size {
					b.Fatalf("read %d events, want %d", n, size)
				}
			}
			reportPerEvent(b, size)
		})
	}
}

// BenchmarkShipToClickHouse ships shipments from the spool into ClickHouse as the
// shipper does (read, decode, build the columns, one INSERT sent in blocks), into a
// Null-engine table shaped like the audit table, so that ClickHouse stores nothing and
// the figures are the shipper's own.
func BenchmarkShipToClickHouse(b *testing.B) {
	dir := benchSpool(b, benchEvents)
	ch := newCH(b, "ship_bench")
	ctx := context.Background()
	conn, err := ch.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := conn.Exec(ctx, ch.NullTableSQL("ship_bench_null")); err != nil {
		b.Fatal(err)
	}
	null, err := NewClickHouse(ClickHouseConfig{Addr: ch.cfg.Addr, Database: ch.cfg.Database, Table: "ship_bench_null"})
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("events=%d", size), func(b *testing.B) {
			sh := newShipment(dir, 1, size)
			ship := func() {
				sh.r.seek(1)
				sh.start(uint64(size), size)
				if err := null.Write(ctx, sh.next); err != nil {
					b.Fatal(err)
				}
				if sh.n != size {
					b.Fatalf("shipped %d events, want %d", sh.n, size)
				}
			}
			ship() // connect, warm the reused columns
			b.ReportAllocs()
			for b.Loop() {
				ship()
			}
			reportPerEvent(b, size)
		})
	}
}

// reportPerEvent adds the per-event figures of a benchmark whose op is one shipment.
func reportPerEvent(b *testing.B, size int) {
	b.Helper()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(size), "ns/event")
}

// BenchmarkAppend appends events from 64 concurrent appenders, as requests do (each
// waits for the group commit that makes its event durable). allocs/op is what one
// request's event costs the collector in the spool, beside the event itself.
func BenchmarkAppend(b *testing.B) {
	s, err := OpenSpool(b.TempDir(), WithInstance("bench"), WithFreeSpaceReserve(0))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	evs := make([]Event, 64)
	for i := range evs {
		evs[i] = *sampleEvent(i, KindDecision)
	}
	var next atomic.Int64
	b.SetParallelism(32) // 64 appenders on 2 cores
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		e := evs[next.Add(1)%64]
		for pb.Next() {
			ev := e
			if err := s.Append(context.Background(), &ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkLookupEvents appends events as lookups arriving at 2,000/s do (open loop: one
// every 500 µs, whatever the spool does): each waits for its decision event to be
// durable, answers, and then appends its complete event, which nobody waits for.
// fsyncs/lookup is how many group commits that takes (each ≈ 75 µs of CPU here, and a
// wait for every decision that arrives during it); decision-p99-µs is the decisions' wait.
func BenchmarkLookupEvents(b *testing.B) {
	s, err := OpenSpool(b.TempDir(), WithInstance("bench"), WithFreeSpaceReserve(0))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	dec, done := *sampleEvent(1, KindDecision), *sampleEvent(1, KindComplete)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var waits []time.Duration
	_, syncs0 := s.Stats()
	start := time.Now()
	n := 0
	for b.Loop() {
		time.Sleep(time.Until(start.Add(time.Duration(n) * 500 * time.Microsecond)))
		n++
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := dec
			t := time.Now()
			if err := s.Append(context.Background(), &ev); err != nil {
				b.Error(err)
				return
			}
			w := time.Since(t)
			ev = done
			if err := s.Append(context.Background(), &ev); err != nil {
				b.Error(err)
			}
			mu.Lock()
			waits = append(waits, w)
			mu.Unlock()
		}()
	}
	wg.Wait()
	_, syncs := s.Stats()
	slices.Sort(waits)
	b.ReportMetric(float64(syncs-syncs0)/float64(n), "fsyncs/lookup")
	b.ReportMetric(float64(waits[len(waits)*99/100].Microseconds()), "decision-p99-µs")
	b.ReportMetric(float64(waits[len(waits)/2].Microseconds()), "decision-p50-µs")
}
