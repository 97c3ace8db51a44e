package store

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"govx/schemas"
)

// DefaultSegmentRows is the number of rows at which the mutable tail is sealed.
const DefaultSegmentRows = 65536

// applyChunk is how many changes Apply applies per lock hold, so that lookups and
// snapshots wait at most for one chunk, not for a whole ingest batch.
const applyChunk = 512

// Change is one record from the dataset's topic.
type Change struct {
	// Key is the Kafka key (schemas.Dataset.RecordKey). For an upsert it may be empty;
	// if set it must equal the record's key.
	Key string
	// Record is the row in canonical form, as schemas.Validate accepts it; nil is a
	// delete (a tombstone).
	Record    map[string]any
	Partition int32
	Offset    int64
	// Invalid, when set, is why the ingest rejected the record (schema validation): it
	// is not stored, but its position counts as read, and Apply reports it back.
	Invalid error
}

// ChangeError reports the changes Apply could not apply; every other change of the
// batch was applied and the positions advanced past all of them, so the ingest should
// send these to the dead-letter topic rather than retry them.
type ChangeError struct {
	Failed []FailedChange
}

// FailedChange is one change Apply skipped, and why.
type FailedChange struct {
	Partition int32
	Offset    int64
	Key       string
	Err       error
}

func (e *ChangeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "store: %d change(s) not applied", len(e.Failed))
	for i, f := range e.Failed {
		if i == 3 {
			b.WriteString("; …")
			break
		}
		fmt.Fprintf(&b, "; partition %d offset %d key %q: %v", f.Partition, f.Offset, f.Key, f.Err)
	}
	return b.String()
}

// Option configures a Table.
type Option func(*Table)

// WithAllocator sets the allocator of the table's Arrow buffers (default: Go's).
func WithAllocator(mem memory.Allocator) Option { return func(t *Table) { t.mem = mem } }

// WithMaskCache bounds the bytes of masked columns the table keeps for repeated pulls
// (default DefaultMaskCacheBytes); 0 turns the cache off.
func WithMaskCache(bytes int64) Option { return func(t *Table) { t.masks.limit = bytes } }

// WithSegmentRows sets the number of rows at which the mutable tail is sealed into an
// immutable segment (default DefaultSegmentRows); it is also the largest scan batch.
func WithSegmentRows(n int) Option {
	return func(t *Table) {
		if n > 0 {
			t.segRows = n
		}
	}
}

// Table is one dataset's materialized state. Apply is for the one ingest goroutine of
// the dataset; Snapshot, Positions and Len may be called from any goroutine.
type Table struct {
	d         *schemas.Dataset
	schema    *arrow.Schema
	mem       memory.Allocator
	segRows   int
	keyCol    int // the key column when the key is one string field, else -1
	regionCol int // a region-code column, the address mask's hint, or -1
	seed      maphash.Seed

	mu     sync.RWMutex
	segs   []*segState
	tail   tail
	idx    index
	prev   []int32 // by row id: the previous version of the row's key, or -1
	nrows  int32
	live   int
	pos    map[int32]int64
	tombs  []tomb
	dirty  bool
	cached *Snapshot
	closed bool
	masks  maskCache
}

// segment is an immutable run of rows [start, start+n): Arrow columns plus each row's
// position in the topic. Snapshots share segments and count references to them.
type segment struct {
	refs    atomic.Int32
	rec     arrow.Record
	keys    *array.String // each row's key text
	ownKeys bool          // keys is not a column of rec
	start   int32
	n       int
	part    []int32
	off     []int64
}

func (s *segment) retain() { s.refs.Add(1) }

func (s *segment) release() {
	if s.refs.Add(-1) == 0 {
		s.rec.Release()
		if s.ownKeys {
			s.keys.Release()
		}
	}
}

// segState is a segment in the table's current version with its deletion bitmap.
// shared marks a bitmap that a snapshot also holds: the next delete copies it first.
type segState struct {
	seg    *segment
	del    []uint64
	ndel   int
	shared bool
}

// tail is the mutable end of the table, in Go slices.
type tail struct {
	cols  []colBuf
	keys  []string
	part  []int32
	off   []int64
	del   []uint64
	start int32
	n     int
}

// tomb is a delete: the key, its position, and the row holding the key's last values
// (so that a changes pull can filter a delete as it filtered the row).
type tomb struct {
	key  string
	part int32
	off  int64
	row  int32
}

// New returns an empty table for dataset d.
func New(d *schemas.Dataset, opts ...Option) *Table {
	t := &Table{
		d:         d,
		schema:    d.ArrowSchema(),
		mem:       memory.DefaultAllocator,
		segRows:   DefaultSegmentRows,
		keyCol:    -1,
		regionCol: -1,
		seed:      maphash.MakeSeed(),
		pos:       map[int32]int64{},
		dirty:     true,
		masks:     maskCache{limit: DefaultMaskCacheBytes},
	}
	for _, o := range opts {
		o(t)
	}
	if len(d.Key) == 1 {
		if f, _ := d.Field(d.Key[0]); f.Kind() == schemas.KindString {
			t.keyCol = t.fieldIndex(f.Name)
		}
	}
	for i := range d.Fields {
		if f := &d.Fields[i]; f.Check == "region_code" && f.Kind() == schemas.KindString {
			t.regionCol = i
			break
		}
	}
	t.tail.cols = make([]colBuf, len(d.Fields))
	for i := range d.Fields {
		t.tail.cols[i] = colBuf{kind: d.Fields[i].Kind(), dt: t.schema.Field(i).Type}
	}
	t.idx.init(1024)
	return t
}

func (t *Table) fieldIndex(name string) int {
	for i := range t.d.Fields {
		if t.d.Fields[i].Name == name {
			return i
		}
	}
	return -1
}

// Dataset returns the table's dataset.
func (t *Table) Dataset() *schemas.Dataset { return t.d }

// Len returns the number of live rows.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.live
}

// Positions returns, per partition, the next offset to consume (the offset of the last
// change applied plus one, as Kafka commits offsets): an ingest resumes there.
func (t *Table) Positions() map[int32]int64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make(map[int32]int64, len(t.pos))
	for p, o := range t.pos {
		out[p] = o
	}
	return out
}

// Close releases the table's buffers. Snapshots taken before stay valid until released.
func (t *Table) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.closed = true
	if t.cached != nil {
		t.cached.Release()
		t.cached = nil
	}
	for _, s := range t.segs {
		s.seg.release()
	}
	t.segs = nil
	t.masks.purge()
}

// segRegions returns a segment's region column, the address mask's hint, or nil.
func (t *Table) segRegions(seg *segment) *array.String {
	if t.regionCol < 0 {
		return nil
	}
	r, _ := seg.rec.Column(t.regionCol).(*array.String)
	return r
}

// errClosed is returned by Apply on a closed table.
var errClosed = errors.New("store: the table is closed")

// Apply applies changes in order: upserts by key, deletes on tombstones, and records
// each partition's position. A change at an offset below its partition's position was
// applied before (a replay after restart) and is skipped, so replays are idempotent.
// Changes that cannot be stored are skipped and returned in a *ChangeError.
func (t *Table) Apply(changes []Change) error {
	nf := len(t.d.Fields)
	cells := make([]cell, applyChunk*nf)
	keys := make([]string, applyChunk)
	errs := make([]error, applyChunk)
	var failed []FailedChange
	for start := 0; start < len(changes); start += applyChunk {
		chunk := changes[start:min(start+applyChunk, len(changes))]
		// Parse outside the lock.
		for j := range chunk {
			c := &chunk[j]
			errs[j] = c.Invalid
			keys[j] = c.Key
			if c.Invalid != nil {
				continue
			}
			if c.Record == nil {
				if c.Key == "" {
					errs[j] = errors.New("a delete needs a key")
				}
				continue
			}
			errs[j] = t.parseRecord(c, cells[j*nf:(j+1)*nf], &keys[j])
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return errClosed
		}
		for j := range chunk {
			c := &chunk[j]
			if p, seen := t.pos[c.Partition]; seen && c.Offset < p {
				continue
			}
			if c.Offset < 0 || c.Offset == math.MaxInt64 {
				errs[j] = fmt.Errorf("offset %d is out of range", c.Offset)
			}
			if errs[j] == nil && t.nrows == math.MaxInt32 {
				errs[j] = errors.New("the table is full (2³¹ row versions); restart the exchange to compact it")
			}
			if errs[j] != nil {
				failed = append(failed, FailedChange{c.Partition, c.Offset, c.Key, errs[j]})
			} else if c.Record == nil {
				t.deleteLocked(c.Key, c.Partition, c.Offset)
			} else {
				t.upsertLocked(keys[j], cells[j*nf:(j+1)*nf], c.Partition, c.Offset)
			}
			if c.Offset >= 0 && c.Offset < math.MaxInt64 {
				t.pos[c.Partition] = c.Offset + 1
			}
			t.dirty = true
		}
		t.mu.Unlock()
	}
	if failed != nil {
		return &ChangeError{Failed: failed}
	}
	return nil
}

func (t *Table) parseRecord(c *Change, out []cell, key *string) error {
	present := 0
	for i := range t.d.Fields {
		f := &t.d.Fields[i]
		v, ok := c.Record[f.Name]
		if ok {
			present++
		}
		cv, err := parseCell(f, v)
		if err != nil {
			return err
		}
		out[i] = cv
	}
	if present != len(c.Record) { // some name is not a field
		for name := range c.Record {
			if _, ok := t.d.Field(name); !ok {
				return fmt.Errorf("%s is not a field of %s", name, t.d.ID)
			}
		}
	}
	k, err := t.d.RecordKey(c.Record)
	if err != nil {
		return err
	}
	if c.Key != "" && c.Key != k {
		return fmt.Errorf("the message key %q is not the record's key %q", c.Key, k)
	}
	*key = k
	return nil
}

func (t *Table) hash(key string) uint64 { return maphash.String(t.seed, key) }

func (t *Table) upsertLocked(key string, cells []cell, part int32, off int64) {
	h := t.hash(key)
	row := t.nrows
	old := t.idx.upsert(h, key, row, t.rowKey)
	if old >= 0 && !t.deleted(old) {
		t.markDeleted(old)
		t.live--
	}
	tl := &t.tail
	for i := range tl.cols {
		tl.cols[i].append(cells[i])
	}
	tl.keys = append(tl.keys, key)
	tl.part = append(tl.part, part)
	tl.off = append(tl.off, off)
	if tl.n%64 == 0 {
		tl.del = append(tl.del, 0)
	}
	tl.n++
	t.prev = append(t.prev, old)
	t.nrows++
	t.live++
	if tl.n >= t.segRows {
		t.sealLocked()
	}
}

func (t *Table) deleteLocked(key string, part int32, off int64) {
	row := t.idx.lookup(t.hash(key), key, t.rowKey)
	if row < 0 || t.deleted(row) {
		return // never seen, or already deleted: nothing a consumer could hold
	}
	t.markDeleted(row)
	t.live--
	t.tombs = append(t.tombs, tomb{key: key, part: part, off: off, row: row})
}

// segFor returns the index of the segment in segs holding row.
func segFor[S any](segs []S, start func(S) int32, row int32) int {
	return sort.Search(len(segs), func(i int) bool { return start(segs[i]) > row }) - 1
}

func stateStart(s *segState) int32 { return s.seg.start }

// rowKey returns the key of a row of the current version (for index collisions).
func (t *Table) rowKey(row int32) string {
	if row >= t.tail.start {
		return t.tail.keys[row-t.tail.start]
	}
	s := t.segs[segFor(t.segs, stateStart, row)].seg
	return s.keys.Value(int(row - s.start))
}

func (t *Table) deleted(row int32) bool {
	if row >= t.tail.start {
		i := row - t.tail.start
		return t.tail.del[i/64]&(1<<(i%64)) != 0
	}
	s := t.segs[segFor(t.segs, stateStart, row)]
	i := row - s.seg.start
	return s.del[i/64]&(1<<(i%64)) != 0
}

func (t *Table) markDeleted(row int32) {
	if row >= t.tail.start {
		i := row - t.tail.start
		t.tail.del[i/64] |= 1 << (i % 64)
		return
	}
	s := t.segs[segFor(t.segs, stateStart, row)]
	if s.shared {
		s.del = slices.Clone(s.del)
		s.shared = false
	}
	i := row - s.seg.start
	s.del[i/64] |= 1 << (i % 64)
	s.ndel++
}

// sealLocked turns the tail into an immutable segment and merges small segments.
func (t *Table) sealLocked() {
	tl := &t.tail
	if tl.n == 0 {
		return
	}
	cols := make([]arrow.Array, len(tl.cols))
	for i := range tl.cols {
		cols[i] = tl.cols[i].finish(t.mem)
		tl.cols[i].reset()
	}
	rec := array.NewRecord(t.schema, cols, int64(tl.n))
	for _, c := range cols {
		c.Release()
	}
	seg := &segment{rec: rec, start: tl.start, n: tl.n, part: slices.Clone(tl.part), off: slices.Clone(tl.off)}
	seg.refs.Store(1)
	t.setKeys(seg, tl.keys)
	ndel := 0
	for _, w := range tl.del {
		ndel += bits.OnesCount64(w)
	}
	t.segs = append(t.segs, &segState{seg: seg, del: slices.Clone(tl.del), ndel: ndel})
	tl.start += int32(tl.n)
	tl.n = 0
	tl.keys, tl.part, tl.off, tl.del = tl.keys[:0], tl.part[:0], tl.off[:0], tl.del[:0]
	t.mergeSmall()
}

func (t *Table) setKeys(seg *segment, keys []string) {
	if t.keyCol >= 0 {
		seg.keys = seg.rec.Column(t.keyCol).(*array.String)
		return
	}
	b := array.NewStringBuilder(t.mem)
	defer b.Release()
	b.AppendValues(keys, nil)
	seg.keys = b.NewStringArray()
	seg.ownKeys = true
}

// mergeSmall merges the last two segments while the last is at least half the size of
// the one before and both fit in one segment: snapshots seal small tails, and this
// keeps their number logarithmic (each row is copied O(log segRows) times).
func (t *Table) mergeSmall() {
	for len(t.segs) >= 2 {
		a, b := t.segs[len(t.segs)-2], t.segs[len(t.segs)-1]
		if b.seg.n*2 < a.seg.n || a.seg.n+b.seg.n > t.segRows {
			return
		}
		cols := make([]arrow.Array, len(t.d.Fields))
		for i := range cols {
			c, err := array.Concatenate([]arrow.Array{a.seg.rec.Column(i), b.seg.rec.Column(i)}, t.mem)
			if err != nil {
				panic(fmt.Sprintf("store: concatenating segments: %v", err)) // same types: cannot fail
			}
			cols[i] = c
		}
		n := a.seg.n + b.seg.n
		rec := array.NewRecord(t.schema, cols, int64(n))
		for _, c := range cols {
			c.Release()
		}
		seg := &segment{rec: rec, start: a.seg.start, n: n,
			part: append(slices.Clone(a.seg.part), b.seg.part...),
			off:  append(slices.Clone(a.seg.off), b.seg.off...)}
		seg.refs.Store(1)
		if t.keyCol >= 0 {
			seg.keys = rec.Column(t.keyCol).(*array.String)
		} else {
			k, _ := array.Concatenate([]arrow.Array{a.seg.keys, b.seg.keys}, t.mem)
			seg.keys, seg.ownKeys = k.(*array.String), true
		}
		del := make([]uint64, (n+63)/64)
		copy(del, a.del)
		for i := 0; i < b.seg.n; i++ {
			if b.del[i/64]&(1<<(i%64)) != 0 {
				j := a.seg.n + i
				del[j/64] |= 1 << (j % 64)
			}
		}
		t.masks.dropSegment(a.seg)
		t.masks.dropSegment(b.seg)
		a.seg.release()
		b.seg.release()
		t.segs = append(t.segs[:len(t.segs)-2], &segState{seg: seg, del: del, ndel: a.ndel + b.ndel})
	}
}

// Snapshot returns the table's current version, consistent and immutable: later
// changes do not show in it. The caller must Release it. Taking a snapshot seals the
// tail; with no change since the last snapshot it returns that one again.
func (t *Table) Snapshot() *Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cached != nil && !t.dirty {
		t.cached.refs.Add(1)
		return t.cached
	}
	t.sealLocked()
	s := &Snapshot{t: t, rows: t.nrows, live: t.live, tombs: t.tombs[:len(t.tombs):len(t.tombs)]}
	s.pos = make(Cursor, len(t.pos))
	for p, o := range t.pos {
		s.pos[p] = o
	}
	s.segs = make([]segView, len(t.segs))
	for i, st := range t.segs {
		st.seg.retain()
		st.shared = true
		s.segs[i] = segView{seg: st.seg, del: st.del, ndel: st.ndel}
	}
	s.refs.Store(2) // the caller's and the cache's
	if t.cached != nil {
		t.cached.Release()
	}
	t.cached = s
	t.dirty = false
	return s
}

// index maps a key's hash to the row id of the key's latest version, with open
// addressing. Entries are never removed (a deleted key keeps pointing at its last row,
// marked deleted), so probing needs no tombstones. A hash match is confirmed against
// the row's key, so hash collisions cost a probe, never a wrong row. At 12 bytes a slot
// and a load of at most 3/4 it is far smaller than a map[string]int32.
type index struct {
	hashes []uint64
	rows   []int32 // row id + 1; 0 is an empty slot
	n      int
}

func (x *index) init(capacity int) {
	c := 1
	for c < capacity {
		c <<= 1
	}
	x.hashes = make([]uint64, c)
	x.rows = make([]int32, c)
	x.n = 0
}

// lookup returns the latest row of key, or -1.
func (x *index) lookup(h uint64, key string, keyOf func(int32) string) int32 {
	m := uint64(len(x.rows) - 1)
	for i := h & m; ; i = (i + 1) & m {
		r := x.rows[i]
		if r == 0 {
			return -1
		}
		if x.hashes[i] == h && keyOf(r-1) == key {
			return r - 1
		}
	}
}

// upsert points key at row and returns the row it pointed at before, or -1.
func (x *index) upsert(h uint64, key string, row int32, keyOf func(int32) string) int32 {
	m := uint64(len(x.rows) - 1)
	for i := h & m; ; i = (i + 1) & m {
		r := x.rows[i]
		if r == 0 {
			x.hashes[i], x.rows[i] = h, row+1
			x.n++
			if x.n*4 >= len(x.rows)*3 {
				x.grow()
			}
			return -1
		}
		if x.hashes[i] == h && keyOf(r-1) == key {
			x.rows[i] = row + 1
			return r - 1
		}
	}
}

func (x *index) grow() {
	oh, or := x.hashes, x.rows
	x.init(len(or) * 2)
	m := uint64(len(x.rows) - 1)
	for j, r := range or {
		if r == 0 {
			continue
		}
		i := oh[j] & m
		for x.rows[i] != 0 {
			i = (i + 1) & m
		}
		x.hashes[i], x.rows[i] = oh[j], r
		x.n++
	}
}
