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
// position (partition, offset) and the row id of its key's previous version. Rows get
// 64-bit ids in append order that are never reused; an upsert appends a new row and
// marks the key's previous row deleted, a delete marks it deleted and records a
// tombstone (key, position, the row holding the last values).
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
// The primary-key index is an open-addressing table from a hash of the key to the id
// of the key's latest row (12 bytes a slot: the hash's low 32 bits and the id), each
// hit confirmed against the key column, so a collision costs a probe, never a wrong
// row. A map[string]int64 of a million citizen IDs alone would cost about 100 MB. The
// secondary indexes of linking columns (index.go) reuse it to intern their keys and
// values into byte arenas, and keep their entries in a pool of fixed-size records: no
// pointer per entry, so a collection has nothing in them to mark (maps of strings cost
// the organization register 2.4M objects and a 0.3 s mark, BenchmarkLinkedLoad). A
// snapshot's Lookup walks back from the key's latest row to the one its version holds,
// through previous versions and compaction's copies.
//
// Scans build a selection bitmap per segment (live rows, then each filter ANDed in, one
// pass per filter over the rows still selected), then take the selected rows column by
// column with a hand-written take (arrow/go v17's compute.FilterRecordBatch is ~55×
// slower on strings), then mask. With every row selected, columns are passed through
// without copying. Masked columns are materialized per segment (materialize.go): each
// segment keeps its columns masked with the dataset's default masks and the masks
// agreements use (MaterializeMasks), computed once when the ingest seals it or Open
// loads it, carried over by merging and compaction; a pull, the first after start
// included, takes or slices the masked values. A segment's masked columns take at most
// a share of its own bytes (WithMaskBudget), the most used masks first; masks past it,
// and masks nobody declared, are computed for the rows a pull takes. The hash mask is kept per department key; no entry is ever
// served under another key.
//
// Changes also report rows that left the filter's scope since the cursor (found through
// the version chain) as deletes, so a consumer's copy follows its scope.
//
// Changes since a cursor are the live rows whose position is at or after the cursor,
// plus the keys whose last tombstone is; a delete is filtered on the row's last values,
// so a consumer learns only of deletes of rows its row filter let it read.
//
// # Compaction
//
// Dead row versions (superseded or deleted) are reclaimed while the table runs, in
// steps of bounded work after each chunk Apply applies (compact.go). A segment whose
// dead rows reach WithGarbageRatio (default half) once the sparse segments hold a
// segment's worth of rows has its live rows copied into a new segment; the index
// points at the copies. A segment left with no live row is dropped, tombstones
// included, once the changes that killed its rows are older than the history kept
// (WithHistory: by default as many changes as the table has live rows). Under any
// churn a table so holds a few times its live rows (about 3.4× under uniform updates,
// TestChurn), not every version ever written.
//
// Compaction is invisible to snapshots: they keep the segments they hold until
// released, and the links their Lookups walk through (copies, dropped rows) are kept
// until no snapshot older than the step that made them is left. A new snapshot sees
// the compacted segments. Dropping a segment moves the horizon past the changes that
// killed its rows: a changes pull from a cursor before it could miss a delete, so it
// is refused with code cursor_too_old (ErrCursorTooOld) before any row is sent; the
// consumer pulls in full again. A cursor from within the history kept is never
// refused, and the empty cursor never is. The horizon is persisted with the table.
//
// A snapshot file holds the live rows and the last version of each deleted key still
// kept; the versions a changes pull needs for rows that left a consumer's scope are
// not written, so after a restart such a row changed before the file was written is
// not reported as leaving the scope.
//
// # Positions and cursors
//
// Positions and cursors follow Kafka's convention: per partition, the next offset to
// read. A change below its partition's position is a replay and is skipped, so
// resuming the topic from Positions after Open is idempotent. A record that is not a
// valid record of the dataset is passed (its position counts as read) and reported in
// a *ChangeError, for the dead-letter topic. A change the table itself cannot take
// (ErrTableFull, ErrClosed) stops Apply with an *ApplyError and the positions stay
// before it: the ingest must stop the dataset, and nothing is skipped.
//
// # Pitfalls
//
// Records passed to a Scan callback are released when it returns: Retain to keep one.
// Snapshots must be Released, or their segments, and the links compaction keeps for
// them, stay in memory. Filters compare with
// null as SQL does: ne excludes nulls; is_null asks for them.
package store
