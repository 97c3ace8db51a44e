package audit

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"govx/internal/backoff"
)

// Sink is where shipped events end up (ClickHouse in production). Write must return nil
// only once every event of the batch is stored; it may be called again with the same
// events after a failure or a crash, so the store must tolerate duplicates (readers
// count distinct event ids).
type Sink interface {
	Write(ctx context.Context, events []*Event) error
	Close() error
}

func (s *Spool) shipLoop(ctx context.Context) {
	defer s.wg.Done()
	r := newSegReader(s.dir, s.shipped.Load()+1)
	defer r.close()
	retry := backoff.New(s.opts.retryMin, s.opts.retryMax)
	var pending []*Event
	var lastShip time.Time
	for {
		if len(pending) == 0 {
			// Between shipments, wait out the interval unless a full batch is waiting:
			// every insert is a new part ClickHouse must merge, and every shipment an
			// fsync of the marker next to the appenders' own.
			if wait := s.opts.shipInterval - time.Since(lastShip); wait > 0 && s.committed.Load()-s.shipped.Load() < uint64(s.opts.batchSize) {
				if !backoff.Sleep(ctx, wait) {
					return
				}
			}
			limit := s.committed.Load()
			for len(pending) < s.opts.batchSize {
				ev, err := r.next(limit)
				if err != nil {
					s.opts.logger.Error("audit: cannot read the spool to ship it", "dir", s.dir, "err", err)
					r.close()
					break
				}
				if ev == nil {
					break
				}
				pending = append(pending, ev)
			}
			if len(pending) == 0 {
				select {
				case <-s.wake:
				case <-ctx.Done():
					return
				case <-time.After(time.Second): // also retries a read error
				}
				continue
			}
		}
		if err := s.opts.sink.Write(ctx, pending); err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := retry.Next()
			s.opts.logger.Warn("audit: shipping failed; events stay in the spool and will be retried",
				"events", len(pending), "first_seq", pending[0].Seq, "retry_in", wait, "err", err)
			if !backoff.Sleep(ctx, wait) {
				return
			}
			continue
		}
		retry.Reset()
		lastShip = time.Now()
		last := pending[len(pending)-1]
		pending = nil
		markerErr := s.writeMarker(last.Seq, last.Hash)
		if markerErr != nil {
			// Without a durable marker the events would be shipped again after a restart:
			// harmless duplicates, but the segments must stay until the marker is written.
			s.opts.logger.Error("audit: cannot record shipping progress", "dir", s.dir, "err", markerErr)
		}
		if markerErr == nil {
			s.trim(last.Seq)
		}
		s.shipped.Store(last.Seq)
		s.mu.Lock()
		close(s.shipWake)
		s.shipWake = make(chan struct{})
		s.mu.Unlock()
	}
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
