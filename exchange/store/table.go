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
	"unsafe"

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

// DefaultGarbageRatio is the share of dead row versions at which compaction moves a
// segment's live rows out (WithGarbageRatio); Kafka's log cleaner starts at the same
// share (min.cleanable.dirty.ratio).
const DefaultGarbageRatio = 0.5

// Change is one record from the dataset's topic.
type Change struct {
	// Key is the Kafka key (schemas.Dataset.RecordKey). For an upsert it may be empty;
	// if set it must equal the record's key.
	Key string
	// Record is the row in canonical form, as schemas.Validate accepts it. Record and
	// Row both nil is a delete (a tombstone).
	Record map[string]any
	// Row, when set, is the row as typed cells in field order, from a decoder that
	// validated the record (exchange/ingest): Record is then not read. The dataset's key
	// fields must be strings (TextKeyed). Apply reads it only until it returns, keeping
	// copies of what it stores, so the caller may reuse its cells after.
	Row       []Cell
	Partition int32
	Offset    int64
	// Invalid, when set, is why the ingest rejected the record (schema validation): it
	// is not stored, but its position counts as read, and Apply reports it back.
	Invalid error
}

// ErrKeyMismatch is why Apply refuses a change whose Key is not its record's key.
var ErrKeyMismatch = errors.New("key mismatch")

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

// ErrTableFull is why Apply stops when the table has no row id left for an upsert.
var ErrTableFull = errors.New("store: the table is full (no row id left)")

// ErrClosed is why Apply stops on a closed table.
var ErrClosed = errors.New("store: the table is closed")

// ApplyError reports that Apply stopped at a change for a reason of the table's, not of
// the record's (Err is ErrTableFull or ErrClosed): that change and every later one of
// the batch were not applied, and Positions stay before it, so a retry or a restart
// reads it again. Skipped lists the invalid changes before it, passed as a *ChangeError
// would. It is not a *ChangeError: an ingest must stop the dataset, not move on.
type ApplyError struct {
	Partition int32
	Offset    int64
	Err       error
	Skipped   []FailedChange
}

func (e *ApplyError) Error() string {
	msg := fmt.Sprintf("store: stopped at partition %d offset %d, not applied: %v", e.Partition, e.Offset, e.Err)
	if len(e.Skipped) > 0 {
		msg += fmt.Sprintf(" (%d invalid change(s) before it skipped)", len(e.Skipped))
	}
	return msg
}

func (e *ApplyError) Unwrap() error { return e.Err }

// Option configures a Table.
type Option func(*Table)

// WithAllocator sets the allocator of the table's Arrow buffers (default: Go's).
func WithAllocator(mem memory.Allocator) Option { return func(t *Table) { t.mem = mem } }

// WithSegmentRows sets the number of rows at which the mutable tail is sealed into an
// immutable segment (default DefaultSegmentRows); it is also the largest scan batch.
func WithSegmentRows(n int) Option {
	return func(t *Table) {
		if n > 0 {
			t.segRows = n
		}
	}
}

// WithGarbageRatio sets the share of dead row versions (superseded or deleted) in a
// segment at which compaction copies its live rows into a new segment, so that the
// segment can be dropped once the history it holds is no longer kept (default
// DefaultGarbageRatio; r must be in (0, 1]).
func WithGarbageRatio(r float64) Option {
	return func(t *Table) {
		if r > 0 && r <= 1 {
			t.ratio = r
		}
	}
}

// WithHistory sets how many of the latest changes the table keeps the history of: the
// versions they superseded and the rows they deleted. A changes pull from a cursor
// within them gets every delete and every row that left its scope; from an older
// cursor whose history was reclaimed it is refused (ErrCursorTooOld). The default, 0,
// keeps as many changes as the table has live rows (at least the segment size), which
// bounds the table to a few times its live rows under any churn.
func WithHistory(changes int) Option {
	return func(t *Table) {
		if changes > 0 {
			t.history = changes
		}
	}
}

// Table is one dataset's materialized state. Apply is for the one ingest goroutine of
// the dataset (concurrent calls are serialized); Snapshot, Positions, Len and Stats may
// be called from any goroutine.
type Table struct {
	d         *schemas.Dataset
	schema    *arrow.Schema
	mem       memory.Allocator
	segRows   int
	keyCol    int // the key column when the key is one string field, else -1
	regionCol int // a region-code column, the address mask's hint, or -1
	seed      maphash.Seed
	ratio     float64 // WithGarbageRatio
	history   int     // WithHistory; 0: as many changes as there are live rows

	// applyMu makes Apply and compaction the table's only writer, so a compaction can
	// copy rows outside mu knowing that nothing but Snapshot's seal changes meanwhile.
	applyMu sync.Mutex

	mu      sync.RWMutex
	segs    []*segState // by start; compaction leaves gaps in the row ids
	tail    tail
	idx     index
	next    int64 // the next row id; ids are never reused
	maxRow  int64 // row ids end here: an upsert beyond is refused with ErrTableFull
	seq     int64 // changes applied, the clock of deaths and of the history kept
	live    int
	pos     map[int32]int64
	tombs   []tomb
	horizon Cursor // per partition: deletes and versions before it were reclaimed
	dirty   bool
	cached  *Snapshot
	closed  bool
	stats   Stats
	links   links // the secondary indexes (index.go)

	// The masked columns segments keep (materialize.go): replaced whole under maskMu,
	// read without a lock.
	maskMu     sync.Mutex
	maskSet    atomic.Pointer[maskSet]
	matRunning atomic.Bool    // a materializeAsync goroutine runs
	matWG      sync.WaitGroup // it, for Close
	maskBudget float64        // WithMaskBudget

	// Compaction. A snapshot walks from a key's latest row back to the row it holds
	// (Snapshot.find), through rows written after it; the chain of rows that compaction
	// dropped or copied is kept until no snapshot older than that compaction is left.
	era        int64                 // compactions so far; a snapshot records the era it was taken in
	ghosts     []ghost               // dropped segments' links, by start
	pending    map[int64]pendingHead // dropped last rows of deleted keys the index still names
	compacting bool                  // rows are being copied outside mu: do not merge segments

	snapMu sync.Mutex
	eras   map[int64]int // unreleased snapshots by era
}

// Stats describes what a table holds, for operators and tests.
type Stats struct {
	Live     int   // live rows
	Rows     int64 // row versions held: live rows, the history kept, and garbage not yet reclaimed
	Segments int
	// Copied counts the live rows compaction moved out of sparse segments, Reclaimed
	// the row versions it freed, since the table was created.
	Copied    int64
	Reclaimed int64
}

// segment is an immutable run of rows with ids [start, start+n): Arrow columns plus each
// row's position in the topic and the previous version of its key. Snapshots share
// segments and count references to them.
type segment struct {
	refs    atomic.Int32
	rec     arrow.Record
	keys    *array.String // each row's key text
	ownKeys bool          // keys is not a column of rec
	start   int64
	n       int
	part    []int32
	off     []int64
	prev    []int64 // the row id of the key's previous version (maybe reclaimed), or -1
	masks   segMasks
}

func (s *segment) retain() { s.refs.Add(1) }

func (s *segment) release() {
	if s.refs.Add(-1) == 0 {
		s.masks.release()
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
	death  deathLog
	// src names, for rows compaction copied here, the row each was copied from (-1 for
	// the others): snapshots older than the copy hold that row instead. It is dropped
	// (nil) once no such snapshot is left.
	src    []int64
	srcEra int64
}

func (st *segState) dead(i int) bool { return st.del[i/64]&(1<<(i%64)) != 0 }

// kill marks row i of the segment deleted, copying a bitmap a snapshot holds first.
func (st *segState) kill(i int) {
	if st.shared {
		st.del = slices.Clone(st.del)
		st.shared = false
	}
	st.del[i/64] |= 1 << (i % 64)
	st.ndel++
}

// deathLog records the latest change that killed a row of a segment: its number (the
// table's seq) and, per partition, its offset. A segment with no live row is dropped
// once that change is older than the history kept; cursors before those offsets then
// become too old. Rows compaction copied elsewhere die without an entry: nothing is lost.
type deathLog struct {
	last int64
	pos  map[int32]int64
}

func (d *deathLog) note(seq int64, part int32, off int64) {
	d.last = seq
	if d.pos == nil {
		d.pos = map[int32]int64{}
	}
	if o, ok := d.pos[part]; !ok || off > o {
		d.pos[part] = off
	}
}

func (d *deathLog) merge(o deathLog) {
	d.last = max(d.last, o.last)
	for p, off := range o.pos {
		if d.pos == nil {
			d.pos = map[int32]int64{}
		}
		if cur, ok := d.pos[p]; !ok || off > cur {
			d.pos[p] = off
		}
	}
}

// ghost is a dropped segment's links, kept while a snapshot older than the drop may
// walk through its rows.
type ghost struct {
	st  *segState
	era int64
}

// pendingHead is a deleted key's last row, dropped by compaction while older snapshots
// may still look the key up: the index keeps naming it until they are released.
type pendingHead struct {
	key string
	h   uint64
	era int64
}

// tail is the mutable end of the table, in Go slices.
type tail struct {
	cols []colBuf
	// pending are the rows upserted since the last flush, not yet in cols: the columns
	// are filled a column at a time, each a tight loop over the rows (flush).
	pending [][]Cell
	// The rows' keys, as one byte arena and each key's end offset: no pointer per row
	// for the collector to trace (a []string of 65536 keys would be 65536).
	keyData []byte
	keyEnds []int32
	part    []int32
	off     []int64
	prev    []int64
	del     []uint64
	death   deathLog
	start   int64
	n       int
}

// key returns the key of the tail's row i. The string shares the arena's bytes: it is
// valid until the tail is sealed, for comparing under the table lock, never to keep.
func (tl *tail) key(i int) string {
	a := int32(0)
	if i > 0 {
		a = tl.keyEnds[i-1]
	}
	if a == tl.keyEnds[i] {
		return ""
	}
	return unsafe.String(&tl.keyData[a], int(tl.keyEnds[i]-a))
}

// flush appends the pending rows to the columns.
func (tl *tail) flush() {
	if len(tl.pending) == 0 {
		return
	}
	for i := range tl.cols {
		tl.cols[i].appendColumn(tl.pending, i)
	}
	clear(tl.pending)
	tl.pending = tl.pending[:0]
}

// tomb is a delete: the key, its position, and the row holding the key's last values
// (so that a changes pull can filter a delete as it filtered the row).
type tomb struct {
	key  string
	part int32
	off  int64
	row  int64
}

// New returns an empty table for dataset d.
func New(d *schemas.Dataset, opts ...Option) *Table {
	t := &Table{
		d:          d,
		schema:     d.ArrowSchema(),
		mem:        memory.DefaultAllocator,
		segRows:    DefaultSegmentRows,
		keyCol:     -1,
		regionCol:  -1,
		seed:       maphash.MakeSeed(),
		ratio:      DefaultGarbageRatio,
		maskBudget: DefaultMaskBudget,
		maxRow:     math.MaxInt64,
		pos:        map[int32]int64{},
		horizon:    Cursor{},
		dirty:      true,
		pending:    map[int64]pendingHead{},
		eras:       map[int64]int{},
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
	t.links.init(t)
	t.maskSet.Store(&maskSet{gen: 1, specs: t.defaultMasks()})
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

// Stats returns what the table holds now.
func (t *Table) Stats() Stats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := t.stats
	s.Live = t.live
	s.Segments = len(t.segs)
	s.Rows = int64(t.tail.n)
	for _, st := range t.segs {
		s.Rows += int64(st.seg.n)
	}
	return s
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
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	t.mu.Unlock()
	t.matWG.Wait() // it masks segments of this version: let it finish first
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cached != nil {
		t.cached.Release()
		t.cached = nil
	}
	for _, s := range t.segs {
		s.seg.release()
	}
	t.segs, t.ghosts = nil, nil
	clear(t.pending)
}

// segRegions returns a segment's region column, the address mask's hint, or nil.
func (t *Table) segRegions(seg *segment) *array.String {
	if t.regionCol < 0 {
		return nil
	}
	r, _ := seg.rec.Column(t.regionCol).(*array.String)
	return r
}

// Apply applies changes in order: upserts by key, deletes on tombstones, and records
// each partition's position. A change at an offset below its partition's position was
// applied before (a replay after restart) and is skipped, so replays are idempotent.
// Changes that cannot be stored (the record's fault) are skipped, their positions
// passed, and returned in a *ChangeError. When the table itself cannot take a change
// (ErrTableFull, ErrClosed) Apply stops there and returns an *ApplyError: that change
// and the rest of the batch are not applied and Positions stay before it, so nothing
// is skipped.
func (t *Table) Apply(changes []Change) error {
	t.applyMu.Lock()
	defer t.applyMu.Unlock()
	nf := len(t.d.Fields)
	var cells []Cell // the parsed Records of a chunk; Rows are used as they are
	rows := make([][]Cell, applyChunk)
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
			switch {
			case c.deletes():
				if c.Key == "" {
					errs[j] = errors.New("a delete needs a key")
				}
			case c.Row != nil:
				rows[j] = c.Row
				errs[j] = t.checkRow(c, &keys[j])
			default:
				if cells == nil {
					cells = make([]Cell, applyChunk*nf)
				}
				rows[j] = cells[j*nf : (j+1)*nf]
				errs[j] = t.parseRecord(c, rows[j], &keys[j])
			}
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return &ApplyError{Partition: chunk[0].Partition, Offset: chunk[0].Offset, Err: ErrClosed, Skipped: failed}
		}
		applied := 0
		for j := range chunk {
			c := &chunk[j]
			if p, seen := t.pos[c.Partition]; seen && c.Offset < p {
				continue
			}
			if c.Offset < 0 || c.Offset == math.MaxInt64 {
				errs[j] = fmt.Errorf("offset %d is out of range", c.Offset)
			}
			if errs[j] == nil && !c.deletes() && t.next >= t.maxRow {
				t.tail.flush()
				t.mu.Unlock()
				return &ApplyError{Partition: c.Partition, Offset: c.Offset, Err: ErrTableFull, Skipped: failed}
			}
			if errs[j] != nil {
				failed = append(failed, FailedChange{c.Partition, c.Offset, c.Key, errs[j]})
			} else if c.deletes() {
				t.deleteLocked(c.Key, c.Partition, c.Offset)
			} else {
				t.upsertLocked(keys[j], rows[j], c.Partition, c.Offset)
			}
			if c.Offset >= 0 && c.Offset < math.MaxInt64 {
				t.pos[c.Partition] = c.Offset + 1
			}
			t.dirty = true
			applied++
		}
		t.tail.flush() // before the lock is let go: the rows are the caller's memory
		t.mu.Unlock()
		t.compact(applied)
		t.materializeAsync()
	}
	if failed != nil {
		return &ChangeError{Failed: failed}
	}
	return nil
}

func (c *Change) deletes() bool { return c.Record == nil && c.Row == nil }

// TextKeyed reports whether d's key fields are all strings, as a Change.Row needs: the
// record key is then the cells' text, exactly as schemas.Dataset.RecordKey writes it.
func TextKeyed(d *schemas.Dataset) bool {
	for _, name := range d.Key {
		if f, ok := d.Field(name); !ok || f.Kind() != schemas.KindString {
			return false
		}
	}
	return true
}

// checkRow checks what a validated row must hold for the table (its width, its
// required fields) and sets key to its record key.
func (t *Table) checkRow(c *Change, key *string) error {
	if len(c.Row) != len(t.d.Fields) {
		return fmt.Errorf("a row of %s has %d fields, not %d", t.d.ID, len(c.Row), len(t.d.Fields))
	}
	for i := range t.d.Fields {
		if f := &t.d.Fields[i]; !f.Nullable && c.Row[i].null() {
			return fmt.Errorf("%s is required", f.Name)
		}
	}
	var k string
	if t.keyCol >= 0 && c.Row[t.keyCol].set {
		k = c.Row[t.keyCol].s
	} else {
		if !TextKeyed(t.d) {
			return fmt.Errorf("%s has a key field that is not a string: give its records as Record, not Row", t.d.ID)
		}
		vals := make([]any, len(t.d.Key))
		for i, name := range t.d.Key {
			if v := c.Row[t.fieldIndex(name)]; v.set {
				vals[i] = v.s
			}
		}
		var err error
		if k, err = t.d.KeyOf(vals); err != nil {
			return err
		}
	}
	if c.Key != "" && c.Key != k {
		return fmt.Errorf("%w: the message key %q is not the record's key %q", ErrKeyMismatch, c.Key, k)
	}
	*key = k
	return nil
}

func (t *Table) parseRecord(c *Change, out []Cell, key *string) error {
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
		return fmt.Errorf("%w: the message key %q is not the record's key %q", ErrKeyMismatch, c.Key, k)
	}
	*key = k
	return nil
}

func (t *Table) hash(key string) uint64 { return maphash.String(t.seed, key) }

func (t *Table) upsertLocked(key string, cells []Cell, part int32, off int64) {
	h := t.hash(key)
	row := t.next
	old := t.idx.upsert(h, key, row, t.rowKey)
	t.seq++
	t.links.setCells(key, cells, t.seq)
	if old >= 0 && !t.deleted(old) {
		t.markDeleted(old, part, off)
		t.live--
	}
	tl := &t.tail
	tl.pending = append(tl.pending, cells)
	tl.keyData = append(tl.keyData, key...)
	tl.keyEnds = append(tl.keyEnds, int32(len(tl.keyData)))
	tl.part = append(tl.part, part)
	tl.off = append(tl.off, off)
	tl.prev = append(tl.prev, old)
	if tl.n%64 == 0 {
		tl.del = append(tl.del, 0)
	}
	tl.n++
	t.next++
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
	t.seq++
	t.links.remove(key, t.seq)
	t.markDeleted(row, part, off)
	t.live--
	t.tombs = append(t.tombs, tomb{key: key, part: part, off: off, row: row})
}

// segAt returns the index of the segment in segs holding row, or -1 (a gap compaction
// left, or beyond the last).
func segAt[S any](segs []S, seg func(S) *segment, row int64) int {
	j := sort.Search(len(segs), func(i int) bool { return seg(segs[i]).start > row }) - 1
	if j < 0 || row >= seg(segs[j]).start+int64(seg(segs[j]).n) {
		return -1
	}
	return j
}

func stateSeg(s *segState) *segment { return s.seg }

// rowKey returns the key of a row the index names (for hash collisions).
func (t *Table) rowKey(row int64) string {
	if row >= t.tail.start {
		return t.tail.key(int(row - t.tail.start))
	}
	if j := segAt(t.segs, stateSeg, row); j >= 0 {
		s := t.segs[j].seg
		return s.keys.Value(int(row - s.start))
	}
	if p, ok := t.pending[row]; ok {
		return p.key
	}
	panic(fmt.Sprintf("store: the key index names row %d, which the table does not hold", row))
}

// deleted reports whether a row of the current version is dead; a row compaction
// reclaimed is.
func (t *Table) deleted(row int64) bool {
	if row >= t.tail.start {
		i := row - t.tail.start
		return t.tail.del[i/64]&(1<<(i%64)) != 0
	}
	j := segAt(t.segs, stateSeg, row)
	if j < 0 {
		return true
	}
	return t.segs[j].dead(int(row - t.segs[j].seg.start))
}

// markDeleted kills a live row of the current version; the change at (part, off)
// killed it.
func (t *Table) markDeleted(row int64, part int32, off int64) {
	if row >= t.tail.start {
		i := row - t.tail.start
		t.tail.del[i/64] |= 1 << (i % 64)
		t.tail.death.note(t.seq, part, off)
		return
	}
	st := t.segs[segAt(t.segs, stateSeg, row)]
	st.kill(int(row - st.seg.start))
	st.death.note(t.seq, part, off)
}

// sealLocked turns the tail into an immutable segment and merges small segments.
func (t *Table) sealLocked() {
	tl := &t.tail
	tl.flush()
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
	seg := &segment{rec: rec, start: tl.start, n: tl.n, part: slices.Clone(tl.part), off: slices.Clone(tl.off), prev: slices.Clone(tl.prev)}
	seg.refs.Store(1)
	t.setKeys(seg, tl.n, tl.key)
	ndel := 0
	for _, w := range tl.del {
		ndel += bits.OnesCount64(w)
	}
	t.segs = append(t.segs, &segState{seg: seg, del: slices.Clone(tl.del), ndel: ndel, death: tl.death})
	tl.start += int64(tl.n)
	tl.n = 0
	tl.keyData, tl.keyEnds, tl.part, tl.off, tl.prev, tl.del = tl.keyData[:0], tl.keyEnds[:0], tl.part[:0], tl.off[:0], tl.prev[:0], tl.del[:0]
	tl.death = deathLog{}
	t.mergeSmall()
}

// setKeys gives a new segment its key column: the key field's column, or for a
// composite key an array of the n keys keyAt returns.
func (t *Table) setKeys(seg *segment, n int, keyAt func(i int) string) {
	if t.keyCol >= 0 {
		seg.keys = seg.rec.Column(t.keyCol).(*array.String)
		return
	}
	b := array.NewStringBuilder(t.mem)
	defer b.Release()
	b.Reserve(n)
	for i := range n {
		b.Append(keyAt(i))
	}
	seg.keys = b.NewStringArray()
	seg.ownKeys = true
}

// mergeSmall merges the last two segments while the last is at least half the size of
// the one before, both fit in one segment and their row ids are adjacent: snapshots
// seal small tails, and this keeps their number logarithmic (each row is copied
// O(log segRows) times). Row ids stay as they are, so snapshots holding the old
// segments and the index agree with the merged one.
func (t *Table) mergeSmall() {
	for len(t.segs) >= 2 && !t.compacting {
		a, b := t.segs[len(t.segs)-2], t.segs[len(t.segs)-1]
		if b.seg.n*2 < a.seg.n || a.seg.n+b.seg.n > t.segRows || a.seg.start+int64(a.seg.n) != b.seg.start {
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
			off:  append(slices.Clone(a.seg.off), b.seg.off...),
			prev: append(slices.Clone(a.seg.prev), b.seg.prev...)}
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
			if b.dead(i) {
				j := a.seg.n + i
				del[j/64] |= 1 << (j % 64)
			}
		}
		st := &segState{seg: seg, del: del, ndel: a.ndel + b.ndel, death: a.death, srcEra: max(a.srcEra, b.srcEra)}
		st.death.merge(b.death)
		if a.src != nil || b.src != nil {
			st.src = append(srcOrNone(a), srcOrNone(b)...)
		}
		t.carryMasks(seg, []*segment{a.seg, b.seg}, t.concatenate)
		a.seg.release()
		b.seg.release()
		t.segs = append(t.segs[:len(t.segs)-2], st)
	}
}

// srcOrNone returns a segment's copy sources, or -1 for each row when none are kept.
func srcOrNone(st *segState) []int64 {
	if st.src != nil {
		return slices.Clone(st.src)
	}
	src := make([]int64, st.seg.n)
	for i := range src {
		src[i] = -1
	}
	return src
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
	s := &Snapshot{t: t, rows: t.next, live: t.live, tombs: t.tombs[:len(t.tombs):len(t.tombs)], era: t.era, horizon: t.horizon.clone(), seq: t.seq}
	t.links.hold(s.seq)
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
	t.snapMu.Lock()
	t.eras[s.era]++
	t.snapMu.Unlock()
	if t.cached != nil {
		t.cached.Release()
	}
	t.cached = s
	t.dirty = false
	return s
}

// index maps a key's hash to the row id of the key's latest version, with open
// addressing (linear probing). A deleted key keeps pointing at its last row, marked
// deleted, until compaction reclaims that row; then its entry is removed by shifting
// the probe run back, so probing needs no tombstones. A hash match is confirmed against
// the row's key, so hash collisions cost a probe, never a wrong row. At 12 bytes a slot
// (the hash's low 32 bits place and pre-check a key) and a load of at most 3/4 it is far
// smaller than a map[string]int64.
type index struct {
	hashes []uint32
	rows   []int64 // row id + 1; 0 is an empty slot
	n      int
}

func (x *index) init(capacity int) {
	c := 1
	for c < capacity {
		c <<= 1
	}
	x.hashes = make([]uint32, c)
	x.rows = make([]int64, c)
	x.n = 0
}

func (x *index) home(h uint32) uint64 { return uint64(h) & uint64(len(x.rows)-1) }

// lookup returns the latest row of key, or -1.
func (x *index) lookup(h uint64, key string, keyOf func(int64) string) int64 {
	h32, m := uint32(h), uint64(len(x.rows)-1)
	for i := x.home(h32); ; i = (i + 1) & m {
		r := x.rows[i]
		if r == 0 {
			return -1
		}
		if x.hashes[i] == h32 && keyOf(r-1) == key {
			return r - 1
		}
	}
}

// upsert points key at row and returns the row it pointed at before, or -1.
func (x *index) upsert(h uint64, key string, row int64, keyOf func(int64) string) int64 {
	h32, m := uint32(h), uint64(len(x.rows)-1)
	for i := x.home(h32); ; i = (i + 1) & m {
		r := x.rows[i]
		if r == 0 {
			x.hashes[i], x.rows[i] = h32, row+1
			x.n++
			if x.n*4 >= len(x.rows)*3 {
				x.grow()
			}
			return -1
		}
		if x.hashes[i] == h32 && keyOf(r-1) == key {
			x.rows[i] = row + 1
			return r - 1
		}
	}
}

// slotOf returns the slot naming row, whose key hashes to h, or -1 when the index
// names another row for that key.
func (x *index) slotOf(h uint64, row int64) int {
	h32, m := uint32(h), uint64(len(x.rows)-1)
	for i := x.home(h32); x.rows[i] != 0; i = (i + 1) & m {
		if x.rows[i] == row+1 {
			return int(i)
		}
	}
	return -1
}

// removeAt empties slot i and moves later entries of its probe run back, so that every
// entry stays reachable from its home slot without tombstones.
func (x *index) removeAt(i int) {
	m := len(x.rows) - 1
	for j := (i + 1) & m; x.rows[j] != 0; j = (j + 1) & m {
		// The entry at j may move to i only if its home is not cyclically in (i, j].
		k := int(x.home(x.hashes[j]))
		if (i < j && i < k && k <= j) || (i > j && (i < k || k <= j)) {
			continue
		}
		x.hashes[i], x.rows[i] = x.hashes[j], x.rows[j]
		i = j
	}
	x.hashes[i], x.rows[i] = 0, 0
	x.n--
}

func (x *index) grow() {
	oh, or := x.hashes, x.rows
	x.init(len(or) * 2)
	m := uint64(len(x.rows) - 1)
	for j, r := range or {
		if r == 0 {
			continue
		}
		i := x.home(oh[j])
		for x.rows[i] != 0 {
			i = (i + 1) & m
		}
		x.hashes[i], x.rows[i] = oh[j], r
		x.n++
	}
}
