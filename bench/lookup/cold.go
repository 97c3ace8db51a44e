package main

// -rates: lookup and verify graded from a cold start, at several offered rates, against
// the exchange alone and (with -demo) through `govx demo`. For each rate the server is
// started afresh and measured from the moment it answers: lookups (cold: the first
// window after start, no warm-up), verify, GET /healthz (the baseline: the HTTP round
// trip alone, same rate, same client), then lookups again (warm). The audit shipper
// sends to the ClickHouse on this host throughout.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"govx/bench/ingest/feed"
	"govx/connectors/synth"
	"govx/exchange/auth"
	"govx/exchange/server"
)

// target is a started server under measurement.
type target struct {
	base     string        // http://host:port
	token    string        // the bench subject's token
	ready    time.Duration // start → answering
	lookups  [][]byte      // request bodies, built beforehand
	verifies [][]byte
	stop     func() error
	name     string    // "exchange" or "demo", for -profile-dir's files
	origin   time.Time // the server process's start (the origin of its gctrace times)
	pprof    string    // the demo's --pprof address, with -profile-dir
	dir      string    // the server's data directory (its audit spool's filesystem)
}

// coldRun is one (server, rate) measurement.
type coldRun struct {
	server                 string
	rate                   int
	ready                  time.Duration
	cold, verify, hz, warm phase
	fsync                  phase // the disk's floor: appends of one event's size, each synced
	err                    error // the server did not start: reported, the other runs kept
}

// parseRates reads "500,1000,2000".
func parseRates(s string) ([]int, error) {
	var rates []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-rates %q: want positive integers separated by commas", s)
		}
		rates = append(rates, n)
	}
	return rates, nil
}

// coldOptions are the flags of -rates.
type coldOptions struct {
	rows           int
	rates          []int
	dur            time.Duration
	workers        int
	broker, chAddr string
	prefix         string
	demo           bool   // also through govx demo
	govx           string // the govx binary for -demo ("" builds one)
	demoDir        string // where the demo keeps its generated sources between runs
	demoTimeout    time.Duration
	profileDir     string // timelines and the demo's profiles of each cold lookup phase (timeline.go)
	cmd            string
}

func runCold(o coldOptions) error {
	ctx := context.Background()
	prefix, cleanupPersons, err := feed.Persons(ctx, o.broker, o.prefix, o.rows)
	if err != nil {
		return err
	}
	defer cleanupPersons()
	o.prefix = prefix
	lookups, verifies := feedBodies(o.rows)
	starters := []struct {
		name  string
		start func() (*target, error)
	}{{fmt.Sprintf("exchange alone, %d persons", o.rows), func() (*target, error) {
		return startExchange(ctx, o, lookups, verifies)
	}}}
	if o.demo {
		if o.govx == "" {
			bin, err := buildGovx()
			if err != nil {
				return err
			}
			defer os.RemoveAll(filepath.Dir(bin))
			o.govx = bin
		}
		var demoLookups, demoVerifies [][]byte
		starters = append(starters, struct {
			name  string
			start func() (*target, error)
		}{fmt.Sprintf("`govx demo --scale %d`", o.rows), func() (*target, error) {
			if demoLookups == nil {
				demoLookups, demoVerifies = demoBodies(o.rows)
			}
			return startDemo(o, demoLookups, demoVerifies)
		}})
	}
	var runs []coldRun
	for _, s := range starters {
		for _, rate := range o.rates {
			log.Printf("%s: starting afresh for %d req/s", s.name, rate)
			t, err := s.start()
			if err != nil {
				log.Printf("%s: %v", s.name, err)
				runs = append(runs, coldRun{server: s.name, rate: rate, err: err})
				continue
			}
			r := measureCold(t, rate, o.dur, o.workers, o.profileDir)
			r.server = s.name
			runs = append(runs, r)
			if err := t.stop(); err != nil {
				return fmt.Errorf("%s: stopping: %w", s.name, err)
			}
		}
	}
	printCold(o, runs)
	return nil
}

// measureCold runs the four phases against t at rate, the first right after start.
func measureCold(t *target, rate int, dur time.Duration, workers int, profileDir string) coldRun {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers, DisableCompression: true}}
	defer hc.CloseIdleConnections()
	do := func(method, path string, body []byte, want string) error {
		return request(hc, t.base, t.token, method, path, body, want)
	}
	lookup := func(i int) error {
		return do(http.MethodPost, "/v1/datasets/"+feed.Dataset+"/lookup", t.lookups[i%len(t.lookups)], `"record"`)
	}
	verify := func(i int) error {
		return do(http.MethodPost, "/v1/datasets/"+feed.Dataset+"/verify", t.verifies[i%len(t.verifies)], `"name":true`)
	}
	healthz := func(int) error { return do(http.MethodGet, "/healthz", nil, "ok") }
	r := coldRun{rate: rate, ready: t.ready}
	r.cold = profiledCold(t, profileDir, fmt.Sprintf("%s-%d", t.name, rate), rate, dur, workers, lookup)
	r.verify = openLoop(rate, dur, workers, verify)
	r.hz = openLoop(rate, dur, workers, healthz)
	r.warm = openLoop(rate, dur, workers, lookup)
	r.fsync = diskSync(t.dir, dur)
	return r
}

// diskSync measures the floor under a durable answer on the server's disk: for dur,
// one after another, an append of an audit event's size (600 bytes) to a file beside
// the server's spool, then fsync, each timed. Every lookup waits for one such sync of
// its decision event (shared with the lookups that arrived meanwhile), so a lookup's
// p99 cannot be below the disk's.
func diskSync(dir string, dur time.Duration) phase {
	ph := phase{name: "fsync of a 600-byte append (baseline: the disk)"}
	f, err := os.CreateTemp(dir, "bench-fsync-")
	if err != nil {
		ph.errs++
		return ph
	}
	defer os.Remove(f.Name())
	defer f.Close()
	rec := make([]byte, 600)
	start := time.Now()
	for time.Since(start) < dur && len(ph.lat) < 100_000 {
		t0 := time.Now()
		if _, err := f.Write(rec); err != nil {
			ph.errs++
			break
		}
		if err := f.Sync(); err != nil {
			ph.errs++
			break
		}
		ph.lat = append(ph.lat, time.Since(t0))
	}
	ph.achieved = float64(len(ph.lat)) / time.Since(start).Seconds()
	slices.Sort(ph.lat)
	return ph
}

// request sends one request and checks the answer holds want.
func request(hc *http.Client, base, token, method, path string, body []byte, want string) error {
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(data), want) {
		return fmt.Errorf("%s %s: %s %.300s", method, path, resp.Status, data)
	}
	return nil
}

func printCold(o coldOptions, runs []coldRun) {
	fmt.Printf("`%s` — open loop, latency from each request's scheduled send time, %v per phase; for each rate the server is started afresh and "+
		"measured from its first answer: lookups (cold), verify, GET /healthz (baseline), lookups again (warm); audit shipped to ClickHouse on this host; %s\n\n",
		o.cmd, o.dur, feed.Machine())
	fmt.Println("| server | offered req/s | start → answering | request | requests | errors | achieved req/s | p50 | p99 | max | p99 / healthz p99 |")
	fmt.Println("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	p99 := func(p phase) time.Duration { return feed.Percentile(p.lat, 99) }
	p50 := func(p phase) time.Duration { return feed.Percentile(p.lat, 50) }
	for _, r := range runs {
		if r.err != nil {
			fmt.Printf("| %s | %d | did not start: %s | | | | | | | | |\n", r.server, r.rate, strings.ReplaceAll(r.err.Error(), "|", "/"))
			continue
		}
		for i, p := range []struct {
			name string
			ph   phase
		}{{"POST lookup, cold (first window after start)", r.cold}, {"POST verify", r.verify},
			{"GET /healthz (baseline)", r.hz}, {"POST lookup, warm", r.warm}, {"fsync of a 600-byte append beside the spool, one after another (baseline: the disk)", r.fsync}} {
			if len(p.ph.lat) == 0 {
				continue
			}
			ready := ""
			if i == 0 {
				ready = fmt.Sprintf("%.1f s", r.ready.Seconds())
			}
			fmt.Printf("| %s | %d | %s | %s | %d | %d | %.0f | %s | %s | %s | %.2f× |\n", r.server, r.rate, ready, p.name, len(p.ph.lat), p.ph.errs,
				p.ph.achieved, feed.Ms(p50(p.ph)), feed.Ms(p99(p.ph)), feed.Ms(p.ph.lat[len(p.ph.lat)-1]), float64(p99(p.ph))/float64(p99(r.hz)))
		}
	}
	fmt.Println()
	// The targets: the highest rate, graded on the cold window (and verify after it).
	top := o.rates[len(o.rates)-1]
	for _, r := range runs {
		if r.rate != top {
			continue
		}
		key := "exchange"
		if strings.Contains(r.server, "demo") {
			key = "demo"
		}
		if r.err != nil {
			no := "not measured: " + strings.ReplaceAll(r.err.Error(), "|", "/")
			feed.Target("lookup-cold-"+key, no, "—", "—", false, o.cmd)
			feed.Target("verify-cold-"+key, no, "—", "—", false, o.cmd)
			continue
		}
		ok := func(p phase) bool {
			return p.errs == 0 && p50(p) <= time.Millisecond && p99(p) <= 2*time.Millisecond
		}
		base := fmt.Sprintf("p99 %s (/healthz, same rate)", feed.Ms(p99(r.hz)))
		if len(r.fsync.lat) > 0 {
			base += fmt.Sprintf("; the disk's fsync p50 %s, p99 %s (one after another, same run)", feed.Ms(p50(r.fsync)), feed.Ms(p99(r.fsync)))
		}
		feed.Target("lookup-cold-"+key, fmt.Sprintf("p50 %s, p99 %s cold (warm: p99 %s)", feed.Ms(p50(r.cold)), feed.Ms(p99(r.cold)), feed.Ms(p99(r.warm))),
			base, fmt.Sprintf("%.2f×", float64(p99(r.cold))/float64(p99(r.hz))), ok(r.cold), o.cmd)
		feed.Target("verify-cold-"+key, fmt.Sprintf("p50 %s, p99 %s", feed.Ms(p50(r.verify)), feed.Ms(p99(r.verify))),
			base, fmt.Sprintf("%.2f×", float64(p99(r.verify))/float64(p99(r.hz))), ok(r.verify), o.cmd)
	}
}

// feedBodies are lookup and verify bodies of persons of the bench topic.
func feedBodies(rows int) (lookups, verifies [][]byte) {
	const nKeys = 4096
	for k := range nKeys {
		p := feed.MakePerson(int(uint64(k) * 2654435761 % uint64(rows)))
		lookups = append(lookups, lookupBody(p.IDNumber))
		verifies = append(verifies, verifyBody(p.IDNumber, p.Name, p.BirthDate))
	}
	return lookups, verifies
}

func lookupBody(key string) []byte {
	b, _ := json.Marshal(map[string]any{"key": key, "purpose": feed.Purpose, "case_ref": "bench"})
	return b
}

func verifyBody(key, name, birth string) []byte {
	b, _ := json.Marshal(map[string]any{"key": key, "purpose": feed.Purpose, "case_ref": "bench",
		"claims": map[string]any{"name": name, "birth_date": birth}})
	return b
}

// demoBodies are lookup and verify bodies of persons the demo generates at this scale
// (seed 1), regenerated from the generator: rows are pure functions of their index.
func demoBodies(scale int) (lookups, verifies [][]byte) {
	g, err := synth.New(synth.DefaultOptions(scale, 1))
	if err != nil {
		log.Fatal(err)
	}
	const nKeys = 4096
	n := g.Count(synth.DeptPopulation)
	for k := 0; len(lookups) < nKeys && k < 4*nKeys; k++ {
		i := int(uint64(k) * 2654435761 % uint64(n))
		if g.IsPlantedInvalid(synth.DeptPopulation, i) {
			continue
		}
		rec, err := synth.ToDataset(synth.DeptPopulation, g.Row(synth.DeptPopulation, i))
		if err != nil {
			continue
		}
		id, _ := rec["id_number"].(string)
		name, _ := rec["name"].(string)
		birth, _ := rec["birth_date"].(string)
		lookups = append(lookups, lookupBody(id))
		verifies = append(verifies, verifyBody(id, name, birth))
	}
	return lookups, verifies
}

// startExchange starts the exchange in-process on the bench topic, in a fresh directory.
func startExchange(ctx context.Context, o coldOptions, lookups, verifies [][]byte) (*target, error) {
	dir, err := os.MkdirTemp("", "govx-bench-lookup-cold-")
	if err != nil {
		return nil, err
	}
	db := "govx_bench_" + feed.RandomSuffix()
	cfg, err := feed.ExchangeOptions{Dir: dir, Broker: o.broker, Prefix: o.prefix, ClickHouse: o.chAddr, CHDatabase: db}.Config()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	x, ready, err := feed.StartRetryingTimed(ctx, cfg, 10*time.Minute, 3)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	tok, err := feed.Token(cfg)
	if err != nil {
		x.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	return &target{base: "http://" + x.HTTPAddr(), token: tok, ready: ready, lookups: lookups, verifies: verifies, dir: dir,
		name: "exchange", origin: processStart, stop: func() error {
			err := x.Close()
			feed.DropClickHouseDatabase(o.chAddr, db)
			os.RemoveAll(dir)
			return err
		}}, nil
}

// buildGovx builds cmd/govx into a temporary directory.
func buildGovx() (string, error) {
	dir, err := os.MkdirTemp("", "govx-bench-lookup-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "govx")
	log.Printf("building cmd/govx for -demo")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/govx").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build ./cmd/govx: %v\n%s", err, out)
	}
	return bin, nil
}

// startDemo starts `govx demo --scale rows` with its audit going to the ClickHouse on
// this host (its in-process broker, as a new user runs it), waits for DIR/ready, then
// adds the bench agreement to the demo's policies (the demo watches them) and issues
// the bench subject a token in the demo's token file: the shipped agreements' key
// budgets (at most 1,000 keys an hour) would refuse a load test. The time to ready
// runs from the command's start to the first lookup that succeeds.
func startDemo(o coldOptions, lookups, verifies [][]byte) (*target, error) {
	if err := os.MkdirAll(o.demoDir, 0o755); err != nil {
		return nil, err
	}
	flightAddr, err := closedPort()
	if err != nil {
		return nil, err
	}
	httpAddr, err := closedPort()
	if err != nil {
		return nil, err
	}
	os.Remove(filepath.Join(o.demoDir, "ready"))
	args := []string{"demo", "--dir", o.demoDir, "--scale", strconv.Itoa(o.rows), "--flight", flightAddr, "--http", httpAddr}
	if o.chAddr != "" {
		args = append(args, "--clickhouse", o.chAddr)
	}
	var pprofAddr string
	if o.profileDir != "" {
		if pprofAddr, err = closedPort(); err != nil {
			return nil, err
		}
		args = append(args, "--pprof", pprofAddr)
	}
	t0 := time.Now()
	c := exec.Command(o.govx, args...)
	logf, err := os.Create(filepath.Join(o.demoDir, "bench-demo.out"))
	if err != nil {
		return nil, err
	}
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait(); logf.Close() }()
	stop := func() error {
		c.Process.Signal(syscall.SIGINT)
		select {
		case err := <-exited:
			return err
		case <-time.After(time.Minute):
			c.Process.Kill()
			return errors.New("govx demo did not stop within a minute of SIGINT")
		}
	}
	fail := func(err error) (*target, error) {
		c.Process.Kill()
		<-exited
		out, _ := os.ReadFile(logf.Name())
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return nil, fmt.Errorf("%w; its last line: %q (output in %s)", err, lines[len(lines)-1], logf.Name())
	}
	deadline := time.Now().Add(o.demoTimeout)
	for {
		if _, err := os.Stat(filepath.Join(o.demoDir, "ready")); err == nil {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			return fail(fmt.Errorf("govx demo exited before ready: %v", err))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("govx demo not ready after %v", o.demoTimeout))
		}
	}
	if err := feed.AppendAgreement(filepath.Join(o.demoDir, "policies")); err != nil {
		return fail(err)
	}
	subj, err := auth.ParseSubject(feed.Subject)
	if err != nil {
		return fail(err)
	}
	tok, _, err := auth.OpenTokens(server.Defaults(filepath.Join(o.demoDir, "exchange")).TokensFile).Issue(subj, "benchmark")
	if err != nil {
		return fail(err)
	}
	// The exchange reloads the policies on its own; wait until it grants the agreement.
	hc := &http.Client{Timeout: 10 * time.Second}
	base := "http://" + httpAddr
	for {
		err := request(hc, base, tok, http.MethodPost, "/v1/datasets/"+feed.Dataset+"/lookup", lookups[0], `"record"`)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("the demo never granted the bench agreement: %v", err))
		}
		time.Sleep(100 * time.Millisecond)
	}
	hc.CloseIdleConnections()
	ready := time.Since(t0)
	if own, err := os.ReadFile(filepath.Join(o.demoDir, "ready")); err == nil {
		log.Printf("govx demo ready in %s s (its own count); answering the bench after %.1f s", strings.TrimSpace(string(own)), ready.Seconds())
	}
	return &target{base: base, token: tok, ready: ready, lookups: lookups, verifies: verifies, stop: stop,
		name: "demo", origin: t0, pprof: pprofAddr, dir: o.demoDir}, nil
}
