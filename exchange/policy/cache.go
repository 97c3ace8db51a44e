package policy

import (
	"maps"
	"slices"
	"sort"
	"sync"

	"govx/exchange"
)

// cache is an exact decision cache for one policy revision. An entry holds the decision
// for one input (minus its time) and the interval [lo, hi) of times for which it stands:
// the interval between the agreement validity boundaries around the time it was made.
// An engine keeps one only for a policy that analyzeCache proves reads the time solely to
// compare it with those boundaries, so that within the interval a fresh evaluation would
// decide the same; a new revision gets a new cache, or none.
type cache struct {
	mu      sync.RWMutex
	entries map[string]cacheEntry
	max     int
}

type cacheEntry struct {
	d      exchange.Decision
	lo, hi int64 // Unix nanoseconds; lo <= t < hi
}

func newCache(max int) *cache {
	return &cache{entries: make(map[string]cacheEntry, min(max, 1024)), max: max}
}

func (c *cache) get(key string, t int64) (exchange.Decision, bool) {
	c.mu.RLock()
	e, ok := c.entries[key]
	c.mu.RUnlock()
	if !ok || t < e.lo || t >= e.hi {
		return exchange.Decision{}, false
	}
	return e.d, true
}

func (c *cache) put(key string, d exchange.Decision, lo, hi int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.max {
		// Evict an arbitrary entry (map order is random): cheap, and under a Zipf mix the
		// hot keys come straight back.
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = cacheEntry{d: d, lo: lo, hi: hi}
}

// carry copies into next, stamped with its revision, the entries of departments and
// datasets for which same reports that the new revision decides as this one did.
func (c *cache) carry(next *cache, revision string, same func(dept, dataset string) bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	next.mu.Lock()
	defer next.mu.Unlock()
	for k, e := range c.entries {
		if len(next.entries) >= next.max {
			return
		}
		if dept, ds, ok := pairOfKey(k); ok && same(dept, ds) {
			e.d.Revision = revision
			next.entries[k] = e
		}
	}
}

// interval returns the boundaries around t: lo is the last boundary at or before t
// (or the minimum int64), hi the first after t (or the maximum int64).
func interval(bounds []int64, t int64) (lo, hi int64) {
	lo, hi = -1<<63, 1<<63-1
	i := sort.Search(len(bounds), func(i int) bool { return bounds[i] > t })
	if i > 0 {
		lo = bounds[i-1]
	}
	if i < len(bounds) {
		hi = bounds[i]
	}
	return lo, hi
}

// clone copies a decision so that a caller changing its slices or map cannot change the
// cached one. It keeps nil and empty apart, so that a copy equals its original.
func clone(d exchange.Decision) exchange.Decision {
	d.Reasons = slices.Clone(d.Reasons)
	d.Columns = slices.Clone(d.Columns)
	d.RowFilter = slices.Clone(d.RowFilter)
	d.Masks = maps.Clone(d.Masks)
	if d.Aggregate != nil {
		a := *d.Aggregate
		a.GroupBy = slices.Clone(a.GroupBy)
		a.Measures = slices.Clone(a.Measures)
		d.Aggregate = &a
	}
	return d
}
