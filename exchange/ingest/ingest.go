// Package ingest materializes the govx.<dataset> Kafka topics into the exchange's store:
// every partition of every dataset topic is read from the position the store already
// holds, each record is re-validated against its schema (a bad record is counted and
// logged, never served), upserts and tombstones are applied in batches, and readiness is
// reported once every dataset has caught up to the end offsets seen at start.
//
// Only the exchange's wiring (cmd/govx, the demo) imports it.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"govx/exchange/store"
	"govx/schemas"
)

// Config says where to read from.
type Config struct {
	Brokers     []string
	TopicPrefix string // default "govx."
	Dialer      *kafka.Dialer
	// BatchRecords caps how many records one store.Apply call takes.
	BatchRecords int
}

// Ingester keeps a set of store tables equal to their Kafka topics.
type Ingester struct {
	cfg    Config
	tables map[string]*store.Table // by dataset id
	cat    *schemas.Catalog
	log    *slog.Logger

	records atomic.Int64 // applied
	invalid atomic.Int64 // rejected by validation

	mu      sync.Mutex
	caught  map[string]bool // datasets caught up with the end offsets seen at their start
	readyCh chan struct{}
}

// New returns an ingester for the given tables.
func New(cfg Config, cat *schemas.Catalog, tables map[string]*store.Table, log *slog.Logger) *Ingester {
	if cfg.TopicPrefix == "" {
		cfg.TopicPrefix = "govx."
	}
	if cfg.BatchRecords <= 0 {
		cfg.BatchRecords = 4096
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Ingester{cfg: cfg, tables: tables, cat: cat, log: log, readyCh: make(chan struct{})}
}

// Stats are the ingester's counters.
type Stats struct {
	Records, Invalid int64
}

// Stats returns the counters so far.
func (in *Ingester) Stats() Stats {
	return Stats{Records: in.records.Load(), Invalid: in.invalid.Load()}
}

// Ready returns a channel closed once every dataset has caught up to the end offsets
// its topic had when Run started.
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

// ClusterID asks the brokers for the cluster id, which the exchange keeps beside its
// snapshot: a different id means a different cluster, whose offsets mean nothing to
// the snapshot, so the store is rebuilt from the beginning.
func ClusterID(ctx context.Context, cfg Config) (string, error) {
	c := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 10 * time.Second}
	if cfg.Dialer != nil && cfg.Dialer.TLS != nil || cfg.Dialer != nil && cfg.Dialer.SASLMechanism != nil {
		c.Transport = &kafka.Transport{TLS: cfg.Dialer.TLS, SASL: cfg.Dialer.SASLMechanism}
	}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return "", fmt.Errorf("kafka at %v: %w", cfg.Brokers, err)
	}
	return md.ClusterID, nil
}

// Run reads until ctx ends. Topics that do not exist yet are waited for: a connector
// creates its topic when it first runs.
func (in *Ingester) Run(ctx context.Context) error {
	if len(in.tables) == 0 {
		in.mu.Lock()
		close(in.readyCh)
		in.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(in.tables))
	for id, t := range in.tables {
		d, ok := in.cat.Dataset(id)
		if !ok {
			return fmt.Errorf("ingest: no schema for dataset %q", id)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A broker restart or an unreachable cluster is waited out, not fatal: the
			// exchange keeps serving what it has and catches up when Kafka is back.
			backoff := 250 * time.Millisecond
			for {
				err := in.runDataset(ctx, d, t)
				if ctx.Err() != nil {
					return
				}
				var fatal *fatalError
				if errors.As(err, &fatal) {
					errc <- fmt.Errorf("ingest %s: %w", d.ID, err)
					cancel()
					return
				}
				in.log.Warn("ingest interrupted; retrying", "dataset", d.ID, "err", err, "in", backoff)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 10*time.Second)
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return ctx.Err()
	}
}

// partitions returns the partitions of topic, waiting until it exists.
func (in *Ingester) partitions(ctx context.Context, topic string) ([]kafka.Partition, error) {
	for {
		conn, err := in.cfg.Dialer.DialContext(ctx, "tcp", in.cfg.Brokers[0])
		if err == nil {
			parts, perr := conn.ReadPartitions(topic)
			conn.Close()
			if perr == nil && len(parts) > 0 {
				return parts, nil
			}
			err = perr
		}
		if !errors.Is(err, kafka.UnknownTopicOrPartition) && err != nil {
			in.log.Warn("waiting for kafka", "topic", topic, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (in *Ingester) runDataset(ctx context.Context, d *schemas.Dataset, t *store.Table) error {
	topic := in.cfg.TopicPrefix + d.ID
	parts, err := in.partitions(ctx, topic)
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
	msgs := make(chan store.Change, in.cfg.BatchRecords*2)
	var wg sync.WaitGroup
	pos := t.Positions()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
			in.markReady(d.ID)
		}
	}
	signal()
	batch := make([]store.Change, 0, in.cfg.BatchRecords)
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
		if err := t.Apply(batch); err != nil {
			var ce *store.ChangeError
			if !errors.As(err, &ce) {
				return &fatalError{err}
			}
			// Records validation rejected were counted and logged when read; anything
			// else the store refused is counted here, never served.
			for _, f := range ce.Failed {
				if !isValidationFailure(batch, f) {
					in.invalid.Add(1)
					// The store's reason may quote values; the log names only where the
					// record is, so an operator can inspect it in Kafka.
					in.log.Warn("record not stored: not a valid record of the dataset", "dataset", d.ID, "partition", f.Partition, "offset", f.Offset)
				}
			}
		}
		in.records.Add(int64(len(batch)))
		signal()
	}
}

func (in *Ingester) endOffset(ctx context.Context, topic string, partition int) (int64, error) {
	conn, err := in.cfg.Dialer.DialLeader(ctx, "tcp", in.cfg.Brokers[0], topic, partition)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return conn.ReadLastOffset()
}

// readPartition decodes and validates one partition's records, sending each as a store
// change. A record that fails validation is counted, logged without its values, and
// passed on as a position-only change so the store's position still advances.
func (in *Ingester) readPartition(ctx context.Context, d *schemas.Dataset, topic string, partition int, from int64, out chan<- store.Change) error {
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
		ch := store.Change{Key: string(m.Key), Partition: int32(partition), Offset: m.Offset}
		if !isDelete(m) {
			rec, reason := decode(d, m.Value)
			if reason != "" {
				in.invalid.Add(1)
				in.log.Warn("invalid record not served", "dataset", d.ID, "partition", partition, "offset", m.Offset, "reason", reason)
				ch.Invalid = errors.New(reason)
			} else {
				ch.Record = rec
			}
		}
		select {
		case out <- ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

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

// decode parses and validates one record value; reason is empty when it is good. Only
// field names and check codes go into the reason, never values: logs must not carry
// personal data.
func decode(d *schemas.Dataset, value []byte) (map[string]any, string) {
	var rec map[string]any
	if err := json.Unmarshal(value, &rec); err != nil || rec == nil {
		return nil, "value is not a JSON object"
	}
	if errs := d.Validate(rec); len(errs) > 0 {
		reason := ""
		for i, e := range errs {
			if i > 0 {
				reason += "; "
			}
			reason += e.Field + ": " + e.Code
		}
		return nil, reason
	}
	return rec, ""
}

// Collectors returns the ingester's Prometheus metrics.
func (in *Ingester) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "govx_ingest_records_total", Help: "Kafka records applied to the store."},
			func() float64 { return float64(in.records.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "govx_ingest_invalid_total", Help: "Kafka records rejected by schema validation and not served."},
			func() float64 { return float64(in.invalid.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "govx_ingest_ready", Help: "1 once every dataset caught up with the end offsets seen at start."},
			func() float64 {
				if in.IsReady() {
					return 1
				}
				return 0
			}),
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

// fatalError is an error retrying cannot cure (the store refused a batch as a whole).
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// markReady records that a dataset caught up; once every dataset has, Ready closes.
func (in *Ingester) markReady(id string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.caught == nil {
		in.caught = map[string]bool{}
	}
	if in.caught[id] {
		return
	}
	in.caught[id] = true
	if len(in.caught) == len(in.tables) {
		close(in.readyCh)
	}
}
