// Command connector measures a connector snapshot — population.person rows from
// PostgreSQL onto a 6-partition topic of the real broker — against Kafka's own
// ProducerPerformance at the same record count and average record size, in the same run,
// and prints markdown rows for docs/BENCHMARKS.md.
//
//	source .local/env.sh && go run ./bench/connector -rows 1000000
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/segmentio/kafka-go"

	"govx/connectors"
	_ "govx/connectors/sqlsrc"
	"govx/connectors/synth"
)

func main() {
	rows := flag.Int("rows", 1_000_000, "population.person rows to snapshot")
	pgURL := flag.String("postgres", os.Getenv("GOVX_TEST_POSTGRES"), "PostgreSQL superuser URL")
	broker := flag.String("kafka", os.Getenv("GOVX_TEST_KAFKA"), "Kafka broker host:port")
	kafkaHome := flag.String("kafka-home", os.Getenv("GOVX_TEST_KAFKA_HOME"), "directory with libs/ of the Kafka jars")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the connector snapshot to this file")
	skipPP := flag.Bool("skip-pp", false, "skip ProducerPerformance (profiling runs only; prints no ratio)")
	flag.Parse()
	if *pgURL == "" || *broker == "" || *kafkaHome == "" {
		log.Fatal("need -postgres, -kafka and -kafka-home (or source .local/env.sh)")
	}
	ctx := context.Background()
	dsn := prepareSource(ctx, *pgURL, *rows)

	os.Setenv("GOVX_BENCH_DSN", dsn)
	os.Setenv("GOVX_KAFKA_BROKERS", *broker)
	cfg, err := connectors.LoadConfig("connectors/examples/gab.postgres.yaml")
	if err != nil {
		log.Fatal(err)
	}
	cfg.Source.DSNEnv = "GOVX_BENCH_DSN"
	cfg.Snapshot.PageSize = 20000
	prefix := "bench" + randID() + "."
	c, err := connectors.New(cfg, connectors.WithTopicPrefix(prefix),
		connectors.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		log.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
	}
	cpu0 := cpuTime()
	go func() { done <- c.Run(runCtx) }()
	var snapStart time.Time
	for snapStart.IsZero() {
		if p := c.Progress(); p.Phase == connectors.PhaseSnapshot {
			snapStart = time.Now()
		}
		select {
		case err := <-done:
			log.Fatalf("connector: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	select {
	case <-c.Ready():
	case err := <-done:
		log.Fatalf("connector: %v", err)
	}
	elapsed := time.Since(snapStart)
	cpu := cpuTime() - cpu0
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	cancel()
	<-done
	p := c.Progress()
	ours := float64(p.Published+p.Invalid) / elapsed.Seconds()
	topic := prefix + cfg.Dataset
	avg := averageRecordSize(ctx, *broker, topic)
	log.Printf("connector: %d records in %v (%.0f records/s), average key+value %d bytes; %.1f s of CPU in this process (%.1f µs per record)",
		p.Published+p.Invalid, elapsed.Round(time.Millisecond), ours, avg, cpu.Seconds(), float64(cpu.Microseconds())/float64(p.Published+p.Invalid))

	if *skipPP {
		return
	}
	ppTopic := prefix + "producer-perf"
	createTopic(ctx, *broker, ppTopic, 6)
	ppCmd, pp := producerPerformance(*kafkaHome, *broker, ppTopic, *rows, avg)
	log.Printf("ProducerPerformance: %.0f records/s", pp)

	cmd := "go run ./bench/connector -rows " + strconv.Itoa(*rows)
	fmt.Println("| what | records | avg record bytes | records/s | ratio | command |")
	fmt.Println("|---|---|---|---|---|---|")
	fmt.Printf("| connector snapshot PostgreSQL → Kafka (validate, lz4, acks=all, 6 partitions) | %d | %d | %.0f | %.2f× | `%s` |\n", p.Published+p.Invalid, avg, ours, ours/pp, cmd)
	fmt.Printf("| Kafka ProducerPerformance (same count and size, lz4, acks=all, 6 partitions) | %d | %d | %.0f | 1.00× | `%s` |\n", *rows, avg, pp, ppCmd)
}

// cpuTime is the user and system CPU time this process has used: on a shared machine it
// says more about the connector's cost than its wall-clock rate does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func randID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// prepareSource loads rows persons into a database of the benchmark's own (kept between
// runs when it already holds them) with an index on (gxsj, sfzh), the index a department
// database serving incremental reads has. The database is named for the row count, so
// runs of different sizes (bench/run.sh, a developer's 1M run) do not regenerate each
// other's data.
func prepareSource(ctx context.Context, admin string, rows int) string {
	name := "govx_bench_connector_" + strconv.Itoa(rows)
	u, err := url.Parse(admin)
	if err != nil {
		log.Fatal(err)
	}
	u.Path = "/" + name
	dsn := u.String()
	db, err := sql.Open("pgx", admin)
	if err != nil {
		log.Fatal(err)
	}
	db.Exec("CREATE DATABASE " + name)
	db.Close()
	src, err := sql.Open("pgx", dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	var n int
	if err := src.QueryRowContext(ctx, "SELECT count(*) FROM gab.rk_jbxx").Scan(&n); err == nil && n == rows {
		log.Printf("source: reusing %d rows in %s.gab.rk_jbxx", n, name)
		return dsn
	}
	log.Printf("source: generating %d persons into %s (govx gen)", rows, name)
	opts := synth.DefaultOptions(rows, 1)
	opts.Departments = []string{synth.DeptPopulation}
	g, err := synth.New(opts)
	if err != nil {
		log.Fatal(err)
	}
	w, err := synth.Open(ctx, dsn)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := synth.Generate(ctx, g, w, nil); err != nil {
		log.Fatal(err)
	}
	w.Close()
	for _, q := range []string{"CREATE INDEX ON gab.rk_jbxx (gxsj, sfzh)", "VACUUM ANALYZE gab.rk_jbxx"} {
		if _, err := src.ExecContext(ctx, q); err != nil {
			log.Fatal(err)
		}
	}
	return dsn
}

func averageRecordSize(ctx context.Context, broker, topic string) int {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	total, n := 0, 0
	for n < 2000 {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			log.Fatal(err)
		}
		total += len(m.Key) + len(m.Value)
		n++
	}
	return total / n
}

func createTopic(ctx context.Context, broker, topic string, partitions int) {
	c := &kafka.Client{Addr: kafka.TCP(broker)}
	_, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}}})
	if err != nil {
		log.Fatal(err)
	}
	time.Sleep(time.Second) // leaders settle; ProducerPerformance has no wait of its own
}

var ppResult = regexp.MustCompile(`(\d+) records sent, ([0-9.]+) records/sec`)

func producerPerformance(home, broker, topic string, records, size int) (string, float64) {
	java := "java"
	for _, j := range []string{os.Getenv("JAVA_HOME") + "/bin/java", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"} {
		if _, err := os.Stat(j); err == nil {
			java = j
			break
		}
	}
	args := []string{"-Xmx1g", "-cp", filepath.Join(home, "libs") + "/*", "org.apache.kafka.tools.ProducerPerformance",
		"--topic", topic, "--num-records", strconv.Itoa(records), "--record-size", strconv.Itoa(size), "--throughput", "-1",
		"--producer-props", "bootstrap.servers=" + broker, "acks=all", "compression.type=lz4"}
	out, err := exec.Command(java, args...).CombinedOutput()
	if err != nil {
		log.Fatalf("ProducerPerformance: %v\n%s", err, out)
	}
	m := ppResult.FindAllStringSubmatch(string(out), -1)
	if m == nil {
		log.Fatalf("ProducerPerformance printed no result:\n%s", out)
	}
	rate, _ := strconv.ParseFloat(m[len(m)-1][2], 64)
	cmd := "java -cp '.local/kafka/libs/*' org.apache.kafka.tools.ProducerPerformance --topic T --num-records " +
		strconv.Itoa(records) + " --record-size " + strconv.Itoa(size) + " --throughput -1 --producer-props bootstrap.servers=" + broker + " acks=all compression.type=lz4"
	return strings.TrimSpace(cmd), rate
}
