package store

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"

	"govx/exchange"
	"govx/schemas"
)

// The secondary indexes: for each linking column of a table — every string field
// checked as a citizen ID or a USCC that is not the table's whole key (the legal
// representative of an organization, the holder of a parcel or a licence) — which
// keys hold which value. They answer "everything linked to this identifier" without a
// scan: Snapshot.KeysBy.
//
// An index names keys, not rows, so compaction's copies need no change to it; it is
// kept current by Apply (an upsert adds its key under the new value, and a delete or a
// move of the value marks the key stale under the old one) and by compaction, which
// forgets the stale entries once no unreleased snapshot is older than the change that
// made them stale. A snapshot asks the index for candidates and keeps those whose row
// in its own version holds the value, so it answers for its version exactly: a key
// that moved away after it was taken is still found in it, and one that moved in later
// is not.

// ErrNotIndexed is the cause of the error KeysBy returns for a column without an index.
var ErrNotIndexed = errors.New("store: the column has no secondary index")

// linkHeld marks an index entry whose key holds the value now; any other entry is
// stale, and says since which change (the table's seq).
const linkHeld int64 = -1

// links is a table's secondary indexes. Everything but held changes only under the
// table's mu held for writing (Apply, compaction, load) and is read under it held for
// reading; held has a lock of its own, since Snapshot.Release takes no table lock.
//
// It holds no pointer per entry, so the collector has nothing in it to trace (a map
// per value of strings per key cost the organization register millions of objects and
// a third of a second of marking): keys and values are interned into byte arenas
// (strtab), and the entries are a pool of fixed-size records linked into one list per
// indexed value.
type links struct {
	fields []int    // the indexed fields, by position in the dataset
	names  []string // their names
	keys   strtab   // the keys with an entry in any field
	vals   strtab   // the values with an entry in any field
	// cur holds, per indexed field and by key id, the entry of the value the key holds
	// now, plus one (0: none).
	cur [][]uint32
	// heads holds, per indexed field and by value id, the first entry of the value's
	// list, plus one: the keys that hold the value (linkHeld) or held it in a version a
	// snapshot may still see (the seq of the change that ended it).
	heads [][]uint32
	ents  []linkEntry
	free  uint32      // the first free entry, plus one; free entries chain through next
	stale []staleLink // in seq order

	mu   sync.Mutex
	held map[int64]int // unreleased snapshots by the seq they were taken at
}

// linkEntry is one key in one value's list. A key that leaves a value and comes back
// gets a new entry; the stale one stays until pruned, so a list may name a key twice.
type linkEntry struct {
	seq        int64  // linkHeld, or the change that ended it
	key, val   uint32 // ids in links.keys and links.vals
	prev, next uint32 // neighbours in the value's list, plus one (0: none)
	field      uint32
}

// staleLink is an entry that stopped being held at change seq.
type staleLink struct {
	ent uint32
	seq int64
}

// IndexedColumns returns the columns of d the store keeps a secondary index on.
func IndexedColumns(d *schemas.Dataset) []string {
	var out []string
	for i := range d.Fields {
		f := &d.Fields[i]
		if (f.Check == "citizen_id" || f.Check == "uscc") && f.Kind() == schemas.KindString &&
			!(len(d.Key) == 1 && d.Key[0] == f.Name) {
			out = append(out, f.Name)
		}
	}
	return out
}

func (l *links) init(t *Table) {
	for _, name := range IndexedColumns(t.d) {
		l.fields = append(l.fields, t.fieldIndex(name))
		l.names = append(l.names, name)
	}
	l.cur = make([][]uint32, len(l.fields))
	l.heads = make([][]uint32, len(l.fields))
	if len(l.fields) > 0 {
		l.keys.init(t.seed)
		l.vals.init(t.seed)
	}
	l.held = map[int64]int{}
}

// set records key's values of the indexed fields after change seq: value(field)
// returns a field's value and whether it is not null. The strings may share a larger
// buffer (a decoded Kafka message, an Arrow column): the arenas keep copies.
func (l *links) set(key string, value func(field int) (string, bool), seq int64) {
	kid, known := l.keys.find(key)
	for j, fi := range l.fields {
		nv, ok := value(fi)
		var e uint32
		if known {
			e = l.cur[j][kid]
		}
		if e != 0 && ok && l.vals.str(l.ents[e-1].val) == nv {
			continue
		}
		if e != 0 {
			l.unhold(j, kid, seq)
		}
		if ok {
			kid, known = l.add(j, key, nv), true
		}
	}
}

// add puts a new held entry of key under value in field j's index, and returns the
// key's id.
func (l *links) add(j int, key, value string) uint32 {
	kid, vid := l.keys.ref(key), l.vals.ref(value)
	for i := range l.cur {
		l.cur[i] = grown(l.cur[i], kid)
		l.heads[i] = grown(l.heads[i], vid)
	}
	var e uint32
	if l.free != 0 {
		e = l.free
		l.free = l.ents[e-1].next
	} else {
		if len(l.ents) >= math.MaxUint32-1 {
			panic("store: the secondary index is full") // 4 billion entries: far past any register
		}
		l.ents = append(l.ents, linkEntry{})
		e = uint32(len(l.ents))
	}
	head := l.heads[j][vid]
	l.ents[e-1] = linkEntry{seq: linkHeld, key: kid, val: vid, next: head, field: uint32(j)}
	if head != 0 {
		l.ents[head-1].prev = e
	}
	l.heads[j][vid] = e
	l.cur[j][kid] = e
	return kid
}

// grown returns s long enough to index id.
func grown(s []uint32, id uint32) []uint32 {
	if int(id) < len(s) {
		return s
	}
	return append(s, make([]uint32, int(id)+1-len(s))...)
}

// setCells is set for an upsert's parsed cells.
func (l *links) setCells(key string, cells []Cell, seq int64) {
	if len(l.fields) == 0 {
		return
	}
	l.set(key, func(fi int) (string, bool) { return cells[fi].s, cells[fi].set }, seq)
}

// setRow is set for row i of a loaded record.
func (l *links) setRow(key string, rec arrow.Record, i int, seq int64) {
	if len(l.fields) == 0 {
		return
	}
	l.set(key, func(fi int) (string, bool) {
		a, ok := rec.Column(fi).(*array.String)
		if !ok || a.IsNull(i) {
			return "", false
		}
		return a.Value(i), true
	}, seq)
}

// remove records that change seq deleted key.
func (l *links) remove(key string, seq int64) {
	if len(l.fields) == 0 {
		return
	}
	kid, ok := l.keys.find(key)
	if !ok {
		return
	}
	for j := range l.fields {
		if l.cur[j][kid] != 0 {
			l.unhold(j, kid, seq)
		}
	}
}

// unhold marks stale since change seq the entry of the value key kid holds in field j.
func (l *links) unhold(j int, kid uint32, seq int64) {
	e := l.cur[j][kid]
	l.cur[j][kid] = 0
	l.ents[e-1].seq = seq
	l.stale = append(l.stale, staleLink{ent: e, seq: seq})
}

// hold and release count the snapshots taken at seq.
func (l *links) hold(seq int64) {
	if len(l.fields) == 0 {
		return
	}
	l.mu.Lock()
	l.held[seq]++
	l.mu.Unlock()
}

func (l *links) release(seq int64) {
	if len(l.fields) == 0 {
		return
	}
	l.mu.Lock()
	if l.held[seq]--; l.held[seq] <= 0 {
		delete(l.held, seq)
	}
	l.mu.Unlock()
}

// prune forgets the stale entries no unreleased snapshot can see: those that went
// stale at or before the oldest snapshot was taken.
func (l *links) prune() {
	if len(l.stale) == 0 {
		return
	}
	l.mu.Lock()
	oldest := int64(-1)
	for seq := range l.held {
		if oldest < 0 || seq < oldest {
			oldest = seq
		}
	}
	l.mu.Unlock()
	n := 0
	for _, s := range l.stale {
		if oldest >= 0 && s.seq > oldest {
			break
		}
		n++
		l.forget(s.ent)
	}
	l.stale = l.stale[n:]
	if len(l.stale) == 0 {
		l.stale = nil // let the backing array go
	}
}

// forget takes stale entry e out of its value's list and frees it, and the key's and
// the value's ids when no entry names them any more.
func (l *links) forget(e uint32) {
	x := l.ents[e-1]
	if x.prev != 0 {
		l.ents[x.prev-1].next = x.next
	} else {
		l.heads[x.field][x.val] = x.next
	}
	if x.next != 0 {
		l.ents[x.next-1].prev = x.prev
	}
	l.ents[e-1] = linkEntry{next: l.free}
	l.free = e
	l.keys.unref(x.key)
	l.vals.unref(x.val)
}

// strtab interns strings into one byte arena under uint32 ids, counting the references
// to each: the store's key index (index, in table.go) finds an id by the string's hash,
// confirmed against the arena. An id whose references are gone is freed for reuse, and
// its bytes are reclaimed by copying the arena once they are most of it. Nothing in it
// holds a pointer per string.
type strtab struct {
	seed  maphash.Seed
	idx   index
	data  []byte
	start []uint64 // by id: where the string begins in data
	size  []uint32 // by id: its length
	refs  []uint32 // by id: its references; 0 is a free id
	free  []uint32 // freed ids
	dead  int      // bytes of data no id uses
}

func (s *strtab) init(seed maphash.Seed) {
	s.seed = seed
	s.idx.init(1024)
}

// str returns the string with id. It shares the arena's bytes, which are never
// written over: valid as long as it is held, but it keeps the arena alive.
func (s *strtab) str(id uint32) string {
	if s.size[id] == 0 {
		return ""
	}
	return unsafe.String(&s.data[s.start[id]], int(s.size[id]))
}

func (s *strtab) strAt(id int64) string { return s.str(uint32(id)) }

// find returns the id of v, if it is interned.
func (s *strtab) find(v string) (uint32, bool) {
	id := s.idx.lookup(maphash.String(s.seed, v), v, s.strAt)
	return uint32(id), id >= 0
}

// ref adds a reference to v, interning a copy of it first if needed, and returns its id.
func (s *strtab) ref(v string) uint32 {
	h := maphash.String(s.seed, v)
	if id := s.idx.lookup(h, v, s.strAt); id >= 0 {
		s.refs[id]++
		return uint32(id)
	}
	var id uint32
	if n := len(s.free); n > 0 {
		id = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		if len(s.refs) >= math.MaxUint32 {
			panic("store: the secondary index is full") // 4 billion strings: far past any register
		}
		id = uint32(len(s.refs))
		s.start, s.size, s.refs = append(s.start, 0), append(s.size, 0), append(s.refs, 0)
	}
	s.start[id], s.size[id], s.refs[id] = uint64(len(s.data)), uint32(len(v)), 1
	s.data = append(s.data, v...)
	s.idx.upsert(h, v, int64(id), s.strAt)
	return id
}

// unref drops a reference to id, freeing it when it was the last.
func (s *strtab) unref(id uint32) {
	if s.refs[id]--; s.refs[id] > 0 {
		return
	}
	s.idx.removeAt(s.idx.slotOf(maphash.String(s.seed, s.str(id)), int64(id)))
	s.dead += int(s.size[id])
	s.size[id] = 0
	s.free = append(s.free, id)
	if s.dead > 1<<16 && s.dead*2 > len(s.data) {
		s.repack()
	}
}

// repack copies the strings in use into a new arena. The old one is left as it is:
// strings str returned before stay valid.
func (s *strtab) repack() {
	data := make([]byte, 0, len(s.data)-s.dead)
	for id, n := range s.refs {
		if n == 0 {
			continue
		}
		at := uint64(len(data))
		data = append(data, s.data[s.start[id]:s.start[id]+uint64(s.size[id])]...)
		s.start[id] = at
	}
	s.data, s.dead = data, 0
}

func (l *links) field(name string) int {
	return slices.Index(l.names, name)
}

// KeysBy returns, sorted, the keys of this version's live rows whose column holds
// value. The column must be one of IndexedColumns; any other is an error wrapping
// ErrNotIndexed.
func (s *Snapshot) KeysBy(column, value string) ([]string, error) {
	t := s.t
	j := t.links.field(column)
	if j < 0 {
		return nil, fmt.Errorf("%w: %s.%s (indexed: %v)", ErrNotIndexed, t.d.ID, column, t.links.names)
	}
	// The candidates share the key arena's bytes, which are never written over (the
	// arena only grows, or is copied whole into a new one), so they stay valid after
	// the lock is let go; the keys returned are copies, so as not to pin the arena.
	t.mu.RLock()
	var cands []string
	if vid, ok := t.links.vals.find(value); ok {
		for e := t.links.heads[j][vid]; e != 0; e = t.links.ents[e-1].next {
			cands = append(cands, t.links.keys.str(t.links.ents[e-1].key))
		}
	}
	t.mu.RUnlock()
	slices.Sort(cands)
	cands = slices.Compact(cands) // a key that left the value and came back is listed twice
	fi := t.links.fields[j]
	out := cands[:0]
	for _, k := range cands {
		v, i, ok := s.find(k)
		if !ok {
			continue
		}
		if a, ok := v.seg.rec.Column(fi).(*array.String); ok && a.IsValid(i) && a.Value(i) == value {
			out = append(out, strings.Clone(k))
		}
	}
	return out, nil
}

// LookupBy returns the records of this version whose column holds value and that pass
// filters (the policy's row filter), in key order and canonical form: what a lookup of
// each of their keys would find.
func (s *Snapshot) LookupBy(column, value string, filters []exchange.Filter) ([]map[string]any, error) {
	keys, err := s.KeysBy(column, value)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, k := range keys {
		rec, ok, err := s.LookupScoped(k, filters)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, rec)
		}
	}
	return out, nil
}
