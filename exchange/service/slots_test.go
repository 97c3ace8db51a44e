package service

import (
	"context"
	"errors"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"govx/exchange"
	"govx/exchange/audit"
)

// stallSink is a client that stops reading: Begin says so on started, then waits for
// go (or the pull's end).
type stallSink struct {
	countSink
	started chan struct{}
	proceed chan struct{}
}

func (s *stallSink) Begin(*arrow.Schema) error {
	s.started <- struct{}{}
	<-s.proceed
	return nil
}

// TestStalledPullsAreBounded: a department whose pulls stop reading holds at most
// rate_limit.pulls_in_progress of them; one more is refused at once with
// pulls_in_progress, its complete event says so, another department's pulls are not
// affected, and a slot freed is a pull served.
func TestStalledPullsAreBounded(t *testing.T) {
	f := newFixture(t, WithPullsInProgress(2))
	ctx := context.Background()
	open := func(c Caller, cmd exchange.PullCmd) *Grant {
		t.Helper()
		g, err := f.svc.Open(ctx, c, cmd)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	sink := &stallSink{started: make(chan struct{}), proceed: make(chan struct{})}
	done := make(chan error, 2)
	for range 2 {
		g := open(hz, pullCmd())
		go func() { _, err := f.svc.Stream(ctx, g, sink); done <- err }()
		<-sink.started
	}

	refused := open(hz, pullCmd())
	var xe *exchange.Error
	if _, err := f.svc.Stream(ctx, refused, &countSink{}); !errors.As(err, &xe) || xe.Code != "pulls_in_progress" || xe.Kind != exchange.ResourceExhausted {
		t.Fatalf("a third pull with two stalled: %v, want pulls_in_progress", err)
	}
	if streaming, refusals := testutil.ToFloat64(f.svc.slots.streaming), testutil.ToFloat64(f.svc.slots.refused); streaming != 2 || refusals != 1 {
		t.Errorf("metrics: %v pulls streaming, %v refused; want 2 and 1", streaming, refusals)
	}
	other := Caller{Subject: exchange.Subject{Department: "rs-33", System: "pension"}, ClientAddr: "127.0.0.1:2"}
	if n, err := f.svc.Stream(ctx, open(other, exchange.PullCmd{Dataset: "population.person", Purpose: "pension-qualification-review"}), &countSink{}); err != nil || n == 0 {
		t.Fatalf("another department's pull while mz-3301's stall: %d rows, %v", n, err)
	}

	sink.proceed <- struct{}{} // one stalled client reads again
	if err := <-done; err != nil {
		t.Fatalf("the stalled pull, once read: %v", err)
	}
	if n, err := f.svc.Stream(ctx, open(hz, pullCmd()), &countSink{}); err != nil || n == 0 {
		t.Fatalf("a pull after a slot was freed: %d rows, %v", n, err)
	}
	close(sink.proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if streaming := testutil.ToFloat64(f.svc.slots.streaming); streaming != 0 {
		t.Errorf("%v pulls streaming after every pull ended", streaming)
	}

	var complete *audit.Event
	for _, ev := range events(t, f.dir) {
		if ev.Kind == audit.KindComplete && ev.RequestID == refused.RequestID {
			complete = ev
		}
	}
	if complete == nil || complete.Status != audit.StatusError || complete.Error != "pulls_in_progress" {
		t.Fatalf("the refused pull's complete event: %+v, want status error, pulls_in_progress", complete)
	}
}
