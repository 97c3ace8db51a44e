package service

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"govx/exchange"
)

// DefaultPullsInProgress is how many pulls one department may stream at once (per
// replica) unless WithPullsInProgress says otherwise.
//
// A pull holds memory while its client reads: its snapshot, the batch being built and
// what gRPC or the socket has not yet sent, up to the client's flow-control window —
// several megabytes a stream. A department system that opens pulls and stops reading
// (a bug, or an attack) would otherwise pin memory without bound and take the exchange
// down for every department; this bounds each department's share.
const DefaultPullsInProgress = 64

// WithPullsInProgress sets how many pulls one department may stream at once; 0 means
// DefaultPullsInProgress.
func WithPullsInProgress(n int) Option {
	return func(s *Service) {
		if n > 0 {
			s.slots.max = n
		}
	}
}

// DefaultPullStallTimeout is how long a pull's client may take nothing of it before the
// exchange ends the pull, unless WithPullStallTimeout says otherwise.
//
// A stalled pull holds its place among its department's pulls in progress and the
// batches queued for it. A client that keeps its connection alive and never reads again
// (a hung process: its kernel still acknowledges keepalives) would hold both until it
// exits; this gives them back. Two minutes is far more than a client reading batch by
// batch needs between two reads.
const DefaultPullStallTimeout = 2 * time.Minute

// WithPullStallTimeout sets how long a pull's client may take nothing of it before the
// pull is ended (its complete event aborted, "client stopped reading"); 0 means
// DefaultPullStallTimeout.
func WithPullStallTimeout(d time.Duration) Option {
	return func(s *Service) {
		if d > 0 {
			s.slots.stall = d
		}
	}
}

// PullStallTimeout is how long a pull's client may take nothing before the transport
// (Flight, HTTP) ends the pull with exchange.ClientStalled: only they see a client's
// reads.
func (s *Service) PullStallTimeout() time.Duration { return s.slots.stall }

// pullSlots counts the pulls each department is streaming.
type pullSlots struct {
	max   int
	stall time.Duration // see WithPullStallTimeout
	mu    sync.Mutex
	busy  map[string]int

	streaming prometheus.Gauge   // pulls streaming now, every department
	refused   prometheus.Counter // pulls refused with pulls_in_progress
	stalled   prometheus.Counter // pulls ended because their client stopped reading
}

func newPullSlots() pullSlots {
	return pullSlots{max: DefaultPullsInProgress, stall: DefaultPullStallTimeout, busy: map[string]int{},
		streaming: prometheus.NewGauge(prometheus.GaugeOpts{Name: "govx_pulls_streaming",
			Help: "Pulls (Flight DoGet streams and HTTP pulls) streaming now, all departments together."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "govx_pulls_refused_in_progress_total",
			Help: "Pulls refused with pulls_in_progress: their department already streamed rate_limit.pulls_in_progress pulls."}),
		stalled: prometheus.NewCounter(prometheus.CounterOpts{Name: "govx_pulls_stalled_total",
			Help: "Pulls ended because their client took nothing of them for rate_limit.pull_stall_timeout."}),
	}
}

// take claims a slot for dept, or refuses with pulls_in_progress; release gives it
// back.
func (p *pullSlots) take(dept string) (release func(), err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy[dept] >= p.max {
		p.refused.Inc()
		return nil, exchange.E(exchange.ResourceExhausted, "pulls_in_progress",
			fmt.Sprintf("your department already has %d pulls streaming, the most this exchange allows at once; finish or cancel one, then ask for this pull again", p.max))
	}
	p.busy[dept]++
	p.streaming.Inc()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.streaming.Dec()
		if p.busy[dept]--; p.busy[dept] == 0 {
			delete(p.busy, dept)
		}
	}, nil
}
