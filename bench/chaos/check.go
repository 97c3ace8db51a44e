package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"

	"govx/exchange"
	"govx/exchange/audit"
	"govx/exchange/client"
)

// check runs every check of the run into rep.
func check(ctx context.Context, cl *cluster, src *sources, ld *load, inj *injector, rep *report) {
	rep.add(checkConsistency(ctx, cl, src, rep))
	// The checker's own pulls are audited too: ship everything before reading the table.
	if err := waitShipped(ctx, cl); err != nil {
		rep.add("audit shipped", false, err.Error())
		return
	}
	rep.add(checkVerify(ctx, cl, rep))
	events, err := readEvents(ctx, cl.ch)
	if err != nil {
		rep.add("ClickHouse holds every event once", false, err.Error())
		return
	}
	rep.add(checkOnce(events, rep))
	rep.add(checkDecisions(events, ld))
	rep.add(checkScope(ld))
	rep.add(checkAvailability(ld, inj, rep))
}

// checkConsistency waits until each replica serves every source row's final value, and
// reports how long each took after the run ended.
func checkConsistency(ctx context.Context, cl *cluster, src *sources, rep *report) (string, bool, string) {
	const name = "every replica serves every source row's final value"
	var details []string
	ok := true
	rows, err := converge(ctx, cl, src, rep.cfg.catchUpDeadline, func(i int, diff []string) {
		rep.catchUp[i] = time.Since(rep.end)
		if len(diff) > 0 {
			ok = false
			details = append(details, fmt.Sprintf("%s still differs after %s: %s", replicas[i], rep.cfg.catchUpDeadline, strings.Join(diff, "; ")))
			return
		}
		details = append(details, fmt.Sprintf("%s: all rows equal the sources %.1fs after the run", replicas[i], rep.catchUp[i].Seconds()))
	})
	if err != nil {
		return name, false, err.Error()
	}
	return name, ok, fmt.Sprintf("%d rows of the four registers; %s", rows, strings.Join(details, "; "))
}

// converge pulls each replica until it serves the sources' current values or the
// deadline passes, and calls done with what still differs (nothing: it caught up). It
// returns how many source rows were compared.
func converge(ctx context.Context, cl *cluster, src *sources, limit time.Duration, done func(replica int, diff []string)) (int, error) {
	want := map[string]map[string]string{}
	rows := 0
	for _, r := range registers {
		m, err := src.final(ctx, r)
		if err != nil {
			return 0, err
		}
		want[r.dataset] = m
		rows += len(m)
	}
	tok, err := cl.token("chaos-check")
	if err != nil {
		return 0, err
	}
	for i := range replicas {
		c, err := client.New(client.Config{Flight: cl.flight[i], HTTP: cl.http[i], Token: tok})
		if err != nil {
			return 0, err
		}
		deadline := time.Now().Add(limit)
		var diff []string
		for {
			diff = compare(ctx, c, want)
			if len(diff) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(time.Second)
		}
		c.Close()
		done(i, diff)
	}
	return rows, nil
}

// compare pulls the changed column of every register from one replica and lists how it
// differs from want (at most a few examples per register).
func compare(ctx context.Context, c *client.Client, want map[string]map[string]string) []string {
	var diff []string
	for _, r := range registers {
		got := map[string]string{}
		cols := append(slices.Clone(r.key), r.col)
		_, err := c.Pull(ctx, exchange.PullCmd{Dataset: r.dataset, Columns: cols, Purpose: "chaos-consistency-check"}, nil,
			func(rec arrow.Record) error {
				for row := 0; row < int(rec.NumRows()); row++ {
					k := make([]string, len(r.key))
					for i := range r.key {
						k[i] = text(rec.Column(i), row, 0)
					}
					got[strings.Join(k, "|")] = text(rec.Column(len(r.key)), row, r.decimal)
				}
				return nil
			})
		if err != nil {
			diff = append(diff, r.dataset+": "+err.Error())
			continue
		}
		var bad []string
		for k, v := range want[r.dataset] {
			if g, ok := got[k]; !ok {
				bad = append(bad, fmt.Sprintf("%s missing", k))
			} else if g != v {
				bad = append(bad, fmt.Sprintf("%s %s=%q, source %q", k, r.col, g, v))
			}
		}
		for k := range got {
			if _, ok := want[r.dataset][k]; !ok {
				bad = append(bad, k+" served but not in the source")
			}
		}
		if len(bad) > 0 {
			sort.Strings(bad)
			diff = append(diff, fmt.Sprintf("%s: %d rows differ, e.g. %s", r.dataset, len(bad), strings.Join(bad[:min(3, len(bad))], ", ")))
		}
	}
	return diff
}

// text renders one value as the source database does: decimals with their scale.
func text(a arrow.Array, i int, scale int32) string {
	if a.IsNull(i) {
		return ""
	}
	switch a := a.(type) {
	case *array.String:
		return a.Value(i)
	case *array.Decimal128:
		return a.Value(i).ToString(scale)
	}
	return a.ValueStr(i)
}

// waitShipped waits until neither replica has audit events ClickHouse has not taken.
func waitShipped(ctx context.Context, cl *cluster) error {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var left []string
		for i := range replicas {
			n, err := cl.unshipped(i)
			if err != nil || n > 0 {
				left = append(left, fmt.Sprintf("%s: %v unshipped %v", replicas[i], n, err))
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("audit events still not in ClickHouse after 3 minutes: %s", strings.Join(left, "; "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkVerify runs `govx audit verify` over ClickHouse with both replicas' signed
// checkpoints, each with its own key.
func checkVerify(ctx context.Context, cl *cluster, rep *report) (string, bool, string) {
	const name = "govx audit verify: both chains with their checkpoints"
	args := []string{"audit", "verify", "--clickhouse", cl.ch, "--format", "json"}
	for _, r := range replicas {
		d := filepath.Join(cl.dir, r)
		args = append(args, "--checkpoints", filepath.Join(d, "audit.checkpoints"), "--pubkey", filepath.Join(d, "audit.key.pub"))
	}
	out, err := exec.CommandContext(ctx, filepath.Join(cl.dir, "bin/govx"), args...).CombinedOutput()
	var res audit.VerifyResult
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		return name, false, fmt.Sprintf("govx %s: %v: %s", strings.Join(args, " "), err, clipText(string(out), 600))
	}
	var chains []string
	for _, c := range res.Chains {
		chains = append(chains, fmt.Sprintf("%s seq %d..%d (%d events)", c.Instance, c.First, c.Last, c.Events))
	}
	rep.chains = chains
	if err != nil || !res.OK() || len(res.Chains) != len(replicas) {
		return name, false, fmt.Sprintf("exit %v, %d chains, problems: %v", err, len(res.Chains), res.Problems[:min(5, len(res.Problems))])
	}
	return name, true, strings.Join(chains, "; ") + "; intact"
}

func clipText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// event is an audit row as ClickHouse holds it.
type event struct {
	id, kind, instance, requestID, dept, action, dataset, decision, hash string
	at                                                                   time.Time
	seq                                                                  uint64
	columns, keys                                                        []string
}

func readEvents(ctx context.Context, addr string) ([]event, error) {
	ch, err := audit.NewClickHouse(audit.ClickHouseConfig{Addr: addr})
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	conn, err := ch.Conn(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, "SELECT event_id, kind, event_time, event_ms, instance, seq, request_id, department, action, dataset, columns, keys, decision, hash FROM "+ch.Table())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []event
	for rows.Next() {
		var e event
		var ms uint16
		if err := rows.Scan(&e.id, &e.kind, &e.at, &ms, &e.instance, &e.seq, &e.requestID, &e.dept, &e.action, &e.dataset,
			&e.columns, &e.keys, &e.decision, &e.hash); err != nil {
			return nil, err
		}
		e.at = e.at.Add(time.Duration(ms) * time.Millisecond)
		out = append(out, e)
	}
	return out, rows.Err()
}

// checkOnce: every event of both chains is in ClickHouse, by event id once; a copy
// delivered again after a kill is identical to the first.
func checkOnce(events []event, rep *report) (string, bool, string) {
	const name = "ClickHouse holds every shipped event exactly once (by event id)"
	byID := map[string]event{}
	seqs := map[string]map[uint64]bool{}
	var problems []string
	for _, e := range events {
		if prev, dup := byID[e.id]; dup {
			rep.redelivered++
			if prev.hash != e.hash || prev.seq != e.seq || prev.instance != e.instance {
				problems = append(problems, fmt.Sprintf("event %s stored twice with different contents", e.id))
			}
			continue
		}
		byID[e.id] = e
		if seqs[e.instance] == nil {
			seqs[e.instance] = map[uint64]bool{}
		}
		if seqs[e.instance][e.seq] {
			problems = append(problems, fmt.Sprintf("instance %s seq %d held by two different events", e.instance, e.seq))
		}
		seqs[e.instance][e.seq] = true
	}
	var parts []string
	for _, r := range replicas {
		s := seqs[r]
		var hi uint64
		for q := range s {
			hi = max(hi, q)
		}
		lo := uint64(1)
		if s[0] {
			lo = 0
		}
		if want := hi - lo + 1; uint64(len(s)) != want {
			problems = append(problems, fmt.Sprintf("instance %s: %d distinct events for seq %d..%d: %d missing", r, len(s), lo, hi, want-uint64(len(s))))
		}
		parts = append(parts, fmt.Sprintf("%s %d events", r, len(s)))
		rep.events += len(s)
	}
	if len(seqs) != len(replicas) {
		problems = append(problems, fmt.Sprintf("the table holds the chains of %d instances, want %d", len(seqs), len(replicas)))
	}
	detail := fmt.Sprintf("%s; %d rows, %d redelivered identical copies (at-least-once shipping after kills; readers count distinct event ids)",
		strings.Join(parts, ", "), len(events), rep.redelivered)
	if len(problems) > 0 {
		return name, false, strings.Join(problems[:min(5, len(problems))], "; ")
	}
	return name, true, detail
}

// checkDecisions: every response with data has an allowing decision event of the
// replica that answered, written no later than the data arrived, naming its columns.
func checkDecisions(events []event, ld *load) (string, bool, string) {
	const name = "every response with data has a decision event before it"
	byRID := map[string][]event{}
	type k struct{ instance, dept, action, key string }
	byKey := map[k][]time.Time{}
	for _, e := range events {
		if e.kind != string(audit.KindDecision) || e.decision != "allow" {
			continue
		}
		byRID[e.requestID] = append(byRID[e.requestID], e)
		for _, key := range e.keys {
			byKey[k{e.instance, e.dept, e.action, key}] = append(byKey[k{e.instance, e.dept, e.action, key}], e.at)
		}
	}
	for _, ts := range byKey {
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	}
	used := map[k]int{}
	ld.mu.Lock()
	resps := slices.Clone(ld.responses)
	ld.mu.Unlock()
	slices.SortFunc(resps, func(a, b *response) int { return a.at.Compare(b.at) })
	var problems []string
	bad := func(format string, args ...any) {
		if len(problems) < 5 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	nBad := 0
	for _, r := range resps {
		inst := replicas[r.replica]
		// ClickHouse keeps milliseconds: a decision in the same millisecond is before.
		at := r.at.Truncate(time.Millisecond).Add(time.Millisecond)
		if r.requestID != "" {
			evs := byRID[r.requestID]
			if len(evs) == 0 {
				nBad++
				bad("%s %s: no allowing decision event for request %s", r.op, inst, r.requestID)
				continue
			}
			e := evs[0]
			switch {
			case e.instance != inst:
				nBad++
				bad("%s: request %s answered by %s but decided by %s", r.op, r.requestID, inst, e.instance)
			case e.at.After(at):
				nBad++
				bad("%s: request %s's data reached the client at %s, before its decision (%s)", r.op, r.requestID, r.at.Format(time.RFC3339Nano), e.at.Format(time.RFC3339Nano))
			default:
				for _, c := range r.columns {
					if c != "op" && !slices.Contains(e.columns, c) {
						nBad++
						bad("%s: request %s returned column %s its decision (%v) does not name", r.op, r.requestID, c, e.columns)
						break
					}
				}
			}
			continue
		}
		// Lookups and verifications: one allowing decision of that replica, department
		// and key, no later than the answer, for each answer.
		kk := k{inst, r.dept, r.action, r.key}
		ts := byKey[kk]
		i := used[kk]
		if i >= len(ts) || ts[i].After(at) {
			nBad++
			bad("%s at %s of key %s by %s at %s: no allowing decision event before it", r.op, inst, r.key, r.dept, r.at.Format(time.RFC3339Nano))
			continue
		}
		used[kk] = i + 1
	}
	if nBad > 0 {
		return name, false, fmt.Sprintf("%d of %d responses: %s", nBad, len(resps), strings.Join(problems, "; "))
	}
	return name, true, fmt.Sprintf("%d responses with data, each matched to its allowing decision event", len(resps))
}

func checkScope(ld *load) (string, bool, string) {
	const name = "no response held data outside its decision"
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if len(ld.violations) > 0 {
		return name, false, fmt.Sprintf("%d: %s", len(ld.violations), strings.Join(ld.violations[:min(5, len(ld.violations))], "; "))
	}
	return name, true, "every row checked against its department's columns, region scope and masks"
}

// checkAvailability: errors only while the client's replica was down (from its kill
// until it was ready again, plus a reconnect grace), and every client of a restarted
// replica succeeded again afterwards.
func checkAvailability(ld *load, inj *injector, rep *report) (string, bool, string) {
	const name = "clients saw errors only while their replica was down, and reconnected"
	grace := rep.cfg.reconnectGrace
	down := func(replica int, at time.Time) bool {
		for _, f := range inj.faults {
			if f.Target == replicas[replica] && !at.Before(f.Killed) && !at.After(f.Ready.Add(grace)) {
				return true
			}
		}
		return false
	}
	ld.mu.Lock()
	defer ld.mu.Unlock()
	var unexplained []string
	n := 0
	for _, f := range ld.failures {
		if down(f.replica, f.at) {
			rep.errorsDuring[f.kind]++
			continue
		}
		rep.errorsOutside[f.kind]++
		n++
		if len(unexplained) < 5 {
			unexplained = append(unexplained, fmt.Sprintf("%s at %s (%s, +%.1fs): %s", f.op, replicas[f.replica], f.kind, f.at.Sub(rep.start).Seconds(), clipText(f.msg, 200)))
		}
	}
	// Reconnection: after each replica fault, every worker of that replica that failed
	// during it succeeded again; the delay is from the replica's readiness.
	for _, f := range inj.faults {
		r := slices.Index(replicas, f.Target)
		if r < 0 {
			continue
		}
		var worst time.Duration
		for _, c := range ld.reconnects {
			if c.replica == r && !c.lastError.Before(f.Killed) && !c.lastError.After(f.Ready.Add(grace)) {
				worst = max(worst, c.success.Sub(f.Ready))
			}
		}
		rep.reconnect = append(rep.reconnect, fmt.Sprintf("%s killed at +%.0fs: clients back %.1fs after it was ready", f.Target, f.Killed.Sub(rep.start).Seconds(), worst.Seconds()))
	}
	for _, w := range ld.workers {
		if w.failing {
			n++
			unexplained = append(unexplained, fmt.Sprintf("worker %d of %s never succeeded again after its error at +%.1fs", w.id, replicas[w.replica], w.lastErr.Sub(rep.start).Seconds()))
		}
	}
	if n > 0 {
		return name, false, fmt.Sprintf("%d errors outside a replica's downtime: %s", n, strings.Join(unexplained, "; "))
	}
	return name, true, fmt.Sprintf("%d errors, all while the client's replica was down; every client reconnected", len(ld.failures))
}
