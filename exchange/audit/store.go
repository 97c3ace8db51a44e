package audit

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Filter selects events. Empty fields match everything; Until is exclusive. Decision
// matches decision events only (complete events carry no decision).
type Filter struct {
	Since, Until time.Time
	Kind         Kind
	Department   string
	System       string
	Dataset      string
	Action       string
	Decision     string
	Purpose      string
	Agreement    string
	CaseRef      string
	RequestID    string
	Instance     string
	Key          string // the event's keys contain it
}

// Match reports whether ev passes the filter, with the same meaning as the SQL the
// ClickHouse store runs.
func (f *Filter) Match(ev *Event) bool {
	if !f.Since.IsZero() && ev.Time.Before(f.Since.Truncate(time.Millisecond)) {
		return false
	}
	if !f.Until.IsZero() && !ev.Time.Before(f.Until.Truncate(time.Millisecond)) {
		return false
	}
	eq := func(want, got string) bool { return want == "" || want == got }
	return eq(string(f.Kind), string(ev.Kind)) && eq(f.Department, ev.Department) &&
		eq(f.System, ev.System) && eq(f.Dataset, ev.Dataset) && eq(f.Action, ev.Action) &&
		eq(f.Decision, ev.Decision) && eq(f.Purpose, ev.Purpose) && eq(f.Agreement, ev.Agreement) &&
		eq(f.CaseRef, ev.CaseRef) && eq(f.RequestID, ev.RequestID) && eq(f.Instance, ev.Instance) &&
		(f.Key == "" || slices.Contains(ev.Keys, f.Key))
}

// Iterator walks events. Use it as
//
//	for it.Next() { ev := it.Event() … }
//	if err := it.Err(); err != nil { … }
type Iterator interface {
	Next() bool
	Event() *Event
	Err() error
	Close() error
}

// Store is where the auditor's tools read events: ClickHouse or a local spool.
type Store interface {
	// Events returns the events matching f, each event id once, in time order (a spool
	// holds one instance, whose seq order is its time order).
	Events(ctx context.Context, f Filter) (Iterator, error)
	// Chain returns every stored event ordered by instance and seq, for verification.
	Chain(ctx context.Context) (Iterator, error)
	Close() error
}

// SpoolStore reads a spool directory, read-only, while its exchange may still be
// writing it. With a sink configured the spool holds only events not yet shipped.
// Damaged stretches of its segments never end a read early: queries skip them and report
// them as warnings ([Warner]); the chain passes them to [Verify], which names them.
type SpoolStore struct {
	dir      string
	instance string
}

// OpenSpoolStore opens dir for reading.
func OpenSpoolStore(dir string) (*SpoolStore, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: cannot read spool %s: %w (give the spool directory with --spool, or a ClickHouse with --clickhouse)", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("audit: spool %s is not a directory", dir)
	}
	// A spool whose instance file was removed still opens, with no instance: verify
	// then reports what the checkpoints say is missing.
	b, err := os.ReadFile(filepath.Join(dir, instanceName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("audit: cannot read %s: %w", filepath.Join(dir, instanceName), err)
	}
	return &SpoolStore{dir: dir, instance: strings.TrimSpace(string(b))}, nil
}

// Instance returns the name of the instance whose chain the spool holds, "" when its
// instance file is missing (not a spool, or one that was removed).
func (s *SpoolStore) Instance() string { return s.instance }

// Shipped returns the spool's shipped marker, nil when nothing was shipped from it.
func (s *SpoolStore) Shipped() (*ShippedMarker, error) { return ReadShippedMarker(s.dir) }

// Events returns the spooled events matching f in seq order.
func (s *SpoolStore) Events(ctx context.Context, f Filter) (Iterator, error) {
	return s.iter(ctx, &f, 0), nil
}

// Chain returns every spooled event in seq order, with damaged stretches and events
// stored out of order marked for [Verify].
func (s *SpoolStore) Chain(ctx context.Context) (Iterator, error) {
	return s.iter(ctx, nil, reorderWindow), nil
}

// Close does nothing: readers close their own files.
func (s *SpoolStore) Close() error { return nil }

// Warner is implemented by iterators that passed over something the reader should know
// of (damaged stretches of a spool).
type Warner interface {
	Warnings() []string
}

// reorderWindow is how far apart two swapped events may be for Verify to report them as
// reordered rather than as removed and out of place.
const reorderWindow = 4096

func (s *SpoolStore) iter(ctx context.Context, f *Filter, window int) *spoolIter {
	ctx, cancel := context.WithCancel(ctx)
	it := &spoolIter{ctx: ctx, cancel: cancel, items: make(chan *Event, 256), f: f, window: window}
	if f != nil {
		it.seen = map[string]struct{}{}
	}
	go it.produce(s.dir, s.instance, f != nil)
	return it
}

type spoolIter struct {
	ctx    context.Context
	cancel context.CancelFunc
	items  chan *Event
	errc   error // set by produce before it closes items
	f      *Filter
	seen   map[string]struct{}
	window int
	heap   evHeap
	order  uint64
	ended  bool
	ev     *Event
	err    error
	warn   []string
	// asideWarn is written by the producer before it closes items, read after: set-aside
	// segments read, and segments misnamed.
	asideWarn []string
}

// produce walks every segment in file order and sends what it finds; for queries, the
// intact events of segments `govx audit repair` set aside follow, so that a repair never
// hides an access from the auditor (verify reports the gap itself).
func (it *spoolIter) produce(dir, instance string, withSetAside bool) {
	defer close(it.items)
	segs, err := listSegments(dir)
	if err != nil {
		it.errc = err
		return
	}
	if withSetAside {
		defer it.produceSetAside(dir)
	}
	var maxSeq, after uint64
	for i, first := range segs {
		lastSeg := i == len(segs)-1
		p := filepath.Join(dir, segName(first))
		seen := false
		err := walkSegment(p, after, func(x segItem) error {
			if x.ev != nil && !seen && x.ev.Seq != first {
				it.asideWarn = append(it.asideWarn, fmt.Sprintf("segment %s is named for seq %d but starts with seq %d: the exchange refuses to open the spool until it has its name back", p, first, x.ev.Seq))
			}
			seen = true
			ev := x.ev
			if ev == nil {
				ev = &Event{Instance: instance, Seq: x.damage.AfterSeq}
			}
			if x.damage != nil {
				d := *x.damage
				d.Torn = d.Torn && lastSeg // only the very end of the log can be torn by a crash
				ev.damage = &d
			}
			if x.ev != nil {
				if ev.Seq < maxSeq {
					ev.misplaced = fmt.Sprintf("%s offset %d, after seq %d", filepath.Join(dir, segName(first)), x.off, maxSeq)
				}
				maxSeq = max(maxSeq, ev.Seq)
				after = ev.Seq
			}
			select {
			case it.items <- ev:
				return nil
			case <-it.ctx.Done():
				return it.ctx.Err()
			}
		})
		if err != nil {
			if it.ctx.Err() == nil {
				it.errc = err
			}
			return
		}
		if lastSeg && !seen && len(segs) > 1 && first != after+1 {
			it.asideWarn = append(it.asideWarn, fmt.Sprintf("segment %s holds no event but is named for seq %d, while the next event is seq %d: the exchange refuses to open the spool until it is moved out (`govx audit repair` sets it aside)", p, first, after+1))
		}
	}
}

func (it *spoolIter) produceSetAside(dir string) {
	asides, _ := filepath.Glob(filepath.Join(dir, "damaged-*"))
	sort.Strings(asides)
	for _, aside := range asides {
		segs, err := listSegments(aside)
		if err != nil || len(segs) == 0 {
			continue
		}
		n := 0
		for _, first := range segs {
			err := walkSegment(filepath.Join(aside, segName(first)), 0, func(x segItem) error {
				if x.ev == nil || x.damage != nil {
					return nil // the damage itself is what verify and the gap event report
				}
				n++
				select {
				case it.items <- x.ev:
					return nil
				case <-it.ctx.Done():
					return it.ctx.Err()
				}
			})
			if err != nil {
				return
			}
		}
		it.asideWarn = append(it.asideWarn, fmt.Sprintf("%d intact event(s) were read from %s, set aside by `govx audit repair` after damage: they are shown, but are not part of the verified chain", n, aside))
	}
}

func (it *spoolIter) Next() bool {
	for {
		if err := it.ctx.Err(); err != nil {
			it.err = err
			return false
		}
		ev := it.pull()
		if ev == nil {
			return false
		}
		if it.f != nil {
			if ev.damage != nil {
				it.warn = append(it.warn, "the spool is damaged at "+ev.damage.String()+": events there are not shown; run `govx audit verify`")
				if ev.EventID == "" {
					continue
				}
			}
			if !it.f.Match(ev) {
				continue
			}
			if _, ok := it.seen[ev.EventID]; ok {
				continue
			}
			it.seen[ev.EventID] = struct{}{}
		}
		it.ev = ev
		return true
	}
}

// pull returns the next item, in seq order within the reorder window.
func (it *spoolIter) pull() *Event {
	for !it.ended && len(it.heap) <= it.window {
		ev, ok := <-it.items
		if !ok {
			it.ended = true
			if it.errc != nil {
				it.err = it.errc
			}
			break
		}
		if it.window == 0 {
			return ev
		}
		it.order++
		heap.Push(&it.heap, heapItem{ev: ev, order: it.order})
	}
	if len(it.heap) == 0 {
		return nil
	}
	return heap.Pop(&it.heap).(heapItem).ev
}

func (it *spoolIter) Event() *Event { return it.ev }
func (it *spoolIter) Err() error    { return it.err }
func (it *spoolIter) Close() error {
	it.cancel()
	for range it.items { // let the producer finish
	}
	return nil
}

// Warnings lists the damaged stretches a query passed over and the set-aside segments
// it read.
func (it *spoolIter) Warnings() []string { return append(slices.Clone(it.warn), it.asideWarn...) }

type heapItem struct {
	ev    *Event
	order uint64
}

// evHeap orders items by seq, then by the order they were read in (a damaged stretch
// comes right after the event before it).
type evHeap []heapItem

func (h evHeap) Len() int { return len(h) }
func (h evHeap) Less(i, j int) bool {
	if h[i].ev.Seq != h[j].ev.Seq {
		return h[i].ev.Seq < h[j].ev.Seq
	}
	return h[i].order < h[j].order
}
func (h evHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *evHeap) Push(x any)   { *h = append(*h, x.(heapItem)) }
func (h *evHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// MergeChains merges two chains ordered by instance and seq (a ClickHouse copy and the
// spool of one of its instances) into one, dropping the second copy of an event both
// hold. Copies that differ are both kept, for Verify to judge.
func MergeChains(a, b Iterator) Iterator { return &mergeIter{a: a, b: b} }

type mergeIter struct {
	a, b   Iterator
	ha, hb *Event
	init   bool
	ev     *Event
	err    error
}

func (m *mergeIter) Next() bool {
	if !m.init {
		m.init = true
		m.ha, m.hb = advance(m.a), advance(m.b)
	}
	if m.err = errors.Join(m.a.Err(), m.b.Err()); m.err != nil {
		return false
	}
	switch {
	case m.ha == nil && m.hb == nil:
		return false
	case m.hb == nil || (m.ha != nil && chainLess(m.ha, m.hb)):
		m.ev, m.ha = m.ha, advance(m.a)
	case m.ha == nil || chainLess(m.hb, m.ha):
		m.ev, m.hb = m.hb, advance(m.b)
	default: // same instance and seq
		m.ev = m.ha
		if m.ha.EventID == m.hb.EventID && m.ha.Hash == m.hb.Hash && m.ha.damage == nil && m.hb.damage == nil && m.ha.ComputeHash() == m.hb.ComputeHash() {
			m.hb = advance(m.b) // the same event in both: keep one
		}
		m.ha = advance(m.a)
	}
	return true
}

func advance(it Iterator) *Event {
	if it.Next() {
		return it.Event()
	}
	return nil
}

func chainLess(x, y *Event) bool {
	if x.Instance != y.Instance {
		return x.Instance < y.Instance
	}
	return x.Seq < y.Seq
}

func (m *mergeIter) Event() *Event { return m.ev }
func (m *mergeIter) Err() error    { return m.err }
func (m *mergeIter) Close() error  { return errors.Join(m.a.Close(), m.b.Close()) }

// Warnings passes on what either chain warned of.
func (m *mergeIter) Warnings() []string {
	var out []string
	for _, it := range []Iterator{m.a, m.b} {
		if w, ok := it.(Warner); ok {
			out = append(out, w.Warnings()...)
		}
	}
	return out
}

// SliceStore serves events held in memory (tests, and reports over events already read).
type SliceStore []*Event

// Events returns the events matching f in time order.
func (s SliceStore) Events(ctx context.Context, f Filter) (Iterator, error) {
	var out []*Event
	seen := map[string]struct{}{}
	for _, e := range s {
		if _, ok := seen[e.EventID]; ok || !f.Match(e) {
			continue
		}
		seen[e.EventID] = struct{}{}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(a, b *Event) int { return a.Time.Compare(b.Time) })
	return &sliceIter{evs: out}, nil
}

// Chain returns the events ordered by instance and seq.
func (s SliceStore) Chain(ctx context.Context) (Iterator, error) {
	out := slices.Clone([]*Event(s))
	slices.SortStableFunc(out, func(a, b *Event) int {
		if a.Instance != b.Instance {
			if a.Instance < b.Instance {
				return -1
			}
			return 1
		}
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return &sliceIter{evs: out}, nil
}

// Close does nothing.
func (s SliceStore) Close() error { return nil }

type sliceIter struct {
	evs []*Event
	i   int
}

func (it *sliceIter) Next() bool {
	if it.i >= len(it.evs) {
		return false
	}
	it.i++
	return true
}
func (it *sliceIter) Event() *Event { return it.evs[it.i-1] }
func (it *sliceIter) Err() error    { return nil }
func (it *sliceIter) Close() error  { return nil }

// Collect reads every event of it and closes it.
func Collect(it Iterator) ([]*Event, error) {
	defer it.Close()
	var out []*Event
	for it.Next() {
		out = append(out, it.Event())
	}
	return out, it.Err()
}

// Embedded defaults: where a govx that has no ClickHouse configured keeps its audit log
// and where `govx audit` looks when given neither --clickhouse nor --spool.
const (
	DefaultSpoolDir       = ".govx/audit/spool"
	DefaultCheckpointFile = ".govx/audit/checkpoints.jsonl"
	DefaultKeyFile        = ".govx/audit/signing.key" // its public key: DefaultKeyFile + ".pub"
)
