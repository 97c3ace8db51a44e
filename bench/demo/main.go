// Command demo measures how long `govx demo` takes to be ready: from starting
// `go run ./cmd/govx demo` with a warm build cache (what a new user types, as the
// command's help shows) until the demo writes DIR/ready, at the default scale; and,
// separately, the first build of cmd/govx with an empty GOCACHE (a fresh checkout on a
// machine that has the modules but has never compiled them). It prints markdown rows
// and @target lines for bench/run.sh.
//
//	go run ./bench/demo            # both
//	go run ./bench/demo -cold=false
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"govx/bench/ingest/feed"
)

func main() {
	cold := flag.Bool("cold", true, "also time a build of cmd/govx with an empty GOCACHE")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up on a step after this long")
	flag.Parse()
	args := []string{}
	if !*cold {
		args = append(args, "-cold=false")
	}
	if err := run(*cold, *timeout, feed.Command("bench/demo", args)); err != nil {
		log.Fatal("bench/demo: ", err)
	}
}

func run(cold bool, timeout time.Duration, cmd string) error {
	tmp, err := os.MkdirTemp("", "govx-bench-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// Make sure the cache is warm: this is the state the measurement names.
	log.Printf("warming the build cache")
	warm := time.Now()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(tmp, "govx"), "./cmd/govx").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/govx: %v\n%s", err, out)
	}
	warmBuild := time.Since(warm)

	log.Printf("go run ./cmd/govx demo (warm cache, default scale)")
	wall, own, err := demo(tmp, timeout)
	if err != nil {
		return err
	}

	var coldBuild time.Duration
	if cold {
		// Others edit the tree while this runs for minutes; a file changing mid-build
		// fails it, so a failed build is tried once more with a new empty cache.
		for attempt := 1; ; attempt++ {
			log.Printf("go build ./cmd/govx with an empty GOCACHE (takes minutes on 2 cores), attempt %d", attempt)
			cache := filepath.Join(tmp, fmt.Sprintf("gocache%d", attempt))
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			c := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(tmp, "govx-cold"), "./cmd/govx")
			c.Env = append(os.Environ(), "GOCACHE="+cache)
			t0 := time.Now()
			out, err := c.CombinedOutput()
			coldBuild = time.Since(t0)
			cancel()
			os.RemoveAll(cache)
			if err == nil {
				break
			}
			if attempt == 2 {
				return fmt.Errorf("cold go build: %v\n%s", err, out)
			}
			log.Printf("cold go build failed (%v): %s", err, out)
		}
	}

	fmt.Printf("`%s` — default scale (`govx demo` with no flags but --dir and free ports), in-process Kafka; %s\n\n", cmd, feed.Machine())
	fmt.Println("| step | seconds |")
	fmt.Println("|---|---:|")
	fmt.Printf("| `go build ./cmd/govx`, cache already warm (setup) | %.1f |\n", warmBuild.Seconds())
	fmt.Printf("| `go run ./cmd/govx demo` start → DIR/ready, warm cache | %.1f |\n", wall.Seconds())
	fmt.Printf("| … of which the demo's own \"ready in\" (process start → ready) | %.1f |\n", own.Seconds())
	if cold {
		fmt.Printf("| `go build ./cmd/govx` with an empty GOCACHE (first build) | %.1f |\n", coldBuild.Seconds())
		fmt.Printf("| first build + demo start → ready (cold build + the demo's own) | %.1f |\n", (coldBuild + own).Seconds())
	}
	fmt.Println()
	feed.Target("demo", fmt.Sprintf("%.1f s (go run, warm cache; %.1f s inside the demo)", wall.Seconds(), own.Seconds()), "—", "—", wall <= time.Minute, cmd)
	if cold {
		total := coldBuild + own
		feed.Target("demo-cold", fmt.Sprintf("%.1f s (cold build %.1f s + demo %.1f s)", total.Seconds(), coldBuild.Seconds(), own.Seconds()), "—", "—", total <= time.Minute, cmd)
	}
	return nil
}

// demo starts `go run ./cmd/govx demo` in its own process group and returns the wall
// time until DIR/ready appears and the seconds the demo wrote there.
func demo(tmp string, timeout time.Duration) (time.Duration, time.Duration, error) {
	dir := filepath.Join(tmp, "demo")
	fl, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	ht, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	c := exec.Command("go", "run", "./cmd/govx", "demo", "--dir", dir, "--flight", fl, "--http", ht)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := c.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	c.Stderr = c.Stdout
	t0 := time.Now()
	if err := c.Start(); err != nil {
		return 0, 0, err
	}
	lines := make(chan string, 100)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			select {
			case lines <- s.Text():
			default:
			}
		}
		close(lines)
	}()
	stop := func() {
		syscall.Kill(-c.Process.Pid, syscall.SIGINT)
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	defer stop()
	var said []string
	deadline := t0.Add(timeout)
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "ready")); err == nil && strings.HasSuffix(string(b), "\n") {
			wall := time.Since(t0)
			secs, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
			if err != nil {
				return 0, 0, fmt.Errorf("%s/ready holds %q, want seconds", dir, b)
			}
			return wall, time.Duration(secs * float64(time.Second)), nil
		}
	drain:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return 0, 0, fmt.Errorf("govx demo exited before it was ready:\n%s", strings.Join(said, "\n"))
				}
				said = append(said, l)
			default:
				break drain
			}
		}
		if time.Now().After(deadline) {
			return 0, 0, errors.New("govx demo not ready after " + timeout.String() + ":\n" + strings.Join(said, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
