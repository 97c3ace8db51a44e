package audit

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"govx/internal/backoff"
)

// Sink is where shipped events end up (ClickHouse in production).
type Sink interface {
	// Write stores one shipment: every event of the blocks next returns, until it
	// returns an empty one. It returns nil only once every event is stored; when next
	// fails, Write returns its error and need not have stored anything. It may be called
	// again with the same events after a failure or a crash, so the store must tolerate
	// duplicates (readers count distinct event ids). A block's events, and the memory
	// they point into, are reused once next is called again: a sink copies what it keeps.
	Write(ctx context.Context, next Blocks) error
	Close() error
}

// Blocks returns the events of a shipment a block at a time, then an empty block.
type Blocks func() ([]*Event, error)

// EventBlocks returns events as a shipment of one block.
func EventBlocks(events []*Event) Blocks {
	done := false
	return func() ([]*Event, error) {
		if done {
			return nil, nil
		}
		done = true
		return events, nil
	}
}

// maxBlock is the most events of one block of a shipment: what the shipper holds
// decoded at a time, whatever the size of the shipment. Small, because clickhouse-go
// builds each INSERT's columns afresh and reuses them only from block to block within
// it: the columns grow to one block, not to the shipment (BenchmarkShipToClickHouse:
// 3.9 KB allocated per event of a 2,048-event shipment with blocks of 4,096, 1.3 KB with
// blocks of 512).
const maxBlock = 512

// shipment reads the events of one shipment from the spool, a block at a time, into
// memory it reuses from block to block and from shipment to shipment: once warm,
// shipping allocates one string per event (decodeRecord) and nothing else here.
type shipment struct {
	r     *segReader
	evs   []Event // a block's events; never grown, so pointers into it stay valid
	ptrs  []*Event
	slab  []string // the block's list entries
	limit uint64   // the last seq the shipment may take (durable)
	max   int      // the most events of the shipment
	n     int      // events handed out
	// the shipment's last event, for the shipped marker
	lastSeq  uint64
	lastHash string
	readErr  error
}

func newShipment(dir string, from uint64, block int) *shipment {
	block = max(1, min(block, maxBlock))
	return &shipment{r: newSegReader(dir, from), evs: make([]Event, block), ptrs: make([]*Event, 0, block)}
}

// start begins a shipment of at most max events up to seq limit.
func (sh *shipment) start(limit uint64, max int) {
	sh.limit, sh.max, sh.n, sh.readErr = limit, max, 0, nil
}

// next is the shipment's [Blocks].
func (sh *shipment) next() ([]*Event, error) {
	sh.ptrs, sh.slab = sh.ptrs[:0], sh.slab[:0]
	for len(sh.ptrs) < len(sh.evs) && sh.n+len(sh.ptrs) < sh.max {
		e := &sh.evs[len(sh.ptrs)]
		ok, err := sh.r.next(sh.limit, e, &sh.slab)
		if err != nil {
			sh.readErr = err
			return nil, err
		}
		if !ok {
			break
		}
		sh.ptrs = append(sh.ptrs, e)
	}
	if k := len(sh.ptrs); k > 0 {
		sh.n += k
		sh.lastSeq, sh.lastHash = sh.ptrs[k-1].Seq, sh.ptrs[k-1].Hash
	}
	return sh.ptrs, nil
}

// shipLoop moves durable events from the spool to the sink, in order, one shipment at a
// time. Near the head of the spool it ships once per interval: every insert is a part
// ClickHouse must write and merge, and every shipment an fsync of the marker next to
// the appenders' own. Far behind (after an outage) it ships full shipments, each
// followed by a pause of a quarter of the time it took, so that catching up leaves
// requests a fifth of the shipper's and ClickHouse's time while it still drains a backlog
// at four fifths of full speed (a half-time pause cut the pipeline below 50k events/s).
// Flush cuts any of these waits short.
// catchUpPause divides a full shipment's time into the pause after it.
const catchUpPause = 4

func (s *Spool) shipLoop(ctx context.Context) {
	defer s.wg.Done()
	sh := newShipment(s.dir, s.shipped.Load()+1, s.opts.batchSize)
	defer sh.r.close()
	retry := backoff.New(s.opts.retryMin, s.opts.retryMax)
	var lastShip time.Time
	var hold time.Duration // the least wait before the next shipment: a pause or a retry
	for {
		behind := s.committed.Load() - s.shipped.Load()
		wait, commits := hold, false
		switch {
		case behind == 0:
			wait, commits = time.Second, true
		case behind < uint64(s.opts.batchSize):
			wait = max(hold, s.opts.shipInterval-time.Since(lastShip))
		}
		if !s.shipWait(ctx, wait, commits) {
			return
		}
		if behind == 0 {
			continue
		}
		first := sh.r.want
		started := time.Now()
		sh.start(s.committed.Load(), s.opts.batchSize)
		err := s.opts.sink.Write(ctx, sh.next)
		if sh.readErr != nil {
			s.opts.logger.Error("audit: cannot read the spool to ship it", "dir", s.dir, "err", sh.readErr)
			sh.r.seek(first)
			hold = time.Second
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			sh.r.seek(first)
			hold = retry.Next()
			s.opts.logger.Warn("audit: shipping failed; events stay in the spool and will be retried",
				"events", sh.n, "first_seq", first, "retry_in", hold, "err", err)
			continue
		}
		if sh.n == 0 {
			// Durable but not readable yet (a segment being started): at the next commit.
			hold = time.Second
			continue
		}
		retry.Reset()
		lastShip = time.Now()
		hold = 0
		if sh.n >= s.opts.batchSize {
			hold = time.Since(started) / catchUpPause
		}
		markerErr := s.writeMarker(sh.lastSeq, sh.lastHash)
		if markerErr != nil {
			// Without a durable marker the events would be shipped again after a restart:
			// harmless duplicates, but the segments must stay until the marker is written.
			s.opts.logger.Error("audit: cannot record shipping progress", "dir", s.dir, "err", markerErr)
		}
		if markerErr == nil {
			s.trim(sh.lastSeq)
		}
		s.shipped.Store(sh.lastSeq)
		s.mu.Lock()
		close(s.shipWake)
		s.shipWake = make(chan struct{})
		s.mu.Unlock()
	}
}

// shipWait waits d, or less when Flush asks for a shipment or (with commits) when an
// event is committed. It returns false when the shipper is stopping.
func (s *Spool) shipWait(ctx context.Context, d time.Duration, commits bool) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	wake := s.wake
	if !commits {
		wake = nil
	}
	select {
	case <-t.C:
	case <-wake:
	case <-s.flushReq:
	case <-ctx.Done():
		return false
	}
	return true
}

// trim deletes whole segments whose every event was acknowledged, never the newest one
// (the writer appends to it, and recovery needs its last record as the chain head).
func (s *Spool) trim(shipped uint64) {
	segs, err := listSegments(s.dir)
	if err != nil {
		return
	}
	for i := 0; i+1 < len(segs); i++ {
		if segs[i+1]-1 > shipped {
			break
		}
		p := filepath.Join(s.dir, segName(segs[i]))
		if err := os.Remove(p); err != nil {
			s.opts.logger.Warn("audit: cannot delete shipped spool segment", "file", p, "err", err)
			return
		}
	}
}
