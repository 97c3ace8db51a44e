package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

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

// links is a table's secondary indexes. by, cur and stale change only under the
// table's mu held for writing (Apply, compaction, load) and are read under it held for
// reading; held has a lock of its own, since Snapshot.Release takes no table lock.
type links struct {
	fields []int    // the indexed fields, by position in the dataset
	names  []string // their names
	// by maps, per indexed field, a value to the keys that hold it (linkHeld) or held
	// it in a version a snapshot may still see (the seq of the change that ended it).
	by []map[string]map[string]int64
	// cur maps, per indexed field, each live key to its value now.
	cur   []map[string]string
	stale []staleLink // in seq order

	mu   sync.Mutex
	held map[int64]int // unreleased snapshots by the seq they were taken at
}

// staleLink is an entry that stopped being held at change seq.
type staleLink struct {
	field      int
	value, key string
	seq        int64
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
		l.by = append(l.by, map[string]map[string]int64{})
		l.cur = append(l.cur, map[string]string{})
	}
	l.held = map[int64]int{}
}

// set records key's values of the indexed fields after change seq: value(field)
// returns a field's value and whether it is not null. The strings may share a larger
// buffer (a decoded Kafka message, an Arrow column): the maps keep copies of their own.
func (l *links) set(key string, value func(field int) (string, bool), seq int64) {
	key = strings.Clone(key)
	for j, fi := range l.fields {
		nv, ok := value(fi)
		ov, had := l.cur[j][key]
		if had && ok && ov == nv {
			continue
		}
		if had {
			l.unhold(j, ov, key, seq)
		}
		if !ok {
			delete(l.cur[j], key)
			continue
		}
		nv = strings.Clone(nv)
		l.cur[j][key] = nv
		m := l.by[j][nv]
		if m == nil {
			m = map[string]int64{}
			l.by[j][nv] = m
		}
		m[key] = linkHeld
	}
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
	for j := range l.fields {
		if ov, had := l.cur[j][key]; had {
			l.unhold(j, ov, key, seq)
			delete(l.cur[j], key)
		}
	}
}

func (l *links) unhold(j int, value, key string, seq int64) {
	if m := l.by[j][value]; m != nil && m[key] == linkHeld {
		m[key] = seq
		l.stale = append(l.stale, staleLink{field: j, value: value, key: key, seq: seq})
	}
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
		m := l.by[s.field][s.value]
		if m[s.key] != s.seq { // held again, or stale since a later change
			continue
		}
		delete(m, s.key)
		if len(m) == 0 {
			delete(l.by[s.field], s.value)
		}
	}
	clear(l.stale[:n])
	l.stale = l.stale[n:]
	if len(l.stale) == 0 {
		l.stale = nil // let the backing array go
	}
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
	t.mu.RLock()
	cands := make([]string, 0, len(t.links.by[j][value]))
	for k := range t.links.by[j][value] {
		cands = append(cands, k)
	}
	t.mu.RUnlock()
	fi := t.links.fields[j]
	out := cands[:0]
	for _, k := range cands {
		v, i, ok := s.find(k)
		if !ok {
			continue
		}
		if a, ok := v.seg.rec.Column(fi).(*array.String); ok && a.IsValid(i) && a.Value(i) == value {
			out = append(out, k)
		}
	}
	slices.Sort(out)
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
