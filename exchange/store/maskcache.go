package store

import (
	"sync"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/arrow/util"

	"govx/exchange/mask"
)

// DefaultMaskCacheBytes bounds the masked columns a table keeps (WithMaskCache). The
// id_card and name masks of 1M persons take about 32 MB; 64 MB keeps a table with its
// cache within the memory target (2× the Arrow IPC size of its rows: 1.46× without it).
const DefaultMaskCacheBytes = 64 << 20

// maskCache keeps masked columns of whole segments, so that a department pulling the
// same data again streams it instead of masking a million strings once more. Segments
// are immutable, so a masked column stays right for as long as its segment lives; an
// entry holds a reference to its segment, so the segment (and its address, part of the
// key) cannot be reused while the entry exists. The hash mask's output depends on the
// department's key, which is part of the key; the other masks do not, and share entries
// across departments.
type maskCache struct {
	mu     sync.Mutex
	limit  int64
	bytes  int64
	m      map[maskKey]*maskEntry
	closed bool // after purge: nothing is cached any more
}

type maskKey struct {
	seg  *segment
	col  int
	mask string
	key  string // the department's hash key, for the hash mask only
}

type maskEntry struct {
	arr   arrow.Array
	bytes int64
}

// column returns the masked whole-segment column col of seg. On a miss it masks the
// whole segment only if fill is set (most of the segment is wanted); otherwise it
// returns nil, and the caller masks just the rows it takes. The caller releases the
// returned array.
func (c *maskCache) column(mem memory.Allocator, seg *segment, col int, m string, opts mask.ArrayOptions, fill bool) (arrow.Array, error) {
	k := maskKey{seg: seg, col: col, mask: m}
	if m == mask.Hash {
		k.key = string(opts.Key)
	}
	c.mu.Lock()
	if e, ok := c.m[k]; ok {
		e.arr.Retain()
		c.mu.Unlock()
		return e.arr, nil
	}
	c.mu.Unlock()
	if !fill {
		return nil, nil
	}

	masked, err := mask.Array(mem, seg.rec.Column(col), m, opts)
	if err != nil {
		return nil, err
	}
	size := util.TotalArraySize(masked)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[maskKey]*maskEntry{}
	}
	if _, ok := c.m[k]; ok || c.closed || size > c.limit {
		return masked, nil // another pull cached it meanwhile, or it can never fit
	}
	for kk, e := range c.m { // evict arbitrary entries until it fits
		if c.bytes+size <= c.limit {
			break
		}
		c.dropLocked(kk, e)
	}
	seg.retain()
	masked.Retain()
	c.m[k] = &maskEntry{arr: masked, bytes: size}
	c.bytes += size
	return masked, nil
}

func (c *maskCache) dropLocked(k maskKey, e *maskEntry) {
	e.arr.Release()
	k.seg.release()
	c.bytes -= e.bytes
	delete(c.m, k)
}

// purge drops every entry and caches nothing more (Table.Close).
func (c *maskCache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for k, e := range c.m {
		c.dropLocked(k, e)
	}
}

// dropSegment drops the entries of a segment the table no longer holds (merged into a
// larger one), so the cache pins only live segments and its bound bounds its memory.
func (c *maskCache) dropSegment(seg *segment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if k.seg == seg {
			c.dropLocked(k, e)
		}
	}
}
