package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

type checkResult struct {
	name   string
	ok     bool
	detail string
}

// report is what a run found, printed and written as markdown.
type report struct {
	cfg           config
	start, end    time.Time
	faults        []fault
	load          *load
	changes       int64
	checks        []checkResult
	catchUp       [2]time.Duration
	chains        []string
	events        int
	redelivered   int
	errorsDuring  map[string]int
	errorsOutside map[string]int
	reconnect     []string
}

func (r *report) add(name string, ok bool, detail string) {
	r.checks = append(r.checks, checkResult{name, ok, detail})
	mark := "PASS"
	if !ok {
		mark = "FAIL"
	}
	logf("%s %s: %s", mark, name, detail)
}

func (r *report) failed() []string {
	var out []string
	for _, c := range r.checks {
		if !c.ok {
			out = append(out, c.name)
		}
	}
	return out
}

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	verdict := "all checks passed"
	if f := r.failed(); len(f) > 0 {
		verdict = fmt.Sprintf("%d check(s) FAILED", len(f))
	}
	p("# Chaos run: %s", verdict)
	p("")
	p("Written by `bench/chaos` (`make chaos DURATION=%s`; `make test` runs it for 5 minutes). The", r.cfg.duration)
	p("cluster of `deploy/local/cluster.sh` on loopback: three Kafka brokers in KRaft mode (replication")
	p("factor 3, `min.insync.replicas=2`), a ClickHouse of its own, two exchange replicas, the four base")
	p("registers' connectors (`acks=all`) reading MariaDB. Under load and source changes, one part at")
	p("a time was SIGKILLed at random and started again after a random pause. How to read it:")
	p("[operations.md](operations.md#proving-the-topology-make-chaos).")
	p("")
	p("- run: %s, from %s; seed %d", r.end.Sub(r.start).Round(time.Second), r.start.UTC().Format(time.RFC3339), r.cfg.seed)
	total := r.load.total()
	p("- load: %d requests (%.0f/s) by %d clients pinned to their replica; %d source row changes",
		total, float64(total)/r.end.Sub(r.start).Seconds(), len(r.load.workers), r.changes)
	p("- audit: %d events in ClickHouse over %d chains; %d redelivered identical copies", r.events, len(r.chains), r.redelivered)
	p("- catch-up after the run: exchange-a %.1fs, exchange-b %.1fs (until every row equals its source)",
		r.catchUp[0].Seconds(), r.catchUp[1].Seconds())
	p("")
	p("## Checks")
	p("")
	p("| check | result | detail |")
	p("|---|---|---|")
	for _, c := range r.checks {
		res := "pass"
		if !c.ok {
			res = "**FAIL**"
		}
		p("| %s | %s | %s |", c.name, res, strings.ReplaceAll(c.detail, "|", "\\|"))
	}
	p("")
	p("## Faults injected")
	p("")
	counts := map[string]int{}
	for _, f := range r.faults {
		counts[kindOf(f.Target)]++
	}
	p("%d faults: %d broker, %d replica, %d connector, %d ClickHouse.", len(r.faults), counts["broker"], counts["replica"], counts["connector"], counts["clickhouse"])
	p("")
	p("| # | killed at | part | down for (pause) | serving again after restart | note |")
	p("|---|---|---|---|---|---|")
	for i, f := range r.faults {
		p("| %d | +%.0fs | %s | %.1fs | %.1fs | %s |", i+1, f.Killed.Sub(r.start).Seconds(), f.Target, f.Pause.Seconds(),
			f.Ready.Sub(f.Restarted).Seconds(), f.Err)
	}
	if len(r.reconnect) > 0 {
		p("")
		p("Clients of a killed replica, back after it was ready: %s.", strings.Join(r.reconnect, "; "))
	}
	p("")
	p("## Requests")
	p("")
	p("| operation | ok | errors |")
	p("|---|---|---|")
	r.load.mu.Lock()
	for _, n := range r.load.sortedOps() {
		v := r.load.byOp[n]
		p("| %s | %d | %d |", n, v[0], v[1])
	}
	r.load.mu.Unlock()
	p("")
	p("Errors by kind, while the client's replica was down (killed until ready again + %s reconnect grace) / outside:", r.cfg.reconnectGrace)
	p("")
	p("| kind | during downtime | outside |")
	p("|---|---|---|")
	kinds := map[string]bool{}
	for k := range r.errorsDuring {
		kinds[k] = true
	}
	for k := range r.errorsOutside {
		kinds[k] = true
	}
	var ks []string
	for k := range kinds {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	if len(ks) == 0 {
		p("| (none) | 0 | 0 |")
	}
	for _, k := range ks {
		p("| %s | %d | %d |", k, r.errorsDuring[k], r.errorsOutside[k])
	}
	return b.String()
}

func kindOf(target string) string {
	for k, names := range targets {
		for _, n := range names {
			if n == target {
				return k
			}
		}
	}
	return "other"
}
