package main

import (
	"flag"
	"log"
	"os"
	"runtime"
	"runtime/pprof"

	"govx/bench/ingest/feed"
)

// Profiles of the POST lookup phase, and the exchange's memory setting, for explaining
// a lookup miss (docs/BENCHMARKS.md, "Lookup: profiles and GC traces"). Run with
// GODEBUG=gctrace=1 to see each collection against the phases the log names.
var (
	cpuprofile  = flag.String("cpuprofile", "", "write a CPU profile of the POST lookup phase to this file")
	memprofile  = flag.String("memprofile", "", "write the allocations of the POST lookup phase to this file (and FILE.base, taken at its start: go tool pprof -sample_index=alloc_space -base FILE.base FILE)")
	withConsole = flag.Bool("console", false, "also serve the web console (console.listen on a free loopback port): the console must add nothing to the lookup path")
	memoryLimit = flag.Int64("memory-limit", 0, "the exchange's store.memory_limit in bytes (0: unset, the runtime's defaults unless a cgroup limit applies)")
)

// profiled runs one measured phase under the profiles asked for.
func profiled(measure func() phase) phase {
	writeHeap := func(path string) {
		f, err := os.Create(path)
		if err != nil {
			log.Fatal("bench/lookup: ", err)
		}
		defer f.Close()
		runtime.GC()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			log.Fatal("bench/lookup: ", err)
		}
	}
	if *memprofile != "" {
		writeHeap(*memprofile + ".base")
	}
	stop, err := feed.StartProfile(*cpuprofile)
	if err != nil {
		log.Fatal("bench/lookup: ", err)
	}
	p := measure()
	stop()
	if *memprofile != "" {
		writeHeap(*memprofile)
	}
	return p
}
