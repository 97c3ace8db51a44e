// Package ingest materializes the govx.<dataset> Kafka topics into the exchange's store:
// every partition of every dataset topic is read from the position the store already
// holds, each record is re-validated against its schema (a bad record is counted and
// logged, never served), upserts and tombstones are applied in batches, and each
// dataset's state is reported as it changes: catching up, current, waiting for Kafka,
// or stopped at a record the store could not apply.
//
// Only the exchange's wiring (exchange/server, cmd/govx, the demo) imports it.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"govx/exchange/store"
	"govx/internal/backoff"
	"govx/schemas"
)

// Config says where to read from.
type Config struct {
	// Brokers are tried in turn for metadata and offsets: any live one will do.
	Brokers     []string
	TopicPrefix string // default "govx."
	Dialer      *kafka.Dialer
	// BatchRecords caps how many records are decoded and then applied in one
	// store.Apply call (default 512: a batch's decoded cells are still in the CPU cache
	// when the store copies them into its columns).
	BatchRecords int
	// OnStatus, when set, hears each dataset's state whenever it changes: nil while the
	// dataset is caught up and kept current, otherwise why it is not (ErrCatchingUp,
	// ErrKafkaUnavailable, a *StoppedError). New reports ErrCatchingUp for every dataset
	// before it returns, so nothing is taken as current before ingest has shown it. It
	// is called from ingest's goroutines, one call at a time, and must not block.
	OnStatus func(dataset string, err error)
}

// The states of a dataset other than current (see Config.OnStatus). They are wrapped
// with the detail of the moment; test for them with errors.Is.
var (
	// ErrCatchingUp: the dataset has not yet read up to the end offsets its topic had
	// when reading (re)started, or its topic does not exist yet.
	ErrCatchingUp = errors.New("catching up with Kafka")
	// ErrKafkaUnavailable: reading stopped on a Kafka error (brokers down, no leader)
	// and is retried; the store keeps what it has.
	ErrKafkaUnavailable = errors.New("waiting for Kafka")
)

// StoppedError is the state of a dataset whose ingest stopped because the store could
// not apply a record for a reason of the table's (store.ErrTableFull, say), not of the
// record's. Ingest does not move past that record: the table's positions stay before
// it, and a restarted exchange reads it again from there.
type StoppedError struct {
	Dataset string
	// Positions are the table's positions when it stopped: where a restart resumes.
	Positions map[int32]int64
	Err       error
}

func (e *StoppedError) Error() string {
	return fmt.Sprintf("ingest stopped at a record the store could not apply (a restart resumes there): %v", e.Err)
}

func (e *StoppedError) Unwrap() error { return e.Err }

// Ingester keeps a set of store tables equal to their Kafka topics.
type Ingester struct {
	cfg    Config
	tables map[string]*store.Table // by dataset id
	cat    *schemas.Catalog
	log    *slog.Logger

	records atomic.Int64 // applied
	invalid atomic.Int64 // rejected by validation
	stopped *prometheus.GaugeVec

	mu      sync.Mutex
	state   map[string]error // by dataset: nil while current
	caught  map[string]bool  // datasets caught up at least once
	readyCh chan struct{}
}

// Timing of Kafka calls and of retries.
const (
	requestTimeout = 10 * time.Second // one metadata or offsets request
	minBackoff     = 250 * time.Millisecond
	maxBackoff     = 10 * time.Second
	topicPoll      = 500 * time.Millisecond // while a dataset's topic does not exist yet
)

// queued is how many fetched records wait for decoding at most: few enough that a
// record's bytes are still in the CPU cache when it is decoded (a deeper queue cost
// ≈ 0.3 µs a record in bench/ingest), enough to keep the applying goroutine fed.
const queued = 1024

// New returns an ingester for the given tables.
func New(cfg Config, cat *schemas.Catalog, tables map[string]*store.Table, log *slog.Logger) *Ingester {
	if cfg.TopicPrefix == "" {
		cfg.TopicPrefix = "govx."
	}
	if cfg.BatchRecords <= 0 {
		cfg.BatchRecords = 512
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &kafka.Dialer{Timeout: requestTimeout, DualStack: true}
	}
	if log == nil {
		log = slog.Default()
	}
	in := &Ingester{cfg: cfg, tables: tables, cat: cat, log: log, readyCh: make(chan struct{}),
		state: map[string]error{}, caught: map[string]bool{},
		stopped: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "govx_ingest_stopped",
			Help: "1 while ingest of the dataset is stopped at a record the store could not apply (until a restart)."}, []string{"dataset"}),
	}
	if len(tables) == 0 {
		close(in.readyCh)
	}
	for id := range tables {
		in.stopped.WithLabelValues(id).Set(0)
		in.setState(id, ErrCatchingUp)
	}
	return in
}

// Stats are the ingester's counters.
type Stats struct {
	Records, Invalid int64
}

// Stats returns the counters so far.
func (in *Ingester) Stats() Stats {
	return Stats{Records: in.records.Load(), Invalid: in.invalid.Load()}
}

// Ready returns a channel closed once every dataset has caught up, for the first time,
// to the end offsets its topic had when reading started. Whether the datasets are
// current now is Status.
func (in *Ingester) Ready() <-chan struct{} { return in.readyCh }

// IsReady reports whether Ready is closed.
func (in *Ingester) IsReady() bool {
	select {
	case <-in.readyCh:
		return true
	default:
		return false
	}
}

// Status returns each dataset's state now: nil while current, else why not.
func (in *Ingester) Status() map[string]error {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make(map[string]error, len(in.state))
	for id, err := range in.state {
		out[id] = err
	}
	return out
}

// current reports whether every dataset is caught up and kept current.
func (in *Ingester) current() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, err := range in.state {
		if err != nil {
			return false
		}
	}
	return true
}

// setState records a dataset's state and tells OnStatus when it changed. It reports
// whether it changed, so callers log transitions rather than every retry.
func (in *Ingester) setState(id string, err error) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if prev, seen := in.state[id]; seen {
		if prev == nil && err == nil || prev != nil && err != nil && prev.Error() == err.Error() {
			return false
		}
		var st *StoppedError
		if errors.As(prev, &st) {
			// A stopped dataset stays stopped until the exchange restarts.
			return false
		}
	}
	in.state[id] = err
	var st *StoppedError
	if errors.As(err, &st) {
		in.stopped.WithLabelValues(id).Set(1)
	}
	if err == nil && !in.caught[id] {
		in.caught[id] = true
		if len(in.caught) == len(in.tables) {
			close(in.readyCh)
		}
	}
	if in.cfg.OnStatus != nil {
		in.cfg.OnStatus(id, err)
	}
	return true
}

// ClusterID asks the brokers for the cluster id, which the exchange keeps beside its
// snapshot: a different id means a different cluster, whose offsets mean nothing to
// the snapshot, so the store is rebuilt from the beginning.
func ClusterID(ctx context.Context, cfg Config) (string, error) {
	c := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: requestTimeout}
	if cfg.Dialer != nil && cfg.Dialer.TLS != nil || cfg.Dialer != nil && cfg.Dialer.SASLMechanism != nil {
		c.Transport = &kafka.Transport{TLS: cfg.Dialer.TLS, SASL: cfg.Dialer.SASLMechanism}
	}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return "", fmt.Errorf("kafka at %v: %w", cfg.Brokers, err)
	}
	return md.ClusterID, nil
}

// Run reads until ctx ends, then returns ctx's error once every goroutine it started
// has ended. A table of a dataset the catalog does not know is an error returned before
// anything starts. Topics that do not exist yet are waited for (a connector creates its
// topic when it first runs); Kafka errors are retried; a dataset whose table cannot
// apply a record stops (see StoppedError) while the others go on.
func (in *Ingester) Run(ctx context.Context) error {
	datasets := make([]*schemas.Dataset, 0, len(in.tables))
	for id := range in.tables {
		d, ok := in.cat.Dataset(id)
		if !ok {
			return fmt.Errorf("ingest: no schema for dataset %q", id)
		}
		datasets = append(datasets, d)
	}
	var wg sync.WaitGroup
	for _, d := range datasets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.keep(ctx, d, in.tables[d.ID])
		}()
	}
	wg.Wait()
	<-ctx.Done()
	return ctx.Err()
}

// keep runs one dataset's ingest until ctx ends or the store stops it. A broker restart
// or an unreachable cluster is waited out, not fatal: the exchange keeps serving what it
// has and catches up when Kafka is back.
func (in *Ingester) keep(ctx context.Context, d *schemas.Dataset, t *store.Table) {
	retry := backoff.New(minBackoff, maxBackoff)
	for {
		began := time.Now()
		err := in.runDataset(ctx, d, t)
		if ctx.Err() != nil {
			return
		}
		var stopped *StoppedError
		if errors.As(err, &stopped) {
			in.setState(d.ID, stopped)
			in.log.Error("ingest of a dataset stopped: the store could not apply a record, and it is not skipped; "+
				"the dataset is served as it is and /readyz is not ready until the exchange restarts and resumes from the positions",
				"dataset", d.ID, "positions", stopped.Positions, "err", stopped.Err)
			return
		}
		if time.Since(began) > maxBackoff {
			// It ran for a while: this is a new outage, not the same one again.
			retry.Reset()
		}
		in.setState(d.ID, fmt.Errorf("%w: %w", ErrKafkaUnavailable, err))
		wait := retry.Next()
		in.log.Warn("ingest interrupted; retrying", "dataset", d.ID, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// eachBroker calls fn with each configured broker in turn until one call succeeds, so
// that any live broker of the list answers metadata and offset requests.
func (in *Ingester) eachBroker(ctx context.Context, fn func(broker string) error) error {
	var errs []error
	for _, b := range in.cfg.Brokers {
		err := fn(b)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		errs = append(errs, fmt.Errorf("broker %s: %w", b, err))
	}
	if len(errs) == 0 {
		return errors.New("no kafka broker configured")
	}
	return errors.Join(errs...)
}

// partitions returns the partitions of topic, waiting until it exists. While no broker
// answers, the dataset's state says so.
func (in *Ingester) partitions(ctx context.Context, id, topic string) ([]kafka.Partition, error) {
	for {
		var parts []kafka.Partition
		err := in.eachBroker(ctx, func(b string) error {
			conn, err := in.cfg.Dialer.DialContext(ctx, "tcp", b)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(requestTimeout))
			p, err := conn.ReadPartitions(topic)
			if err == nil && len(p) == 0 {
				err = kafka.UnknownTopicOrPartition
			}
			parts = p
			return err
		})
		if err == nil {
			return parts, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, kafka.UnknownTopicOrPartition) {
			in.setState(id, fmt.Errorf("%w: topic %s does not exist yet (its connector creates it)", ErrCatchingUp, topic))
		} else if in.setState(id, fmt.Errorf("%w: %w", ErrKafkaUnavailable, err)) {
			in.log.Warn("waiting for kafka", "dataset", id, "topic", topic, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(topicPoll):
		}
	}
}

// runDataset reads a dataset's partitions into its table until ctx ends, Kafka fails
// (an error to retry) or the table cannot apply a record (a *StoppedError). It returns
// only once its readers have ended.
func (in *Ingester) runDataset(ctx context.Context, d *schemas.Dataset, t *store.Table) error {
	topic := in.cfg.TopicPrefix + d.ID
	parts, err := in.partitions(ctx, d.ID, topic)
	if err != nil {
		return err
	}
	// The end offsets seen now are what "caught up" means for readiness.
	ends := map[int]int64{}
	for _, p := range parts {
		end, err := in.endOffset(ctx, topic, p.ID)
		if err != nil {
			return err
		}
		ends[p.ID] = end
	}
	msgs := make(chan fetched, max(in.cfg.BatchRecords*2, queued))
	var wg sync.WaitGroup
	pos := t.Positions()
	rctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
	}()
	errc := make(chan error, len(parts))
	for _, p := range parts {
		// Positions are the next offset to read, as Kafka's committed offsets are.
		from := pos[int32(p.ID)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := in.readPartition(rctx, d, topic, p.ID, from, msgs); err != nil && rctx.Err() == nil {
				errc <- err
				cancel()
			}
		}()
	}
	go func() { wg.Wait(); close(msgs) }()

	caughtUp := func() bool {
		pos := t.Positions()
		for p, end := range ends {
			if pos[int32(p)] < end {
				return false
			}
		}
		return true
	}
	signal := func() {
		if caughtUp() {
			in.setState(d.ID, nil)
		}
	}
	if !caughtUp() {
		in.setState(d.ID, ErrCatchingUp)
	}
	signal()
	batch := make([]fetched, 0, in.cfg.BatchRecords)
	changes := make([]store.Change, 0, in.cfg.BatchRecords)
	dec := newDecoder(d)
	for {
		ch, ok := <-msgs
		if !ok {
			select {
			case err := <-errc:
				return err
			default:
				return ctx.Err()
			}
		}
		batch = append(batch[:0], ch)
	drain:
		for len(batch) < cap(batch) {
			select {
			case ch, ok := <-msgs:
				if !ok {
					break drain
				}
				batch = append(batch, ch)
			default:
				break drain
			}
		}
		changes = in.decode(d, dec, batch, changes[:0])
		applied := len(changes)
		if err := t.Apply(changes); err != nil {
			var ce *store.ChangeError
			if !errors.As(err, &ce) {
				// The table refused a change for a reason of its own: moving on would
				// lose the record, so the dataset stops where the table's positions are.
				return &StoppedError{Dataset: d.ID, Positions: t.Positions(), Err: err}
			}
			// Records validation rejected were counted and logged when read; anything
			// else the store refused is counted here, never served.
			applied -= len(ce.Failed)
			for _, f := range ce.Failed {
				if !isValidationFailure(changes, f) {
					in.invalid.Add(1)
					// The store's error may quote values; the log gives its reason code
					// and where the record is, so an operator can inspect it in Kafka.
					reason := "store_refused: the store could not read the record as the schema's"
					if errors.Is(f.Err, store.ErrKeyMismatch) {
						reason = "key_mismatch: the Kafka key is not the record's key"
					}
					in.log.Warn("record not stored: not a valid record of the dataset", "dataset", d.ID, "partition", f.Partition, "offset", f.Offset, "reason", reason)
				}
			}
		}
		in.records.Add(int64(applied))
		signal()
	}
}

// endOffset returns the offset the next record of a partition will get, asking the
// partition's leader through any live broker.
func (in *Ingester) endOffset(ctx context.Context, topic string, partition int) (int64, error) {
	var end int64
	err := in.eachBroker(ctx, func(b string) error {
		conn, err := in.cfg.Dialer.DialLeader(ctx, "tcp", b, topic, partition)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(requestTimeout))
		end, err = conn.ReadLastOffset()
		return err
	})
	return end, err
}

// fetched is one record as a partition reader passes it on: decoding waits for the
// batch it is applied in (Ingester.decode), so a record's cells are written just before
// the store reads them, while they are in the cache, into memory reused batch after
// batch.
type fetched struct {
	change store.Change // position; Invalid when the headers say so
	key    []byte
	value  []byte // the record to decode; nil for a delete or a header problem
}

// readPartition reads one partition's records and sends each on. A record whose
// headers it cannot apply is counted, logged, and passed on as a position-only change
// so the store's position still advances.
func (in *Ingester) readPartition(ctx context.Context, d *schemas.Dataset, topic string, partition int, from int64, out chan<- fetched) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   in.cfg.Brokers,
		Topic:     topic,
		Partition: partition,
		Dialer:    in.cfg.Dialer,
		MinBytes:  1,
		MaxBytes:  16 << 20,
		MaxWait:   250 * time.Millisecond,
		// Records are applied as they arrive; a short wait keeps a source change
		// visible to consumers within the 2 s target.
		ReadBatchTimeout: time.Second,
	})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return err
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return err
		}
		f := fetched{change: store.Change{Partition: int32(partition), Offset: m.Offset}, key: m.Key}
		if reason := headerProblem(d, m); reason != "" {
			// A record the exchange cannot read as its producer meant it is not
			// guessed at: an unknown operation, or a schema version it does not serve.
			in.invalid.Add(1)
			in.log.Warn("invalid record not served", "dataset", d.ID, "partition", partition, "offset", m.Offset, "reason", reason)
			f.change.Invalid = errors.New(reason)
		} else if !isDelete(m) {
			f.value = m.Value
		}
		select {
		case out <- f: // while the channel has room, without a blocking select's cost
		default:
			select {
			case out <- f:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// decode decodes and validates a batch's records into changes for the store, reusing
// the decoder's cells from the previous batch (which the store has applied). A record
// that fails validation is counted, logged without its values, and passed on as a
// position-only change so the store's position still advances.
func (in *Ingester) decode(d *schemas.Dataset, dec *decoder, batch []fetched, changes []store.Change) []store.Change {
	dec.reuse()
	for _, f := range batch {
		ch := f.change
		if f.value != nil {
			row, rec, reason := dec.decode(f.value)
			if reason != "" {
				in.invalid.Add(1)
				in.log.Warn("invalid record not served", "dataset", d.ID, "partition", ch.Partition, "offset", ch.Offset, "reason", reason)
				ch.Invalid = errors.New(reason)
			} else {
				ch.Row, ch.Record = row, rec
			}
		}
		if k, ok := dec.rowKey(ch.Row); ok && string(f.key) == k {
			ch.Key = k // the record's own key, already in the row: no copy
		} else {
			ch.Key = string(f.key)
		}
		changes = append(changes, ch)
	}
	return changes
}

// headerProblem returns why a record's headers say it cannot be applied as it is, or "".
// Each reason starts with its code (docs/schemas.md). Records without the headers
// (tombstones, other producers) are read by their value: a null value alone is a
// delete, as the contract (a delete is a tombstone) has it. When the headers are there,
// header and payload must agree: an upsert has a value and a delete has none (an upsert
// without one would silently delete the record), and a govx-dataset names the topic's.
func headerProblem(d *schemas.Dataset, m kafka.Message) string {
	for _, h := range m.Headers {
		switch h.Key {
		// The values are compared as bytes and made strings only for a message: a
		// conversion per record would allocate, as the string escapes into Sprintf.
		case "govx-op":
			switch op := h.Value; string(op) {
			case "upsert":
				if len(m.Value) == 0 {
					return "op_mismatch: header govx-op is upsert but the record has no value (a delete is govx-op delete with a null value)"
				}
			case "delete":
				if len(m.Value) != 0 {
					return "op_mismatch: header govx-op is delete but the record has a value (a delete is a tombstone, a null value)"
				}
			default:
				return fmt.Sprintf("unknown_op: header govx-op is %q: only upsert and delete are operations", op)
			}
		case "govx-schema-version":
			if v := h.Value; string(v) != strconv.Itoa(d.Version) {
				return fmt.Sprintf("schema_version: header govx-schema-version is %q: the exchange serves version %d of %s", v, d.Version, d.ID)
			}
		case "govx-dataset":
			if v := h.Value; string(v) != d.ID {
				return fmt.Sprintf("dataset_mismatch: header govx-dataset is %q on the topic of %s", v, d.ID)
			}
		}
	}
	return ""
}

// isDelete reports whether a record headerProblem passed is a delete: a null value,
// or an empty one under govx-op delete.
func isDelete(m kafka.Message) bool {
	if m.Value == nil {
		return true
	}
	for _, h := range m.Headers {
		if h.Key == "govx-op" {
			return string(h.Value) == "delete"
		}
	}
	return false
}

// Collectors returns the ingester's Prometheus metrics.
func (in *Ingester) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "govx_ingest_records_total", Help: "Kafka records applied to the store."},
			func() float64 { return float64(in.records.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "govx_ingest_invalid_total", Help: "Kafka records rejected by schema validation and not served."},
			func() float64 { return float64(in.invalid.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "govx_ingest_ready", Help: "1 while every dataset is caught up with Kafka and kept current."},
			func() float64 {
				if in.current() {
					return 1
				}
				return 0
			}),
		in.stopped,
	}
}

func isValidationFailure(batch []store.Change, f store.FailedChange) bool {
	for i := range batch {
		if batch[i].Partition == f.Partition && batch[i].Offset == f.Offset {
			return batch[i].Invalid != nil
		}
	}
	return false
}
