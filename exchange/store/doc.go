// Package store is the exchange's columnar store: one Table per dataset, holding the
// dataset's current rows in Apache Arrow with a primary-key index, fed by the ingest
// (Apply) and read by the Flight and HTTP edges through immutable Snapshots (Scan,
// Count, Lookup, Changes). It imports only govx/schemas, govx/exchange and
// govx/exchange/mask; the exchange's parts import it.
//
// # Design
//
// A table is a list of immutable segments plus a mutable tail. A segment is an Arrow
// record of at most WithSegmentRows rows (default 65536) with each row's topic
// position (partition, offset). Rows get ids in append order and never move; an
// upsert appends a new row and marks the key's previous row deleted, a delete marks it
// deleted and records a tombstone (key, position, the row holding the last values).
//
// Deletions are per-segment bitmaps owned by a version. Snapshot seals the tail into a
// segment (then merges the last segments while they are small, so frequent snapshots
// do not leave thousands of tiny segments) and hands out the segment list and bitmaps;
// from then on the table copies a bitmap before changing it (copy on write). So a
// snapshot is one consistent version — exactly the changes applied up to its Cursor —
// however long a scan runs while Apply continues; it costs a slice copy, and nothing
// when nothing changed since the last one.
//
// The tail accumulates rows in Go slices and is copied into exactly sized Arrow buffers
// when sealed; Arrow builders double their buffers and never shrink them, which would
// cost up to twice the memory.
//
// The primary-key index is an open-addressing table from a 64-bit hash of the key to
// the id of the key's latest row (12 bytes a slot), each hit confirmed against the key
// column, so a collision costs a probe, never a wrong row. A map[string]int32 of a
// million citizen IDs alone would cost about 100 MB. Each row id also records the
// previous version of its key, so a snapshot's Lookup walks back from the latest row
// to the one its version holds.
//
// Scans build a selection bitmap per segment (live rows, then each filter ANDed in, one
// pass per filter over the rows still selected), then take the selected rows column by
// column with a hand-written take (arrow/go v17's compute.FilterRecordBatch is ~55×
// slower on strings), then mask. With every row selected, columns are passed through
// without copying. A masked column is computed for its whole segment once and kept in a
// bounded cache (segments are immutable, so it stays right): later pulls take or slice
// the masked values. The hash mask's entries are per department key; no entry is ever
// served under another key.
//
// Changes also report rows that left the filter's scope since the cursor (found through
// the version chain) as deletes, so a consumer's copy follows its scope.
//
// Changes since a cursor are the live rows whose position is at or after the cursor,
// plus the keys whose last tombstone is; a delete is filtered on the row's last values,
// so a consumer learns only of deletes of rows its row filter let it read. Tombstones
// are kept for the table's life (and persisted); dead row versions are kept until the
// next restart from a snapshot file, which holds only live rows and the last version
// of each deleted key.
//
// # Positions and cursors
//
// Positions and cursors follow Kafka's convention: per partition, the next offset to
// read. A change below its partition's position is a replay and is skipped, so
// resuming the topic from Positions after Open is idempotent.
//
// # Pitfalls
//
// Records passed to a Scan callback are released when it returns: Retain to keep one.
// Snapshots must be Released, or their segments stay in memory. Filters compare with
// null as SQL does: ne excludes nulls; is_null asks for them.
package store
