// Command aggregate measures an aggregate query — persons by county — over Flight SQL
// through the real exchange (server.Start ingesting the persons from Kafka, token auth,
// the OPA decision for action aggregate, the plan, suppression of cells under 10, the
// audit spool), against PostgreSQL answering the same GROUP BY over the same persons in
// the same run:
//
//   - the same answer: the cells of county × gender × status with at least 10 rows,
//     summed per county (what the exchange computes);
//   - a plain GROUP BY household_region, for scale.
//
// Runs alternate between the contenders; the first query after start is graded, the
// median of the runs after it is the warm row. Answers are compared:
// the exchange's must equal PostgreSQL's. It prints markdown rows and an @target line.
//
//	source .local/env.sh && go run ./bench/aggregate -rows 1000000
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/flight/flightsql"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"govx/bench/ingest/feed"
	"govx/exchange"
	"govx/exchange/auth"
)

// The bench's aggregate agreement: the national statistics bureau, every county.
const agreement = `
  - id: AGR-BENCH-0002
    title: 基准测试 — 全国分县区人口数（仅汇总）
    consumer: tjj
    dataset: population.person
    purposes: [benchmark-measurement]
    columns: [household_region, gender, status]
    actions: [aggregate]
    aggregate: {group_by: [household_region, gender, status], measures: [count]}
    valid_from: 2026-01-01
    valid_until: 2030-12-31
    approval: 基准〔2026〕2号
`

const query = "SELECT household_region, COUNT(*) AS persons FROM population.person GROUP BY household_region"

func main() {
	rows := flag.Int("rows", 1_000_000, "persons")
	runs := flag.Int("runs", 5, "timed queries per contender (alternating)")
	broker := flag.String("kafka", os.Getenv("GOVX_TEST_KAFKA"), "Kafka broker host:port")
	pgURL := flag.String("postgres", os.Getenv("GOVX_TEST_POSTGRES"), "PostgreSQL URL (the baseline)")
	prefix := flag.String("prefix", "", "read an existing topic PREFIXpopulation.person holding -rows persons (bench/ingest -keep) instead of producing one")
	flag.Parse()
	if *broker == "" || *pgURL == "" {
		log.Fatal("bench/aggregate: need -kafka and -postgres (or source .local/env.sh)")
	}
	cmd := feed.Command("bench/aggregate", []string{"-rows", strconv.Itoa(*rows), "-runs", strconv.Itoa(*runs)})
	if err := run(*broker, *pgURL, *prefix, *rows, *runs, cmd); err != nil {
		log.Fatal("bench/aggregate: ", err)
	}
}

type contender struct {
	name   string
	fn     func(context.Context) (map[string]int64, error)
	first  time.Duration   // the first query after start
	times  []time.Duration // the warm runs after it
	answer map[string]int64
}

func run(broker, pgURL, prefix string, rows, runs int, cmd string) error {
	ctx := context.Background()
	prefix, cleanupPersons, err := feed.Persons(ctx, broker, prefix, rows)
	if err != nil {
		return err
	}
	defer cleanupPersons()
	dir, err := os.MkdirTemp("", "govx-bench-aggregate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg, err := feed.ExchangeOptions{Dir: dir, Broker: broker, Prefix: prefix}.Config()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(cfg.PoliciesDir, "agreements.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(agreement); err != nil {
		f.Close()
		return err
	}
	f.Close()
	log.Printf("starting the exchange")
	x, ready, err := feed.Start(ctx, cfg, 10*time.Minute)
	if err != nil {
		return err
	}
	defer x.Close()
	tok, _, err := auth.OpenTokens(cfg.TokensFile).Issue(exchange.Subject{Department: "tjj"}, "benchmark")
	if err != nil {
		return err
	}
	cl, err := flightsql.NewClient(x.FlightAddr(), nil, nil, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cl.Close()
	qctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok, "govx-purpose", "benchmark-measurement")

	log.Printf("pg: loading %d persons", rows)
	pg, table, err := loadPostgres(ctx, pgURL, rows)
	if err != nil {
		return err
	}
	defer func() {
		pg.Exec(context.Background(), "DROP TABLE IF EXISTS "+table)
		pg.Close(context.Background())
	}()
	contenders := []*contender{
		{name: "govx Flight SQL aggregate (policy, plan, suppression < 10, audit)", fn: func(ctx context.Context) (map[string]int64, error) {
			return flightSQL(qctx, cl)
		}},
		{name: "PostgreSQL, the same answer (cells ≥ 10 summed per county)", fn: pgQuery(pg, `SELECT household_region, SUM(n)::bigint FROM (
			SELECT household_region, gender, status, COUNT(*) AS n FROM `+table+` GROUP BY 1, 2, 3 HAVING COUNT(*) >= 10) c GROUP BY 1`)},
		{name: "PostgreSQL, plain GROUP BY household_region", fn: pgQuery(pg, `SELECT household_region, COUNT(*) FROM `+table+` GROUP BY 1`)},
	}
	// r == -1 is each contender's first query after its start: what a planner meets first
	// (the graded row); the runs after it are the warm figures.
	for r := -1; r < runs; r++ {
		for _, c := range contenders {
			t0 := time.Now()
			ans, err := c.fn(ctx)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			if r < 0 {
				c.first = time.Since(t0)
			} else {
				c.times = append(c.times, time.Since(t0))
			}
			c.answer = ans
		}
	}
	if !maps.Equal(contenders[0].answer, contenders[1].answer) {
		return fmt.Errorf("the exchange's answer differs from PostgreSQL's:\n%v\n%v", contenders[0].answer, contenders[1].answer)
	}
	fmt.Printf("Persons: %d in %d counties; exchange ready (ingest from Kafka) in %s. `%s`\n\n", rows, len(contenders[0].answer), ready.Round(time.Millisecond), query)
	fmt.Println("| contender | first after start | warm median | warm min | warm max |")
	fmt.Println("|---|---|---|---|---|")
	for _, c := range contenders {
		s := feed.Sorted(c.times)
		fmt.Printf("| %s | %s | %s | %s | %s |\n", c.name, feed.Ms(c.first), feed.Ms(s[len(s)/2]), feed.Ms(s[0]), feed.Ms(s[len(s)-1]))
	}
	first := float64(contenders[1].first) / float64(contenders[0].first)
	feed.Target("aggregate", feed.Ms(contenders[0].first), feed.Ms(contenders[1].first), fmt.Sprintf("%.2f×", first), first >= 1, cmd)
	ours, base := median(contenders[0].times), median(contenders[1].times)
	warm := float64(base) / float64(ours)
	feed.Target("aggregate-warm", feed.Ms(ours), feed.Ms(base), fmt.Sprintf("%.2f×", warm), warm >= 1, cmd)
	return nil
}

func median(d []time.Duration) time.Duration {
	s := feed.Sorted(d)
	return s[len(s)/2]
}

// flightSQL runs the query as a Flight SQL client does: GetFlightInfo, then DoGet.
func flightSQL(ctx context.Context, cl *flightsql.Client) (map[string]int64, error) {
	info, err := cl.Execute(ctx, query)
	if err != nil {
		return nil, err
	}
	rdr, err := cl.DoGet(ctx, info.Endpoint[0].Ticket)
	if err != nil {
		return nil, err
	}
	defer rdr.Release()
	out := map[string]int64{}
	for rdr.Next() {
		rec := rdr.Record()
		for i := range int(rec.NumRows()) {
			out[rec.Column(0).(*array.String).Value(i)] = rec.Column(1).(*array.Int64).Value(i)
		}
	}
	return out, rdr.Err()
}

func pgQuery(conn *pgx.Conn, sql string) func(context.Context) (map[string]int64, error) {
	return func(ctx context.Context) (map[string]int64, error) {
		rows, err := conn.Query(ctx, sql)
		if err != nil {
			return nil, err
		}
		out := map[string]int64{}
		for rows.Next() {
			var county string
			var n int64
			if err := rows.Scan(&county, &n); err != nil {
				rows.Close()
				return nil, err
			}
			out[county] = n
		}
		rows.Close()
		return out, rows.Err()
	}
}

// loadPostgres copies the persons into a new table with the columns the query reads
// and the rest of the row, as a department database holds them.
func loadPostgres(ctx context.Context, url string, n int) (*pgx.Conn, string, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: %w", err)
	}
	table := "govx_bench_agg_" + feed.RandomSuffix()
	cols := []string{"id_number", "name", "gender", "birth_date", "household_region", "address", "phone", "status"}
	if _, err := conn.Exec(ctx, `CREATE TABLE `+table+` (id_number text PRIMARY KEY, name text, gender text, birth_date text,
		household_region text, address text, phone text, status text)`); err != nil {
		conn.Close(ctx)
		return nil, "", err
	}
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= n {
			return nil, nil
		}
		p := feed.MakePerson(i)
		i++
		return []any{p.IDNumber, p.Name, p.Gender, p.BirthDate, p.HouseholdRegion, p.Address, p.Phone, p.Status}, nil
	})
	_, err = conn.CopyFrom(ctx, pgx.Identifier{table}, cols, src)
	if err == nil {
		_, err = conn.Exec(ctx, "VACUUM ANALYZE "+table)
	}
	if err != nil {
		conn.Exec(ctx, "DROP TABLE IF EXISTS "+table)
		conn.Close(ctx)
		return nil, "", err
	}
	return conn, table, nil
}
