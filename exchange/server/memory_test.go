package server

import (
	"bytes"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
)

// TestMemoryLimitPacesTheCollector: store.memory_limit becomes the Go heap's soft limit
// (less the headroom) and raises GOGC, and the log says so; GOGC in the environment is
// the operator's and stays.
func TestMemoryLimitPacesTheCollector(t *testing.T) {
	prevLimit, prevGC := debug.SetMemoryLimit(-1), debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetMemoryLimit(prevLimit); debug.SetGCPercent(prevGC) })
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("GOGC", "")

	cfg := Defaults(t.TempDir())
	cfg.Store.MemoryLimit = 2 << 30
	var logged bytes.Buffer
	applyMemoryLimit(cfg, slog.New(slog.NewTextHandler(&logged, nil)))
	if got, want := debug.SetMemoryLimit(-1), int64(2<<30)*9/10; got != want {
		t.Fatalf("GOMEMLIMIT %d, want %d (90%% of store.memory_limit)", got, want)
	}
	if got := debug.SetGCPercent(100); got != gcPercentWithLimit {
		t.Fatalf("GOGC %d, want %d", got, gcPercentWithLimit)
	}
	if !strings.Contains(logged.String(), "store.memory_limit") {
		t.Fatalf("the log does not say where the limit came from: %s", logged.String())
	}

	t.Setenv("GOGC", "50")
	debug.SetGCPercent(50)
	applyMemoryLimit(cfg, slog.New(slog.NewTextHandler(&logged, nil)))
	if got := debug.SetGCPercent(50); got != 50 {
		t.Fatalf("GOGC %d after applying with GOGC=50 in the environment, want 50 kept", got)
	}
}

// TestMemoryLimitChecked: a negative or tiny store.memory_limit is refused with a
// message that says what to give.
func TestMemoryLimitChecked(t *testing.T) {
	for _, n := range []int64{-1, 1000} {
		cfg := Defaults(t.TempDir())
		cfg.Store.MemoryLimit = n
		err := cfg.Check()
		if err == nil || !strings.Contains(err.Error(), "store.memory_limit") || !strings.Contains(err.Error(), "GiB") {
			t.Fatalf("memory_limit %d: %v", n, err)
		}
	}
	cfg := Defaults(t.TempDir())
	cfg.Store.MemoryLimit = 4 << 30
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
}
