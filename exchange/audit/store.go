package audit

import (
	"context"
	"fmt"
	"os"
	"slices"
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
type SpoolStore struct{ dir string }

// OpenSpoolStore opens dir for reading.
func OpenSpoolStore(dir string) (*SpoolStore, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: cannot read spool %s: %w (give the spool directory with --spool, or a ClickHouse with --clickhouse)", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("audit: spool %s is not a directory", dir)
	}
	return &SpoolStore{dir: dir}, nil
}

// Events returns the spooled events matching f in seq order.
func (s *SpoolStore) Events(ctx context.Context, f Filter) (Iterator, error) {
	return &spoolIter{r: newSegReader(s.dir, 0), f: f, ctx: ctx, seen: map[string]struct{}{}}, nil
}

// Chain returns every spooled event in seq order.
func (s *SpoolStore) Chain(ctx context.Context) (Iterator, error) {
	r := newSegReader(s.dir, 0)
	r.all = true // a forged record with a repeated seq must reach Verify
	return &spoolIter{r: r, ctx: ctx}, nil
}

// Close does nothing: readers close their own files.
func (s *SpoolStore) Close() error { return nil }

type spoolIter struct {
	r    *segReader
	f    Filter
	ctx  context.Context
	seen map[string]struct{}
	ev   *Event
	err  error
}

func (it *spoolIter) Next() bool {
	for {
		if err := it.ctx.Err(); err != nil {
			it.err = err
			return false
		}
		ev, err := it.r.next(^uint64(0))
		if err != nil {
			it.err = err
			return false
		}
		if ev == nil {
			return false
		}
		if it.seen != nil {
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

func (it *spoolIter) Event() *Event { return it.ev }
func (it *spoolIter) Err() error    { return it.err }
func (it *spoolIter) Close() error  { it.r.close(); return nil }

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
