// Package audit records every access to the exchange in a durable, tamper-evident log and
// proves it intact (checkpoints, Verify, Repair); exchange/audit/review holds the
// auditor's reports over it.
//
// The exchange imports this package; audit imports nothing else of govx, so it can be
// used by the exchange, by `govx audit` and by tests without pulling in the serving path.
//
// An access produces a decision event (written before any data leaves) and, for
// data-bearing actions, a complete event (rows, bytes, status). [Spool.Append] writes an
// event to a local append-only spool and returns only once it is on disk; many
// concurrent appends share one fsync (group commit). Each event carries its instance's
// sequence number and a SHA-256 hash chain (prev_hash, hash) over its canonical
// encoding (see [Event.Canonical]). A shipper moves spooled events to ClickHouse in
// batches and deletes spool segments only after ClickHouse acknowledged them, so a crash
// or a ClickHouse outage loses nothing; delivery is at least once and readers count
// distinct event ids. Signed checkpoints of the chain head are written to a file kept
// apart from ClickHouse, so rewriting the table or cutting its tail is detected by
// [Verify].
//
// Pitfalls worth knowing before changing the ClickHouse code (the server under test is
// Debian's 18.16): parameter-bound Exec hangs there, so DDL is literal and inserts use
// PrepareBatch with an explicit column list; user filter values are sent as unhex('…')
// literals, which no value can break out of; there is no DateTime64, so event time is a
// DateTime plus a UInt16 millisecond column; ALTER … UPDATE/DELETE are asynchronous
// mutations (tests wait on system.mutations).
package audit
