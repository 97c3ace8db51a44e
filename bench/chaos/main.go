// Command chaos is the fault-injection proof of the production topology: on the loopback
// cluster of deploy/local/cluster.sh (three KRaft brokers with replication factor 3 and
// min.insync.replicas 2, a ClickHouse of its own, two exchange replicas, the four base
// registers' connectors reading MariaDB), it runs for -duration
//
//   - a steady load through govx/exchange/client, each client pinned to one replica as
//     a department system behind a load balancer would be: population lookups and pulls
//     and changes pulls (the cursor used at either replica), verifications, legal
//     entity, land parcel and indicator pulls, at -rate requests per second;
//   - source changes at the four department databases (UPDATEs in MariaDB);
//   - SIGKILLs, one at a time and each restarted after a random pause, of a broker, an
//     exchange replica, a connector or ClickHouse: the four kinds in a random order
//     each round (so a short run hits each), the part of a kind at random.
//
// Then it checks, and exits 1 unless every check holds:
//
//   - consistency: every source row's final value (the column the run changes, for
//     every key of the four registers) is what each replica serves, once caught up;
//   - decisions: every response that carried data has an allowing decision event,
//     written by the replica that answered, no later than the client received it, and
//     naming every column the response held;
//   - scope: no response held data outside its decision (columns outside the agreement,
//     rows outside the department's region, a column the decision masks unmasked);
//   - audit: `govx audit verify --clickhouse` passes over both replicas' chains with
//     their signed checkpoints, and ClickHouse holds every event of both chains once by
//     event id, with no gap in either chain (redelivered copies, which at-least-once
//     shipping may leave after a kill, are identical and counted);
//   - availability: clients saw errors only while their replica was down (killed, until
//     ready again, plus a reconnect grace), and every client of a restarted replica
//     succeeded again after it came back.
//
// It prints a summary (faults injected, requests and errors by kind, catch-up times)
// and writes it as markdown to -out.
//
//	go run ./bench/chaos -duration 5m -out docs/CHAOS.md    # what make chaos runs
//
// The cluster is reset (state under .local/cluster and the chaos_<dept> databases
// removed) and started at the beginning, and stopped at the end unless -keep. It binds
// loopback only and never touches the single-node services the tests share.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

func main() {
	duration := flag.Duration("duration", 5*time.Minute, "how long the load, source changes and faults run")
	rate := flag.Float64("rate", 200, "requests per second, over both replicas")
	workers := flag.Int("workers", 8, "clients per replica")
	changes := flag.Float64("changes", 10, "source row changes per second, over the four databases")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed (faults, keys, operations)")
	out := flag.String("out", "", "write the summary as markdown to this file (e.g. docs/CHAOS.md)")
	keep := flag.Bool("keep", false, "leave the cluster running at the end")
	noReset := flag.Bool("no-reset", false, "start from the cluster's current state instead of a fresh one")
	flag.Parse()
	if err := run(config{duration: *duration, rate: *rate, workers: *workers, changes: *changes, seed: *seed,
		out: *out, keep: *keep, reset: !*noReset}); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

type config struct {
	duration        time.Duration
	rate, changes   float64
	workers         int
	seed            uint64
	out             string
	keep, reset     bool
	repo, ctl, dir  string
	reconnectGrace  time.Duration
	catchUpDeadline time.Duration
}

func run(cfg config) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	cfg.repo = findRepo(wd)
	cfg.ctl = filepath.Join(cfg.repo, "deploy/local/cluster.sh")
	cfg.dir = filepath.Join(cfg.repo, ".local/cluster")
	cfg.reconnectGrace = 8 * time.Second
	cfg.catchUpDeadline = 5 * time.Minute
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rng := rand.New(rand.NewPCG(cfg.seed, cfg.seed^0x9e3779b97f4a7c15))
	logf("seed %d; duration %s; %.0f req/s; %.0f source changes/s", cfg.seed, cfg.duration, cfg.rate, cfg.changes)
	cl := &cluster{ctl: cfg.ctl, dir: cfg.dir}
	if cfg.reset {
		if err := cl.cmd(ctx, "reset"); err != nil {
			return err
		}
	}
	if err := cl.cmd(ctx, "up"); err != nil {
		return err
	}
	if !cfg.keep {
		defer func() {
			if err := cl.cmd(context.Background(), "down"); err != nil {
				logf("stopping the cluster: %v", err)
			}
		}()
	}
	if err := cl.loadEnv(); err != nil {
		return err
	}
	src, err := openSources(ctx, cl.sources)
	if err != nil {
		return err
	}
	defer src.close()
	// The run starts from replicas that serve the sources as they are: the connectors'
	// first snapshots published and ingested.
	var behind []string
	if _, err := converge(ctx, cl, src, cfg.catchUpDeadline, func(i int, diff []string) {
		if len(diff) > 0 {
			behind = append(behind, fmt.Sprintf("%s: %v", replicas[i], diff))
		}
	}); err != nil {
		return err
	}
	if len(behind) > 0 {
		return fmt.Errorf("the replicas did not serve the sources before the run: %v", behind)
	}
	logf("both replicas serve the sources; the run starts")
	ld, err := newLoad(cl, src, cfg, rng.Uint64())
	if err != nil {
		return err
	}
	defer ld.close()

	// The run: load, source changes and faults side by side until the end.
	start := time.Now()
	end := start.Add(cfg.duration)
	runCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	inj := &injector{cl: cl, rng: rand.New(rand.NewPCG(rng.Uint64(), 1)), start: start}
	var wg sync.WaitGroup
	var mutErr error
	wg.Add(3)
	go func() { defer wg.Done(); ld.run(runCtx) }()
	go func() {
		defer wg.Done()
		mutErr = src.mutate(runCtx, cfg.changes, rand.New(rand.NewPCG(rng.Uint64(), 2)))
	}()
	// The last fault ends well before the load does, so that the end of the run also
	// shows the clients of a restarted part succeeding again.
	go func() { defer wg.Done(); inj.run(runCtx, end.Add(-30*time.Second)) }()
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if mutErr != nil {
		return fmt.Errorf("changing the sources: %w", mutErr)
	}
	logf("run over: %d requests, %d faults, %d source changes; checking", ld.total(), len(inj.faults), src.changed())

	// Whatever a fault left down is started again (an interrupted restart would
	// otherwise read as lost data).
	if err := cl.cmd(ctx, "up"); err != nil {
		return err
	}
	rep := &report{cfg: cfg, start: start, end: time.Now(), faults: inj.faults, load: ld, changes: src.changed(),
		errorsDuring: map[string]int{}, errorsOutside: map[string]int{}}
	check(ctx, cl, src, ld, inj, rep)
	md := rep.markdown()
	fmt.Print(md)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(md), 0o644); err != nil {
			return err
		}
		logf("summary written to %s", cfg.out)
	}
	if failed := rep.failed(); len(failed) > 0 {
		return fmt.Errorf("%d check(s) failed: %v", len(failed), failed)
	}
	return nil
}

// findRepo returns the directory holding go.mod at or above dir.
func findRepo(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[chaos %s] %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}
