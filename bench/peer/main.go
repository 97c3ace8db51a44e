// Command peer measures bulk pulls as a department system written with pyarrow meets
// them, against independent baselines in the same run:
//
//   - the C++ Flight peer: pyarrow's FlightServerBase (peer.py, Arrow's C++ Flight
//     server) serving the very same table from memory — the same persons, the same six
//     columns, the two masks applied beforehand — with no auth, policy or audit;
//   - psql: PostgreSQL 15 streaming COPY (SELECT … WHERE household_region = …) TO
//     STDOUT (FORMAT binary), the same filter and masks in SQL, run through the psql
//     command with its output to /dev/null.
//
// The client is pyarrow (client.py; Arrow C++ underneath), in its own process: each
// pull connects, asks GetFlightInfo, reads every batch into a table and closes. The
// exchange runs in this process (server.Start against Kafka, the audit shipper to
// ClickHouse) and is started afresh for each of the two phases, so that each phase's
// first pull is the first after a start — cold, the pull a user meets first:
//
//  1. every row: the peer's first pull (which is also the client process's first, so
//     that the client's own start — pyarrow's and gRPC's first use, fresh memory — is
//     not counted against the exchange), the exchange's first pull, then -runs
//     alternating warm pulls of each; the first pull's table must equal the peer's (rows
//     in any order, columns, types), so the two serve the same thing;
//  2. filter keeping one row in eight: the exchange's first filtered pull, the first
//     psql COPY, then -runs alternating runs of each.
//
// It prints markdown rows and @target lines for bench/run.sh.
//
//	source .local/env.sh && go run ./bench/peer -rows 1000000
package main

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"govx/bench/ingest/feed"
	"govx/exchange/mask"
	"govx/schemas"
)

//go:embed peer.py
var peerPy []byte

//go:embed client.py
var clientPy []byte

func main() {
	rows := flag.Int("rows", envInt("BENCH_ROWS", 1_000_000), "persons (default $BENCH_ROWS or 1M)")
	runs := flag.Int("runs", 5, "warm pulls per contender (alternating)")
	broker := flag.String("kafka", os.Getenv("GOVX_TEST_KAFKA"), "Kafka broker host:port")
	chAddr := flag.String("clickhouse", os.Getenv("GOVX_TEST_CLICKHOUSE"), "ClickHouse native address for the audit shipper (empty: spool only)")
	pgURL := flag.String("postgres", os.Getenv("GOVX_TEST_POSTGRES"), "PostgreSQL URL for psql (the baseline of the filtered pull)")
	python := flag.String("python", os.Getenv("GOVX_TEST_PYTHON"), "Python with pyarrow (the peer and the client)")
	prefix := flag.String("prefix", "", "read an existing topic PREFIXpopulation.person holding -rows persons (bench/ingest -keep) instead of producing one")
	cold := flag.Int("cold", 3, "exchanges started afresh whose first pull is timed (the cold row is their median)")
	bareTable := flag.String("serve-bare", "", "run as the bare Go Flight server of this Arrow IPC file instead (bench/peer starts itself so)")
	flag.Parse()
	if *bareTable != "" {
		if err := serveBare(*bareTable); err != nil {
			log.Fatal("bench/peer -serve-bare: ", err)
		}
		return
	}
	if *broker == "" || *pgURL == "" || *python == "" {
		log.Fatal("bench/peer: need -kafka, -postgres and -python (or source .local/env.sh)")
	}
	if _, err := exec.LookPath("psql"); err != nil {
		log.Fatal("bench/peer: psql is not on PATH (apt-get install postgresql-client-15)")
	}
	cmd := feed.Command("bench/peer", []string{"-rows", strconv.Itoa(*rows), "-runs", strconv.Itoa(*runs), "-cold", strconv.Itoa(*cold)})
	b := &bench{rows: *rows, runs: *runs, cold: max(*cold, 1), broker: *broker, chAddr: *chAddr, pgURL: *pgURL, python: *python, prefix: *prefix, cmd: cmd}
	if err := b.run(context.Background()); err != nil {
		log.Fatal("bench/peer: ", err)
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

type bench struct {
	rows, runs, cold                           int
	broker, chAddr, pgURL, python, prefix, cmd string
	dir                                        string
}

// pullTimes is what client.py prints for `pull`.
type pullTimes struct {
	Pyarrow       string    `json:"pyarrow"`
	ExchangeFirst float64   `json:"exchange_first"`
	ExchangeRows  int       `json:"exchange_rows"`
	PeerFirst     float64   `json:"peer_first"`
	PeerRows      int       `json:"peer_rows"`
	PeerBytes     int64     `json:"peer_bytes"`
	BareFirst     float64   `json:"bare_first"`
	BareRows      int       `json:"bare_rows"`
	Checked       bool      `json:"checked"`
	Exchange      []float64 `json:"exchange"`
	Peer          []float64 `json:"peer"`
	Bare          []float64 `json:"bare"`
}

// filterTimes is what client.py prints for `filter`.
type filterTimes struct {
	ExchangeFirst float64   `json:"exchange_first"`
	ExchangeRows  int       `json:"exchange_rows"`
	PsqlFirst     float64   `json:"psql_first"`
	Exchange      []float64 `json:"exchange"`
	Psql          []float64 `json:"psql"`
}

func (b *bench) run(ctx context.Context) error {
	prefix, cleanupPersons, err := feed.Persons(ctx, b.broker, b.prefix, b.rows)
	if err != nil {
		return err
	}
	defer cleanupPersons()
	b.prefix = prefix
	if b.dir, err = os.MkdirTemp("", "govx-bench-peer-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)
	for name, data := range map[string][]byte{"peer.py": peerPy, "client.py": clientPy} {
		if err := os.WriteFile(filepath.Join(b.dir, name), data, 0o644); err != nil {
			return err
		}
	}

	log.Printf("writing the peer's table: %d persons, masks applied", b.rows)
	table := filepath.Join(b.dir, "person.arrow")
	if err := writePeerTable(table, b.rows); err != nil {
		return err
	}
	peerAddr, stopPeer, err := startServer(exec.Command(b.python, filepath.Join(b.dir, "peer.py"), "--table", table))
	if err != nil {
		return fmt.Errorf("peer.py: %w", err)
	}
	defer stopPeer()
	self, err := os.Executable()
	if err != nil {
		return err
	}

	log.Printf("psql: loading %d persons", b.rows)
	pgTable := "govx_bench_peer_" + feed.RandomSuffix()
	if err := b.loadPostgres(pgTable); err != nil {
		return err
	}
	defer b.psql("DROP TABLE IF EXISTS " + pgTable)
	pgRows, err := b.psql("SELECT count(*) FROM " + pgTable + " WHERE household_region = '" + feed.FilterCounty + "'")
	if err != nil {
		return err
	}

	// Phase 1 runs -cold times, the exchange and the bare Go server started afresh each
	// time, so that the graded first pull is a median and not one sample; the warm pulls
	// are those of the last round.
	var all pullTimes
	var firsts, bareFirsts, peerFirsts []float64
	var readyAll time.Duration
	for i := range b.cold {
		log.Printf("phase 1 (%d of %d): every row, exchange and bare Go server started afresh", i+1, b.cold)
		bareAddr, stopBare, err := startServer(exec.Command(self, "-serve-bare", table))
		if err != nil {
			return fmt.Errorf("bare Go Flight server: %w", err)
		}
		runs := 0
		if i == b.cold-1 {
			runs = b.runs
		}
		args := []string{"--peer", "grpc://" + peerAddr, "--bare", "grpc://" + bareAddr, "--runs", strconv.Itoa(runs)}
		if i == 0 {
			args = append(args, "--check")
		}
		var round pullTimes
		readyAll, err = b.withExchange(ctx, "all-"+strconv.Itoa(i), func(flightAddr, tokenFile string) error {
			return b.client(&round, append([]string{"pull", "--exchange", "grpc://" + flightAddr, "--token-file", tokenFile}, args...)...)
		})
		stopBare()
		if err != nil {
			return err
		}
		if round.ExchangeRows != b.rows || round.PeerRows != b.rows || round.BareRows != b.rows || (i == 0 && !round.Checked) {
			return fmt.Errorf("rows: exchange %d, peer %d, bare Go %d (want %d each), checked %v", round.ExchangeRows, round.PeerRows, round.BareRows, b.rows, round.Checked)
		}
		firsts, bareFirsts = append(firsts, round.ExchangeFirst), append(bareFirsts, round.BareFirst)
		peerFirsts = append(peerFirsts, round.PeerFirst)
		all = round
	}
	all.ExchangeFirst, all.BareFirst, all.PeerFirst = median(firsts), median(bareFirsts), median(peerFirsts)

	log.Printf("phase 2: filter 1 in 8, exchange started afresh")
	var filt filterTimes
	readyFilt, err := b.withExchange(ctx, "filter", func(flightAddr, tokenFile string) error {
		return b.client(&filt, "filter", "--exchange", "grpc://"+flightAddr, "--token-file", tokenFile,
			"--column", "household_region", "--value", feed.FilterCounty, "--psql", b.pgURL,
			"--sql", copySQL(pgTable, "WHERE household_region = '"+feed.FilterCounty+"'"), "--runs", strconv.Itoa(b.runs))
	})
	if err != nil {
		return err
	}
	if strconv.Itoa(filt.ExchangeRows) != pgRows {
		return fmt.Errorf("filtered rows: exchange %d, PostgreSQL %s; they must agree", filt.ExchangeRows, pgRows)
	}
	b.report(all, firsts, bareFirsts, filt, readyAll, readyFilt)
	return nil
}

// seconds lists times in seconds, "0.052 s, 0.041 s".
func seconds(s []float64) string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%.3f s", v)
	}
	return strings.Join(out, ", ")
}

func median(s []float64) float64 {
	s = slices.Sorted(slices.Values(s))
	return s[len(s)/2]
}

func (b *bench) report(all pullTimes, firsts, bareFirsts []float64, filt filterTimes, readyAll, readyFilt time.Duration) {
	peer := median(all.Peer)
	xWarm := median(all.Exchange)
	bWarm := median(all.Bare)
	psql := median(filt.Psql)
	fWarm := median(filt.Exchange)
	fmt.Printf("`%s` — %d persons; 6 of 10 columns, masks id_card + name, national agreement; client pyarrow %s (Arrow C++) in its own process, "+
		"a new connection per pull, read_all; the exchange started afresh before each phase (ready in %.1f s and %.1f s), audit shipped to ClickHouse; "+
		"the first pull after start the median of %d starts of the exchange (and of the bare Go server), then the median (best) of %d alternating warm runs; %s\n\n",
		b.cmd, b.rows, all.Pyarrow, readyAll.Seconds(), readyFilt.Seconds(), b.cold, b.runs, feed.Machine())
	fmt.Println("| pull | rows out | first s | warm median s | warm best s | ratio (baseline median / ours) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	fmt.Printf("| C++ Flight peer (pyarrow FlightServerBase, same table in memory, no policy; baseline; %.0f MB) | %d | %.3f | %.3f | %.3f | 1.00× |\n",
		float64(all.PeerBytes)/1e6, all.PeerRows, all.PeerFirst, peer, slices.Min(all.Peer))
	fmt.Printf("| bare Go Flight server (arrow-go's stock server and writer, same table in memory, no policy, its own process; for comparison) | %d | %.3f | %.3f | %.3f | %.2f× |\n",
		all.BareRows, all.BareFirst, bWarm, slices.Min(all.Bare), peer/bWarm)
	fmt.Printf("| exchange, every row, first pull after start (cold) | %d | %.3f | — | — | %.2f× |\n", all.ExchangeRows, all.ExchangeFirst, peer/all.ExchangeFirst)
	fmt.Printf("| exchange, every row, warm | %d | — | %.3f | %.3f | %.2f× |\n", all.ExchangeRows, xWarm, slices.Min(all.Exchange), peer/xWarm)
	fmt.Printf("| psql COPY (SELECT …) TO STDOUT (FORMAT binary), filter 1 in 8 (baseline) | %d | %.3f | %.3f | %.3f | 1.00× |\n",
		filt.ExchangeRows, filt.PsqlFirst, psql, slices.Min(filt.Psql))
	fmt.Printf("| exchange, filter 1 in 8, first pull after start (cold) | %d | %.3f | — | — | %.2f× |\n", filt.ExchangeRows, filt.ExchangeFirst, psql/filt.ExchangeFirst)
	fmt.Printf("| exchange, filter 1 in 8, warm | %d | — | %.3f | %.3f | %.2f× |\n", filt.ExchangeRows, fWarm, slices.Min(filt.Exchange), psql/fWarm)
	fmt.Println()
	fmt.Printf("The first pull took %.2f× the warm one. The peer's first pull (%.3f s, median) was each client process's first too, so it carries the client's own start. "+
		"First pulls after start, in the order of the starts: the exchange %s; the bare Go server %s. "+
		"Against the bare Go Flight server in the same run: first %.2f×, warm %.2f×.\n\n",
		all.ExchangeFirst/xWarm, all.PeerFirst, seconds(firsts), seconds(bareFirsts), all.BareFirst/all.ExchangeFirst, bWarm/xWarm)

	ms := func(s float64) string { return fmt.Sprintf("%.0f ms", s*1e3) }
	r := peer / all.ExchangeFirst
	feed.Target("peer-cold", ms(all.ExchangeFirst)+" (first pull after start)", ms(peer)+" (C++ Flight peer, median)", fmt.Sprintf("%.2f×", r), r >= 0.8, b.cmd)
	r = peer / xWarm
	feed.Target("peer-warm", ms(xWarm)+" (median)", ms(peer)+" (C++ Flight peer, median)", fmt.Sprintf("%.2f×", r), r >= 0.95, b.cmd)
	r = psql / filt.ExchangeFirst
	feed.Target("psql-filter-cold", fmt.Sprintf("%s for %d of %d rows (first pull after start)", ms(filt.ExchangeFirst), filt.ExchangeRows, b.rows),
		ms(psql)+" (psql COPY binary, median)", fmt.Sprintf("%.2f×", r), r >= 4, b.cmd)
	r = psql / fWarm
	feed.Target("psql-filter-warm", fmt.Sprintf("%s (median)", ms(fWarm)), ms(psql)+" (psql COPY binary, median)", fmt.Sprintf("%.2f×", r), r >= 4, b.cmd)
}

// withExchange starts an exchange in a fresh directory on the shared topic, issues the
// bench token into a file, runs f and closes the exchange; it returns the time to ready.
func (b *bench) withExchange(ctx context.Context, name string, f func(flightAddr, tokenFile string) error) (time.Duration, error) {
	dir := filepath.Join(b.dir, "exchange-"+name)
	opts := feed.ExchangeOptions{Dir: dir, Broker: b.broker, Prefix: b.prefix}
	if b.chAddr != "" {
		opts.ClickHouse, opts.CHDatabase = b.chAddr, "govx_bench_"+feed.RandomSuffix()
		defer feed.DropClickHouseDatabase(b.chAddr, opts.CHDatabase)
	}
	cfg, err := opts.Config()
	if err != nil {
		return 0, err
	}
	x, ready, err := feed.StartRetryingTimed(ctx, cfg, 10*time.Minute, 3)
	if err != nil {
		return 0, err
	}
	defer x.Close()
	tok, err := feed.Token(cfg)
	if err != nil {
		return 0, err
	}
	tokenFile := filepath.Join(dir, "bench.token")
	if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
		return 0, err
	}
	return ready, f(x.FlightAddr(), tokenFile)
}

// client runs client.py with args and decodes its JSON into v.
func (b *bench) client(v any, args ...string) error {
	c := exec.Command(b.python, append([]string{filepath.Join(b.dir, "client.py")}, args...)...)
	c.Stderr = os.Stderr
	out, err := c.Output()
	if err != nil {
		return fmt.Errorf("client.py %s: %w", args[0], err)
	}
	return json.Unmarshal(out, v)
}

// startServer starts a Flight server that prints "listening PORT" once it serves and
// stops when its stdin closes (peer.py, or this command with -serve-bare), and returns
// its address and how to stop it.
func startServer(c *exec.Cmd) (string, func(), error) {
	c.Stderr = os.Stderr
	stdin, err := c.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := c.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { stdin.Close(); c.Wait() }
	line, err := bufio.NewReader(stdout).ReadString('\n')
	port, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		c.Process.Kill()
		stop()
		return "", nil, fmt.Errorf("did not start (said %q): %v", line, err)
	}
	return "127.0.0.1:" + port, stop, nil
}

// writePeerTable writes persons 0..n-1 as the exchange serves them under the bench
// agreement — its six columns, typed and described as the dataset schema says, id_number
// and name masked by exchange/mask — to an Arrow IPC file.
func writePeerTable(path string, n int) error {
	ds, ok := schemas.MustLoad().Dataset(feed.Dataset)
	if !ok {
		return fmt.Errorf("dataset %s not in the catalog", feed.Dataset)
	}
	fields := make([]arrow.Field, len(feed.Columns))
	for i, name := range feed.Columns {
		f, ok := ds.Field(name)
		if !ok {
			return fmt.Errorf("%s has no column %s", feed.Dataset, name)
		}
		fields[i] = mask.OutputField(ds.ArrowField(f), feed.Masks[name])
	}
	schema := arrow.NewSchema(fields, nil)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w, err := ipc.NewFileWriter(f, ipc.WithSchema(schema))
	if err != nil {
		f.Close()
		return err
	}
	rb := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer rb.Release()
	for i := range n {
		p := feed.MakePerson(i)
		birth, err := time.Parse(time.DateOnly, p.BirthDate)
		if err != nil {
			return err
		}
		values := map[string]string{"id_number": mask.IDCardString(p.IDNumber), "name": mask.NameString(p.Name),
			"gender": p.Gender, "household_region": p.HouseholdRegion, "status": p.Status}
		for c, name := range feed.Columns {
			switch bld := rb.Field(c).(type) {
			case *array.StringBuilder:
				bld.Append(values[name])
			case *array.Date32Builder:
				bld.Append(arrow.Date32FromTime(birth))
			default:
				return fmt.Errorf("column %s: unexpected type %s", name, fields[c].Type)
			}
		}
		if (i+1)%65536 == 0 || i == n-1 {
			rec := rb.NewRecord()
			err := w.Write(rec)
			rec.Release()
			if err != nil {
				return err
			}
		}
	}
	if err := w.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// psql runs one statement through psql and returns its unaligned, tuples-only output.
func (b *bench) psql(sql string) (string, error) {
	out, err := exec.Command("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", b.pgURL, "-c", sql).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql %q: %v: %s", sql, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// loadPostgres creates table with the person columns a department database keeps,
// copies persons 0..n-1 into it through psql (CSV on stdin), indexes the filter column
// and analyzes it.
func (b *bench) loadPostgres(table string) error {
	if _, err := b.psql(`CREATE TABLE ` + table + ` (
		id_number text PRIMARY KEY, name text NOT NULL, gender text NOT NULL, birth_date date NOT NULL,
		ethnicity text, household_region text NOT NULL, address text, phone text, status text NOT NULL,
		updated_at timestamptz NOT NULL)`); err != nil {
		return err
	}
	c := exec.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", b.pgURL, "-c", "COPY "+table+" FROM STDIN (FORMAT csv)")
	stdin, err := c.StdinPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		return err
	}
	w := bufio.NewWriterSize(stdin, 1<<20)
	var werr error
	for i := 0; i < b.rows && werr == nil; i++ {
		p := feed.MakePerson(i)
		// No value holds a comma, quote or newline: the generator's alphabet has none.
		_, werr = fmt.Fprintf(w, "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", p.IDNumber, p.Name, p.Gender, p.BirthDate, p.Ethnicity,
			p.HouseholdRegion, p.Address, p.Phone, p.Status, p.UpdatedAt)
	}
	if werr == nil {
		werr = w.Flush()
	}
	stdin.Close()
	if err := c.Wait(); err != nil || werr != nil {
		return fmt.Errorf("psql COPY FROM STDIN: %v %v: %s", err, werr, stderr.String())
	}
	for _, q := range []string{"CREATE INDEX ON " + table + " (household_region)", "VACUUM ANALYZE " + table} {
		if _, err := b.psql(q); err != nil {
			return err
		}
	}
	return nil
}

// copySQL is the bench agreement's projection and masks in SQL: id_card keeps the
// first 6 and last 4 characters, name the first character and one star per remaining
// character (what exchange/mask does to these values).
func copySQL(table, where string) string {
	return `COPY (SELECT left(id_number, 6) || '********' || right(id_number, 4) AS id_number, ` +
		`left(name, 1) || repeat('*', char_length(name) - 1) AS name, ` +
		`gender, birth_date, household_region, status FROM ` + table + ` ` + where + `) TO STDOUT (FORMAT binary)`
}
