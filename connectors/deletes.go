package connectors

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// compareKeys finds rows deleted from the source without a trace (no soft-delete
// column): every key live in the topic but absent from the source gets a tombstone.
//
// The topic is read first, to its end offsets at that moment, then the source's keys:
// a key inserted in between is in the source (no tombstone); a key deleted in between
// is not, and is deleted. Incremental polls and this comparison run one after the
// other, so a row re-inserted later is published after its tombstone.
func (c *Connector) compareKeys(ctx context.Context) error {
	start := time.Now()
	live := map[string]struct{}{}
	err := c.k.readTopic(ctx, c.cfg.Topic(), func(key, _ []byte, tombstone bool) error {
		if tombstone {
			delete(live, string(key))
		} else {
			live[string(key)] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete detection: %w", err)
	}
	inTopic := len(live)
	err = c.src.Keys(ctx, func(key []any) error {
		rk, err := c.mapper.keyFromNative(c.cfg.Cursor.Key, key)
		if err == nil {
			delete(live, rk)
		}
		return nil
	})
	if err != nil {
		return c.red.err(fmt.Errorf("delete detection: reading keys of %s: %w", c.sourceName(), err))
	}
	if len(live) == 0 {
		c.log.Debug("delete detection: no deleted keys", "keys", inTopic, "elapsed", time.Since(start))
		return nil
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	msgs := make([]kafka.Message, 0, len(live))
	for k := range live {
		msgs = append(msgs, c.message([]byte(k), nil, "delete", now))
	}
	if err := c.write(ctx, msgs); err != nil {
		return err
	}
	n := int64(len(msgs))
	c.m.deleted.Add(float64(n))
	c.m.published.Add(float64(n))
	c.update(func(p *Progress) { p.Deleted += n })
	c.log.Info("delete detection: published tombstones for keys gone from the source", "deleted", n, "keys", inTopic)
	return nil
}
