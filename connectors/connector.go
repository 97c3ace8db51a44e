package connectors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

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
	w      *kafka.Writer
	ckpt   Checkpoint
	ckptAt time.Time
	recent map[string]recentRow
	maxAt  time.Time // newest cursor time read, the anchor of the look-back window
	// highWater is the newest cursor acknowledged: the incremental checkpoint.
	highWater   any
	highWaterAt time.Time
	hdr         []kafka.Header
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
	if c.k, err = newKafkaConn(c.cfg.Kafka); err != nil {
		return err
	}
	defer c.k.close()
	if err := c.k.ping(ctx); err != nil {
		return err
	}
	kc := c.cfg.Kafka
	if err := c.k.ensureTopic(ctx, c.cfg.Topic(), kc.Partitions, true); err != nil {
		return err
	}
	if err := c.k.ensureTopic(ctx, kc.DLQTopic, kc.Partitions, false); err != nil {
		return err
	}
	if err := c.k.ensureTopic(ctx, kc.CheckpointTopic, 1, true); err != nil {
		return err
	}
	c.w = c.k.newWriter()
	defer c.w.Close()
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
	for {
		from := Position{}
		if c.highWater != nil {
			from.Cursor = c.highWater
			if back, ok := cursorMinus(c.highWater, lookBack); ok {
				from.Cursor = back
			}
		}
		if err := c.pass(ctx, from, PhaseIncremental); err != nil {
			return err
		}
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

// chunk is one page of rows turned into messages, written and acknowledged as a unit.
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
}

// pass reads from `from` to the current end of the source, page by page, and publishes
// every page before storing a checkpoint after it. Reading the next page overlaps with
// writing the current one; writes stay in order.
func (c *Connector) pass(ctx context.Context, from Position, phase string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan *chunk, 2)
	readErr := make(chan error, 1)
	go func() {
		defer close(chunks)
		readErr <- c.readPages(ctx, from, chunks)
	}()
	for ch := range chunks {
		if err := c.write(ctx, ch.msgs); err != nil {
			cancel()
			for range chunks {
			}
			return err
		}
		c.acked(ch, phase)
		if err := c.storeCheckpoint(ctx, false); err != nil {
			cancel()
			for range chunks {
			}
			return err
		}
	}
	if err := <-readErr; err != nil {
		return c.red.err(fmt.Errorf("reading %s: %w", c.sourceName(), err))
	}
	return c.storeCheckpoint(ctx, true)
}

// acked records a chunk Kafka acknowledged: counters, and the position the next
// checkpoint may name.
func (c *Connector) acked(ch *chunk, phase string) {
	if phase == PhaseSnapshot {
		c.ckpt.SnapshotRows += ch.rows
		_ = c.ckpt.setPosition(ch.last)
	}
	if ch.high != nil && (c.highWater == nil || !ch.highAt.Before(c.highWaterAt)) {
		c.highWater, c.highWaterAt = ch.high, ch.highAt
		if phase == PhaseIncremental {
			_ = c.ckpt.setPosition(Position{Cursor: ch.high})
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
}

func (c *Connector) readPages(ctx context.Context, pos Position, out chan<- *chunk) error {
	pageSize := c.cfg.Snapshot.PageSize
	lookBack := time.Duration(c.cfg.LookBack)
	start, readTotal := time.Now(), 0
	for {
		ch := &chunk{msgs: make([]kafka.Message, 0, pageSize)}
		n := 0
		err := c.src.Read(ctx, pos, pageSize, func(r Row) error {
			n++
			c.handleRow(ch, r)
			pos = Position{Cursor: ownValue(r.Cursor), Key: ownValues(r.Key), NullCursor: pos.NullCursor}
			return nil
		})
		if err != nil {
			return err
		}
		ch.last, ch.rows = pos, int64(n)
		c.pruneRecent(lookBack)
		if n > 0 {
			select {
			case out <- ch:
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

func ownValue(v any) any {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	return v
}

func ownValues(vs []any) []any {
	if vs == nil {
		return nil
	}
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = ownValue(v)
	}
	return out
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
	ev := c.mapper.eventTime(r.Cursor)
	if hasTime && at.After(ch.maxEvent) {
		ch.maxEvent = at
	}
	if c.mapper.deleted(r.Values) {
		key, err := c.mapper.recordKey(r.Values)
		if err != nil {
			c.deadLetter(ch, r.Values, []schemas.FieldError{{Field: "key", Code: "type", Message: err.Error()}})
			return
		}
		ch.msgs = append(ch.msgs, c.message([]byte(key), nil, "delete", ev))
		ch.deletes++
		return
	}
	rec, errs := c.mapper.mapRow(r.Values)
	if len(errs) > 0 {
		c.deadLetter(ch, r.Values, errs)
		return
	}
	key, err := c.mapper.ds.RecordKey(rec)
	if err != nil {
		c.deadLetter(ch, r.Values, []schemas.FieldError{{Field: "key", Code: "required", Message: err.Error()}})
		return
	}
	val := c.mapper.encodeRecord(make([]byte, 0, 320), rec)
	ch.msgs = append(ch.msgs, c.message([]byte(key), val, "upsert", ev))
	ch.upserts++
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

func (c *Connector) rowHash(r Row) (string, uint64) {
	var kb []byte
	for i, k := range r.Key {
		if i > 0 {
			kb = append(kb, 0)
		}
		kb = append(kb, textOf(k)...)
	}
	h := fnv.New64a()
	var buf []byte
	for _, v := range r.Values {
		buf = append(buf[:0], textOf(v)...)
		buf = append(buf, 0)
		h.Write(buf)
	}
	return string(kb), h.Sum64()
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
	backoff := 100 * time.Millisecond
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
		if err := sleepCtx(ctx, backoff); err != nil {
			return err
		}
		backoff = min(2*backoff, 5*time.Second)
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
	msg, err := checkpointMessage(c.cfg.Kafka.CheckpointTopic, c.cfg.Name, &c.ckpt)
	if err != nil {
		return err
	}
	if err := c.write(ctx, []kafka.Message{msg}); err != nil {
		return err
	}
	c.ckptAt = time.Now()
	return nil
}
