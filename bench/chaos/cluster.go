package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"govx/internal/backoff"
)

// cluster drives deploy/local/cluster.sh and reads the addresses it writes.
type cluster struct {
	ctl, dir string
	flight   []string // per replica
	http     []string
	ops      []string
	ch       string
	sources  string
}

// replicas are the exchange replicas' component names, in the order of the addresses.
var replicas = []string{"exchange-a", "exchange-b"}

func (c *cluster) cmd(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, c.ctl, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cluster.sh %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// loadEnv reads .local/cluster/env.sh (export K='V' lines).
func (c *cluster) loadEnv() error {
	f, err := os.Open(filepath.Join(c.dir, "env.sh"))
	if err != nil {
		return fmt.Errorf("the cluster wrote no env.sh: %w", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		env[k] = strings.Trim(v, "'")
	}
	c.flight = strings.Split(env["GOVX_CLUSTER_FLIGHT"], ",")
	c.http = strings.Split(env["GOVX_CLUSTER_HTTP"], ",")
	c.ops = strings.Split(env["GOVX_CLUSTER_OPS"], ",")
	c.ch, c.sources = env["GOVX_CLUSTER_CLICKHOUSE"], env["GOVX_CLUSTER_SOURCES"]
	if len(c.flight) != 2 || len(c.http) != 2 || len(c.ops) != 2 || c.ch == "" || c.sources == "" {
		return fmt.Errorf("env.sh of the cluster lacks addresses: %v", env)
	}
	return nil
}

func (c *cluster) token(dept string) (string, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, "tokens", dept+".token"))
	return strings.TrimSpace(string(b)), err
}

// pid returns the pid of a running component.
func (c *cluster) pid(ctx context.Context, name string) (int, error) {
	out, err := exec.CommandContext(ctx, c.ctl, "pid", name).Output()
	if err != nil {
		return 0, fmt.Errorf("%s is not running", name)
	}
	return strconv.Atoi(strings.TrimSpace(string(out)))
}

// ready reports whether replica i answers /readyz with 200.
func (c *cluster) ready(i int) bool {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(c.ops[i] + "/readyz")
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// unshipped returns replica i's audit events not yet in ClickHouse (its metric).
func (c *cluster) unshipped(i int) (float64, error) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(c.ops[i] + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "govx_audit_unshipped_events "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s/metrics has no govx_audit_unshipped_events", c.ops[i])
}

// fault is one component killed and brought back.
type fault struct {
	Target    string
	Killed    time.Time
	Pause     time.Duration
	Restarted time.Time
	Ready     time.Time // serving again (a replica: /readyz 200; else its start returned)
	Err       string
}

// injector kills one component at a time, at random, and restarts it after a pause.
type injector struct {
	cl     *cluster
	rng    *rand.Rand
	start  time.Time
	faults []fault
}

var targets = map[string][]string{
	"broker":     {"kafka-1", "kafka-2", "kafka-3"},
	"replica":    replicas,
	"connector":  {"conn-gab", "conn-scjgj", "conn-zrzyb", "conn-tjj"},
	"clickhouse": {"clickhouse"},
}

var kinds = []string{"broker", "replica", "connector", "clickhouse"}

func (in *injector) run(ctx context.Context, last time.Time) {
	var round []int
	for {
		wait := time.Duration(8+in.rng.IntN(12)) * time.Second
		if time.Now().Add(wait).After(last) || !backoff.Sleep(ctx, wait) {
			return
		}
		// The kinds in a random order each round: a short run still hits each of them.
		if len(round) == 0 {
			round = in.rng.Perm(len(kinds))
		}
		kind := kinds[round[0]]
		round = round[1:]
		names := targets[kind]
		name := names[in.rng.IntN(len(names))]
		f := in.inject(ctx, name, time.Duration(2000+in.rng.IntN(10000))*time.Millisecond)
		in.faults = append(in.faults, f)
		logf("fault %d: %s killed, restarted after %s, serving %s later%s", len(in.faults), name,
			f.Pause.Round(time.Millisecond), f.Ready.Sub(f.Restarted).Round(time.Millisecond), errNote(f.Err))
	}
}

func errNote(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// inject SIGKILLs name, waits pause, starts it again and waits until it serves. It runs
// to the end even when ctx ends, so that no part is left down.
func (in *injector) inject(ctx context.Context, name string, pause time.Duration) fault {
	f := fault{Target: name, Pause: pause}
	bg := context.WithoutCancel(ctx)
	pid, err := in.cl.pid(bg, name)
	if err != nil {
		f.Err = err.Error()
		f.Killed, f.Restarted, f.Ready = time.Now(), time.Now(), time.Now()
		return f
	}
	// The whole process group: the service scripts start each server in a session of
	// its own, whose leader is the pid recorded.
	f.Killed = time.Now()
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for syscall.Kill(pid, 0) == nil {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(pause)
	f.Restarted = time.Now()
	sctx, cancel := context.WithTimeout(bg, 5*time.Minute)
	defer cancel()
	if err := in.cl.cmd(sctx, "start", name); err != nil {
		f.Err = err.Error()
	}
	for i, r := range replicas {
		if r == name {
			for !in.cl.ready(i) && sctx.Err() == nil {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	f.Ready = time.Now()
	return f
}
