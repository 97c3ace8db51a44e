// Package backoff paces the retries of an operation that fails until something outside
// recovers (a broker restart, ClickHouse down): each wait doubles from a minimum to a
// maximum, with jitter so that the many retriers of one outage do not all come back in
// the same instant. The audit shipper, the exchange's ingest and connectors use it; any
// govx package may import it, and it imports nothing of govx.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the wait before each retry of one operation; New makes one. It is not safe
// for concurrent use: each retrying loop has its own.
type Backoff struct {
	min, max, step time.Duration
}

// New returns a Backoff whose waits start at first and double up to limit. A first
// that is not positive is taken as a millisecond, a limit below first as first.
func New(first, limit time.Duration) Backoff {
	if first <= 0 {
		first = time.Millisecond
	}
	return Backoff{min: first, max: max(first, limit), step: first}
}

// Next returns the wait before the next retry — the current step less a random part of
// up to half of it, so never longer than the step — and doubles the step, up to the limit.
func (b *Backoff) Next() time.Duration {
	d := b.step
	b.step = min(2*b.step, b.max)
	return d - time.Duration(rand.Int64N(int64(d/2)+1))
}

// Reset starts the waits again from the first: the operation succeeded, and a later failure is
// a new outage.
func (b *Backoff) Reset() { b.step = b.min }

// Sleep waits d, or until ctx is done; it reports whether the whole wait passed. Every
// retrying loop waits through it, so that a cancelled context ends the wait at once.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
