package server

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// gcPercentWithLimit is the GOGC the exchange runs with when it knows its memory: the
// store's rows are pointer-free Arrow buffers and index arrays, which the collector
// marks without scanning, so a cycle's cost is nearly fixed and the number of cycles is
// what a lookup's tail sees (each cycle takes one of the cores for its marking). With
// 400 the heap grows to five times the live heap between cycles instead of twice,
// cycles are a fifth as frequent, and the memory limit below caps the growth: as the
// heap nears it the collector runs sooner, whatever GOGC says.
const gcPercentWithLimit = 400

// memoryHeadroom is the share of the configured memory left outside the Go heap's soft
// limit: goroutine stacks, the runtime's own structures and the page cache's needs.
const memoryHeadroom = 0.10

// applyMemoryLimit sets the runtime's soft memory limit (GOMEMLIMIT) and GC percent
// (GOGC) from store.memory_limit, or when that is unset from the cgroup's memory limit
// (a container's). GOMEMLIMIT or GOGC set in the environment are the operator's word
// and are left alone. With no limit known the runtime's defaults stay. It returns what
// it set, for the log.
func applyMemoryLimit(cfg *Config, log *slog.Logger) {
	limit, from := cfg.Store.MemoryLimit, "store.memory_limit"
	if limit == 0 {
		limit, from = cgroupMemoryLimit(), "the cgroup memory limit"
	}
	if limit <= 0 {
		return
	}
	var set []any
	if os.Getenv("GOMEMLIMIT") == "" {
		soft := int64(float64(limit) * (1 - memoryHeadroom))
		debug.SetMemoryLimit(soft)
		set = append(set, "gomemlimit_bytes", soft)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercentWithLimit)
		set = append(set, "gogc", gcPercentWithLimit)
	}
	if len(set) > 0 {
		log.Info("memory: collector paced to the configured memory", append([]any{"memory_bytes", limit, "from", from}, set...)...)
	}
}

// cgroupMemoryLimit returns the cgroup v2 memory limit of this process, or 0 when there
// is none ("max") or it cannot be read.
func cgroupMemoryLimit() int64 {
	b, err := os.ReadFile("/sys/fs/cgroup/memory.max")
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// checkMemoryLimit is Check's part for store.memory_limit.
func checkMemoryLimit(n int64) error {
	if n < 0 || (n > 0 && n < 64<<20) {
		return fmt.Errorf("store.memory_limit %d: give the bytes of memory the exchange may use (at least 64 MiB, e.g. 4294967296 for 4 GiB), or 0 for the cgroup's limit", n)
	}
	return nil
}
