package connectors

import (
	"strings"
	"testing"
)

// TestCheckpointKeepsPositionItCannotEncode: a source value the checkpoint cannot hold
// (here an unsigned 64-bit key, as a MySQL BIGINT UNSIGNED column can give) stops the
// connector with an error naming the type; the checkpoint keeps the last position it
// could hold instead of being reset to none, which would restart the snapshot.
func TestCheckpointKeepsPositionItCannotEncode(t *testing.T) {
	for _, phase := range []string{PhaseSnapshot, PhaseIncremental} {
		t.Run(phase, func(t *testing.T) {
			c := &Connector{cfg: &Config{Name: "ckpt-test"}, m: newMetrics("ckpt-test", "population.person")}
			good := &chunk{rows: 1, last: Position{Cursor: "2026-01-01 00:00:00", Key: []any{int64(1)}}, high: "2026-01-01 00:00:00"}
			if err := c.acked(good, phase); err != nil {
				t.Fatalf("a chunk of encodable values: %v", err)
			}
			before := c.ckpt
			bad := &chunk{rows: 1, last: Position{Cursor: "2026-01-02 00:00:00", Key: []any{uint64(2)}}, high: uint64(2)}
			err := c.acked(bad, phase)
			if err == nil || !strings.Contains(err.Error(), "uint64") {
				t.Fatalf("acked with a uint64 position: %v, want an error naming the type", err)
			}
			if string(c.ckpt.Cursor) != string(before.Cursor) || len(c.ckpt.Key) != len(before.Key) {
				t.Fatalf("checkpoint position changed to cursor %s key %s; want it kept at cursor %s key %s",
					c.ckpt.Cursor, c.ckpt.Key, before.Cursor, before.Key)
			}
			if len(c.ckpt.Cursor) == 0 {
				t.Fatal("checkpoint names no cursor: a restart would start over")
			}
		})
	}
}
