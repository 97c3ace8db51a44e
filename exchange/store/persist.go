package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/ipc"

	"govx/schemas"
)

// Columns and metadata the snapshot file adds to the dataset's schema.
const (
	colPartition  = "__partition"
	colOffset     = "__offset"
	colDeleted    = "__deleted"
	metaPositions = "govx.store.positions"
	metaHorizon   = "govx.store.horizon"
	metaFormat    = "govx.store.format"
	// fileFormat 2 adds the horizon; a format 1 file was written before compaction
	// reclaimed anything, so it reads as an empty horizon.
	fileFormat = "2"
)

// FileName returns the name of a dataset's snapshot file in a directory.
func FileName(datasetID string) string { return datasetID + ".arrow" }

// cursorJSON renders a cursor as a JSON object from partition to offset, sorted.
func cursorJSON(c Cursor) (string, error) {
	ps := make(map[string]int64, len(c))
	for p, o := range c {
		ps[strconv.Itoa(int(p))] = o
	}
	b, err := json.Marshal(ps) // sorted keys: deterministic
	return string(b), err
}

func fileSchema(t *Table, pos, horizon Cursor) (*arrow.Schema, error) {
	fields := append(append([]arrow.Field(nil), t.schema.Fields()...),
		arrow.Field{Name: colPartition, Type: arrow.PrimitiveTypes.Int32},
		arrow.Field{Name: colOffset, Type: arrow.PrimitiveTypes.Int64},
		arrow.Field{Name: colDeleted, Type: arrow.FixedWidthTypes.Boolean})
	pj, err := cursorJSON(pos)
	if err != nil {
		return nil, err
	}
	hj, err := cursorJSON(horizon)
	if err != nil {
		return nil, err
	}
	md := t.schema.Metadata()
	keys := append(append([]string(nil), md.Keys()...), metaPositions, metaHorizon, metaFormat)
	vals := append(append([]string(nil), md.Values()...), pj, hj, fileFormat)
	m := arrow.NewMetadata(keys, vals)
	return arrow.NewSchema(fields, &m), nil
}

// WriteTo writes this version to dir as one Arrow IPC file (FileName): the live rows,
// the last row of each deleted key still kept (so changes pulls after a restart still
// report deletes), each row's topic position, the positions to resume from, and the
// horizon (so cursors too old stay refused). The file is
// written under a temporary name, synced and renamed, so a crash leaves the previous
// file whole.
func (s *Snapshot) WriteTo(dir string) (err error) {
	t := s.t
	sch, err := fileSchema(t, s.pos, s.horizon)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+FileName(t.d.ID)+".tmp-*")
	if err != nil {
		return fmt.Errorf("store: writing the %s snapshot: %w", t.d.ID, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w, err := ipc.NewFileWriter(f, ipc.WithSchema(sch), ipc.WithAllocator(t.mem))
	if err != nil {
		return err
	}
	write := func(v *segView, idx []int32, part []int32, off []int64, deleted bool) error {
		for start := 0; start < len(idx); start += t.segRows {
			end := min(start+t.segRows, len(idx))
			cols := make([]arrow.Array, 0, len(t.d.Fields)+3)
			for c := range t.d.Fields {
				cols = append(cols, take(t.mem, v.seg.rec.Column(c), idx[start:end]))
			}
			pb := array.NewInt32Builder(t.mem)
			ob := array.NewInt64Builder(t.mem)
			db := array.NewBooleanBuilder(t.mem)
			for j := start; j < end; j++ {
				pb.Append(part[j])
				ob.Append(off[j])
				db.Append(deleted)
			}
			cols = append(cols, pb.NewArray(), ob.NewArray(), db.NewArray())
			pb.Release()
			ob.Release()
			db.Release()
			rec := array.NewRecord(sch, cols, int64(end-start))
			for _, c := range cols {
				c.Release()
			}
			err := w.Write(rec)
			rec.Release()
			if err != nil {
				return err
			}
		}
		return nil
	}
	var buf []uint64
	for i := range s.segs {
		v := &s.segs[i]
		sel := v.selection(buf)
		buf = sel
		var idx []int32
		var part []int32
		var off []int64
		eachSet(sel, func(r int) bool {
			idx = append(idx, int32(r))
			part = append(part, v.seg.part[r])
			off = append(off, v.seg.off[r])
			return true
		})
		if err := write(v, idx, part, off, false); err != nil {
			return err
		}
	}
	last := map[string]int{}
	for i, tb := range s.tombs {
		last[tb.key] = i
	}
	type dead struct {
		idx  []int32
		part []int32
		off  []int64
	}
	bySeg := map[int]*dead{}
	for i := range s.tombs { // in tombstone order, so the file is deterministic
		tb := s.tombs[i]
		if last[tb.key] != i {
			continue
		}
		if _, _, live := s.find(tb.key); live {
			continue
		}
		j := segAt(s.segs, viewSeg, tb.row)
		d := bySeg[j]
		if d == nil {
			d = &dead{}
			bySeg[j] = d
		}
		d.idx = append(d.idx, int32(tb.row-s.segs[j].seg.start))
		d.part = append(d.part, tb.part)
		d.off = append(d.off, tb.off)
	}
	for i := range s.segs {
		if d := bySeg[i]; d != nil {
			if err := write(&s.segs[i], d.idx, d.part, d.off, true); err != nil {
				return err
			}
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, FileName(t.d.ID))); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // make the rename durable; not every file system supports it
		d.Close()
	}
	return nil
}

// Open returns the table of dataset d as last written to dir by WriteTo, or an empty
// table when dir holds none. Resume the topic from its Positions.
func Open(d *schemas.Dataset, dir string, opts ...Option) (*Table, error) {
	t := New(d, opts...)
	path := filepath.Join(dir, FileName(d.ID))
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := t.load(f, path); err != nil {
		t.Close()
		return nil, err
	}
	t.materialize() // the first pull after a restart is served warm
	return t, nil
}

func (t *Table) load(f *os.File, path string) error {
	r, err := ipc.NewFileReader(f, ipc.WithAllocator(t.mem))
	if err != nil {
		return fmt.Errorf("store: %s is not a readable snapshot (%v); remove it and let the exchange replay the topic", path, err)
	}
	defer r.Close()
	stale := func(why string) error {
		return fmt.Errorf("store: %s was written for another schema of %s (%s); remove it and let the exchange replay the topic", path, t.d.ID, why)
	}
	sch := r.Schema()
	md := sch.Metadata()
	nf := len(t.d.Fields)
	if v, _ := md.GetValue(schemas.MetaDataset); v != t.d.ID {
		return stale("dataset " + v)
	}
	if v, _ := md.GetValue(schemas.MetaVersion); v != strconv.Itoa(t.d.Version) {
		return stale("schema version " + v)
	}
	format, _ := md.GetValue(metaFormat)
	if format != fileFormat && format != "1" {
		return stale("file format " + format)
	}
	if sch.NumFields() != nf+3 {
		return stale("field count")
	}
	for i := 0; i < nf; i++ {
		a, b := sch.Field(i), t.schema.Field(i)
		if a.Name != b.Name || !arrow.TypeEqual(a.Type, b.Type) {
			return stale("field " + a.Name)
		}
	}
	readCursor := func(key string, into Cursor) error {
		j, _ := md.GetValue(key)
		var ps map[string]int64
		if err := json.Unmarshal([]byte(j), &ps); err != nil {
			return stale(key)
		}
		for p, o := range ps {
			n, err := strconv.ParseInt(p, 10, 32)
			if err != nil {
				return stale(key)
			}
			into[int32(n)] = o
		}
		return nil
	}
	if err := readCursor(metaPositions, t.pos); err != nil {
		return err
	}
	if format != "1" {
		if err := readCursor(metaHorizon, t.horizon); err != nil {
			return err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := 0; i < r.NumRecords(); i++ {
		rec, err := r.RecordAt(i)
		if err != nil {
			return fmt.Errorf("store: reading %s: %v; remove it and let the exchange replay the topic", path, err)
		}
		err = t.loadBatch(rec, nf)
		rec.Release()
		if err != nil {
			return fmt.Errorf("store: reading %s: %v", path, err)
		}
	}
	t.tail.start = t.next
	return nil
}

func (t *Table) loadBatch(rec arrow.Record, nf int) error {
	n := int(rec.NumRows())
	if n == 0 {
		return nil
	}
	part, ok1 := rec.Column(nf).(*array.Int32)
	off, ok2 := rec.Column(nf + 1).(*array.Int64)
	del, ok3 := rec.Column(nf + 2).(*array.Boolean)
	if !ok1 || !ok2 || !ok3 {
		return errors.New("bad position columns")
	}
	data := array.NewRecord(t.schema, rec.Columns()[:nf], int64(n))
	seg := &segment{rec: data, start: t.next, n: n,
		part: append([]int32(nil), part.Int32Values()...),
		off:  append([]int64(nil), off.Int64Values()...),
		prev: make([]int64, n)}
	seg.refs.Store(1)
	var keys []string
	if t.keyCol < 0 {
		keys = make([]string, n)
		for i := range keys {
			m := map[string]any{}
			for _, k := range t.d.Key {
				m[k] = canonical(data.Column(t.fieldIndex(k)), i)
			}
			k, err := t.d.RecordKey(m)
			if err != nil {
				data.Release()
				return err
			}
			keys[i] = k
		}
	}
	t.setKeys(seg, n, func(i int) string { return keys[i] })
	st := &segState{seg: seg, del: make([]uint64, (n+63)/64)}
	t.segs = append(t.segs, st)
	t.tail.start = t.next + int64(n) // rowKey must find these rows in segs, not the tail
	for i := 0; i < n; i++ {
		row := t.next + int64(i)
		key := seg.keys.Value(i)
		old := int64(-1)
		if del.Value(i) {
			st.kill(i)
			st.death.note(0, seg.part[i], seg.off[i])
			t.tombs = append(t.tombs, tomb{key: key, part: seg.part[i], off: seg.off[i], row: row})
		} else {
			old = t.idx.upsert(t.hash(key), key, row, t.rowKey)
			t.links.setRow(key, data, i, t.seq)
			if old >= 0 && !t.deleted(old) {
				t.markDeleted(old, seg.part[i], seg.off[i])
				t.live--
			}
			t.live++
		}
		seg.prev[i] = old
	}
	t.next += int64(n)
	return nil
}
