package connectors

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"govx/internal/backoff"
	"govx/schemas"
)

// Option configures a Connector.
type Option func(*options)

type options struct {
	logger      *slog.Logger
	topicPrefix *string
	rateLimit   int
}

// WithLogger sends the connector's structured logs to l (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithTopicPrefix publishes to <prefix><dataset> (and the derived DLQ and checkpoint
// topics) instead of the config's prefix; tests and the demo keep their runs apart with it.
func WithTopicPrefix(p string) Option { return func(o *options) { o.topicPrefix = &p } }

// WithRateLimit reads at most rowsPerSecond rows per second from the source, to spare a
// production database during the snapshot; it overrides snapshot.rate_limit.
func WithRateLimit(rowsPerSecond int) Option { return func(o *options) { o.rateLimit = rowsPerSecond } }

// Progress is a snapshot of what a running connector has done.
type Progress struct {
	Phase         string    // "", snapshot, incremental
	SnapshotTotal int64     // rows in the source when the snapshot (re)started; -1 unknown
	SnapshotRows  int64     // rows of the snapshot acknowledged, including before a resume
	Resumed       bool      // this run continued a snapshot from its checkpoint
	Snapshots     int       // full snapshots ever started for this connector name
	Read          int64     // rows read by this run
	Published     int64     // upserts acknowledged by Kafka in this run
	Deleted       int64     // tombstones acknowledged in this run
	Invalid       int64     // rows sent to the dead-letter topic in this run
	Unchanged     int64     // rows re-read inside the look-back window and not published again
	Retries       int64     // chunk writes retried (e.g. while a broker was down)
	LastEventTime time.Time // newest source change time acknowledged
	Started       time.Time
}

// Connector moves one department table onto Kafka; see the package doc.
type Connector struct {
	cfg    *Config
	opts   options
	log    *slog.Logger
	mapper *mapper
	m      *metrics
	red    *redactor

	ready     chan struct{}
	readyOnce sync.Once

	mu   sync.Mutex
	prog Progress

	// Owned by Run.
	src    Source
	k      *kafkaConn
	w      *kafka.Writer // synchronous: checkpoints, re-sent chunks, tombstones of deleted keys
	aw     *kafka.Writer // asynchronous: the chunks of a pass, several in flight
	ckpt   Checkpoint
	ckptAt time.Time
	recent map[string]recentRow
	maxAt  time.Time // newest cursor time read, the anchor of the look-back window
	// ckptStored is the last checkpoint stored, without its time (Checkpoint.content).
	ckptStored []byte
	// highWater is the newest cursor acknowledged: the incremental checkpoint.
	highWater   any
	highWaterAt time.Time
	hdr         []kafka.Header

	// Owned by the mapping stage of a pass: scratch space reused for every row.
	rec     map[string]any
	hashBuf []byte
}

type recentRow struct {
	hash uint64
	at   time.Time
}

// New checks cfg and returns a connector; Run starts it.
func New(cfg *Config, opts ...Option) (*Connector, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	c2 := *cfg
	if o.topicPrefix != nil {
		c2.SetTopicPrefix(*o.topicPrefix)
	}
	if o.rateLimit == 0 {
		o.rateLimit = c2.Snapshot.RateLimit
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	m, err := newMapper(&c2)
	if err != nil {
		return nil, err
	}
	c := &Connector{cfg: &c2, opts: o, mapper: m, m: newMetrics(c2.Name, c2.Dataset),
		ready: make(chan struct{}), red: newRedactor("")}
	c.log = o.logger.With("connector", c2.Name, "dataset", c2.Dataset)
	c.prog.SnapshotTotal = -1
	return c, nil
}

// Config returns the connector's effective config (after options).
func (c *Connector) Config() *Config { return c.cfg }

// Ready is closed once the snapshot is complete and acknowledged (or, when the
// connector starts in the incremental phase, after its first poll).
func (c *Connector) Ready() <-chan struct{} { return c.ready }

// Progress returns what the connector has done so far.
func (c *Connector) Progress() Progress {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.prog
}

func (c *Connector) update(f func(p *Progress)) {
	c.mu.Lock()
	f(&c.prog)
	c.mu.Unlock()
}

// openSource resolves the DSN and opens the source; errors name the source, never the DSN.
func (c *Connector) openSource(ctx context.Context) (Source, error) {
	s := c.cfg.Source
	dsn, err := s.resolveDSN()
	if err != nil {
		return nil, err
	}
	c.red = newRedactor(dsn)
	open, err := opener(s.Driver)
	if err != nil {
		return nil, err
	}
	spec := Spec{Driver: s.Driver, DSN: dsn, Table: s.Table, Query: s.Query, Encoding: s.Encoding,
		Delimiter: s.Delimiter, Cursor: c.cfg.Cursor.Column, Key: c.cfg.Cursor.Key, Columns: c.mapper.columns}
	src, err := open(ctx, spec)
	if err != nil {
		return nil, c.red.err(fmt.Errorf("source %s: %w", c.sourceName(), err))
	}
	return src, nil
}

func (c *Connector) sourceName() string {
	s := c.cfg.Source
	switch {
	case s.Table != "":
		return s.Driver + " table " + s.Table
	case s.Query != "":
		return s.Driver + " query"
	}
	return s.Driver + " file " + s.Path
}

// Run runs the connector until ctx is done (then it returns nil) or an error it cannot
// retry. A broker outage is waited out; nothing is checkpointed past an unacknowledged
// record.
func (c *Connector) Run(ctx context.Context) error {
	err := c.run(ctx)
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return nil
	}
	return c.red.err(err)
}

func (c *Connector) run(ctx context.Context) error {
	c.update(func(p *Progress) { p.Started = time.Now() })
	src, err := c.openSource(ctx)
	if err != nil {
		return err
	}
	c.src = src
	defer src.Close()
	if adv, err := c.cursorIndex(ctx, src); err != nil {
		c.log.Warn("could not check the source table's (cursor, key) index", "err", err.Error())
	} else if adv.Missing() {
		c.log.Warn("the source table has no (cursor, key) index: every poll and snapshot page scans and sorts the whole table; create it in the source database",
			"table", adv.Table, "columns", strings.Join(adv.Columns, ", "), "run", adv.Create)
	}
	if c.k, err = newKafkaConn(c.cfg.Kafka); err != nil {
		return err
	}
	defer c.k.close()
	if err := c.k.ping(ctx); err != nil {
		return err
	}
	kc := c.cfg.Kafka
	if err := c.k.ensureTopic(ctx, c.cfg.Topic(), *kc.Partitions, true); err != nil {
		return err
	}
	if err := c.k.ensureTopic(ctx, kc.DLQTopic, *kc.Partitions, false); err != nil {
		return err
	}
	if err := c.k.ensureTopic(ctx, kc.CheckpointTopic, 1, true); err != nil {
		return err
	}
	c.w = c.k.newWriter()
	defer c.w.Close()
	c.aw = c.k.newAsyncWriter(completion)
	defer c.aw.Close()
	c.hdr = []kafka.Header{
		{Key: "govx-dataset", Value: []byte(c.cfg.Dataset)},
		{Key: "govx-schema-version", Value: []byte(strconv.Itoa(c.mapper.ds.Version))},
		{Key: "govx-source", Value: []byte(c.cfg.Department)},
	}
	c.recent = map[string]recentRow{}

	// Right after a broker restart offsets may be unavailable for a moment; a connector
	// started then waits rather than exiting.
	var cp *Checkpoint
	for attempt := 0; ; attempt++ {
		if cp, err = c.k.loadCheckpoint(ctx, kc.CheckpointTopic, c.cfg.Name); err == nil || attempt == 30 {
			break
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	if cp != nil && cp.Dataset != c.cfg.Dataset {
		return fmt.Errorf("checkpoint %q in %s belongs to dataset %s, not %s: give this connector another name", c.cfg.Name, kc.CheckpointTopic, cp.Dataset, c.cfg.Dataset)
	}
	if cp == nil || cp.Phase == PhaseSnapshot {
		if err := c.snapshot(ctx, cp); err != nil {
			return err
		}
	} else {
		c.ckpt = *cp
		c.update(func(p *Progress) { p.Phase, p.Snapshots, p.SnapshotRows = cp.Phase, cp.Snapshots, cp.SnapshotRows })
		c.log.Info("continuing incrementally from checkpoint", "snapshots", cp.Snapshots)
	}
	return c.incremental(ctx)
}

func (c *Connector) snapshot(ctx context.Context, cp *Checkpoint) error {
	from := Position{}
	if cp != nil {
		c.ckpt = *cp
		var err error
		if from, err = cp.position(); err != nil {
			return fmt.Errorf("checkpoint of %s: %w", c.cfg.Name, err)
		}
		c.update(func(p *Progress) { p.Resumed = true })
		c.log.Info("resuming snapshot from checkpoint", "rows_done", cp.SnapshotRows)
	} else {
		c.ckpt = Checkpoint{Connector: c.cfg.Name, Dataset: c.cfg.Dataset, Phase: PhaseSnapshot, Snapshots: 1}
		// Store the start so a restart before the first chunk does not count a second snapshot.
		if err := c.storeCheckpoint(ctx, true); err != nil {
			return err
		}
		c.log.Info("starting snapshot")
	}
	total, err := c.src.Count(ctx)
	if err != nil {
		c.log.Warn("cannot count source rows; no ETA", "err", c.red.text(err.Error()))
		total = -1
	}
	c.update(func(p *Progress) {
		p.Phase, p.SnapshotTotal, p.Snapshots, p.SnapshotRows = PhaseSnapshot, total, c.ckpt.Snapshots, c.ckpt.SnapshotRows
	})
	if !from.NullCursor {
		if err := c.pass(ctx, from, PhaseSnapshot); err != nil {
			return err
		}
		from = Position{NullCursor: true}
	}
	if err := c.pass(ctx, from, PhaseSnapshot); err != nil {
		return err
	}
	// The snapshot's high-water mark: the newest cursor read; incremental polls start
	// from it minus the look-back window.
	c.ckpt.Phase = PhaseIncremental
	hw := Position{}
	if !c.maxAt.IsZero() {
		hw.Cursor = c.highWater
	}
	if err := c.ckpt.setPosition(hw); err != nil {
		return err
	}
	if err := c.storeCheckpoint(ctx, true); err != nil {
		return err
	}
	p := c.Progress()
	c.log.Info("snapshot complete", "rows", p.SnapshotRows, "published", p.Published, "invalid", p.Invalid,
		"elapsed", time.Since(p.Started).Round(time.Millisecond))
	c.m.snapshotDone.Set(1)
	c.update(func(p *Progress) { p.Phase = PhaseIncremental })
	c.readyOnce.Do(func() { close(c.ready) })
	return nil
}

func (c *Connector) incremental(ctx context.Context) error {
	pos, err := c.ckpt.position()
	if err != nil {
		return err
	}
	if pos.Cursor != nil {
		c.highWater = pos.Cursor
		if t, ok := cursorTimeIn(pos.Cursor, c.mapper.loc); ok && t.After(c.maxAt) {
			c.maxAt = t
		}
	}
	lookBack := time.Duration(c.cfg.LookBack)
	nextCompare := time.Now().Add(time.Duration(c.cfg.Deletes.CompareEvery))
	retry := backoff.New(time.Second, 30*time.Second)
	var failingSince time.Time
	for {
		from := Position{}
		if c.highWater != nil {
			from.Cursor = c.highWater
			if back, ok := cursorMinus(c.highWater, lookBack); ok {
				from.Cursor = back
			}
		}
		if err := c.pass(ctx, from, PhaseIncremental); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// A source that is briefly locked, restarting or unreachable is waited
			// out, as Kafka outages are; nothing is checkpointed past what was read.
			// What does not go away within sourceOutage stops the connector.
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if !transientSource(err) || time.Since(failingSince) > sourceOutage {
				return err
			}
			wait := retry.Next()
			c.log.Warn("reading the source failed; retrying", "err", c.red.text(err.Error()), "retry_in", wait,
				"failing_for", time.Since(failingSince).Round(time.Second))
			if err := sleepCtx(ctx, wait); err != nil {
				return err
			}
			continue
		}
		failingSince = time.Time{}
		retry.Reset()
		c.readyOnce.Do(func() { close(c.ready) })
		if c.cfg.Deletes.CompareEvery > 0 && !time.Now().Before(nextCompare) {
			// A failed comparison (e.g. the broker restarting) is tried again on the
			// next schedule; polling goes on meanwhile.
			if err := c.compareKeys(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				c.log.Warn("delete detection failed; will try again", "err", c.red.text(err.Error()))
			}
			nextCompare = time.Now().Add(time.Duration(c.cfg.Deletes.CompareEvery))
		}
		if err := sleepCtx(ctx, time.Duration(c.cfg.PollInterval)); err != nil {
			return err
		}
	}
}

// sourceOutage is how long a source may keep failing with errors that can go away
// (locked, restarting, unreachable) before the connector gives up and stops.
const sourceOutage = 10 * time.Minute

// transientSource reports whether a source read error can go away by itself: a database
// that is locked or busy, a connection refused, reset or closed, a server shutting
// down. A missing table or column, a permission or a type error cannot, and stops the
// connector at once.
func transientSource(err error) bool {
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"database is locked", "sqlite_busy", "sqlite_locked", "connection refused", "connection reset",
		"bad connection", "server closed", "the database system is shutting down", "the database system is starting up",
		"too many connections", "invalid connection", "broken pipe"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// chunk is one page of rows turned into messages, acknowledged as a unit: the checkpoint
// moves past a chunk only once Kafka acknowledged it and every chunk before it.
type chunk struct {
	msgs      []kafka.Message
	last      Position
	rows      int64
	upserts   int64
	deletes   int64
	invalid   int64
	unchanged int64
	maxEvent  time.Time
	high      any // newest cursor in the chunk
	highAt    time.Time

	// arena holds the keys, values and header values of msgs, and hdrs their headers:
	// two allocations per chunk instead of several per record.
	arena []byte
	hdrs  []kafka.Header
}

// appendTo returns what f appends to the chunk's arena, as its own slice.
func (ch *chunk) appendTo(f func([]byte) []byte) []byte {
	start := len(ch.arena)
	ch.arena = f(ch.arena)
	return ch.arena[start:len(ch.arena):len(ch.arena)]
}

// rawPage is one page of native rows as read, copied out of the Source's callback (whose
// Values are valid only during the call) so that reading the next page overlaps with
// mapping this one.
type rawPage struct {
	rows []Row
	last Position
}

// pass reads from `from` to the current end of the source, page by page, and publishes
// every page, storing checkpoints as pages are acknowledged. It is a pipeline of three
// stages — reading the source, mapping and validating rows into messages, and writing to
// Kafka with several chunks in flight — so that a snapshot keeps the database, the CPU and
// the broker busy at once. Writes stay in order, and the checkpoint only ever names a row
// that Kafka acknowledged together with every row before it.
func (c *Connector) pass(ctx context.Context, from Position, phase string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan *rawPage, 2)
	chunks := make(chan *chunk, 2)
	readErr := make(chan error, 1)
	go func() {
		defer close(pages)
		readErr <- c.readPages(ctx, from, pages)
	}()
	go func() {
		defer close(chunks)
		for p := range pages {
			select {
			case chunks <- c.mapPage(p):
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := c.publish(ctx, chunks, phase); err != nil {
		cancel()
		for range chunks {
		}
		return err
	}
	if err := <-readErr; err != nil {
		return c.red.err(fmt.Errorf("reading %s: %w", c.sourceName(), err))
	}
	return c.storeCheckpoint(ctx, true)
}

// maxInFlightRecords bounds the records handed to Kafka and not yet acknowledged: enough
// to keep every partition's next batch ready while the broker answers the last one.
const maxInFlightRecords = 100_000

// inflight is a chunk handed to the asynchronous writer, awaiting Kafka's answer for
// each of its records.
type inflight struct {
	ch     *chunk
	left   atomic.Int64
	done   chan struct{} // closed once every record is answered
	failed atomic.Bool
	mu     sync.Mutex
	err    error // the first failure
}

func (f *inflight) complete(n int, err error) {
	if err != nil {
		f.mu.Lock()
		if f.err == nil {
			f.err = err
		}
		f.mu.Unlock()
		f.failed.Store(true)
	}
	if f.left.Add(-int64(n)) == 0 {
		close(f.done)
	}
}

// completion is the asynchronous writer's callback, once per produced batch; every
// record it writes carries its *inflight in WriterData.
func completion(msgs []kafka.Message, err error) {
	for i := 0; i < len(msgs); {
		f, _ := msgs[i].WriterData.(*inflight)
		j := i + 1
		for j < len(msgs) && msgs[j].WriterData == any(f) {
			j++
		}
		if f != nil {
			f.complete(j-i, err)
		}
		i = j
	}
}

// publish writes chunks in order, several at a time, and settles them in order: an
// acknowledged chunk advances the checkpoint; a failed one starts recoverFrom.
func (c *Connector) publish(ctx context.Context, chunks <-chan *chunk, phase string) error {
	var queue []*inflight
	records := 0
	for chunks != nil || len(queue) > 0 {
		var head <-chan struct{}
		if len(queue) > 0 {
			head = queue[0].done
		}
		next := chunks
		if len(queue) >= 2 && records >= maxInFlightRecords {
			next = nil
		}
		select {
		case ch, ok := <-next:
			if !ok {
				chunks = nil
				continue
			}
			queue = append(queue, c.send(ctx, ch))
			records += len(ch.msgs)
		case <-head:
			f := queue[0]
			queue = queue[1:]
			records -= len(f.ch.msgs)
			if f.failed.Load() {
				if err := c.recoverFrom(ctx, f, queue, phase); err != nil {
					return err
				}
				queue, records = nil, 0
				continue
			}
			if err := c.acked(f.ch, phase); err != nil {
				return err
			}
			if err := c.storeCheckpoint(ctx, false); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// send hands a chunk's records to the asynchronous writer, which batches them per
// partition behind the records already queued.
func (c *Connector) send(ctx context.Context, ch *chunk) *inflight {
	f := &inflight{ch: ch, done: make(chan struct{})}
	if len(ch.msgs) == 0 {
		close(f.done)
		return f
	}
	f.left.Store(int64(len(ch.msgs)))
	for i := range ch.msgs {
		ch.msgs[i].WriterData = f
	}
	if err := c.aw.WriteMessages(ctx, ch.msgs...); err != nil {
		// Nothing was queued (e.g. no metadata while the broker is down).
		f.complete(len(ch.msgs), err)
	}
	return f
}

// recoverFrom handles a chunk Kafka did not fully acknowledge. The chunks sent after it
// may have been written meanwhile, so re-sending only its failed records could put an
// older version of a row after a newer one; instead, once everything in flight is
// answered, it re-sends that chunk and every later one in full, in order, each until
// Kafka acknowledges it (a broker restart is waited out). Duplicates are harmless on the
// compacted topic; the checkpoint never passes a record not yet acknowledged.
func (c *Connector) recoverFrom(ctx context.Context, failed *inflight, later []*inflight, phase string) error {
	for _, f := range later {
		select {
		case <-f.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fatalKafka(failed.err) {
		return fmt.Errorf("kafka rejected a record of %s: %w", c.cfg.Topic(), failed.err)
	}
	n := len(failed.ch.msgs)
	for _, f := range later {
		n += len(f.ch.msgs)
	}
	c.m.retries.Inc()
	c.update(func(p *Progress) { p.Retries++ })
	c.log.Warn("kafka did not acknowledge records; re-sending them and every later record, in order (checkpoint held back)",
		"records", n, "err", failed.err)
	for _, f := range append([]*inflight{failed}, later...) {
		if err := c.write(ctx, f.ch.msgs); err != nil {
			return err
		}
		if err := c.acked(f.ch, phase); err != nil {
			return err
		}
		if err := c.storeCheckpoint(ctx, false); err != nil {
			return err
		}
	}
	return nil
}

// acked records a chunk Kafka acknowledged: counters, and the position the next
// checkpoint may name. A position the checkpoint cannot hold (a source value of a type
// it cannot encode) is an error that stops the connector: storing the checkpoint
// without it would send the next run back to the start.
func (c *Connector) acked(ch *chunk, phase string) error {
	var posErr error
	if phase == PhaseSnapshot {
		c.ckpt.SnapshotRows += ch.rows
		posErr = c.ckpt.setPosition(ch.last)
	}
	if ch.high != nil && (c.highWater == nil || !ch.highAt.Before(c.highWaterAt)) {
		c.highWater, c.highWaterAt = ch.high, ch.highAt
		if phase == PhaseIncremental {
			posErr = c.ckpt.setPosition(Position{Cursor: ch.high})
		}
	}
	c.m.read.Add(float64(ch.rows))
	c.m.published.Add(float64(ch.upserts + ch.deletes))
	c.m.invalid.Add(float64(ch.invalid))
	c.m.deleted.Add(float64(ch.deletes))
	if !ch.maxEvent.IsZero() {
		c.m.lag.Set(time.Since(ch.maxEvent).Seconds())
	}
	c.update(func(p *Progress) {
		if phase == PhaseSnapshot {
			p.SnapshotRows = c.ckpt.SnapshotRows
		}
		p.Read += ch.rows
		p.Published += ch.upserts
		p.Deleted += ch.deletes
		p.Invalid += ch.invalid
		p.Unchanged += ch.unchanged
		if ch.maxEvent.After(p.LastEventTime) {
			p.LastEventTime = ch.maxEvent
		}
	})
	if posErr != nil {
		return fmt.Errorf("checkpoint of %s cannot hold the source's position (the checkpoint stays at the last position it could hold): %w", c.cfg.Name, posErr)
	}
	return nil
}

// minPageAlloc is the fewest rows a page is allocated for.
const minPageAlloc = 64

// readPages reads pages of native rows from pos to the end of the source and hands out
// owned copies of them.
func (c *Connector) readPages(ctx context.Context, pos Position, out chan<- *rawPage) error {
	pageSize := c.cfg.Snapshot.PageSize
	start, readTotal := time.Now(), 0
	// Each page is allocated for as many rows as the one before it (the first for a
	// few): a snapshot's pages are full, an idle poll reads only the rows of its
	// look-back window, and allocating pageSize rows for it every poll_interval would
	// hand the collector megabytes of garbage a second per connector.
	hint := min(pageSize, minPageAlloc)
	for {
		p := &rawPage{rows: make([]Row, 0, hint)}
		// One backing array per page for the rows' values and keys (grown as needed).
		var vals, keys []any
		err := c.src.Read(ctx, pos, pageSize, func(r Row) error {
			if vals == nil {
				vals = make([]any, 0, hint*len(r.Values))
				keys = make([]any, 0, hint*len(r.Key))
			}
			v0, k0 := len(vals), len(keys)
			for _, v := range r.Values {
				vals = append(vals, ownValue(v))
			}
			row := Row{Cursor: ownValue(r.Cursor), Values: vals[v0:len(vals):len(vals)]}
			if r.Key != nil {
				for _, v := range r.Key {
					keys = append(keys, ownValue(v))
				}
				row.Key = keys[k0:len(keys):len(keys)]
			}
			p.rows = append(p.rows, row)
			return nil
		})
		if err != nil {
			return err
		}
		n := len(p.rows)
		hint = min(max(n, minPageAlloc), pageSize, 1<<16)
		if n > 0 {
			last := p.rows[n-1]
			pos = Position{Cursor: last.Cursor, Key: last.Key, NullCursor: pos.NullCursor}
			p.last = pos
			select {
			case out <- p:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if n < pageSize {
			return nil
		}
		if rl := c.opts.rateLimit; rl > 0 {
			readTotal += n
			due := start.Add(time.Duration(float64(readTotal) / float64(rl) * float64(time.Second)))
			if err := sleepCtx(ctx, time.Until(due)); err != nil {
				return err
			}
		}
	}
}

// mapPage turns a page into a chunk of messages. It runs in one goroutine, in page
// order: it owns the look-back state (recent, maxAt).
func (c *Connector) mapPage(p *rawPage) *chunk {
	n := len(p.rows)
	ch := &chunk{msgs: make([]kafka.Message, 0, n), last: p.last, rows: int64(n),
		arena: make([]byte, 0, n*384), hdrs: make([]kafka.Header, 0, n*(len(c.hdr)+2))}
	for _, r := range p.rows {
		c.handleRow(ch, r)
	}
	c.pruneRecent(time.Duration(c.cfg.LookBack))
	return ch
}

func ownValue(v any) any {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	return v
}

// handleRow maps one native row into a message: an upsert, a tombstone (soft delete),
// or a dead-letter record. A row re-read inside the look-back window unchanged since it
// was last published is skipped.
func (c *Connector) handleRow(ch *chunk, r Row) {
	at, hasTime := cursorTimeIn(r.Cursor, c.mapper.loc)
	if r.Cursor != nil {
		if ch.high == nil || (hasTime && !at.Before(ch.highAt)) {
			ch.high, ch.highAt = ownValue(r.Cursor), at
		}
		if hasTime && at.After(c.maxAt) {
			c.maxAt = at
		}
	}
	dedupKey, h := c.rowHash(r)
	if prev, ok := c.recent[dedupKey]; ok && prev.hash == h {
		ch.unchanged++
		return
	}
	if hasTime && !at.Before(c.maxAt.Add(-time.Duration(c.cfg.LookBack))) {
		c.recent[dedupKey] = recentRow{hash: h, at: at}
	}
	// The govx-event-time header: the source change time, as mapper.eventTime words it.
	ev := noEventTime
	if hasTime {
		ev = ch.appendTo(func(b []byte) []byte { return at.UTC().AppendFormat(b, time.RFC3339Nano) })
	}
	if hasTime && at.After(ch.maxEvent) {
		ch.maxEvent = at
	}
	if c.mapper.deleted(r.Values) {
		key, err := c.mapper.recordKey(r.Values)
		if err != nil {
			c.deadLetter(ch, r.Values, []schemas.FieldError{{Field: "key", Code: "type", Message: err.Error()}})
			return
		}
		kb := ch.appendTo(func(b []byte) []byte { return append(b, key...) })
		ch.msgs = append(ch.msgs, c.chunkMessage(ch, kb, nil, opDelete, ev))
		ch.deletes++
		return
	}
	if c.rec == nil {
		c.rec = make(map[string]any, len(c.mapper.ds.Fields))
	}
	rec, errs := c.mapper.mapRowInto(c.rec, r.Values)
	if len(errs) > 0 {
		c.deadLetter(ch, r.Values, errs)
		return
	}
	key, err := c.mapper.ds.RecordKey(rec)
	if err != nil {
		c.deadLetter(ch, r.Values, []schemas.FieldError{{Field: "key", Code: "required", Message: err.Error()}})
		return
	}
	kb := ch.appendTo(func(b []byte) []byte { return append(b, key...) })
	val := ch.appendTo(func(b []byte) []byte { return c.mapper.encodeRecord(b, rec) })
	ch.msgs = append(ch.msgs, c.chunkMessage(ch, kb, val, opUpsert, ev))
	ch.upserts++
}

var (
	noEventTime = []byte{} // an empty header value, not a null one
	opUpsert    = []byte("upsert")
	opDelete    = []byte("delete")
)

// chunkMessage is message with the headers taken from the chunk's arena.
func (c *Connector) chunkMessage(ch *chunk, key, value, op, eventTime []byte) kafka.Message {
	start := len(ch.hdrs)
	ch.hdrs = append(ch.hdrs, kafka.Header{Key: "govx-op", Value: op})
	ch.hdrs = append(ch.hdrs, c.hdr...)
	ch.hdrs = append(ch.hdrs, kafka.Header{Key: "govx-event-time", Value: eventTime})
	return kafka.Message{Topic: c.cfg.Topic(), Key: key, Value: value, Headers: ch.hdrs[start:len(ch.hdrs):len(ch.hdrs)]}
}

func (c *Connector) message(key, value []byte, op, eventTime string) kafka.Message {
	h := make([]kafka.Header, 0, 5)
	h = append(h, kafka.Header{Key: "govx-op", Value: []byte(op)})
	h = append(h, c.hdr...)
	h = append(h, kafka.Header{Key: "govx-event-time", Value: []byte(eventTime)})
	return kafka.Message{Topic: c.cfg.Topic(), Key: key, Value: value, Headers: h}
}

func (c *Connector) deadLetter(ch *chunk, values []any, errs []schemas.FieldError) {
	reasons, _ := json.Marshal(errs)
	var key []byte
	if k, err := c.mapper.recordKey(values); err == nil {
		key = []byte(k)
	}
	ch.msgs = append(ch.msgs, kafka.Message{Topic: c.cfg.Kafka.DLQTopic, Key: key, Value: c.mapper.nativeJSON(values),
		Headers: []kafka.Header{
			c.hdr[0], c.hdr[2],
			{Key: "govx-error", Value: reasons},
			{Key: "govx-connector", Value: []byte(c.cfg.Name)},
		}})
	ch.invalid++
	if ch.invalid <= 3 || ch.invalid%1000 == 0 {
		c.log.Debug("invalid row to dead-letter topic", "errors", string(reasons))
	}
}

// rowHash returns the look-back key of a row and a hash of its values.
func (c *Connector) rowHash(r Row) (string, uint64) {
	var key string
	if len(r.Key) == 1 {
		key = schemas.CanonicalText(r.Key[0])
	} else {
		var kb []byte
		for i, k := range r.Key {
			if i > 0 {
				kb = append(kb, 0)
			}
			kb = schemas.AppendCanonicalText(kb, k)
		}
		key = string(kb)
	}
	buf := c.hashBuf[:0]
	for _, v := range r.Values {
		buf = schemas.AppendCanonicalText(buf, v)
		buf = append(buf, 0)
	}
	c.hashBuf = buf
	// FNV-1a, inline: hash/fnv's interface would make buf escape.
	h := uint64(14695981039346656037)
	for _, b := range buf {
		h ^= uint64(b)
		h *= 1099511628211
	}
	return key, h
}

func (c *Connector) pruneRecent(lookBack time.Duration) {
	limit := c.maxAt.Add(-lookBack)
	for k, r := range c.recent {
		if r.at.Before(limit) {
			delete(c.recent, k)
		}
	}
}

// fatalKafka reports whether a write error will not go away by retrying.
func fatalKafka(err error) bool {
	for _, e := range []error{kafka.MessageSizeTooLarge, kafka.TopicAuthorizationFailed, kafka.ClusterAuthorizationFailed,
		kafka.SASLAuthenticationFailed, kafka.InvalidTopic, kafka.RecordListTooLarge, kafka.InvalidRequiredAcks} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// write sends msgs and returns once Kafka acknowledged every one. Failed messages are
// sent again, with backoff, for as long as it takes (a broker restart), unless ctx ends
// or the error cannot go away.
func (c *Connector) write(ctx context.Context, msgs []kafka.Message) error {
	retry := backoff.New(100*time.Millisecond, 5*time.Second)
	for attempt := 1; len(msgs) > 0; attempt++ {
		err := c.w.WriteMessages(ctx, msgs...)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var we kafka.WriteErrors
		if errors.As(err, &we) && len(we) == len(msgs) {
			failed := msgs[:0:0]
			for i, e := range we {
				if e != nil {
					if len(failed) == 0 {
						err = e // one cause is enough for the log; they are all alike
					}
					if fatalKafka(e) {
						return fmt.Errorf("kafka rejected a record of %s: %w", msgs[i].Topic, e)
					}
					failed = append(failed, msgs[i])
				}
			}
			msgs = failed
		} else if fatalKafka(err) {
			return fmt.Errorf("kafka: %w", err)
		}
		c.m.retries.Inc()
		c.update(func(p *Progress) { p.Retries++ })
		if attempt == 1 || attempt%10 == 0 {
			c.log.Warn("kafka did not acknowledge records; retrying until it does (checkpoint held back)",
				"records", len(msgs), "attempt", attempt, "err", err)
		}
		if err := sleepCtx(ctx, retry.Next()); err != nil {
			return err
		}
	}
	return nil
}

// checkpointEvery bounds how often the checkpoint is stored during a pass; it is always
// stored at the end of a pass and of the snapshot.
const checkpointEvery = 500 * time.Millisecond

func (c *Connector) storeCheckpoint(ctx context.Context, force bool) error {
	if !force && time.Since(c.ckptAt) < checkpointEvery {
		return nil
	}
	// A poll that read nothing new leaves the checkpoint as stored: writing it again
	// would add a record to the checkpoint topic every poll_interval, and a produce
	// round trip to every idle poll, for nothing.
	content, err := c.ckpt.content()
	if err != nil {
		return err
	}
	if bytes.Equal(content, c.ckptStored) {
		return nil
	}
	msg, err := checkpointMessage(c.cfg.Kafka.CheckpointTopic, c.cfg.Name, &c.ckpt)
	if err != nil {
		return err
	}
	if err := c.write(ctx, []kafka.Message{msg}); err != nil {
		return err
	}
	c.ckptAt = time.Now()
	c.ckptStored = content
	return nil
}
