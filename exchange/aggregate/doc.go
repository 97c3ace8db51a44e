// Package aggregate answers aggregate-only queries (action aggregate): counts, sums,
// averages, minima and maxima over groups, never rows. It parses a restricted SQL
// subset with a kept SQL parser (github.com/pingcap/tidb/pkg/parser), plans the query
// against the policy's decision and executes it on the exchange's own Arrow store; no
// SQL is ever built for, or sent to, any database.
//
// The SQL accepted:
//
//	SELECT <group columns>, <aggregates> FROM <register>.<entity>
//	  [WHERE <predicates on group columns, ANDed>]
//	  [GROUP BY <columns>] [ORDER BY <output columns or positions> [ASC|DESC]] [LIMIT n]
//
// with aggregates COUNT(*), SUM(col), AVG(col), MIN(col), MAX(col), and predicates
// col = v, <>, <, <=, >, >=, IN (…), LIKE 'prefix%', IS [NOT] NULL. A query holding a
// comment is refused: MySQL executes /*! … */ and /*+ … */, and the audited text must
// say what was run.
//
// # Suppression
//
// The decision's group_by columns define a fixed partition of the rows in the caller's
// scope: a cell is the rows sharing one value of every one of those columns. A cell with
// fewer than min_group_size rows is suppressed: its rows count in no answer. Every
// answer group is a union of whole unsuppressed cells, because a query may group only by
// partition columns and filter only on them (a predicate on a partition column keeps or
// drops whole cells). So every number any query returns is a sum (or minimum, maximum)
// over unsuppressed cells only, and no combination of answers — two nested scopes
// subtracted, a total minus its parts — says anything about a suppressed cell's rows.
// Totals are then lower than the true totals by the suppressed rows; a Result reports
// how many cells were suppressed, never how many rows they held.
//
// What suppression does not cover: answers taken at different times (a record added
// between two queries changes one cell by one), and two departments pooling their
// answers; docs/aggregate.md says so. policies.Check keeps one department's aggregate
// agreements on a dataset to one partition.
//
// Only exchange/service imports it.
package aggregate
