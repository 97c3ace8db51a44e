// Command flight measures bulk pulls of population.person over Arrow Flight through
// the real exchange (server.Start against Kafka, token auth, the OPA decision, the
// audit spool shipping to ClickHouse, projection to 6 of 10 columns and two masks),
// in the same run as its baselines:
//
//   - every row: a bare Go Flight server (bench/bareflight) streaming the very batches
//     the exchange sent (kept from an untimed pull), with no policy, no auth and no audit;
//   - a row filter keeping one row in eight: PostgreSQL doing the same filter and masks
//     in SQL and streaming COPY (SELECT …) TO STDOUT (FORMAT binary) through pgx.
//
// Both servers run in this process with the same client (govx/exchange/client, gRPC
// receive limit raised for 64k-row batches), the same GOGC and 64k-row batches; runs
// alternate between the contenders and the median is reported. The first pull after
// start is timed on -cold exchanges started afresh, each with a new connection, and
// their median graded against the bare server's warm median. It prints markdown rows
// and @target lines for bench/run.sh.
//
//	source .local/env.sh && go run ./bench/flight -rows 1000000
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/util"
	"github.com/jackc/pgx/v5"

	"govx/bench/bareflight"
	"govx/bench/ingest/feed"
	"govx/exchange"
	"govx/exchange/client"
)

func main() {
	rows := flag.Int("rows", envInt("BENCH_ROWS", 1_000_000), "persons (default $BENCH_ROWS or 1M)")
	broker := flag.String("kafka", os.Getenv("GOVX_TEST_KAFKA"), "Kafka broker host:port")
	pgURL := flag.String("postgres", os.Getenv("GOVX_TEST_POSTGRES"), "PostgreSQL URL (the baseline of the filtered pull)")
	chAddr := flag.String("clickhouse", os.Getenv("GOVX_TEST_CLICKHOUSE"), "ClickHouse native address for the audit shipper (empty: spool only)")
	prefix := flag.String("prefix", "", "read an existing topic PREFIXpopulation.person holding -rows persons (bench/ingest -keep) instead of producing one")
	cpuprofile = flag.String("cpuprofile", "", "write a CPU profile of the timed runs (every contender) to this file")
	firstProfile = flag.String("cpuprofile-first", "", "write a CPU profile of the first pull after start to this file")
	runs := flag.Int("runs", 5, "timed pulls per contender (alternating)")
	cold := flag.Int("cold", 3, "exchanges started afresh whose first pull is timed (the cold row is their median)")
	flag.Parse()
	if *broker == "" || *pgURL == "" {
		log.Fatal("bench/flight: need -kafka and -postgres (or source .local/env.sh)")
	}
	cmd := feed.Command("bench/flight", []string{"-rows", strconv.Itoa(*rows), "-runs", strconv.Itoa(*runs), "-cold", strconv.Itoa(*cold)})
	if err := run(*broker, *pgURL, *chAddr, *prefix, *rows, *runs, max(*cold, 1), cmd); err != nil {
		log.Fatal("bench/flight: ", err)
	}
}

var cpuprofile, firstProfile *string

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// startExchange starts an exchange in dir on the persons' topic and connects a client
// to it; stop closes both and drops the exchange's audit database.
func startExchange(ctx context.Context, dir, broker, prefix, chAddr string) (*client.Client, func(), error) {
	opts := feed.ExchangeOptions{Dir: dir, Broker: broker, Prefix: prefix}
	if chAddr != "" {
		opts.ClickHouse, opts.CHDatabase = chAddr, "govx_bench_"+feed.RandomSuffix()
	}
	dropDB := func() {
		if chAddr != "" {
			feed.DropClickHouseDatabase(chAddr, opts.CHDatabase)
		}
	}
	cfg, err := opts.Config()
	if err != nil {
		return nil, nil, err
	}
	log.Printf("starting the exchange")
	x, err := feed.StartRetrying(ctx, cfg, 10*time.Minute, 3)
	if err != nil {
		dropDB()
		return nil, nil, err
	}
	tok, err := feed.Token(cfg)
	if err == nil {
		var xc *client.Client
		xc, err = client.New(client.Config{Flight: x.FlightAddr(), HTTP: "http://" + x.HTTPAddr(), Token: tok})
		if err == nil {
			return xc, func() { xc.Close(); x.Close(); dropDB() }, nil
		}
	}
	x.Close()
	dropDB()
	return nil, nil, err
}

func run(broker, pgURL, chAddr, prefix string, rows, runs, cold int, cmd string) error {
	ctx := context.Background()
	prefix, cleanupPersons, err := feed.Persons(ctx, broker, prefix, rows)
	if err != nil {
		return err
	}
	defer cleanupPersons()
	dir, err := os.MkdirTemp("", "govx-bench-flight-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	all := exchange.PullCmd{Dataset: feed.Dataset, Purpose: feed.Purpose, CaseRef: "bench"}
	filtered := all
	filtered.Filter = []exchange.Filter{{Column: "household_region", Op: "eq", Value: feed.FilterCounty}}

	// The first pull after start, on each of -cold exchanges started afresh (each with a
	// new client and connection). Its client does what a warm run's does: counts the rows
	// and lets the batches go. Keeping them, as the pull that feeds the bare server
	// does, would time 59 MB of fresh client memory in this very process, which no warm
	// run and no client of another process pays the exchange for.
	var firsts []time.Duration
	var xc *client.Client
	stop := func() {}
	defer func() { stop() }()
	for i := range cold {
		stop()
		if xc, stop, err = startExchange(ctx, filepath.Join(dir, strconv.Itoa(i)), broker, prefix, chAddr); err != nil {
			stop = func() {}
			return err
		}
		log.Printf("first pull after start %d of %d", i+1, cold)
		var stopFirst func()
		if i == 0 {
			if stopFirst, err = feed.StartProfile(*firstProfile); err != nil {
				return err
			}
		}
		t0 := time.Now()
		res, err := xc.Pull(ctx, all, nil, func(arrow.Record) error { return nil })
		if err != nil {
			return err
		}
		firsts = append(firsts, time.Since(t0))
		if stopFirst != nil {
			stopFirst()
		}
		if res.Rows != int64(rows) {
			return fmt.Errorf("first pull: %d rows, want %d", res.Rows, rows)
		}
	}

	// This pull keeps its batches: they are what the bare server streams.
	var batches []arrow.Record
	res, err := xc.Pull(ctx, all, nil, func(r arrow.Record) error { r.Retain(); batches = append(batches, r); return nil })
	if err != nil {
		return err
	}
	defer func() {
		for _, r := range batches {
			r.Release()
		}
	}()
	if err := checkPull(res, batches, rows); err != nil {
		return err
	}
	var wireBytes int64
	for _, r := range batches {
		wireBytes += util.TotalRecordSize(r)
	}

	bare, err := bareflight.Start(res.Schema, batches)
	if err != nil {
		return err
	}
	defer bare.Shutdown()
	bc, err := client.New(client.Config{Flight: bare.Addr().String(), HTTP: "http://127.0.0.1:1", Token: "unused"})
	if err != nil {
		return err
	}
	defer bc.Close()
	// The bare server's own first pull after its start, on a new connection, for the
	// cold-against-cold comparison (the graded one is against its warm median).
	t0 := time.Now()
	if _, err := bc.Pull(ctx, all, nil, func(arrow.Record) error { return nil }); err != nil {
		return fmt.Errorf("bare Flight, first pull: %w", err)
	}
	bareFirst := time.Since(t0)

	log.Printf("pg: loading %d persons", rows)
	pg, table, err := loadPostgres(ctx, pgURL, rows)
	if err != nil {
		return err
	}
	defer func() {
		pg.Exec(context.Background(), "DROP TABLE IF EXISTS "+table)
		pg.Close(context.Background())
	}()
	pgFiltered := pgCopySQL(table, "WHERE household_region = '"+feed.FilterCounty+"'")
	pgAll := pgCopySQL(table, "")

	pull := func(c *client.Client, cmd exchange.PullCmd) func() (int64, error) {
		return func() (int64, error) {
			res, err := c.Pull(ctx, cmd, nil, func(arrow.Record) error { return nil })
			return res.Rows, err
		}
	}
	copyTo := func(sql string) func() (int64, error) {
		return func() (int64, error) {
			var cw countWriter
			tag, err := pg.PgConn().CopyTo(ctx, &cw, sql)
			return tag.RowsAffected(), err
		}
	}
	contenders := []*contender{
		{name: "exchange, every row", fn: pull(xc, all)},
		{name: "bare Flight, every row", fn: pull(bc, all)},
		{name: "exchange, filter 1 in 8", fn: pull(xc, filtered)},
		{name: "PostgreSQL COPY binary, filter 1 in 8", fn: copyTo(pgFiltered)},
		{name: "PostgreSQL COPY binary, every row", fn: copyTo(pgAll)},
	}
	// One untimed round warms PostgreSQL's buffers and hint bits and the filter path.
	for _, c := range contenders {
		if _, err := c.fn(); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	log.Printf("timing %d alternating runs", runs)
	stopProfile, err := feed.StartProfile(*cpuprofile)
	if err != nil {
		return err
	}
	for range runs {
		for _, c := range contenders {
			if err := c.time(); err != nil {
				return err
			}
		}
	}
	stopProfile()
	xAll, bareAll, xFilt, pgFilt, pgEvery := contenders[0], contenders[1], contenders[2], contenders[3], contenders[4]
	if xAll.rows != int64(rows) || bareAll.rows != int64(rows) || pgEvery.rows != int64(rows) {
		return fmt.Errorf("rows: exchange %d, bare %d, PostgreSQL %d; want %d each", xAll.rows, bareAll.rows, pgEvery.rows, rows)
	}
	if xFilt.rows != pgFilt.rows {
		return fmt.Errorf("filtered rows: exchange %d, PostgreSQL %d; they must agree", xFilt.rows, pgFilt.rows)
	}

	fmt.Printf("`%s` — %d persons; 6 of 10 columns, masks id_card + name, national agreement; %d-row batches; median (best) of %d alternating runs; %s\n\n",
		cmd, rows, batches[0].NumRows(), runs, feed.Machine())
	fmt.Println("| pull | rows out | median s | best s | rows/s (input rows / median) | ratio |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	row := func(c *contender, base *contender, note string) {
		ratio := "1.00×"
		if base != nil {
			ratio = fmt.Sprintf("%.2f×", base.median().Seconds()/c.median().Seconds())
		}
		fmt.Printf("| %s%s | %d | %.3f | %.3f | %.0f | %s |\n", c.name, note, c.rows, c.median().Seconds(), c.best().Seconds(),
			float64(rows)/c.median().Seconds(), ratio)
	}
	row(bareAll, nil, fmt.Sprintf(" (baseline; %.0f MB of Arrow buffers, %.0f MB/s)", float64(wireBytes)/1e6, float64(wireBytes)/1e6/bareAll.median().Seconds()))
	row(xAll, bareAll, " (auth, decision, audit, scan, masks)")
	first := feed.Percentile(feed.Sorted(firsts), 50)
	fmt.Printf("| exchange, every row, first pull after start (median of %d starts; each a new exchange and connection) | %d | %.3f | %.3f | %.0f | %.2f× |\n",
		len(firsts), res.Rows, first.Seconds(), slices.Min(firsts).Seconds(), float64(rows)/first.Seconds(), bareAll.median().Seconds()/first.Seconds())
	row(pgFilt, nil, " (baseline)")
	row(xFilt, pgFilt, "")
	row(pgEvery, nil, " (for reference)")
	fmt.Println()
	fmt.Printf("First pulls after start, in the order of the starts: %s. The bare server's first pull after its start: %.3f s; the exchange's median first against it: %.2f×.\n\n",
		seconds(firsts), bareFirst.Seconds(), bareFirst.Seconds()/first.Seconds())

	r1 := bareAll.median().Seconds() / xAll.median().Seconds()
	feed.Target("pull-all", fmt.Sprintf("%.2fM rows/s", float64(rows)/xAll.median().Seconds()/1e6),
		fmt.Sprintf("%.2fM rows/s (bare Go Flight)", float64(rows)/bareAll.median().Seconds()/1e6), fmt.Sprintf("%.2f×", r1), r1 >= 0.9, cmd)
	r0 := bareAll.median().Seconds() / first.Seconds()
	feed.Target("pull-first", fmt.Sprintf("%.2fM rows/s", float64(rows)/first.Seconds()/1e6),
		fmt.Sprintf("%.2fM rows/s (bare Go Flight, warm)", float64(rows)/bareAll.median().Seconds()/1e6), fmt.Sprintf("%.2f×", r0), r0 >= 0.8, cmd)
	r2 := pgFilt.median().Seconds() / xFilt.median().Seconds()
	feed.Target("pull-filter", fmt.Sprintf("%.0f ms for %d of %d rows", xFilt.median().Seconds()*1e3, xFilt.rows, rows),
		fmt.Sprintf("%.0f ms (PostgreSQL COPY binary)", pgFilt.median().Seconds()*1e3), fmt.Sprintf("%.2f×", r2), r2 >= 4, cmd)
	return nil
}

// seconds lists durations as seconds, "0.052 s, 0.041 s".
func seconds(ds []time.Duration) string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = fmt.Sprintf("%.3f s", d.Seconds())
	}
	return strings.Join(out, ", ")
}

type contender struct {
	name  string
	fn    func() (int64, error)
	times []time.Duration
	rows  int64
}

func (c *contender) time() error {
	t0 := time.Now()
	n, err := c.fn()
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	c.times = append(c.times, time.Since(t0))
	c.rows = n
	return nil
}

func (c *contender) median() time.Duration {
	s := slices.Sorted(slices.Values(c.times))
	return s[len(s)/2]
}

func (c *contender) best() time.Duration { return slices.Min(c.times) }

// checkPull makes sure the exchange did what the bench claims: every row, the
// agreement's six columns, id_number masked.
func checkPull(res client.PullResult, batches []arrow.Record, rows int) error {
	if res.Rows != int64(rows) {
		return fmt.Errorf("the exchange returned %d rows, want %d: is the bench agreement in force?", res.Rows, rows)
	}
	var names []string
	for _, f := range res.Schema.Fields() {
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != strings.Join(feed.Columns, ",") {
		return fmt.Errorf("columns %v, want %v", names, feed.Columns)
	}
	if id := batches[0].Column(0).ValueStr(0); !strings.Contains(id, "********") {
		return fmt.Errorf("id_number %q is not masked", id)
	}
	return nil
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// loadPostgres copies persons 0..n-1 into a new table with an index on the filter
// column, as a department database would keep them, and returns the connection.
func loadPostgres(ctx context.Context, url string, n int) (*pgx.Conn, string, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: %w", err)
	}
	table := "govx_bench_person_" + feed.RandomSuffix()
	_, err = conn.Exec(ctx, `CREATE TABLE `+table+` (
		id_number text PRIMARY KEY, name text NOT NULL, gender text NOT NULL, birth_date date NOT NULL,
		ethnicity text, household_region text NOT NULL, address text, phone text, status text NOT NULL,
		updated_at timestamptz NOT NULL)`)
	if err != nil {
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
		birth, _ := time.Parse(time.DateOnly, p.BirthDate)
		upd, _ := time.Parse(time.RFC3339, p.UpdatedAt)
		return []any{p.IDNumber, p.Name, p.Gender, birth, p.Ethnicity, p.HouseholdRegion, p.Address, p.Phone, p.Status, upd}, nil
	})
	cols := []string{"id_number", "name", "gender", "birth_date", "ethnicity", "household_region", "address", "phone", "status", "updated_at"}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{table}, cols, src); err != nil {
		conn.Exec(ctx, "DROP TABLE IF EXISTS "+table)
		conn.Close(ctx)
		return nil, "", err
	}
	for _, q := range []string{"CREATE INDEX ON " + table + " (household_region)", "VACUUM ANALYZE " + table} {
		if _, err := conn.Exec(ctx, q); err != nil {
			conn.Exec(ctx, "DROP TABLE IF EXISTS "+table)
			conn.Close(ctx)
			return nil, "", err
		}
	}
	return conn, table, nil
}

// pgCopySQL is the same projection and masks as the bench agreement, in SQL: id_card
// keeps the first 6 and last 4 characters, name the first character and one star per
// remaining character.
func pgCopySQL(table, where string) string {
	return `COPY (SELECT left(id_number, 6) || '********' || right(id_number, 4) AS id_number,
		left(name, 1) || repeat('*', char_length(name) - 1) AS name,
		gender, birth_date, household_region, status FROM ` + table + ` ` + where + `) TO STDOUT (FORMAT binary)`
}
