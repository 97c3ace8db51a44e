// Command audit measures the audit pipeline: events appended durably to the spool
// (group commit) and shipped into ClickHouse, against the baseline of clickhouse-go
// batch-inserting the same rows into a table with the Null engine; plus the latency of
// Append under that load. It prints markdown rows for docs/BENCHMARKS.md.
//
//	go run ./bench/audit -clickhouse 127.0.0.1:19000 -events 500000 -workers 256
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"govx/exchange/audit"
)

func main() {
	addr := flag.String("clickhouse", envOr("GOVX_TEST_CLICKHOUSE", "127.0.0.1:19000"), "ClickHouse native address")
	n := flag.Int("events", 500000, "events to append")
	workers := flag.Int("workers", 256, "concurrent appenders (requests in flight)")
	batch := flag.Int("batch", 20000, "events per ClickHouse insert (shipper and baseline)")
	spoolDir := flag.String("spool", "", "spool directory (default: a new temporary one)")
	keep := flag.Bool("keep", false, "keep the benchmark database and spool for a look with `govx audit`")
	flag.Parse()

	ctx := context.Background()
	rb := make([]byte, 4)
	rand.Read(rb)
	db := "govx_bench_" + hex.EncodeToString(rb)
	ch, err := audit.NewClickHouse(audit.ClickHouseConfig{Addr: *addr, Database: db, Table: "access_log"})
	check(err)
	defer ch.Close()
	conn, err := ch.Conn(ctx) // creates the database and the MergeTree table
	check(err)
	var version string
	check(conn.QueryRow(ctx, "SELECT version()").Scan(&version))
	check(conn.Exec(ctx, ch.NullTableSQL("access_log_null")))
	if !*keep {
		defer func() {
			if c, err := ch.Conn(ctx); err == nil { // the spool's Close closed the first pool
				c.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
			}
		}()
	}

	// The same rows for both: events chained as the spool would chain them.
	events := make([]*audit.Event, *n)
	prev := audit.GenesisHash
	for i := range events {
		e := sample(i)
		e.EventID, e.Instance, e.Seq, e.PrevHash = audit.NewEventID(), "bench", uint64(i+1), prev
		e.Time = time.Now().Truncate(time.Millisecond).UTC()
		e.Hash = e.ComputeHash()
		prev = e.Hash
		events[i] = e
	}

	// Baseline: clickhouse-go batch inserts into the Null engine.
	log.Printf("baseline: %d events into the Null engine", len(events))
	start := time.Now()
	var cols audit.Columns
	for off := 0; off < len(events); off += *batch {
		b, err := conn.PrepareBatch(ctx, ch.InsertSQL("access_log_null"))
		check(err)
		check(cols.Append(b, events[off:min(off+*batch, len(events))]))
		check(b.Send())
	}
	base := time.Since(start)

	// The pipeline: durable appends, shipped to the MergeTree table.
	dir := *spoolDir
	if dir == "" {
		dir, err = os.MkdirTemp("", "govx-audit-bench-")
		check(err)
		if !*keep {
			defer os.RemoveAll(dir)
		}
	}
	log.Printf("pipeline: %d events appended by %d workers and shipped", *n, *workers)
	s, err := audit.OpenSpool(dir, audit.WithInstance("bench"), audit.WithSink(ch), audit.WithBatchSize(*batch))
	check(err)
	lat := make([]time.Duration, *n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start = time.Now()
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				e := sample(i)
				t0 := time.Now()
				check(s.Append(ctx, e))
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	appended := time.Since(start)
	fctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	check(s.Flush(fctx))
	shipped := time.Since(start)
	appends, syncs := s.Stats()
	check(s.Close()) // also closes ch's connections
	conn, err = ch.Conn(ctx)
	check(err)
	var distinct uint64
	check(conn.QueryRow(ctx, "SELECT uniqExact(event_id) FROM "+ch.Table()).Scan(&distinct))
	if distinct != uint64(*n) {
		log.Fatalf("ClickHouse holds %d distinct events, want %d", distinct, *n)
	}
	// Opening reads and checks every frame of the spool (damage is refused, never cut):
	// measure that against reading the same files, on a spool without a sink (the
	// embedded default, where the spool is the whole log).
	odir, err := os.MkdirTemp("", "govx-audit-open-")
	check(err)
	defer os.RemoveAll(odir)
	os2, err := audit.OpenSpool(odir, audit.WithInstance("bench-open"))
	check(err)
	var wg2 sync.WaitGroup
	next.Store(0)
	for w := 0; w < *workers; w++ {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			for int(next.Add(1)) <= *n {
				check(os2.Append(ctx, sample(0)))
			}
		}()
	}
	wg2.Wait()
	check(os2.Close())
	readStart := time.Now()
	var spoolBytes int64
	ents, err := os.ReadDir(odir)
	check(err)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".seg") {
			b, err := os.ReadFile(odir + "/" + e.Name())
			check(err)
			spoolBytes += int64(len(b))
		}
	}
	readTime := time.Since(readStart)
	openStart := time.Now()
	os3, err := audit.OpenSpool(odir, audit.WithInstance("bench-open"))
	check(err)
	openTime := time.Since(openStart)
	check(os3.Close())

	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	rate := func(d time.Duration) float64 { return float64(*n) / d.Seconds() }

	fmt.Printf("Command: `go run ./bench/audit %s` (ClickHouse %s, %d events, %d appenders, batches of %d)\n\n",
		strings.Join(os.Args[1:], " "), version, *n, *workers, *batch)
	fmt.Println("| audit pipeline | events/s | ratio | notes |")
	fmt.Println("|---|---:|---:|---|")
	fmt.Printf("| baseline: clickhouse-go batch insert into Null engine | %.0f | 1.00 | same rows, %d per batch |\n", rate(base), *batch)
	fmt.Printf("| spool append (durable, group commit) | %.0f | %.2f | %d events in %d fsyncs (%.0f per fsync) |\n",
		rate(appended), rate(appended)/rate(base), appends, syncs, float64(appends)/float64(max(syncs, 1)))
	fmt.Printf("| append + ship into MergeTree, until ClickHouse acknowledged all | %.0f | %.2f | %d distinct event ids arrived |\n",
		rate(shipped), rate(shipped)/rate(base), distinct)
	fmt.Printf("| Append latency under that load | p50 %v | p99 %v | max %v |\n",
		pct(0.50).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	fmt.Printf("| open a spool of %d events (%d MB): every frame checked | %.0f | %.2f | %v (baseline: reading the files, %v) |\n",
		*n, spoolBytes>>20, rate(openTime), readTime.Seconds()/openTime.Seconds(), openTime.Round(time.Millisecond), readTime.Round(time.Millisecond))
	if *keep {
		fmt.Printf("\nkept: database %s, spool %s\n", db, dir)
	}
}

func sample(i int) *audit.Event {
	e := &audit.Event{
		Kind:           audit.KindDecision,
		RequestID:      fmt.Sprintf("req-%08d", i),
		Department:     []string{"mz-3301", "rs-33", "sw-33", "zj-3205", "wj-3302"}[i%5],
		System:         []string{"dibao-review", "pension", "tax-check"}[i%3],
		ClientAddr:     "10.1.2.3:51234",
		Action:         []string{"read", "lookup", "verify"}[i%3],
		Dataset:        "population.person",
		Columns:        []string{"id_number", "name", "household_region"},
		Filter:         `[{"column":"household_region","op":"prefix","value":"3301"}]`,
		Purpose:        "minimum-living-allowance-review",
		CaseRef:        fmt.Sprintf("330106-2026-%06d", i%1000000),
		Decision:       audit.Allow,
		Agreement:      "agr-2026-007",
		PolicyRevision: "sha256:4f2a9c",
	}
	if i%2 == 1 {
		e.Kind, e.Decision = audit.KindComplete, ""
		e.Rows, e.Bytes, e.DurationMS, e.Status = 1000, 64000, 12, audit.StatusOK
	} else if e.Action != "read" {
		e.Keys = []string{fmt.Sprintf("3301061990%08d", i)}
	}
	return e
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
