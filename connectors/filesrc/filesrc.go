// Package filesrc reads department export files — CSV (UTF-8, GB18030 or GBK) and JSON
// lines — for govx connectors. Importing it registers the source drivers "csv" and
// "jsonl" with package connectors.
//
// An export is small next to a database, so the file is read whole, ordered by
// (cursor, key) in memory and read again when it changes on disk. Without a cursor
// column every row takes the file's modification time as its cursor: a new export is
// then published again as a whole, and unchanged rows are skipped by the connector's
// look-back deduplication only within its window.
package filesrc

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"govx/connectors"
)

type row struct {
	at     time.Time
	cursor any
	key    []string
	values []any
}

// loader reads a whole file into rows with values in spec.Columns order, reporting a
// missing column by name.
type loader func(path string, spec connectors.Spec) ([]row, error)

type source struct {
	path string
	spec connectors.Spec
	load loader

	mu    sync.Mutex
	mtime time.Time
	size  int64
	rows  []row
}

func open(path string, spec connectors.Spec, load loader) (connectors.Source, error) {
	if path == "" {
		return nil, fmt.Errorf("no file: set source.path")
	}
	s := &source{path: path, spec: spec, load: load}
	if _, err := s.current(); err != nil {
		return nil, err
	}
	return s, nil
}

// current returns the rows, reloading the file if it changed.
func (s *source) current() ([]row, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := os.Stat(s.path)
	if err != nil {
		return nil, err
	}
	if s.rows != nil && fi.ModTime().Equal(s.mtime) && fi.Size() == s.size {
		return s.rows, nil
	}
	rows, err := s.load(s.path, s.spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.path, err)
	}
	curIdx := -1
	keyIdx := make([]int, len(s.spec.Key))
	for i, c := range s.spec.Columns {
		if c == s.spec.Cursor {
			curIdx = i
		}
		for j, k := range s.spec.Key {
			if c == k {
				keyIdx[j] = i
			}
		}
	}
	for i := range rows {
		r := &rows[i]
		if curIdx >= 0 {
			r.cursor = r.values[curIdx]
			r.at, _ = connectors.CursorTime(r.cursor)
		} else {
			r.cursor, r.at = fi.ModTime().UTC(), fi.ModTime().UTC()
		}
		r.key = make([]string, len(keyIdx))
		for j, k := range keyIdx {
			r.key[j] = text(r.values[k])
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return less(&rows[i], rows[j].at, rows[j].key) })
	s.rows, s.mtime, s.size = rows, fi.ModTime(), fi.Size()
	return rows, nil
}

func less(r *row, at time.Time, key []string) bool {
	if !r.at.Equal(at) {
		return r.at.Before(at)
	}
	for i := range r.key {
		if c := strings.Compare(r.key[i], key[i]); c != 0 {
			return c < 0
		}
	}
	return false
}

func text(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

func (s *source) Count(ctx context.Context) (int64, error) {
	rows, err := s.current()
	return int64(len(rows)), err
}

func (s *source) Read(ctx context.Context, from connectors.Position, limit int, fn func(connectors.Row) error) error {
	if from.NullCursor {
		return nil // every file row has a cursor (the file time at least)
	}
	rows, err := s.current()
	if err != nil {
		return err
	}
	i := 0
	if from.Cursor != nil {
		at, ok := connectors.CursorTime(from.Cursor)
		if !ok {
			return fmt.Errorf("cursor %v is not a time", from.Cursor)
		}
		if from.Key == nil {
			i = sort.Search(len(rows), func(i int) bool { return !rows[i].at.Before(at) })
		} else {
			key := make([]string, len(from.Key))
			for j, k := range from.Key {
				key[j] = text(k)
			}
			// First row strictly after (at, key).
			i = sort.Search(len(rows), func(i int) bool {
				r := &rows[i]
				return r.at.After(at) || (r.at.Equal(at) && !less(r, at, key) && !equalKey(r.key, key))
			})
		}
	}
	for n := 0; i < len(rows) && (limit <= 0 || n < limit); i, n = i+1, n+1 {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := &rows[i]
		key := make([]any, len(r.key))
		for j, k := range r.key {
			key[j] = k
		}
		if err := fn(connectors.Row{Cursor: r.cursor, Key: key, Values: r.values}); err != nil {
			return err
		}
	}
	return nil
}

func equalKey(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (s *source) Keys(ctx context.Context, fn func(key []any) error) error {
	rows, err := s.current()
	if err != nil {
		return err
	}
	for i := range rows {
		key := make([]any, len(rows[i].key))
		for j, k := range rows[i].key {
			key[j] = k
		}
		if err := fn(key); err != nil {
			return err
		}
	}
	return nil
}

func (s *source) Close() error { return nil }

func missingColumns(need []string, have map[string]bool, what string) error {
	var missing []string
	for _, c := range need {
		if c != "" && !have[c] {
			missing = append(missing, fmt.Sprintf("%q", c))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	var names []string
	for c := range have {
		names = append(names, c)
	}
	sort.Strings(names)
	return fmt.Errorf("%s has no column %s (it has: %s); fix the mapping in the config", what, strings.Join(missing, ", "), strings.Join(names, ", "))
}
