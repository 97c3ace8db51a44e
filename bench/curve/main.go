// Command curve measures what the exchange costs as the register grows: at each size
// (persons of population.person) the time from start to ready (ingesting the whole
// topic from Kafka), the ingest rate, the process's RSS and Go heap, the first bulk
// pull after start (cold) and warm pulls (6 columns, 2 masks, the bench agreement),
// and the lookup p99 at a fixed offered rate (open loop, audit shipped to ClickHouse).
// It fits each measure against persons (fitAll), extrapolates it to 100M persons, and
// draws the curves as PNG charts (charts.go, gonum.org/v1/plot).
//
// Each size runs in a child process of its own (this command with -one), so that its
// RSS and heap are the exchange's alone, and under a time bound: a size that does not
// finish within -step-timeout is recorded as such, not estimated. The parent produces
// each size's topic before the child starts and deletes it after.
//
// The exchange runs alone (no connectors, no demo): `govx demo` at these sizes would
// spend most of its time generating and snapshotting SQLite sources on the same two
// cores (bench/lookup -demo measures the demo at 1M).
//
//	source .local/env.sh && go run ./bench/curve -sizes 100k,1m
//	go run ./bench/curve -sizes 100k,1m,3m,10m -charts docs/bench
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"govx/bench/ingest/feed"
	"govx/exchange"
	"govx/exchange/client"
)

// point is one size's measures; the child prints it as JSON.
type point struct {
	Persons     int     `json:"persons"`
	Err         string  `json:"err,omitempty"`
	ProduceS    float64 `json:"produce_s"`
	ReadyS      float64 `json:"ready_s"`
	IngestRate  float64 `json:"ingest_per_s"`
	RSSReadyMB  float64 `json:"rss_ready_mb"`
	RSSPeakMB   float64 `json:"rss_peak_mb"`
	HeapLiveMB  float64 `json:"heap_live_mb"` // after a forced GC at ready
	HeapInuseMB float64 `json:"heap_inuse_mb"`
	FirstPullS  float64 `json:"first_pull_s"`
	WarmPullS   float64 `json:"warm_pull_s"`
	LookupP50ms float64 `json:"lookup_p50_ms"`
	LookupP99ms float64 `json:"lookup_p99_ms"`
	LookupErrs  int64   `json:"lookup_errors"`
}

func main() {
	sizes := flag.String("sizes", "100k,1m", "persons at each point, comma-separated (k and m suffixes: 100k,1m,3m,10m)")
	stepTimeout := flag.Duration("step-timeout", 20*time.Minute, "bound on one size (produce, start, measure); a size past it is recorded as not done")
	charts := flag.String("charts", "", "write the PNG charts into this directory (e.g. docs/bench)")
	rate := flag.Int("rate", 2000, "offered lookups per second for the lookup p99")
	lookupDur := flag.Duration("lookup-duration", 5*time.Second, "length of the lookup phase")
	runs := flag.Int("runs", 3, "warm pulls (median)")
	broker := flag.String("kafka", os.Getenv("GOVX_TEST_KAFKA"), "Kafka broker host:port")
	chAddr := flag.String("clickhouse", os.Getenv("GOVX_TEST_CLICKHOUSE"), "ClickHouse native address of the audit shipper")
	one := flag.Int("one", 0, "internal: measure one size in this process on topic -prefix and print it as JSON")
	prefix := flag.String("prefix", "", "internal: with -one, the topic prefix")
	flag.Parse()
	if *broker == "" || *chAddr == "" {
		log.Fatal("bench/curve: need -kafka and -clickhouse (or source .local/env.sh)")
	}
	if *one > 0 {
		p := measure(*one, *prefix, *broker, *chAddr, *rate, *lookupDur, *runs, *stepTimeout)
		json.NewEncoder(os.Stdout).Encode(p)
		return
	}
	ns, err := parseSizes(*sizes)
	if err != nil {
		log.Fatal("bench/curve: ", err)
	}
	args := []string{"-sizes", *sizes}
	if *charts != "" {
		args = append(args, "-charts", *charts)
	}
	cmd := feed.Command("bench/curve", args)
	var points []point
	for _, n := range ns {
		log.Printf("%d persons (bound %v)", n, *stepTimeout)
		p := runSize(n, *broker, *chAddr, *rate, *lookupDur, *runs, *stepTimeout)
		if p.Err != "" {
			log.Printf("%d persons: %s", n, p.Err)
		}
		points = append(points, p)
	}
	fits := fitAll(points)
	report(cmd, *rate, *lookupDur, *stepTimeout, points, fits)
	if *charts != "" {
		if err := drawCharts(*charts, points, fits); err != nil {
			log.Fatal("bench/curve: charts: ", err)
		}
		// Linked relative to the charts directory's parent (docs/ for docs/bench).
		for _, c := range chartSet {
			fmt.Printf("![%s](%s/%s)\n", c.title, filepath.Base(*charts), c.file)
		}
		fmt.Println()
	}
}

// parseSizes reads "100k,1m,3m,10m".
func parseSizes(s string) ([]int, error) {
	var ns []int
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		mult := 1
		switch {
		case strings.HasSuffix(f, "k"):
			mult, f = 1_000, strings.TrimSuffix(f, "k")
		case strings.HasSuffix(f, "m"):
			mult, f = 1_000_000, strings.TrimSuffix(f, "m")
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-sizes %q: want sizes like 100k,1m,3m,10m", s)
		}
		// feed.MakePerson's birth dates pass today past about 10.5M persons.
		if n*mult > 10_500_000 {
			return nil, fmt.Errorf("-sizes: at most 10.5M persons (the generator's IDs repeat past that)")
		}
		ns = append(ns, n*mult)
	}
	return ns, nil
}

// runSize produces the topic, measures in a child process within the bound, and
// deletes the topic.
func runSize(n int, broker, chAddr string, rate int, lookupDur time.Duration, runs int, bound time.Duration) point {
	p := point{Persons: n}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	prefix := "govxcurve" + feed.RandomSuffix() + "."
	defer feed.DeleteTopic(broker, feed.Topic(prefix))
	t0 := time.Now()
	if _, err := feed.Produce(ctx, broker, feed.Topic(prefix), 6, n); err != nil {
		p.Err = fmt.Sprintf("producing the topic: %v", err)
		if ctx.Err() != nil {
			p.Err = fmt.Sprintf("not done within %v: producing %d persons to Kafka did not finish", bound, n)
		}
		return p
	}
	produced := time.Since(t0)
	self, err := os.Executable()
	if err != nil {
		p.Err = err.Error()
		return p
	}
	left := bound - produced
	c := exec.CommandContext(ctx, self, "-one", strconv.Itoa(n), "-prefix", prefix, "-kafka", broker, "-clickhouse", chAddr,
		"-rate", strconv.Itoa(rate), "-lookup-duration", lookupDur.String(), "-runs", strconv.Itoa(runs), "-step-timeout", left.String())
	c.Stderr = os.Stderr
	out, err := c.Output()
	if ctx.Err() != nil {
		p.Err = fmt.Sprintf("not done within %v (produce %.0f s, then the exchange's start and measures)", bound, produced.Seconds())
		return p
	}
	if err != nil {
		p.Err = fmt.Sprintf("the measuring process failed: %v", err)
		return p
	}
	if err := json.Unmarshal(out, &p); err != nil {
		p.Err = fmt.Sprintf("reading the measures: %v", err)
	}
	p.ProduceS = produced.Seconds()
	return p
}

// procMB reads a field of /proc/self/status (VmRSS, VmHWM) in MB.
func procMB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb * 1024 / 1e6
		}
	}
	return 0
}

// measure is the child: start the exchange on the topic, and measure.
func measure(n int, prefix, broker, chAddr string, rate int, lookupDur time.Duration, runs int, bound time.Duration) (p point) {
	p.Persons = n
	fail := func(err error) point { p.Err = err.Error(); return p }
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "govx-bench-curve-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	db := "govx_bench_" + feed.RandomSuffix()
	defer feed.DropClickHouseDatabase(chAddr, db)
	cfg, err := feed.ExchangeOptions{Dir: dir, Broker: broker, Prefix: prefix, ClickHouse: chAddr, CHDatabase: db}.Config()
	if err != nil {
		return fail(err)
	}
	log.Printf("%d persons: starting the exchange", n)
	x, ready, err := feed.Start(ctx, cfg, bound)
	if err != nil {
		return fail(err)
	}
	defer x.Close()
	p.ReadyS = ready.Seconds()
	p.IngestRate = float64(n) / ready.Seconds()
	p.RSSReadyMB = procMB("VmRSS")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.HeapInuseMB = float64(ms.HeapInuse) / 1e6
	runtime.GC()
	runtime.ReadMemStats(&ms)
	p.HeapLiveMB = float64(ms.HeapAlloc) / 1e6

	tok, err := feed.Token(cfg)
	if err != nil {
		return fail(err)
	}
	xc, err := client.New(client.Config{Flight: x.FlightAddr(), HTTP: "http://" + x.HTTPAddr(), Token: tok})
	if err != nil {
		return fail(err)
	}
	defer xc.Close()
	cmd := exchange.PullCmd{Dataset: feed.Dataset, Purpose: feed.Purpose, CaseRef: "bench"}
	pull := func() (time.Duration, error) {
		t0 := time.Now()
		res, err := xc.Pull(ctx, cmd, nil, func(arrow.Record) error { return nil })
		if err == nil && res.Rows != int64(n) {
			err = fmt.Errorf("the pull returned %d rows, want %d", res.Rows, n)
		}
		return time.Since(t0), err
	}
	log.Printf("%d persons: first pull", n)
	d, err := pull()
	if err != nil {
		return fail(err)
	}
	p.FirstPullS = d.Seconds()
	var warm []time.Duration
	for range runs {
		d, err := pull()
		if err != nil {
			return fail(err)
		}
		warm = append(warm, d)
	}
	p.WarmPullS = feed.Percentile(feed.Sorted(warm), 50).Seconds()

	log.Printf("%d persons: lookups at %d/s for %v", n, rate, lookupDur)
	const nKeys = 4096
	bodies := make([][]byte, nKeys)
	for k := range nKeys {
		id := feed.MakePerson(int(uint64(k) * 2654435761 % uint64(n))).IDNumber
		bodies[k], _ = json.Marshal(map[string]any{"key": id, "purpose": feed.Purpose, "case_ref": "bench"})
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64, DisableCompression: true}}
	url := "http://" + x.HTTPAddr() + "/v1/datasets/" + feed.Dataset + "/lookup"
	lookup := func(i int) error {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(bodies[i%nKeys]))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("lookup: %s", resp.Status)
		}
		return nil
	}
	lat, errs, _ := feed.OpenLoop(rate, lookupDur, 64, lookup)
	p.LookupP50ms = float64(feed.Percentile(lat, 50)) / 1e6
	p.LookupP99ms = float64(feed.Percentile(lat, 99)) / 1e6
	p.LookupErrs = errs
	p.RSSPeakMB = procMB("VmHWM")
	return p
}

// fit is two models of one measure against persons, least squares over the sizes
// measured: a power law value ≈ a·persons^b (b, the slope in log-log, says how the cost
// grows: 1 is linear) and a line value ≈ c0 + c1·persons (a fixed cost and a cost per
// person). Extrapolation uses the line for costs that add up per person (time to
// ingest, memory, a pull that streams every row) and the power law for a latency
// percentile, which has no per-person part.
type fit struct {
	name, unit string
	get        func(point) float64
	linear     bool // extrapolate with the line
	a, b       float64
	c0, c1     float64
	n          int // points fitted
}

func (f fit) at(persons float64) float64 {
	if f.linear {
		return f.c0 + f.c1*persons
	}
	return f.a * math.Pow(persons, f.b)
}

func fitAll(points []point) []fit {
	fits := []fit{
		{name: "start → ready", unit: "s", linear: true, get: func(p point) float64 { return p.ReadyS }},
		{name: "RSS at ready", unit: "MB", linear: true, get: func(p point) float64 { return p.RSSReadyMB }},
		{name: "Go heap live at ready", unit: "MB", linear: true, get: func(p point) float64 { return p.HeapLiveMB }},
		{name: "first pull after start", unit: "s", linear: true, get: func(p point) float64 { return p.FirstPullS }},
		{name: "warm pull", unit: "s", linear: true, get: func(p point) float64 { return p.WarmPullS }},
		{name: "lookup p99", unit: "ms", get: func(p point) float64 { return p.LookupP99ms }},
	}
	for i := range fits {
		var xs, ys []float64
		for _, p := range points {
			if v := fits[i].get(p); p.Err == "" && v > 0 {
				xs, ys = append(xs, float64(p.Persons)), append(ys, v)
			}
		}
		fits[i].n = len(xs)
		if len(xs) < 2 {
			continue
		}
		lx, ly := make([]float64, len(xs)), make([]float64, len(ys))
		for k := range xs {
			lx[k], ly[k] = math.Log(xs[k]), math.Log(ys[k])
		}
		la, b := leastSquares(lx, ly)
		fits[i].a, fits[i].b = math.Exp(la), b
		fits[i].c0, fits[i].c1 = leastSquares(xs, ys)
	}
	return fits
}

// leastSquares returns the intercept and slope of the line fitted to (xs, ys).
func leastSquares(xs, ys []float64) (float64, float64) {
	var sx, sy, sxx, sxy float64
	n := float64(len(xs))
	for k := range xs {
		sx, sy, sxx, sxy = sx+xs[k], sy+ys[k], sxx+xs[k]*xs[k], sxy+xs[k]*ys[k]
	}
	slope := (n*sxy - sx*sy) / (n*sxx - sx*sx)
	return (sy - slope*sx) / n, slope
}

func report(cmd string, rate int, lookupDur, bound time.Duration, points []point, fits []fit) {
	fmt.Printf("`%s` — the exchange alone (in its own process per size), population.person from a 6-partition topic, bench agreement "+
		"(6 columns, 2 masks), Go Flight client in-process; lookups open loop at %d/s for %v, audit shipped to ClickHouse; each size bounded by %v; %s\n\n",
		cmd, rate, lookupDur, bound, feed.Machine())
	fmt.Println("| persons | start → ready | ingest records/s | RSS at ready (peak) | Go heap live | heap bytes/person | first pull | warm pull | first / warm | lookup p50 / p99 |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range points {
		if p.Err != "" {
			fmt.Printf("| %d | %s | | | | | | | | |\n", p.Persons, strings.ReplaceAll(p.Err, "|", "/"))
			continue
		}
		errs := ""
		if p.LookupErrs > 0 {
			errs = fmt.Sprintf(" (%d errors)", p.LookupErrs)
		}
		fmt.Printf("| %d | %.1f s | %.0f | %.0f MB (%.0f MB) | %.0f MB | %.0f | %.3f s | %.3f s | %.2f× | %.2f / %.2f ms%s |\n",
			p.Persons, p.ReadyS, p.IngestRate, p.RSSReadyMB, p.RSSPeakMB, p.HeapLiveMB, p.HeapLiveMB*1e6/float64(p.Persons),
			p.FirstPullS, p.WarmPullS, p.FirstPullS/p.WarmPullS, p.LookupP50ms, p.LookupP99ms, errs)
	}
	fmt.Println()
	fmt.Println("Fits over the sizes above (least squares): the log-log slope b of value ≈ a·persons^b (1 is linear), the line value ≈ fixed + per person, " +
		"and the extrapolation — by the line for times and memory, by the power law for the lookup p99:")
	fmt.Println()
	fmt.Println("| measure | log-log slope b | line: fixed + per million persons | sizes fitted | at 10M | at 100M (extrapolated) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, f := range fits {
		if f.n < 2 {
			fmt.Printf("| %s | — | — | %d | — | — |\n", f.name, f.n)
			continue
		}
		fmt.Printf("| %s | %.2f | %s + %s | %d | %s | %s |\n", f.name, f.b, value(f.c0, f.unit), value(f.c1*1e6, f.unit), f.n, value(f.at(1e7), f.unit), value(f.at(1e8), f.unit))
	}
	fmt.Println()
	// Linear growth is the target: exponent ≤ 1.1 for the start and the memory.
	for _, k := range []struct{ key, name string }{{"curve-ready", "start → ready"}, {"curve-heap", "Go heap live at ready"}} {
		for _, f := range fits {
			if f.name != k.name || f.n < 2 {
				continue
			}
			sizes := []string{}
			for _, p := range points {
				if p.Err == "" {
					sizes = append(sizes, humanPersons(p.Persons))
				}
			}
			feed.Target(k.key, fmt.Sprintf("log-log slope %.2f over %s; %s per million persons, %s at 100M (extrapolated)",
				f.b, strings.Join(sizes, ", "), value(f.c1*1e6, f.unit), value(f.at(1e8), f.unit)),
				"slope 1 (linear)", fmt.Sprintf("%.2f", f.b), f.b <= 1.1, cmd)
		}
	}
}

func humanPersons(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000 && n%1_000 == 0:
		return fmt.Sprintf("%dk", n/1_000)
	}
	return strconv.Itoa(n)
}

// value formats a measure for people: MB past 10 GB in GB, seconds past 2 minutes with
// minutes beside them.
func value(v float64, unit string) string {
	switch {
	case unit == "MB" && math.Abs(v) >= 10_000:
		return fmt.Sprintf("%.1f GB", v/1000)
	case unit == "s" && v >= 120:
		return fmt.Sprintf("%.0f s (%.0f min)", v, v/60)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	}
	return fmt.Sprintf("%.3g %s", v, unit)
}
