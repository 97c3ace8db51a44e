// Command pull measures `govx pull` saving a bulk pull to a file against a pyarrow
// client of the same exchange, in the same run: N persons ingested from Kafka by an
// exchange started in this process (the bench agreement: six of ten columns, masks
// id_card + name), then alternating pulls of every row by
//
//   - `govx pull population.person --format arrow|parquet -o FILE`, the CLI built from
//     this tree, run as a user runs it (timed from process start to exit);
//   - pull.py: pyarrow.flight (Arrow C++) connecting, reading every batch into a table
//     (read_all) and writing it as an Arrow IPC stream or as Parquet with Snappy, timed
//     inside the process from connect to the file closed (interpreter start and imports
//     not counted, which favours pyarrow).
//
// The first pair of runs is a warm-up, and the files of both are compared (same rows,
// columns and types). It prints markdown rows and @target lines for bench/run.sh.
//
//	source .local/env.sh && go run ./bench/pull -rows 1000000
package main

import (
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
	"time"

	"govx/bench/ingest/feed"
)

//go:embed pull.py
var pullPy []byte

func main() {
	rows := flag.Int("rows", envInt("BENCH_ROWS", 1_000_000), "persons (default $BENCH_ROWS or 1M)")
	runs := flag.Int("runs", 5, "timed pulls per contender and format (alternating)")
	broker := flag.String("kafka", os.Getenv("GOVX_TEST_KAFKA"), "Kafka broker host:port")
	python := flag.String("python", os.Getenv("GOVX_TEST_PYTHON"), "Python with pyarrow")
	prefix := flag.String("prefix", "", "read an existing topic PREFIXpopulation.person holding -rows persons (bench/ingest -keep) instead of producing one")
	govx := flag.String("govx", "", "the govx binary to time (default: go build ./cmd/govx, from the repository root)")
	flag.Parse()
	if *broker == "" || *python == "" {
		log.Fatal("bench/pull: need -kafka and -python (or source .local/env.sh)")
	}
	cmd := feed.Command("bench/pull", []string{"-rows", strconv.Itoa(*rows), "-runs", strconv.Itoa(*runs)})
	if err := run(context.Background(), *broker, *python, *prefix, *govx, *rows, *runs, cmd); err != nil {
		log.Fatal("bench/pull: ", err)
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func run(ctx context.Context, broker, python, prefix, govx string, rows, runs int, cmd string) error {
	dir, err := os.MkdirTemp("", "govx-bench-pull-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "pull.py")
	if err := os.WriteFile(script, pullPy, 0o644); err != nil {
		return err
	}
	if govx == "" {
		govx = filepath.Join(dir, "govx")
		log.Printf("building cmd/govx")
		if out, err := exec.Command("go", "build", "-o", govx, "./cmd/govx").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/govx (run from the repository root): %v\n%s", err, out)
		}
	}
	prefix, cleanupPersons, err := feed.Persons(ctx, broker, prefix, rows)
	if err != nil {
		return err
	}
	defer cleanupPersons()
	cfg, err := feed.ExchangeOptions{Dir: filepath.Join(dir, "exchange"), Broker: broker, Prefix: prefix}.Config()
	if err != nil {
		return err
	}
	x, err := feed.StartRetrying(ctx, cfg, 10*time.Minute, 3)
	if err != nil {
		return err
	}
	defer x.Close()
	tok, err := feed.Token(cfg)
	if err != nil {
		return err
	}
	tokenFile := filepath.Join(dir, "bench.token")
	if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
		return err
	}

	// govxPull runs the CLI once and returns its wall time.
	govxPull := func(format, out string) (float64, error) {
		c := exec.Command(govx, "pull", feed.Dataset, "--purpose", feed.Purpose, "--case", "bench",
			"--flight", x.FlightAddr(), "--format", format, "-o", out)
		c.Env = append(os.Environ(), "GOVX_TOKEN="+tok, "GOVX_PROFILE=")
		t0 := time.Now()
		msg, err := c.CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("govx pull --format %s: %v\n%s", format, err, msg)
		}
		return time.Since(t0).Seconds(), nil
	}
	// pyPull runs pull.py once and returns the time it measured.
	var pyarrowVersion string
	pyPull := func(format, out string) (float64, error) {
		c := exec.Command(python, script, "pull", "--exchange", "grpc://"+x.FlightAddr(), "--token-file", tokenFile,
			"--format", format, "--out", out)
		c.Stderr = os.Stderr
		b, err := c.Output()
		if err != nil {
			return 0, fmt.Errorf("pull.py --format %s: %v", format, err)
		}
		var res struct {
			Pyarrow string  `json:"pyarrow"`
			Seconds float64 `json:"seconds"`
			Rows    int     `json:"rows"`
		}
		if err := json.Unmarshal(b, &res); err != nil {
			return 0, fmt.Errorf("pull.py said %q: %v", b, err)
		}
		if res.Rows != rows {
			return 0, fmt.Errorf("pull.py read %d rows, want %d", res.Rows, rows)
		}
		pyarrowVersion = res.Pyarrow
		return res.Seconds, nil
	}

	formats := []string{"arrow", "parquet"}
	ext := map[string]string{"arrow": ".arrows", "parquet": ".parquet"}
	times := map[string][]float64{}
	for i := 0; i <= runs; i++ { // round 0 is the warm-up
		for _, f := range formats {
			ours, theirs := filepath.Join(dir, "govx"+ext[f]), filepath.Join(dir, "pyarrow"+ext[f])
			tg, err := govxPull(f, ours)
			if err != nil {
				return err
			}
			tp, err := pyPull(f, theirs)
			if err != nil {
				return err
			}
			if i == 0 {
				log.Printf("warm-up %s: govx %.3f s, pyarrow %.3f s; comparing the files", f, tg, tp)
				c := exec.Command(python, script, "compare", ours, theirs)
				c.Stderr = os.Stderr
				if out, err := c.Output(); err != nil {
					return fmt.Errorf("govx pull --format %s wrote other rows than pyarrow: %v %s", f, err, out)
				}
				continue
			}
			times["govx "+f] = append(times["govx "+f], tg)
			times["pyarrow "+f] = append(times["pyarrow "+f], tp)
		}
	}

	median := func(s []float64) float64 { s = slices.Sorted(slices.Values(s)); return s[len(s)/2] }
	fmt.Printf("`%s` — %d persons; the bench agreement (6 of 10 columns, masks id_card + name); `govx pull` timed as a process "+
		"(start to exit), pyarrow %s timed inside its process (connect to file closed); one warm-up pair whose files are compared, "+
		"then the median (best) of %d alternating runs; %s\n\n", cmd, rows, pyarrowVersion, runs, feed.Machine())
	fmt.Println("| pull to a file | median s | best s | rows/s | ratio (pyarrow median / ours) |")
	fmt.Println("|---|---:|---:|---:|---:|")
	for _, f := range formats {
		p, g := times["pyarrow "+f], times["govx "+f]
		fmt.Printf("| pyarrow client: read_all, then %s (baseline) | %.3f | %.3f | %.0f | 1.00× |\n", f, median(p), slices.Min(p), float64(rows)/median(p))
		fmt.Printf("| `govx pull --format %s -o FILE` | %.3f | %.3f | %.0f | %.2f× |\n", f, median(g), slices.Min(g), float64(rows)/median(g), median(p)/median(g))
	}
	fmt.Println()
	ms := func(s float64) string { return fmt.Sprintf("%.0f ms", s*1e3) }
	for _, f := range formats {
		p, g := median(times["pyarrow "+f]), median(times["govx "+f])
		feed.Target("pull-cli-"+f, ms(g)+" (`govx pull --format "+f+"`, median)", ms(p)+" (pyarrow client, median)",
			fmt.Sprintf("%.2f×", p/g), p/g >= 0.8, cmd)
	}
	return nil
}
