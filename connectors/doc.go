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
//   - The checkpoint may only name rows whose records Kafka acknowledged; the runner writes
//     one chunk at a time and stores the checkpoint after WriteMessages returned nil.
//   - A row updated while a pass runs is read twice (at its old and new cursor); chunks
//     are written strictly in order so the newer value lands last.
package connectors
