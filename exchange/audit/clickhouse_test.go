package audit

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"
)

// TestIntegrationEveryEventArrives: N events of both kinds appended through the spool are
// N distinct event ids in ClickHouse, each with exactly the fields that were appended.
func TestIntegrationEveryEventArrives(t *testing.T) {
	ch := newCH(t, "arrive")
	s, err := OpenSpool(t.TempDir(), WithInstance("ex-arrive"), WithSink(ch), WithBatchSize(700), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const n = 3000
	appended := make([]*Event, n)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				kind := KindDecision
				if i%2 == 1 {
					kind = KindComplete
				}
				ev := sampleEvent(i, kind)
				if err := s.Append(ctx, ev); err != nil {
					t.Error(err)
					return
				}
				appended[i] = ev
			}
		}(w)
	}
	wg.Wait()
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	got, err := distinctIDs(t, ch)
	if err != nil || got != n {
		t.Fatalf("ClickHouse holds %d distinct event ids (err %v), want %d", got, err, n)
	}
	it, err := ch.Events(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := Collect(it)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*Event{}
	for _, e := range evs {
		byID[e.EventID] = e
	}
	for _, want := range appended {
		gotEv := byID[want.EventID]
		if gotEv == nil {
			t.Fatalf("event %s (seq %d) missing", want.EventID, want.Seq)
		}
		if !reflect.DeepEqual(gotEv, want) {
			t.Fatalf("event read back differs:\n got %+v\nwant %+v", gotEv, want)
		}
	}
	// The table verifies as an intact chain.
	cit, err := ch.Chain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(ctx, cit, VerifyOptions{})
	if err != nil || !res.OK() || res.Chains[0].Events != n {
		t.Fatalf("verify: err %v\n%s", err, res.Summary())
	}
}

// TestIntegrationQueryFilterIsNotInjectable: a hostile filter value finds nothing and
// breaks nothing, and a value with quotes and backslashes matches exactly its row.
func TestIntegrationQueryFilterIsNotInjectable(t *testing.T) {
	ch := newCH(t, "inject")
	s, err := OpenSpool(t.TempDir(), WithInstance("ex-inject"), WithSink(ch), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	odd := `o'brien\' OR 1=1 -- 张三`
	for i := 0; i < 10; i++ {
		ev := sampleEvent(i, KindDecision)
		if i == 3 {
			ev.Purpose = odd
			ev.Keys = []string{`k'); DROP TABLE x; --`}
		}
		if err := s.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    Filter
		want int
	}{
		{"hostile purpose", Filter{Purpose: "x' OR '1'='1"}, 0},
		{"hostile department", Filter{Department: `\' OR 1=1) OR ('`}, 0},
		{"hostile key", Filter{Key: "') OR 1=1 --"}, 0},
		{"quoted purpose", Filter{Purpose: odd}, 1},
		{"quoted key", Filter{Key: `k'); DROP TABLE x; --`}, 1},
		{"everything", Filter{}, 10},
	} {
		it, err := ch.Events(ctx, tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		evs, err := Collect(it)
		if err != nil || len(evs) != tc.want {
			t.Errorf("%s: %d events (err %v), want %d", tc.name, len(evs), err, tc.want)
		}
	}
}
