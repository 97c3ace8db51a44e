package main

// -profile-dir (with -rates): what the server did during each cold lookup phase, for
// explaining a tail. For every (server, rate) it writes DIR/<server>-<rate>.timeline: the
// phase cut into 100 ms windows by each request's scheduled send, with the requests, p50,
// p99 and max of each, timed from the server process's start so they line up with its
// GODEBUG=gctrace=1 lines ("gc 12 @41.158s …": the demo's go to DIR/../bench-demo.out,
// the in-process exchange's to this command's stderr). Through the demo, which is
// started with --pprof, it also fetches the demo's CPU profile (DIR/demo-<rate>.cpu) and
// execution trace (DIR/demo-<rate>.trace: `go tool trace` shows the collector, the
// scheduler and the syscalls beside the HTTP handlers) over the same phase.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"govx/bench/ingest/feed"
)

// processStart approximates this process's start: the origin of the in-process
// exchange's gctrace times.
var processStart = time.Now()

// timelineWindow is the width of a timeline row: short enough to separate the stalls
// (0.2–2 s bunches) from the traffic around them.
const timelineWindow = 100 * time.Millisecond

// profiledCold runs the cold lookup phase, writing its timeline (and the demo's
// profiles) under dir when dir is set.
func profiledCold(t *target, dir, name string, rate int, dur time.Duration, workers int, do func(i int) error) phase {
	if dir == "" {
		return openLoop(rate, dur, workers, do)
	}
	var wg sync.WaitGroup
	var fetchErrs []string
	var mu sync.Mutex
	if t.pprof != "" {
		secs := int((dur + time.Second - 1) / time.Second)
		for _, f := range []struct{ path, file string }{
			{fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), name + ".cpu"},
			{fmt.Sprintf("/debug/pprof/trace?seconds=%d", secs), name + ".trace"},
		} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fetch("http://"+t.pprof+f.path, filepath.Join(dir, f.file)); err != nil {
					mu.Lock()
					fetchErrs = append(fetchErrs, err.Error())
					mu.Unlock()
				}
			}()
		}
	}
	lat, start, errs, achieved := feed.OpenLoopTimed(rate, dur, workers, do)
	wg.Wait()
	w, err := os.Create(filepath.Join(dir, name+".timeline"))
	if err == nil {
		writeTimeline(w, lat, start.Sub(t.origin), rate)
		fmt.Fprintf(w, "# profiles: %s\n", strings.Join(append([]string{"ok"}, fetchErrs...), "; "))
		err = w.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench/lookup: timeline %s: %v\n", name, err)
	}
	return phase{lat: feed.Sorted(lat), errs: errs, achieved: achieved}
}

// writeTimeline writes lat (in schedule order, the first due offset after the server
// process started) as one row per window.
func writeTimeline(w io.Writer, lat []time.Duration, offset time.Duration, rate int) {
	per := int(timelineWindow * time.Duration(rate) / time.Second)
	if per < 1 {
		per = 1
	}
	fmt.Fprintf(w, "# window %v; t: the window's first scheduled send, seconds after the server process started\n", timelineWindow)
	fmt.Fprintln(w, "# t_s\trequests\tp50_ms\tp99_ms\tmax_ms")
	for i := 0; i < len(lat); i += per {
		win := slices.Clone(lat[i:min(i+per, len(lat))])
		slices.Sort(win)
		at := offset + time.Duration(i)*time.Second/time.Duration(rate)
		ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
		fmt.Fprintf(w, "%.2f\t%d\t%.2f\t%.2f\t%.2f\n", at.Seconds(), len(win), ms(feed.Percentile(win, 50)), ms(feed.Percentile(win, 99)), ms(win[len(win)-1]))
	}
}

// fetch writes what GET url returns to path.
func fetch(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("%s: %s %s", url, resp.Status, msg)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
