// Package review is the auditor's side of the audit log: it reads events (from ClickHouse
// or a spool, through exchange/audit's Store) and turns them into what auditors look at —
// query output in table, CSV or JSONL form (text escaped for terminals, data exact), the
// per-department report with its findings, and the data subject report ("who read this
// person's record").
//
// It is kept apart from exchange/audit, which is the request hot path (spool, chain,
// shipper) and the log's integrity (checkpoints, verify, repair): the exchange never
// imports review, and review reads agreements only through the policies package, so the
// report judges validity exactly as the policy decides it. cmd/govx is its user.
package review
