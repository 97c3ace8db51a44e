// Package connectors moves a department's base register from its own database or export
// files onto Kafka, completely and without loss: a keyset-paged snapshot first, then
// polling by an update-time cursor with a look-back window; every row mapped to the
// dataset's fields, normalized and validated by package schemas; valid rows published as
// keyed, compacted records (deletes as tombstones), invalid rows to the dead-letter topic
// with every reason; progress checkpointed in a compacted Kafka topic only after Kafka
// acknowledged everything before it.
//
// Source kinds register themselves (Register) from their own packages: govx/connectors/sqlsrc
// (postgres, mysql, sqlite) and govx/connectors/filesrc (csv, jsonl). A program that runs
// connectors imports those packages for their side effect:
//
//	import (
//		_ "govx/connectors/filesrc"
//		_ "govx/connectors/sqlsrc"
//	)
//
// This package imports nothing of govx but govx/schemas (a test keeps it so), so that a
// connector can run next to a department's database without any part of the exchange.
//
// Pitfalls, for whoever changes the runner:
//   - kafka-go's Writer waits BatchTimeout (default 1 s) before sending a partial batch;
//     every synchronous WriteMessages pays it once, so it is set to milliseconds here.
//   - A pass is a pipeline (read a page, map it, write it) with several chunks in flight
//     on an asynchronous writer, which queues records per partition in call order. The
//     checkpoint may only name rows whose records Kafka acknowledged together with every
//     record before them: chunks are settled strictly in order.
//   - A row updated while a pass runs is read twice (at its old and new cursor) and may
//     sit in two chunks in flight. kafka-go writes a partition's batches in order but
//     moves on after a batch fails for good, so a failed chunk is never re-sent alone:
//     it and every chunk after it are re-sent in full, in order (recoverFrom), so the
//     newer value lands last.
//   - schemas.NormalizeText allocates on every call; the snapshot's text fast path
//     (normalize.go) must keep giving the same results (normalize_test.go).
package connectors
