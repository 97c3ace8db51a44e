// Command ingest measures the exchange's Kafka ingest on the real broker: N
// population.person records on a 6-partition topic (as a connector writes them), then
// the time from server.Start to ready (every record decoded, validated and in the
// store), against the bare consumption rate of the same topic with kafka-go readers,
// one per partition, in the same run. It also measures how soon a record produced to
// Kafka is visible to a consumer's lookup over HTTP. It prints markdown rows and
// @target lines for bench/run.sh.
//
//	source .local/env.sh && go run ./bench/ingest -rows 1000000
//
// With -keep it leaves the topic and prints its prefix, so bench/flight and
// bench/lookup can read the same records (-prefix) without producing them again.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"govx/bench/ingest/feed"
	"govx/exchange"
	"govx/exchange/client"
	"govx/exchange/server"
)

func main() {
	rows := flag.Int("rows", envInt("BENCH_ROWS", 1_000_000), "persons on the topic (default $BENCH_ROWS or 1M)")
	broker := flag.String("kafka", os.Getenv("GOVX_TEST_KAFKA"), "Kafka broker host:port")
	prefix := flag.String("prefix", "", "read an existing topic PREFIXpopulation.person holding -rows persons (from an earlier -keep run) instead of producing one")
	keep := flag.Bool("keep", false, "keep the topic and print its prefix on the last line")
	partitions := flag.Int("partitions", 6, "partitions of the topic")
	updates := flag.Int("updates", 10, "single-record updates timed from produce to visible in a lookup")
	cpuprofile = flag.String("cpuprofile", "", "write a CPU profile of server start → ready to this file")
	drop := flag.String("delete-prefix", "", "only delete the topic PREFIXpopulation.person that a -keep run left, and exit")
	flag.Parse()
	if *broker == "" {
		log.Fatal("bench/ingest: need -kafka (or source .local/env.sh)")
	}
	if *drop != "" {
		if err := feed.DeleteTopic(*broker, feed.Topic(*drop)); err != nil {
			log.Fatal("bench/ingest: ", err)
		}
		return
	}
	args := []string{"-rows", strconv.Itoa(*rows)}
	if err := run(*broker, *prefix, *rows, *partitions, *updates, *keep, feed.Command("bench/ingest", args)); err != nil {
		log.Fatal("bench/ingest: ", err)
	}
}

var cpuprofile *string

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func run(broker, prefix string, rows, partitions, updates int, keep bool, cmd string) error {
	ctx := context.Background()
	produced := prefix == ""
	if produced {
		prefix = "govxbench" + feed.RandomSuffix() + "."
	}
	topic := feed.Topic(prefix)
	if !keep {
		defer feed.DeleteTopic(broker, topic)
	}
	var prodTime time.Duration
	var prodBytes int64
	if produced {
		log.Printf("producing %d persons to %s (%d partitions)", rows, topic, partitions)
		t0 := time.Now()
		var err error
		if prodBytes, err = feed.Produce(ctx, broker, topic, partitions, rows); err != nil {
			return err
		}
		prodTime = time.Since(t0)
	}
	ends, err := feed.EndOffsets(ctx, broker, topic)
	if err != nil {
		return err
	}
	var total int64
	for _, e := range ends {
		total += e
	}
	if total != int64(rows) {
		return fmt.Errorf("topic %s holds %d records, want %d (-rows must match the -keep run)", topic, total, rows)
	}

	log.Printf("baseline: bare consumption with kafka-go readers")
	cpu0 := cpuTime()
	base, err := consume(ctx, broker, topic, ends)
	if err != nil {
		return err
	}
	baseCPU := cpuTime() - cpu0

	log.Printf("exchange: start → ready")
	dir, err := os.MkdirTemp("", "govx-bench-ingest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg, err := feed.ExchangeOptions{Dir: dir, Broker: broker, Prefix: prefix}.Config()
	if err != nil {
		return err
	}
	stopProfile, err := feed.StartProfile(*cpuprofile)
	if err != nil {
		return err
	}
	cpu0 = cpuTime()
	x, ready, err := feed.Start(ctx, cfg, 10*time.Minute)
	readyCPU := cpuTime() - cpu0
	stopProfile()
	if err != nil {
		return err
	}
	defer x.Close()
	stored := x.Tables()[feed.Dataset].Len()
	if stored != rows {
		return fmt.Errorf("the store holds %d persons after ingest, want %d", stored, rows)
	}

	log.Printf("visibility: %d updates produced one at a time", updates)
	vis, err := visibility(ctx, broker, topic, cfg, x.HTTPAddr(), rows, updates)
	if err != nil {
		return err
	}
	sorted := feed.Sorted(vis)

	rate := func(d time.Duration) float64 { return float64(rows) / d.Seconds() }
	fmt.Printf("`%s` — %d persons, topic of %d partitions (lz4), Kafka at %s; %s\n\n", cmd, rows, partitions, broker, feed.Machine())
	// CPU time (user + system, this process) is the steadier figure on a shared machine:
	// wall time stretches with what else runs, the work done does not.
	perRec := func(d time.Duration) string { return fmt.Sprintf("%.2f µs", float64(d.Microseconds())/float64(rows)) }
	fmt.Println("| measurement | records | seconds | records/s | ratio | CPU per record |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	fmt.Printf("| baseline: kafka-go readers, one per partition, bare consumption (no decoding) | %d | %.2f | %.0f | 1.00× | %s |\n",
		rows, base.Seconds(), rate(base), perRec(baseCPU))
	fmt.Printf("| exchange ingest: server.Start → ready (decode JSON, validate, apply to the store) | %d | %.2f | %.0f | %.2f× | %s |\n",
		rows, ready.Seconds(), rate(ready), rate(ready)/rate(base), perRec(readyCPU))
	if produced {
		fmt.Printf("| (setup) produce with kafka-go Writer, lz4, acks=all, %.0f bytes/record | %d | %.2f | %.0f | — | — |\n",
			float64(prodBytes)/float64(rows), rows, prodTime.Seconds(), rate(prodTime))
	}
	fmt.Printf("| record produced to Kafka → visible to a consumer's HTTP lookup (%d updates) | p50 %s | max %s | — | — | — |\n",
		len(vis), feed.Ms(feed.Percentile(sorted, 50)), feed.Ms(sorted[len(sorted)-1]))
	fmt.Println()

	// Graded on wall time, as ARCHITECTURE.md's 200k records/s and issue 17's 0.5× are;
	// the CPU ratio stands beside it, the steadier figure on a shared machine.
	wall, cpu := rate(ready)/rate(base), float64(baseCPU)/float64(readyCPU)
	feed.Target("ingest", fmt.Sprintf("%.0f records/s wall; %s CPU per record", rate(ready), perRec(readyCPU)),
		fmt.Sprintf("%.0f records/s, %s CPU per record (kafka-go readers)", rate(base), perRec(baseCPU)),
		fmt.Sprintf("%.2f× wall, %.2f× CPU", wall, cpu), rate(ready) >= 200_000 && wall >= 0.5, cmd)
	worst := sorted[len(sorted)-1]
	feed.Target("visible", fmt.Sprintf("Kafka → lookup max %s (p50 %s) + connector poll ≤ 1 s", feed.Ms(worst), feed.Ms(feed.Percentile(sorted, 50))),
		"—", "—", worst+time.Second <= 2*time.Second, cmd)
	if keep {
		fmt.Printf("@keep|%s\n", prefix)
	}
	return nil
}

// cpuTime is the CPU time (user + system) this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// consume reads every partition to its end offset with one kafka-go reader each, as
// fast as kafka-go delivers, and returns the wall time.
func consume(ctx context.Context, broker, topic string, ends map[int]int64) (time.Duration, error) {
	var wg sync.WaitGroup
	errc := make(chan error, len(ends))
	t0 := time.Now()
	for p, end := range ends {
		if end == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: p,
				MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 250 * time.Millisecond})
			defer r.Close()
			if err := r.SetOffset(kafka.FirstOffset); err != nil {
				errc <- err
				return
			}
			for {
				m, err := r.FetchMessage(ctx)
				if err != nil {
					errc <- err
					return
				}
				if m.Offset >= end-1 {
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(t0)
	select {
	case err := <-errc:
		return 0, err
	default:
		return d, nil
	}
}

// visibility produces single updates (status → migrated) and polls a consumer lookup
// over HTTP every 5 ms until each shows, returning produce-start → visible times.
func visibility(ctx context.Context, broker, topic string, cfg *server.Config, httpAddr string, rows, n int) ([]time.Duration, error) {
	tok, err := feed.Token(cfg)
	if err != nil {
		return nil, err
	}
	c, err := client.New(client.Config{HTTP: "http://" + httpAddr, Token: tok})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	w := &kafka.Writer{Addr: kafka.TCP(broker), Topic: topic, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond,
		Compression: kafka.Lz4, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	var out []time.Duration
	for k := range n {
		p := feed.MakePerson((k*7919 + 13) % rows)
		p.Status = "migrated"
		p.UpdatedAt = time.Now().UTC().Format(time.RFC3339)
		v, _ := json.Marshal(p)
		key, _ := json.Marshal(p.IDNumber)
		t0 := time.Now()
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(p.IDNumber), Value: v,
			Headers: []kafka.Header{{Key: "govx-op", Value: []byte("upsert")}}}); err != nil {
			return nil, err
		}
		deadline := t0.Add(30 * time.Second)
		for {
			rec, err := c.Lookup(ctx, feed.Dataset, exchange.LookupCmd{Key: key, Purpose: feed.Purpose})
			if err != nil {
				return nil, fmt.Errorf("lookup: %w", err)
			}
			if rec["status"] == "migrated" {
				out = append(out, time.Since(t0))
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("update of person %d not visible after 30s", k)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The topic is kept for the later commands of bench/run.sh (-keep), whose baselines
	// (the C++ peer's table, PostgreSQL's rows) are made from feed.MakePerson: the
	// updated persons are put back as they were, so that every command serves the same
	// persons as its baseline.
	var restore []kafka.Message
	for k := range n {
		p := feed.MakePerson((k*7919 + 13) % rows)
		v, _ := json.Marshal(p)
		restore = append(restore, kafka.Message{Key: []byte(p.IDNumber), Value: v, Headers: []kafka.Header{{Key: "govx-op", Value: []byte("upsert")}}})
	}
	if err := w.WriteMessages(ctx, restore...); err != nil {
		return nil, fmt.Errorf("restore the updated persons: %w", err)
	}
	return out, nil
}
