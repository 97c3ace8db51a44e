// Command lookup measures lookup and verify by key over HTTP through the real exchange
// (bearer token, the OPA decision, the durable audit spool with the ClickHouse shipper
// on) at a fixed offered load, open loop: requests are sent at fixed intervals whatever
// the answers do, and each latency runs from the request's scheduled time, so a stall
// counts against every request it delays (no coordinated omission). The baseline is
// the same HTTP round trip to GET /healthz at the same rate, in the same run. Then it
// restarts the exchange with its ClickHouse address pointing at a closed port and runs
// the lookups again: serving with ClickHouse down. It prints markdown rows and @target
// lines for bench/run.sh.
//
// With -subject it also ingests the three registers a person subject view (一号式)
// links (registers.go) and measures, at -subject-rate: POST /v1/subjects/person against
// its baseline in the same run, the four lookups by key a client would otherwise make
// one after another (the person, the organization they represent, the parcel and the
// licence they hold; each request's latency is the four's together), and licence
// verification (POST /v1/licenses/verify, a signature that holds) beside the lookups.
//
//	source .local/env.sh && go run ./bench/lookup -rows 1000000 -rate 2000 -duration 10s -subject
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"govx/bench/ingest/feed"
	"govx/exchange/server"
)

func main() {
	rows := flag.Int("rows", envInt("BENCH_ROWS", 1_000_000), "persons (default $BENCH_ROWS or 1M)")
	broker := flag.String("kafka", os.Getenv("GOVX_TEST_KAFKA"), "Kafka broker host:port")
	chAddr := flag.String("clickhouse", os.Getenv("GOVX_TEST_CLICKHOUSE"), "ClickHouse native address of the audit shipper")
	prefix := flag.String("prefix", "", "read an existing topic PREFIXpopulation.person holding -rows persons (bench/ingest -keep) instead of producing one")
	rate := flag.Int("rate", 2000, "offered requests per second")
	dur := flag.Duration("duration", 10*time.Second, "length of each measured phase")
	workers := flag.Int("workers", 64, "most requests in flight (connections)")
	subject := flag.Bool("subject", false, "also measure person subject views against four sequential lookups, and licence verification")
	subjectRate := flag.Int("subject-rate", 500, "offered subject views (and baseline sequences of four lookups) per second")
	rates := flag.String("rates", "", "instead: lookup and verify from a cold start at each of these offered rates (e.g. 500,1000,2000), the server started afresh for each (cold.go)")
	demo := flag.Bool("demo", false, "with -rates: also through `govx demo --scale ROWS`")
	govx := flag.String("govx", "", "with -demo: the govx binary (default: go build ./cmd/govx)")
	demoDir := flag.String("demo-dir", "", "with -demo: the demo's --dir, where its generated sources are kept between runs (default .local/bench/demo-ROWS)")
	demoTimeout := flag.Duration("demo-timeout", 20*time.Minute, "with -demo: give up when the demo is not ready after this long")
	profileDir := flag.String("profile-dir", "", "with -rates: write each cold lookup phase's 100 ms timeline here, and through -demo the demo's CPU profile and execution trace of it (timeline.go)")
	flag.Parse()
	if *broker == "" || *chAddr == "" {
		log.Fatal("bench/lookup: need -kafka and -clickhouse (or source .local/env.sh)")
	}
	if *rates != "" {
		rs, err := parseRates(*rates)
		if err != nil {
			log.Fatal("bench/lookup: ", err)
		}
		args := []string{"-rows", strconv.Itoa(*rows), "-rates", *rates, "-duration", dur.String()}
		if *demo {
			args = append(args, "-demo")
		}
		if *demoDir == "" {
			*demoDir = filepath.Join(".local", "bench", fmt.Sprintf("demo-%d", *rows))
		}
		o := coldOptions{rows: *rows, rates: rs, dur: *dur, workers: *workers, broker: *broker, chAddr: *chAddr, prefix: *prefix,
			demo: *demo, govx: *govx, demoDir: *demoDir, demoTimeout: *demoTimeout, profileDir: *profileDir, cmd: feed.Command("bench/lookup", args)}
		if o.profileDir != "" {
			if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
				log.Fatal("bench/lookup: ", err)
			}
		}
		if err := runCold(o); err != nil {
			log.Fatal("bench/lookup: ", err)
		}
		return
	}
	args := []string{"-rows", strconv.Itoa(*rows), "-rate", strconv.Itoa(*rate), "-duration", dur.String()}
	if *subject {
		args = append(args, "-subject", "-subject-rate", strconv.Itoa(*subjectRate))
	}
	cmd := feed.Command("bench/lookup", args)
	sv := 0
	if *subject {
		sv = *subjectRate
	}
	if err := run(*broker, *chAddr, *prefix, *rows, *rate, sv, *dur, *workers, cmd); err != nil {
		log.Fatal("bench/lookup: ", err)
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

type phase struct {
	name     string
	lat      []time.Duration // sorted
	errs     int64
	achieved float64
}

// run measures; subjectRate 0 leaves the subject views and licence verification out.
func run(broker, chAddr, prefix string, rows, rate, subjectRate int, dur time.Duration, workers int, cmd string) error {
	ctx := context.Background()
	prefix, cleanupPersons, err := feed.Persons(ctx, broker, prefix, rows)
	if err != nil {
		return err
	}
	defer cleanupPersons()
	if subjectRate > 0 {
		for _, ds := range []string{orgDataset, parcelDataset, licenceDataset} {
			defer feed.DeleteTopic(broker, prefix+ds)
		}
		log.Printf("producing the organization, parcel and licence registers for %d persons", rows)
		if err := produceRegisters(ctx, broker, prefix, rows); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "govx-bench-lookup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db := "govx_bench_" + feed.RandomSuffix()
	defer feed.DropClickHouseDatabase(chAddr, db)
	cfg, err := feed.ExchangeOptions{Dir: dir, Broker: broker, Prefix: prefix, ClickHouse: chAddr, CHDatabase: db}.Config()
	if err != nil {
		return err
	}
	cfg.Store.MemoryLimit = *memoryLimit
	if *withConsole {
		cfg.Console.Listen = "127.0.0.1:0"
	}
	if subjectRate > 0 {
		cfg.Datasets = append(cfg.Datasets, orgDataset, parcelDataset, licenceDataset)
		if err := appendAgreements(cfg.PoliciesDir); err != nil {
			return err
		}
	}
	log.Printf("starting the exchange")
	x, err := feed.StartRetrying(ctx, cfg, 10*time.Minute, 3)
	if err != nil {
		return err
	}
	defer func() { x.Close() }()
	tok, err := feed.Token(cfg)
	if err != nil {
		return err
	}

	// Bodies are built beforehand so that building them is not measured.
	const nKeys = 4096
	lookups, verifies := make([][]byte, nKeys), make([][]byte, nKeys)
	for k := range nKeys {
		p := feed.MakePerson(int(uint64(k) * 2654435761 % uint64(rows)))
		lookups[k], _ = json.Marshal(map[string]any{"key": p.IDNumber, "purpose": feed.Purpose, "case_ref": "bench"})
		verifies[k], _ = json.Marshal(map[string]any{"key": p.IDNumber, "purpose": feed.Purpose, "case_ref": "bench",
			"claims": map[string]any{"name": p.Name, "birth_date": p.BirthDate}})
	}
	// Subject views of every 20th person (linked in all three registers), with the
	// keys of the baseline's four lookups and the licence's number and digest.
	subjects, seqs, licVerifies := make([][]byte, nKeys), make([][4][]byte, nKeys), make([][]byte, nKeys)
	if n := rows / subjectStride; subjectRate > 0 && n > 0 {
		lookupBody := func(key string) []byte {
			b, _ := json.Marshal(map[string]any{"key": key, "purpose": feed.Purpose, "case_ref": "bench"})
			return b
		}
		for k := range nKeys {
			i := int(uint64(k)*2654435761%uint64(n)) * subjectStride
			id := feed.MakePerson(i).IDNumber
			subjects[k], _ = json.Marshal(map[string]any{"id": id, "purpose": feed.Purpose, "case_ref": "bench"})
			seqs[k] = [4][]byte{lookupBody(id), lookupBody(usccOf(i / orgsPer)), lookupBody(parcelCodeOf(i / parcelsPer)),
				lookupBody(licenceNoOf(i / licencesPer))}
			licVerifies[k], _ = json.Marshal(map[string]any{"licence_no": licenceNoOf(i / licencesPer),
				"digest": digestOf(i / licencesPer), "purpose": feed.Purpose, "case_ref": "bench"})
		}
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers, DisableCompression: true}}
	base := "http://" + x.HTTPAddr()
	do := func(method, path string, body []byte, want string) error {
		return request(hc, base, tok, method, path, body, want)
	}
	healthz := func(int) error { return do(http.MethodGet, "/healthz", nil, "ok") }
	lookup := func(i int) error {
		return do(http.MethodPost, "/v1/datasets/"+feed.Dataset+"/lookup", lookups[i%nKeys], `"record"`)
	}
	verify := func(i int) error {
		return do(http.MethodPost, "/v1/datasets/"+feed.Dataset+"/verify", verifies[i%nKeys], `"name":true`)
	}
	subjectView := func(i int) error {
		return do(http.MethodPost, "/v1/subjects/person", subjects[i%nKeys], `"part":"licences","dataset":"license.certificate","withheld":false`)
	}
	datasets := [4]string{feed.Dataset, orgDataset, parcelDataset, licenceDataset}
	fourLookups := func(i int) error {
		for j, body := range seqs[i%nKeys] {
			if err := do(http.MethodPost, "/v1/datasets/"+datasets[j]+"/lookup", body, `"record"`); err != nil {
				return err
			}
		}
		return nil
	}
	licenceVerify := func(i int) error {
		return do(http.MethodPost, "/v1/licenses/verify", licVerifies[i%nKeys], `"result":"valid"`)
	}
	checks := []func(int) error{healthz, lookup, verify}
	if subjectRate > 0 {
		checks = append(checks, subjectView, fourLookups, licenceVerify)
	}
	// Each kind once, unmeasured, so that a broken setup fails loudly.
	for _, f := range checks {
		if err := f(0); err != nil {
			return err
		}
	}
	log.Printf("warm-up: 2 s of lookups at %d/s", rate)
	openLoop(rate, 2*time.Second, workers, lookup)

	var phases []phase
	measure := func(name string, f func(int) error) phase {
		log.Printf("%s: %v at %d/s", name, dur, rate)
		p := openLoop(rate, dur, workers, f)
		p.name = name
		phases = append(phases, p)
		return p
	}
	hz := measure("GET /healthz (baseline: the HTTP round trip alone)", healthz)
	lk := profiled(func() phase { return measure("POST lookup (auth, decision, audit, store, masks)", lookup) })
	vf := measure("POST verify (auth, decision, audit, store, claims)", verify)
	var sv, seq, lv phase
	if subjectRate > 0 {
		measureAt := func(name string, rate int, f func(int) error) phase {
			log.Printf("%s: %v at %d/s", name, dur, rate)
			p := openLoop(rate, dur, workers, f)
			p.name = name
			phases = append(phases, p)
			return p
		}
		// Alternating, so that neither contender has the quieter moment of the run.
		sv = measureAt(fmt.Sprintf("POST subjects/person (4 parts, each decided and audited), %d/s", subjectRate), subjectRate, subjectView)
		seq = measureAt(fmt.Sprintf("baseline: 4 POST lookups one after another (person, organization, parcel, licence), %d sequences/s", subjectRate), subjectRate, fourLookups)
		lv = measure("POST licenses/verify (decision, audit, store, digest, Ed25519 signature)", licenceVerify)
	}

	// ClickHouse down: the shipper points at a port where nothing listens.
	if err := x.Close(); err != nil {
		return err
	}
	closed, err := closedPort()
	if err != nil {
		return err
	}
	down := *cfg
	down.Audit.ClickHouse.Addr = closed
	down.FlightAddr, down.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	log.Printf("restarting the exchange with ClickHouse unreachable")
	x, err = feed.StartRetrying(ctx, &down, 10*time.Minute, 3)
	if err != nil {
		return err
	}
	base = "http://" + x.HTTPAddr()
	hc.CloseIdleConnections()
	openLoop(rate, 2*time.Second, workers, lookup)
	lkDown := measure("POST lookup, ClickHouse down (events stay in the spool)", lookup)
	if err := checkSpooled(x); err != nil {
		return err
	}

	fmt.Printf("`%s` — %d persons, open loop at %d req/s offered for %v per phase, latency from the scheduled send time; %s\n\n",
		cmd, rows, rate, dur, feed.Machine())
	fmt.Println("| request | requests | errors | achieved req/s | p50 | p99 | max |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	for _, p := range phases {
		fmt.Printf("| %s | %d | %d | %.0f | %s | %s | %s |\n", p.name, len(p.lat), p.errs, p.achieved,
			feed.Ms(feed.Percentile(p.lat, 50)), feed.Ms(feed.Percentile(p.lat, 99)), feed.Ms(p.lat[len(p.lat)-1]))
	}
	fmt.Println()
	p99 := func(p phase) time.Duration { return feed.Percentile(p.lat, 99) }
	ok := func(p phase) bool { return p.errs == 0 && p99(p) <= 2*time.Millisecond }
	feed.Target("lookup", "p99 "+feed.Ms(p99(lk)), "p99 "+feed.Ms(p99(hz))+" (/healthz)", fmt.Sprintf("%.2f×", float64(p99(lk))/float64(p99(hz))), ok(lk), cmd)
	feed.Target("verify", "p99 "+feed.Ms(p99(vf)), "p99 "+feed.Ms(p99(hz))+" (/healthz)", fmt.Sprintf("%.2f×", float64(p99(vf))/float64(p99(hz))), ok(vf), cmd)
	p50 := func(p phase) time.Duration { return feed.Percentile(p.lat, 50) }
	if subjectRate > 0 {
		feed.Target("subject", fmt.Sprintf("p50 %s, p99 %s", feed.Ms(p50(sv)), feed.Ms(p99(sv))),
			fmt.Sprintf("p50 %s, p99 %s (4 lookups one after another)", feed.Ms(p50(seq)), feed.Ms(p99(seq))),
			fmt.Sprintf("%.2f× (p99)", float64(p99(sv))/float64(p99(seq))), sv.errs == 0 && p99(sv) <= p99(seq), cmd)
		feed.Target("licence-verify", "p99 "+feed.Ms(p99(lv)), fmt.Sprintf("lookup p99 %s, /healthz p99 %s", feed.Ms(p99(lk)), feed.Ms(p99(hz))),
			fmt.Sprintf("%.2f× lookup", float64(p99(lv))/float64(p99(lk))), ok(lv), cmd)
	}
	change := func(a, b time.Duration) float64 { return 100 * (float64(a) - float64(b)) / float64(b) }
	feed.Target("audit-down", fmt.Sprintf("lookup p50 %s, p99 %s with ClickHouse down", feed.Ms(p50(lkDown)), feed.Ms(p99(lkDown))),
		fmt.Sprintf("p50 %s, p99 %s with it up", feed.Ms(p50(lk)), feed.Ms(p99(lk))),
		fmt.Sprintf("p50 %+.1f%%, p99 %+.1f%%", change(p50(lkDown), p50(lk)), change(p99(lkDown), p99(lk))),
		lkDown.errs == 0 && change(p50(lkDown), p50(lk)) < 5 && change(p99(lkDown), p99(lk)) < 5, cmd)
	return x.Close()
}

// checkSpooled makes sure the events of the ClickHouse-down phase were kept.
func checkSpooled(x *server.Exchange) error {
	if appends, _ := x.Spool().Stats(); appends == 0 {
		return fmt.Errorf("no audit event appended while ClickHouse was down")
	}
	return nil
}

// closedPort returns a loopback address where nothing listens.
func closedPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// openLoop is feed.OpenLoop as a phase.
func openLoop(rate int, dur time.Duration, workers int, do func(i int) error) phase {
	lat, errs, achieved := feed.OpenLoop(rate, dur, workers, do)
	return phase{lat: lat, errs: errs, achieved: achieved}
}
