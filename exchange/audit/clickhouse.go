package audit

import (
	"context"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ClickHouseConfig says where the audit table lives.
type ClickHouseConfig struct {
	Addr        string // host:port of the native protocol, e.g. 127.0.0.1:9000
	Database    string // default "govx"
	Table       string // default "access_log"
	Username    string // default "default"
	Password    string
	DialTimeout time.Duration // default 5s
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ClickHouse is the audit table in ClickHouse: a [Sink] for the shipper and a [Store]
// for the auditor's tools. It connects lazily and reconnects after errors, so it can be
// created while ClickHouse is down.
type ClickHouse struct {
	cfg ClickHouseConfig

	mu     sync.Mutex
	conn   driver.Conn
	schema bool // the table is known to exist

	wmu  sync.Mutex // one Write at a time: it reuses cols
	cols Columns
}

// NewClickHouse checks the configuration; it does not connect.
func NewClickHouse(cfg ClickHouseConfig) (*ClickHouse, error) {
	if cfg.Addr == "" {
		return nil, fmt.Errorf("audit: no ClickHouse address given (host:port of its native protocol)")
	}
	if cfg.Database == "" {
		cfg.Database = "govx"
	}
	if cfg.Table == "" {
		cfg.Table = "access_log"
	}
	if cfg.Username == "" {
		cfg.Username = "default"
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	for _, n := range []string{cfg.Database, cfg.Table} {
		if !identRE.MatchString(n) {
			return nil, fmt.Errorf("audit: ClickHouse database and table names must be letters, digits and underscores; got %q", n)
		}
	}
	return &ClickHouse{cfg: cfg}, nil
}

// Table returns the table's qualified name.
func (c *ClickHouse) Table() string { return c.cfg.Database + "." + c.cfg.Table }

// chSpec is the audit table's columns, in insert and select order, with how each is
// taken from an event (event_time and event_ms are the time's seconds and milliseconds).
var chSpec = []struct {
	name string
	str  func(*Event) string
	list func(*Event) []string
	num  func(*Event) uint64
}{
	{name: "event_id", str: func(e *Event) string { return e.EventID }},
	{name: "kind", str: func(e *Event) string { return string(e.Kind) }},
	{name: "event_time"},
	{name: "event_ms"},
	{name: "instance", str: func(e *Event) string { return e.Instance }},
	{name: "seq", num: func(e *Event) uint64 { return e.Seq }},
	{name: "request_id", str: func(e *Event) string { return e.RequestID }},
	{name: "department", str: func(e *Event) string { return e.Department }},
	{name: "system", str: func(e *Event) string { return e.System }},
	{name: "client_addr", str: func(e *Event) string { return e.ClientAddr }},
	{name: "action", str: func(e *Event) string { return e.Action }},
	{name: "dataset", str: func(e *Event) string { return e.Dataset }},
	{name: "columns", list: func(e *Event) []string { return e.Columns }},
	{name: "filter", str: func(e *Event) string { return e.Filter }},
	{name: "purpose", str: func(e *Event) string { return e.Purpose }},
	{name: "case_ref", str: func(e *Event) string { return e.CaseRef }},
	{name: "keys", list: func(e *Event) []string { return e.Keys }},
	{name: "decision", str: func(e *Event) string { return e.Decision }},
	{name: "reasons", list: func(e *Event) []string { return e.Reasons }},
	{name: "agreement", str: func(e *Event) string { return e.Agreement }},
	{name: "policy_revision", str: func(e *Event) string { return e.PolicyRevision }},
	{name: "rows", num: func(e *Event) uint64 { return e.Rows }},
	{name: "bytes", num: func(e *Event) uint64 { return e.Bytes }},
	{name: "duration_ms", num: func(e *Event) uint64 { return e.DurationMS }},
	{name: "status", str: func(e *Event) string { return e.Status }},
	{name: "error", str: func(e *Event) string { return e.Error }},
	{name: "prev_hash", str: func(e *Event) string { return e.PrevHash }},
	{name: "hash", str: func(e *Event) string { return e.Hash }},
}

// chColumns are the names of chSpec.
var chColumns = func() []string {
	out := make([]string, len(chSpec))
	for i, c := range chSpec {
		out[i] = c.name
	}
	return out
}()

// CreateTableSQL returns the DDL of the audit table. It runs unchanged on ClickHouse 18.16
// and current releases. The sort key puts the two low-cardinality columns auditors
// filter by first, then time: "what did department D read of dataset X in March" reads
// one contiguous range, a time range within a department stays a range per dataset, and
// monthly partitions bound every time-limited query and make retention a DROP PARTITION.
// event_id last makes the key unique, so duplicates from at-least-once delivery sit
// next to each other.
func (c *ClickHouse) CreateTableSQL() string {
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS `%s`.`%s` (\n"+
		"  `event_id` String,\n"+
		"  `kind` String,\n"+
		"  `event_time` DateTime,\n"+
		"  `event_ms` UInt16,\n"+
		"  `instance` String,\n"+
		"  `seq` UInt64,\n"+
		"  `request_id` String,\n"+
		"  `department` String,\n"+
		"  `system` String,\n"+
		"  `client_addr` String,\n"+
		"  `action` String,\n"+
		"  `dataset` String,\n"+
		"  `columns` Array(String),\n"+
		"  `filter` String,\n"+
		"  `purpose` String,\n"+
		"  `case_ref` String,\n"+
		"  `keys` Array(String),\n"+
		"  `decision` String,\n"+
		"  `reasons` Array(String),\n"+
		"  `agreement` String,\n"+
		"  `policy_revision` String,\n"+
		"  `rows` UInt64,\n"+
		"  `bytes` UInt64,\n"+
		"  `duration_ms` UInt64,\n"+
		"  `status` String,\n"+
		"  `error` String,\n"+
		"  `prev_hash` String,\n"+
		"  `hash` String\n"+
		") ENGINE = MergeTree()\n"+
		"PARTITION BY toYYYYMM(event_time)\n"+
		"ORDER BY (department, dataset, event_time, event_id)\n"+
		"SETTINGS index_granularity = 8192", c.cfg.Database, c.cfg.Table)
}

func (c *ClickHouse) connect(ctx context.Context) (driver.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		conn, err := clickhouse.Open(&clickhouse.Options{
			Addr:             []string{c.cfg.Addr},
			Auth:             clickhouse.Auth{Database: "default", Username: c.cfg.Username, Password: c.cfg.Password},
			DialTimeout:      c.cfg.DialTimeout,
			MaxOpenConns:     4,
			MaxIdleConns:     2,
			ConnOpenStrategy: clickhouse.ConnOpenInOrder,
		})
		if err != nil {
			return nil, fmt.Errorf("audit: cannot connect to ClickHouse at %s: %w", c.cfg.Addr, err)
		}
		c.conn = conn
	}
	if !c.schema {
		if err := c.conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE IF NOT EXISTS `%s`", c.cfg.Database)); err != nil {
			c.dropLocked()
			return nil, fmt.Errorf("audit: cannot create ClickHouse database %s at %s: %w", c.cfg.Database, c.cfg.Addr, err)
		}
		if err := c.conn.Exec(ctx, c.CreateTableSQL()); err != nil {
			c.dropLocked()
			return nil, fmt.Errorf("audit: cannot create ClickHouse table %s at %s: %w", c.Table(), c.cfg.Addr, err)
		}
		c.schema = true
	}
	return c.conn, nil
}

// dropLocked forgets the connection pool after an error: after a server restart every
// pooled connection is dead, and a fresh pool is the quickest way back.
func (c *ClickHouse) dropLocked() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *ClickHouse) fail(err error) error {
	c.mu.Lock()
	c.dropLocked()
	c.mu.Unlock()
	return err
}

// Conn returns the connection, creating the database and table if missing.
func (c *ClickHouse) Conn(ctx context.Context) (driver.Conn, error) { return c.connect(ctx) }

// Write inserts one shipment with one INSERT: each block next returns is sent as a
// native block as soon as it is built (ClickHouse squashes the blocks of an insert into
// one part), so the memory a shipment takes is one block's whatever its size, and the
// columns are reused from block to block and from shipment to shipment. It returns nil
// only once ClickHouse acknowledged the whole insert. It implements [Sink].
func (c *ClickHouse) Write(ctx context.Context, next Blocks) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	events, err := next()
	if err != nil || len(events) == 0 {
		return err // nothing to insert
	}
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	batch, err := conn.PrepareBatch(ctx, c.InsertSQL(c.cfg.Table))
	if err != nil {
		return c.fail(fmt.Errorf("audit: cannot start insert into %s: %w", c.Table(), err))
	}
	n := 0
	for len(events) > 0 {
		if n > 0 {
			// The previous block goes out now; its columns are reused for this one.
			if err := batch.Flush(); err != nil {
				batch.Abort()
				return c.fail(fmt.Errorf("audit: insert into %s failed: %w", c.Table(), err))
			}
		}
		if err := c.cols.Append(batch, events); err != nil {
			batch.Abort()
			return err
		}
		n += len(events)
		if events, err = next(); err != nil {
			// Abort, not Close: closing would store the blocks already sent.
			batch.Abort()
			return err
		}
	}
	if err := batch.Send(); err != nil {
		return c.fail(fmt.Errorf("audit: insert of %d events into %s failed: %w", n, c.Table(), err))
	}
	return nil
}

// WriteEvents inserts events with one INSERT (Write of a single block): for tools and
// tests that hold the events themselves.
func (c *ClickHouse) WriteEvents(ctx context.Context, events []*Event) error {
	return c.Write(ctx, EventBlocks(events))
}

// Columns builds the audit table's columns for a batch prepared with [ClickHouse.InsertSQL].
// Its slices are reused from one Append to the next, so building a block allocates
// nothing of its own once they have grown to the block size. The zero value is ready.
type Columns struct {
	str  [][]string
	num  [][]uint64
	secs []int64
	ms   []uint16
	ptrs []*string // one list row
}

// Append appends events to batch column by column, in chSpec order; column-wise appends
// cost a fraction of row-wise ones. The list columns go row by row, which clickhouse-go
// takes without reflection (a whole [][]string column would go through reflect).
func (c *Columns) Append(batch driver.Batch, events []*Event) error {
	if c.str == nil {
		c.str, c.num = make([][]string, len(chSpec)), make([][]uint64, len(chSpec))
	}
	for i, spec := range chSpec {
		col := batch.Column(i)
		var err error
		switch {
		case spec.str != nil:
			v := c.str[i][:0]
			for _, e := range events {
				v = append(v, spec.str(e))
			}
			c.str[i] = v
			err = col.Append(v)
		case spec.num != nil:
			v := c.num[i][:0]
			for _, e := range events {
				v = append(v, spec.num(e))
			}
			c.num[i] = v
			err = col.Append(v)
		case spec.list != nil:
			// As pointers: clickhouse-go boxes each entry of a []string, not of a []*string.
			for _, e := range events {
				l := spec.list(e)
				c.ptrs = c.ptrs[:0]
				for j := range l {
					c.ptrs = append(c.ptrs, &l[j])
				}
				if err = col.AppendRow(c.ptrs); err != nil {
					break
				}
			}
		case spec.name == "event_time":
			c.secs = c.secs[:0]
			for _, e := range events {
				c.secs = append(c.secs, e.Time.Unix())
			}
			err = col.Append(c.secs)
		default: // event_ms
			c.ms = c.ms[:0]
			for _, e := range events {
				c.ms = append(c.ms, uint16(e.Time.Nanosecond()/int(time.Millisecond)))
			}
			err = col.Append(c.ms)
		}
		if err != nil {
			return fmt.Errorf("audit: cannot append column %s: %w", spec.name, err)
		}
	}
	return nil
}

// Close closes the connection pool.
func (c *ClickHouse) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked()
	return nil
}

// lit returns a ClickHouse expression for the string s that no value can escape from:
// the bytes travel hex-encoded. (Parameter binding is not used because bound Exec hangs
// on ClickHouse 18.16 and a literal works the same everywhere.)
func lit(s string) string {
	return "unhex('" + hex.EncodeToString([]byte(s)) + "')"
}

// whereSQL turns a filter into a WHERE clause (or "").
func whereSQL(f Filter) string {
	var conds []string
	eq := func(col, v string) {
		if v != "" {
			conds = append(conds, "`"+col+"` = "+lit(v))
		}
	}
	if !f.Since.IsZero() {
		ms := f.Since.UnixMilli()
		conds = append(conds, "event_time >= toDateTime("+strconv.FormatInt(ms/1000, 10)+")",
			"toUInt64(event_time) * 1000 + event_ms >= "+strconv.FormatInt(ms, 10))
	}
	if !f.Until.IsZero() {
		ms := f.Until.UnixMilli()
		conds = append(conds, "event_time <= toDateTime("+strconv.FormatInt(ms/1000, 10)+")",
			"toUInt64(event_time) * 1000 + event_ms < "+strconv.FormatInt(ms, 10))
	}
	eq("kind", string(f.Kind))
	eq("department", f.Department)
	eq("system", f.System)
	eq("dataset", f.Dataset)
	eq("action", f.Action)
	eq("decision", f.Decision)
	eq("purpose", f.Purpose)
	eq("agreement", f.Agreement)
	eq("case_ref", f.CaseRef)
	eq("request_id", f.RequestID)
	eq("instance", f.Instance)
	if f.Key != "" {
		conds = append(conds, "has(`keys`, "+lit(f.Key)+")")
	}
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

func (c *ClickHouse) selectSQL(f Filter, order string) string {
	cols := make([]string, len(chColumns))
	for i, col := range chColumns {
		cols[i] = "`" + col + "`"
	}
	return "SELECT " + strings.Join(cols, ", ") + " FROM " + c.Table() + whereSQL(f) + " ORDER BY " + order
}

// Events returns the events matching f in time order, each event id once.
func (c *ClickHouse) Events(ctx context.Context, f Filter) (Iterator, error) {
	return c.query(ctx, c.selectSQL(f, "event_time, event_ms, event_id"), false)
}

// Chain returns every event ordered by instance and seq. Exact duplicates (at-least-once
// delivery) appear once; rows sharing an event id but differing in content all appear,
// so that verification sees them.
func (c *ClickHouse) Chain(ctx context.Context) (Iterator, error) {
	return c.query(ctx, c.selectSQL(Filter{}, "instance, seq, event_id, hash"), true)
}

func (c *ClickHouse) query(ctx context.Context, q string, chain bool) (Iterator, error) {
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, c.fail(fmt.Errorf("audit: query on %s failed: %w", c.Table(), err))
	}
	return &chIter{rows: rows, chain: chain, seen: map[string]struct{}{}}, nil
}

type chIter struct {
	rows  driver.Rows
	chain bool
	seen  map[string]struct{}
	last  []*Event // chain mode: the distinct rows of the current (instance, seq)
	ev    *Event
	err   error
}

func (it *chIter) Next() bool {
	for it.rows.Next() {
		e := &Event{}
		var (
			t    time.Time
			ms   uint16
			kind string
		)
		if err := it.rows.Scan(&e.EventID, &kind, &t, &ms, &e.Instance, &e.Seq, &e.RequestID,
			&e.Department, &e.System, &e.ClientAddr, &e.Action, &e.Dataset, &e.Columns, &e.Filter,
			&e.Purpose, &e.CaseRef, &e.Keys, &e.Decision, &e.Reasons, &e.Agreement, &e.PolicyRevision,
			&e.Rows, &e.Bytes, &e.DurationMS, &e.Status, &e.Error, &e.PrevHash, &e.Hash); err != nil {
			it.err = fmt.Errorf("audit: cannot read an audit row: %w", err)
			return false
		}
		e.Kind = Kind(kind)
		e.Time = time.UnixMilli(t.Unix()*1000 + int64(ms)).UTC()
		normalizeEmpty(e)
		if it.chain {
			if len(it.last) > 0 && (it.last[0].Instance != e.Instance || it.last[0].Seq != e.Seq) {
				it.last = it.last[:0]
			}
			dup := false
			for _, p := range it.last {
				if sameEvent(p, e) {
					dup = true
					break
				}
			}
			if dup {
				continue
			}
			it.last = append(it.last, e)
		} else {
			if _, ok := it.seen[e.EventID]; ok {
				continue
			}
			it.seen[e.EventID] = struct{}{}
		}
		it.ev = e
		return true
	}
	if it.err == nil {
		it.err = it.rows.Err()
	}
	return false
}

func (it *chIter) Event() *Event { return it.ev }
func (it *chIter) Err() error    { return it.err }
func (it *chIter) Close() error  { return it.rows.Close() }

// normalizeEmpty makes empty lists nil, as the spool decodes them, so events compare
// equal whichever store they came from.
func normalizeEmpty(e *Event) {
	if len(e.Columns) == 0 {
		e.Columns = nil
	}
	if len(e.Keys) == 0 {
		e.Keys = nil
	}
	if len(e.Reasons) == 0 {
		e.Reasons = nil
	}
}

func sameEvent(a, b *Event) bool {
	return a.EventID == b.EventID && a.Hash == b.Hash && a.PrevHash == b.PrevHash &&
		string(a.Canonical()) == string(b.Canonical())
}

// InsertSQL returns the batch INSERT (with its explicit column list) for table, a name
// in the configured database; [Columns] fills a batch prepared with it.
func (c *ClickHouse) InsertSQL(table string) string {
	return "INSERT INTO " + c.cfg.Database + "." + table + " (" + strings.Join(chColumns, ", ") + ")"
}

// NullTableSQL returns the DDL of a table shaped like the audit table whose engine
// discards rows: the baseline that measures what inserting alone costs.
func (c *ClickHouse) NullTableSQL(table string) string {
	ddl := c.CreateTableSQL()
	ddl = ddl[:strings.Index(ddl, ") ENGINE")] + ") ENGINE = Null"
	return strings.Replace(ddl, "`"+c.cfg.Table+"`", "`"+table+"`", 1)
}
