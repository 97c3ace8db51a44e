package connectors

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Phases of a connector.
const (
	PhaseSnapshot    = "snapshot"
	PhaseIncremental = "incremental"
)

// Checkpoint is a connector's progress, kept as the last record for its name in the
// compacted checkpoint topic (as Kafka Connect keeps source offsets), so losing the
// connector's machine loses nothing. It only ever names rows Kafka acknowledged.
type Checkpoint struct {
	Connector string `json:"connector"`
	Dataset   string `json:"dataset"`
	Phase     string `json:"phase"`
	// Cursor and Key: in the snapshot, the last acknowledged row (resume strictly after
	// it); in the incremental phase, the highest acknowledged cursor (re-read from it
	// minus the look-back window).
	Cursor json.RawMessage   `json:"cursor,omitempty"`
	Key    []json.RawMessage `json:"key,omitempty"`
	// NullCursor: the snapshot reached the rows whose cursor is NULL.
	NullCursor bool `json:"null_cursor,omitempty"`
	// Snapshots counts full snapshots ever started; a resumed snapshot does not count.
	Snapshots int `json:"snapshots"`
	// SnapshotRows is how many rows of the current snapshot were acknowledged.
	SnapshotRows int64     `json:"snapshot_rows"`
	UpdatedAt    time.Time `json:"updated_at"`
}

func (c *Checkpoint) position() (Position, error) {
	var p Position
	var err error
	if len(c.Cursor) > 0 {
		if p.Cursor, err = decodeValue(c.Cursor); err != nil {
			return p, err
		}
	}
	for _, k := range c.Key {
		v, err := decodeValue(k)
		if err != nil {
			return p, err
		}
		p.Key = append(p.Key, v)
	}
	p.NullCursor = c.NullCursor
	return p, nil
}

// setPosition records p, or, when a value of p cannot be encoded, returns why and leaves
// the checkpoint as it was: a half-written position would name no row at all, and the
// next run would start the snapshot (or the incremental re-read) over.
func (c *Checkpoint) setPosition(p Position) error {
	var cursor json.RawMessage
	if p.Cursor != nil {
		raw, err := encodeValue(p.Cursor)
		if err != nil {
			return fmt.Errorf("cursor: %w", err)
		}
		cursor = raw
	}
	var key []json.RawMessage
	for _, k := range p.Key {
		raw, err := encodeValue(k)
		if err != nil {
			return fmt.Errorf("key: %w", err)
		}
		key = append(key, raw)
	}
	c.Cursor, c.Key, c.NullCursor = cursor, key, p.NullCursor
	return nil
}

// loadCheckpoint returns the last checkpoint stored for name, or nil.
func (k *kafkaConn) loadCheckpoint(ctx context.Context, topic, name string) (*Checkpoint, error) {
	var last []byte
	var found bool
	err := k.readTopic(ctx, topic, func(key, value []byte, tombstone bool) error {
		if string(key) != name {
			return nil
		}
		found = true
		last = nil
		if !tombstone {
			last = append(last[:0], value...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading checkpoints from %s: %w", topic, err)
	}
	if !found || last == nil {
		return nil, nil
	}
	var c Checkpoint
	if err := json.Unmarshal(last, &c); err != nil {
		return nil, fmt.Errorf("checkpoint of %s in %s is not readable (%v); delete it with a tombstone to start over", name, topic, err)
	}
	return &c, nil
}

// ReadCheckpoint returns the connector's stored checkpoint, or nil if it has none.
func ReadCheckpoint(ctx context.Context, cfg *Config) (*Checkpoint, error) {
	k, err := newKafkaConn(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	defer k.close()
	return k.loadCheckpoint(ctx, cfg.Kafka.CheckpointTopic, cfg.Name)
}

// content is the checkpoint as stored, without the time it is stored at: what tells
// whether storing it again would change anything.
func (c Checkpoint) content() ([]byte, error) {
	c.UpdatedAt = time.Time{}
	return json.Marshal(c)
}

func checkpointMessage(topic, name string, c *Checkpoint) (kafka.Message, error) {
	c.UpdatedAt = time.Now().UTC()
	b, err := json.Marshal(c)
	if err != nil {
		return kafka.Message{}, err
	}
	return kafka.Message{Topic: topic, Key: []byte(name), Value: b}, nil
}
