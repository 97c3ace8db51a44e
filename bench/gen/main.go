// Command gen measures `govx gen`'s bulk load: it generates the synthetic department
// registers at a given scale into each target and prints, per target, the rows per
// second beside a baseline measured in the same run (the generator alone, writing to a
// discard writer: the ceiling any target can reach) as a markdown table row.
//
//	go run ./bench/gen -scale 1000000 -to sqlite:/tmp/govx-bench \
//	    -to 'postgres://govx:govx@127.0.0.1:15432/govx_bench?sslmode=disable' \
//	    -to 'mysql://govx:govx@127.0.0.1:13306/?prefix=govx_bench_'
//
// Targets may also come from GOVX_BENCH_TARGETS (space-separated). Targets are
// overwritten (tables dropped and recreated); passwords are never printed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"govx/connectors/synth"
)

type targetList []string

func (t *targetList) String() string     { return strings.Join(*t, " ") }
func (t *targetList) Set(v string) error { *t = append(*t, v); return nil }

func main() {
	scale := flag.Int("scale", 1_000_000, "persons to generate (organizations scale/10, parcels scale/5)")
	seed := flag.Uint64("seed", 1, "random seed")
	var targets targetList
	flag.Var(&targets, "to", "a target as for govx gen --to (repeatable)")
	flag.Parse()
	if len(targets) == 0 {
		targets = strings.Fields(os.Getenv("GOVX_BENCH_TARGETS"))
	}
	if len(targets) == 0 {
		fmt.Fprintln(os.Stderr, "bench/gen: give at least one -to TARGET (or GOVX_BENCH_TARGETS)")
		os.Exit(2)
	}
	if err := run(*scale, *seed, targets); err != nil {
		fmt.Fprintln(os.Stderr, "bench/gen:", err)
		os.Exit(1)
	}
}

func run(scale int, seed uint64, targets []string) error {
	ctx := context.Background()
	g, err := synth.New(synth.DefaultOptions(scale, seed))
	if err != nil {
		return err
	}
	base, baseRows, err := load(ctx, g, synth.Discard())
	if err != nil {
		return err
	}
	baseRate := float64(baseRows) / base.Seconds()
	fmt.Printf("<!-- go run ./bench/gen -scale %d -seed %d; %s, GOMAXPROCS=%d; baseline: generator → discard, %d rows in %.2fs -->\n",
		scale, seed, runtime.Version(), runtime.GOMAXPROCS(0), baseRows, base.Seconds())
	fmt.Println("| target | rows | seconds | rows/s | baseline rows/s (generator only) | ratio |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, target := range targets {
		w, err := synth.Open(ctx, target)
		if err != nil {
			return err
		}
		d, rows, err := load(ctx, g, w)
		w.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", synth.Redact(target), err)
		}
		rate := float64(rows) / d.Seconds()
		fmt.Printf("| %s | %d | %.2f | %.0f | %.0f | %.2f× |\n",
			kind(target), rows, d.Seconds(), rate, baseRate, rate/baseRate)
	}
	return nil
}

func load(ctx context.Context, g *synth.Generator, w synth.Writer) (time.Duration, int, error) {
	start := time.Now()
	sums, err := synth.Generate(ctx, g, w, nil)
	rows := 0
	for _, s := range sums {
		rows += s.Rows
	}
	return time.Since(start), rows, err
}

// kind names a target without its address or credentials.
func kind(target string) string {
	k, _, _ := strings.Cut(target, ":")
	if k == "mysql" {
		return "mysql (MariaDB)"
	}
	return k
}
