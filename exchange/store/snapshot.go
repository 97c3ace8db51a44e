package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"govx/exchange"
)

// Snapshot is one consistent, immutable version of a table. It is safe for concurrent
// use; Release it when done (its segments are freed when the last holder lets go).
type Snapshot struct {
	t       *Table
	refs    atomic.Int32
	segs    []segView
	rows    int64 // rows written before this version have ids below rows
	live    int
	pos     Cursor
	tombs   []tomb
	era     int64  // the table's compactions before this version
	horizon Cursor // a changes pull from before it is too old
	seq     int64  // the changes applied before this version (the secondary indexes' clock)
}

// segView is a segment as one version sees it.
type segView struct {
	seg  *segment
	del  []uint64
	ndel int
}

func viewSeg(v segView) *segment { return v.seg }

func (v *segView) deleted(i int) bool { return v.del[i/64]&(1<<(i%64)) != 0 }

// Release lets go of the snapshot.
func (s *Snapshot) Release() {
	if s.refs.Add(-1) == 0 {
		for _, v := range s.segs {
			v.seg.release()
		}
		s.segs = nil
		s.t.unregister(s.era)
		s.t.links.release(s.seq)
	}
}

// Len returns the number of live rows in this version.
func (s *Snapshot) Len() int { return s.live }

// Cursor returns this version's position: per partition, the next offset. A changes
// pull from it later returns exactly what changed after this version.
func (s *Snapshot) Cursor() Cursor { return s.pos.clone() }

// Lookup returns the live row with key in this version, in canonical form (null fields
// omitted).
func (s *Snapshot) Lookup(key string) (map[string]any, bool) {
	v, i, ok := s.find(key)
	if !ok {
		return nil, false
	}
	return s.record(v, i), true
}

// record returns row i of a segment in canonical form (null fields omitted).
func (s *Snapshot) record(v *segView, i int) map[string]any {
	rec := v.seg.rec
	out := make(map[string]any, rec.NumCols())
	for c := 0; c < int(rec.NumCols()); c++ {
		if x := canonical(rec.Column(c), i); x != nil {
			out[s.t.d.Fields[c].Name] = x
		}
	}
	return out
}

// find returns the segment and row of key's live version in this snapshot.
func (s *Snapshot) find(key string) (*segView, int, bool) {
	t := s.t
	t.mu.RLock()
	row := int64(-1)
	if !t.closed {
		row = t.idx.lookup(t.hash(key), key, t.rowKey)
		// Rows written after the snapshot (new versions, compaction's copies): walk
		// back to the one it holds.
		for row >= s.rows {
			row = t.before(row)
		}
	}
	t.mu.RUnlock()
	if row < 0 {
		return nil, 0, false
	}
	j := segAt(s.segs, viewSeg, row)
	if j < 0 { // the key's last row was reclaimed before this version: deleted
		return nil, 0, false
	}
	v := &s.segs[j]
	i := int(row - v.seg.start)
	if v.deleted(i) {
		return nil, 0, false
	}
	return v, i, true
}

// ErrCursorTooOld is the cause of the error a changes pull gets when the deletes or
// versions it would need were reclaimed: the caller must pull in full again.
var ErrCursorTooOld = errors.New("store: the cursor is older than the history the table keeps")

// errCursorTooOld is ErrCursorTooOld for the edges, with its stable code.
func errCursorTooOld() error {
	return &exchange.Error{Kind: exchange.Invalid, Code: "cursor_too_old",
		Message: "the since cursor is older than the changes the exchange still keeps (deletes are kept for a while, not forever); pull again in full, without since, and continue from the cursor that pull returns",
		Err:     ErrCursorTooOld}
}

// checkSince refuses a cursor from before the horizon: deletes after it may have been
// reclaimed. The empty cursor is a pull from nothing held, which needs no delete.
func (s *Snapshot) checkSince(since Cursor) error {
	if len(since) == 0 {
		return nil
	}
	for p, h := range s.horizon {
		if since[p] < h {
			return errCursorTooOld()
		}
	}
	return nil
}

// Cursor is a position in a dataset's topic: per partition, the next offset to read.
// It travels to consumers opaque and signed by the exchange; Encode is deterministic so
// that equal cursors sign equally.
type Cursor map[int32]int64

func (c Cursor) clone() Cursor {
	out := make(Cursor, len(c))
	for p, o := range c {
		out[p] = o
	}
	return out
}

// cursorVersion is the first byte of an encoded cursor.
const cursorVersion = 1

// maxCursorPartitions bounds a decoded cursor: Kafka topics have at most a few
// thousand partitions, and a cursor is outside input.
const maxCursorPartitions = 1 << 14

// Encode returns the cursor as bytes: a version byte, the number of partitions, then
// each partition and offset as varints, in ascending partition order.
func (c Cursor) Encode() []byte {
	parts := make([]int32, 0, len(c))
	for p := range c {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	b := []byte{cursorVersion}
	b = binary.AppendUvarint(b, uint64(len(parts)))
	for _, p := range parts {
		b = binary.AppendVarint(b, int64(p))
		b = binary.AppendVarint(b, c[p])
	}
	return b
}

// DecodeCursor parses an encoded cursor; anything malformed is an exchange.Error of
// kind Invalid. An empty input is the empty cursor (everything).
func DecodeCursor(b []byte) (Cursor, error) {
	bad := func(why string) (Cursor, error) {
		return nil, exchange.E(exchange.Invalid, "invalid_cursor", "the cursor is malformed ("+why+"); use the cursor a previous pull returned, or none for a full pull")
	}
	if len(b) == 0 {
		return Cursor{}, nil
	}
	orig := b
	if b[0] != cursorVersion {
		return bad(fmt.Sprintf("unknown version %d", b[0]))
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > maxCursorPartitions {
		return bad("bad partition count")
	}
	b = b[k:]
	c := make(Cursor, n)
	last := int64(-1)
	for range n {
		p, k := binary.Varint(b)
		if k <= 0 || p < 0 || p > 1<<31-1 || p <= last {
			return bad("bad partition")
		}
		b = b[k:]
		o, k := binary.Varint(b)
		if k <= 0 || o < 0 {
			return bad("bad offset")
		}
		b = b[k:]
		c[int32(p)] = o
		last = p
	}
	if len(b) != 0 {
		return bad("trailing bytes")
	}
	if !bytes.Equal(c.Encode(), orig) {
		return bad("not in canonical form") // so that one cursor has one encoding
	}
	return c, nil
}

// LookupScoped is Lookup within a row scope: the row is returned only if it passes
// filters (the policy's row filter). A row outside the scope answers exactly as a
// missing one, so a lookup cannot learn that a key exists elsewhere.
func (s *Snapshot) LookupScoped(key string, filters []exchange.Filter) (map[string]any, bool, error) {
	preds, err := compileFilters(s.t.d, filters)
	if err != nil {
		return nil, false, err
	}
	v, i, ok := s.find(key)
	if !ok {
		return nil, false, nil
	}
	for k := range preds {
		one := [1]uint64{1} // row i alone
		preds[k].applyFrom(v.seg.rec.Column(preds[k].col), one[:], i)
		if one[0] == 0 {
			return nil, false, nil
		}
	}
	return s.record(v, i), true, nil
}
