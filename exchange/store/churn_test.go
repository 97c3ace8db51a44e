package store

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
)

// churnKey returns the key index that update j writes: the first updates insert every
// key in order, the rest pick keys by a fixed hash of j, so that a reader can work out
// from a snapshot's cursor alone which update each key must show.
func churnKey(j, keys int64) int64 {
	if j < keys {
		return j
	}
	z := uint64(j) + 0x9e3779b97f4a7c15 // splitmix64
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return int64((z ^ z>>31) % uint64(keys))
}

// latestBefore returns the last update before cursor that wrote key k, or -1.
func latestBefore(k, cursor, keys int64) int64 {
	for j := cursor - 1; j >= keys; j-- {
		if churnKey(j, keys) == k {
			return j
		}
	}
	if k < cursor {
		return k
	}
	return -1
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestChurn: 20M updates over 100k keys (a smaller count under -race or -short) keep
// the store's memory within a small multiple of what the 100k live rows take, every
// final value is right, and readers holding snapshots while compaction copies and
// drops segments under them see exactly their version, before and after.
func TestChurn(t *testing.T) {
	const keys = 100_000
	total := int64(20_000_000)
	if raceEnabled || testing.Short() {
		total = 1_500_000
	}
	mem := checked(t)
	d := dataset(t, "test.kinds")
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("3301061990%08d", i)
	}
	const batch = 1000
	recs := make([]map[string]any, batch)
	changes := make([]Change, batch)
	for i := range recs {
		recs[i] = map[string]any{"region": "330106"}
	}
	final := make(map[int64]int64, keys) // key -> the last update that wrote it
	base := liveHeap()

	tbl := New(d, WithAllocator(mem))
	defer tbl.Close()
	var applied atomic.Int64
	progress := make(chan struct{}) // closed and replaced as updates go in
	var progressMu sync.Mutex
	waitFor := func(n int64) {
		for {
			progressMu.Lock()
			ch := progress
			progressMu.Unlock()
			if applied.Load() >= n {
				return
			}
			<-ch
		}
	}
	publish := func(n int64) {
		applied.Store(n)
		progressMu.Lock()
		close(progress)
		progress = make(chan struct{})
		progressMu.Unlock()
	}

	// Readers: take a snapshot, check it, hold it while compaction copies and drops
	// segments (one reader for a quarter of the history kept, one for all of it, so
	// that what it holds is reclaimed from the table meanwhile), check it again and
	// release it; then let the writer run on alone for a while.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var checks atomic.Int64
	for r, hold := range []int64{keys / 4, keys} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s := tbl.Snapshot()
				at := s.Cursor()[0]
				first, err := checkChurnSnapshot(s, keys, int64(r*7919+i))
				if err == nil {
					waitFor(at + hold)
					var again string
					again, err = checkChurnSnapshot(s, keys, int64(r*7919+i))
					if err == nil && again != first {
						err = fmt.Errorf("the snapshot at %d changed while held: %s, then %s", at, first, again)
					}
				}
				s.Release()
				if err != nil {
					t.Error(err)
					publish(math.MaxInt64) // stop the writer's loop and the other reader
					return
				}
				checks.Add(1)
				waitFor(at + hold + keys/2)
			}
		}()
	}

	var live, peak uint64
	var peakRows int64
	for j := int64(0); j < total; j += batch {
		for i := range batch {
			u := j + int64(i)
			k := churnKey(u, keys)
			rec := recs[i]
			rec["k"], rec["i"], rec["f"] = names[k], u, float64(u)
			changes[i] = Change{Record: rec, Offset: u}
			final[k] = u
		}
		if err := tbl.Apply(changes); err != nil {
			t.Fatal(err)
		}
		publish(j + batch)
		if t.Failed() {
			break
		}
		if j+batch == keys {
			live = liveHeap() - base
		} else if (j+batch)%(total/20) == 0 {
			peak = max(peak, liveHeap()-base)
			peakRows = max(peakRows, tbl.Stats().Rows)
		}
	}
	close(stop)
	publish(math.MaxInt64) // no more updates: release readers waiting for them
	wg.Wait()
	if t.Failed() {
		return
	}

	s := tbl.Snapshot()
	defer s.Release()
	if s.Len() != keys {
		t.Fatalf("Len = %d after churn, want %d", s.Len(), keys)
	}
	seen := 0
	err := s.Scan(context.Background(), Spec{Columns: []string{"k", "i"}}, func(rec arrow.Record) error {
		ks, is := rec.Column(0).(*array.String), rec.Column(1).(*array.Int64)
		for r := 0; r < int(rec.NumRows()); r++ {
			k, err := strconv.ParseInt(ks.Value(r)[10:], 10, 64)
			if err != nil {
				return err
			}
			if want := final[k]; is.Value(r) != want {
				return fmt.Errorf("key %s holds update %d, its last was %d", ks.Value(r), is.Value(r), want)
			}
			seen++
		}
		return nil
	})
	if err != nil || seen != keys {
		t.Fatalf("final scan: %v (%d rows)", err, seen)
	}
	st := tbl.Stats()
	t.Logf("%d updates over %d keys: live rows take %d MB, peak %d MB (%.1f×); up to %d row versions held; %d snapshot checks; stats %+v",
		total, keys, live>>20, peak>>20, float64(peak)/float64(live), peakRows, checks.Load(), st)
	// The table holds the live rows, the versions the last keys' worth of updates
	// superseded (the history kept), and segments compaction emptied that wait for
	// that history to age: about 3.4 times the live rows under uniform churn. Without
	// compaction it would hold every version written, 200 times the live rows.
	if peakRows > 9*keys/2 {
		t.Fatalf("the table held up to %d row versions for %d keys: compaction does not keep up", peakRows, keys)
	}
	// Memory: that table, plus at most one more of it pinned by the snapshot a reader
	// holds across a whole history window.
	if peak > 8*live {
		t.Fatalf("memory peaked at %d MB, %.1f× the %d MB the live rows take: compaction does not bound it", peak>>20, float64(peak)/float64(live), live>>20)
	}
	if checks.Load() < 2 {
		t.Fatalf("readers checked %d snapshots", checks.Load())
	}
}

// checkChurnSnapshot checks a churn snapshot: one row per key, no torn row (i and f from
// the same update), each row an update before the cursor that wrote its key, and for a
// sample of keys exactly the last such update, by scan and by Lookup. It returns a
// digest to compare with a later check of the same snapshot.
func checkChurnSnapshot(s *Snapshot, keys, seed int64) (string, error) {
	cursor := s.Cursor()[0]
	if cursor < keys {
		return "", nil // still loading
	}
	if s.Len() != int(keys) {
		return "", fmt.Errorf("snapshot at %d: Len %d, want %d", cursor, s.Len(), keys)
	}
	got := make([]int64, keys)
	for i := range got {
		got[i] = -1
	}
	var sum int64
	err := s.Scan(context.Background(), Spec{Columns: []string{"k", "i", "f"}}, func(rec arrow.Record) error {
		ks, is, fs := rec.Column(0).(*array.String), rec.Column(1).(*array.Int64), rec.Column(2).(*array.Float64)
		for r := 0; r < int(rec.NumRows()); r++ {
			k, err := strconv.ParseInt(ks.Value(r)[10:], 10, 64)
			if err != nil {
				return err
			}
			u := is.Value(r)
			switch {
			case float64(u) != fs.Value(r):
				return fmt.Errorf("a torn row: i %d, f %v", u, fs.Value(r))
			case u >= cursor || churnKey(u, keys) != k:
				return fmt.Errorf("key %d holds update %d, which is after the cursor %d or wrote another key", k, u, cursor)
			case got[k] >= 0:
				return fmt.Errorf("key %d twice", k)
			}
			got[k] = u
			sum += u
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("snapshot at %d: %w", cursor, err)
	}
	for n := range int64(16) {
		k := churnKey(seed*16+n+keys, keys)
		want := latestBefore(k, cursor, keys)
		rec, ok := s.Lookup(fmt.Sprintf("3301061990%08d", k))
		if got[k] != want || !ok || rec["i"] != want {
			return "", fmt.Errorf("snapshot at %d: key %d scans as update %d, looks up as %v; its last update before the cursor is %d", cursor, k, got[k], rec["i"], want)
		}
	}
	return fmt.Sprint(cursor, ":", sum), nil
}
