package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"govx/exchange/ingest"
	"govx/exchange/service/servicetest"
	"govx/exchange/store"
	"govx/internal/kafkatest"
	"govx/internal/testenv"
	"govx/schemas"
	"govx/schemas/ident"
)

const dataset = "population.person"

// person returns the i-th valid population.person record and its key.
func person(t *testing.T, i int, name string) (string, map[string]any) {
	t.Helper()
	body := fmt.Sprintf("330106%d0101%03d", 1950+i/1000, i%1000)
	c, err := ident.CitizenIDCheckChar(body)
	if err != nil {
		t.Fatal(err)
	}
	id := body + string(c)
	return id, map[string]any{"id_number": id, "name": name, "gender": "1", "birth_date": fmt.Sprintf("%d-01-01", 1950+i/1000),
		"household_region": "330106", "status": "alive", "updated_at": "2026-11-01T00:00:00Z"}
}

func upsert(t *testing.T, i int, name string) kafka.Message {
	key, rec := person(t, i, name)
	v, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Key: []byte(key), Value: v, Headers: []kafka.Header{{Key: "govx-op", Value: []byte("upsert")}}}
}

func tombstone(t *testing.T, i int) kafka.Message {
	key, _ := person(t, i, "")
	return kafka.Message{Key: []byte(key), Headers: []kafka.Header{{Key: "govx-op", Value: []byte("delete")}}}
}

func upserts(t *testing.T, from, to int) []kafka.Message {
	var out []kafka.Message
	for i := from; i < to; i++ {
		out = append(out, upsert(t, i, "张三"))
	}
	return out
}

// run is an ingester running in the background, with every state it reported.
type run struct {
	in    *ingest.Ingester
	reg   *prometheus.Registry
	mu    sync.Mutex
	seen  []error // states of the dataset, in order
	done  chan error
	stop  context.CancelFunc
	ended bool
	logs  testenv.Buffer // the ingester's log
}

func startIngest(t *testing.T, brokers []string, prefix string, tables map[string]*store.Table) *run {
	t.Helper()
	r := &run{done: make(chan error, 1), reg: prometheus.NewRegistry()}
	cfg := ingest.Config{Brokers: brokers, TopicPrefix: prefix, OnStatus: func(id string, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.ended {
			t.Errorf("status %s=%v reported after Run returned: a goroutine outlived Run", id, err)
		}
		if id == dataset {
			r.seen = append(r.seen, err)
		}
	}}
	r.in = ingest.New(cfg, schemas.MustLoad(), tables, slog.New(slog.NewTextHandler(&r.logs, nil)))
	r.reg.MustRegister(r.in.Collectors()...)
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go func() {
		err := r.in.Run(ctx)
		r.mu.Lock()
		r.ended = true
		r.mu.Unlock()
		r.done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run after cancel: %v, want context.Canceled", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of its context's end")
		}
	})
	return r
}

// state is the dataset's current state as Status reports it.
func (r *run) state() error { return r.in.Status()[dataset] }

// metric returns a gauge or counter of the ingester's registry (0 if absent).
func (r *run) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) > 0 && m.GetLabel()[0].GetValue() != dataset {
				continue
			}
			if m.Gauge != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func newTable(t *testing.T) *store.Table {
	d, _ := schemas.MustLoad().Dataset(dataset)
	tbl := store.New(d)
	t.Cleanup(tbl.Close)
	return tbl
}

func lookup(tbl *store.Table, key string) (map[string]any, bool) {
	snap := tbl.Snapshot()
	defer snap.Release()
	return snap.Lookup(key)
}

func applied(tbl *store.Table) int64 {
	var n int64
	for _, off := range tbl.Positions() {
		n += off
	}
	return n
}

func TestIngestAppliesUpsertsDeletesAndRejectsInvalid(t *testing.T) {
	b := kafkatest.Start(t)
	prefix := "govx."
	topic := prefix + dataset
	kafkatest.CreateTopic(t, b.Addr(), topic)
	msgs := upserts(t, 0, 30)
	bad := kafka.Message{Key: []byte("330106195001019999"), Value: []byte(`{"id_number": 42}`)}
	msgs = append(msgs, bad)
	kafkatest.Produce(t, b.Addr(), topic, msgs...)

	tbl := newTable(t)
	r := startIngest(t, []string{b.Addr()}, prefix, map[string]*store.Table{dataset: tbl})
	select {
	case <-r.in.Ready():
	case <-time.After(30 * time.Second):
		t.Fatalf("not caught up after 30s: %v", r.state())
	}
	if tbl.Len() != 30 || applied(tbl) != 31 {
		t.Fatalf("after catching up: %d rows, positions past %d records; want 30 rows, all 31 records read", tbl.Len(), applied(tbl))
	}
	if r.state() != nil || r.metric(t, "govx_ingest_ready") != 1 {
		t.Fatalf("caught up, but state %v, govx_ingest_ready %v", r.state(), r.metric(t, "govx_ingest_ready"))
	}
	if got := r.in.Stats().Invalid; got != 1 {
		t.Fatalf("invalid records counted: %d, want 1", got)
	}
	if _, ok := lookup(tbl, "330106195001019999"); ok {
		t.Fatal("an invalid record is served")
	}

	// Changes after catching up: five deletes and one update.
	var changes []kafka.Message
	for i := 0; i < 5; i++ {
		changes = append(changes, tombstone(t, i))
	}
	changes = append(changes, upsert(t, 10, "李四"))
	kafkatest.Produce(t, b.Addr(), topic, changes...)
	servicetest.WaitFor(t, "deletes and the update applied", func() bool { return applied(tbl) == 37 })
	if tbl.Len() != 25 {
		t.Fatalf("%d rows after 5 deletes of 30, want 25", tbl.Len())
	}
	for i := 0; i < 5; i++ {
		if key, _ := person(t, i, ""); func() bool { _, ok := lookup(tbl, key); return ok }() {
			t.Fatalf("deleted person %d still served", i)
		}
	}
	key, _ := person(t, 10, "")
	if rec, ok := lookup(tbl, key); !ok || rec["name"] != "李四" {
		t.Fatalf("updated person: %v (found %v), want the name 李四", rec, ok)
	}
}

// TestIngestMetadataFromAnyBroker: the first broker of the list is dead; metadata,
// end offsets and records come from the second.
func TestIngestMetadataFromAnyBroker(t *testing.T) {
	b := kafkatest.Start(t)
	dead := kafkatest.DeadAddr(t)

	topic := "govx." + dataset
	kafkatest.CreateTopic(t, b.Addr(), topic)
	kafkatest.Produce(t, b.Addr(), topic, upserts(t, 0, 12)...)
	brokers := []string{dead, b.Addr()}
	if _, err := ingest.ClusterID(context.Background(), ingest.Config{Brokers: brokers}); err != nil {
		t.Fatalf("cluster id with the first broker dead: %v", err)
	}
	tbl := newTable(t)
	r := startIngest(t, brokers, "govx.", map[string]*store.Table{dataset: tbl})
	select {
	case <-r.in.Ready():
	case <-time.After(30 * time.Second):
		t.Fatalf("not caught up after 30s with the first broker dead: %v", r.state())
	}
	if tbl.Len() != 12 {
		t.Fatalf("%d rows, want 12", tbl.Len())
	}
}

// TestIngestWaitsOutABrokerRestart: while the broker is down the dataset says it waits
// for Kafka (and the store keeps what it has); once it is back, ingest reconnects,
// catches up with what was produced since, and is current again.
func TestIngestWaitsOutABrokerRestart(t *testing.T) {
	b := kafkatest.Start(t)
	topic := "govx." + dataset
	kafkatest.CreateTopic(t, b.Addr(), topic)
	kafkatest.Produce(t, b.Addr(), topic, upserts(t, 0, 10)...)
	tbl := newTable(t)
	r := startIngest(t, []string{b.Addr()}, "govx.", map[string]*store.Table{dataset: tbl})
	servicetest.WaitFor(t, "caught up", func() bool { return r.state() == nil && tbl.Len() == 10 })

	b.Stop()
	servicetest.WaitFor(t, "the dataset waiting for Kafka", func() bool { return errors.Is(r.state(), ingest.ErrKafkaUnavailable) })
	if r.metric(t, "govx_ingest_ready") != 0 {
		t.Fatal("govx_ingest_ready is 1 while the broker is down")
	}
	if tbl.Len() != 10 {
		t.Fatalf("the store lost rows while Kafka was down: %d, want 10", tbl.Len())
	}

	b.Restart()
	kafkatest.Produce(t, b.Addr(), topic, upserts(t, 10, 20)...)
	servicetest.WaitFor(t, "current again with the records produced after the restart", func() bool {
		return r.state() == nil && tbl.Len() == 20
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	var waited, caughtUp bool
	for _, s := range r.seen {
		waited = waited || errors.Is(s, ingest.ErrKafkaUnavailable)
		caughtUp = caughtUp || waited && s == nil
	}
	if !waited || !caughtUp {
		t.Fatalf("states %v: want waiting for Kafka, then current", r.seen)
	}
}

// TestIngestUnknownDataset: a table of a dataset the catalog does not know is refused
// before anything starts, and Run leaves nothing running behind it.
func TestIngestUnknownDataset(t *testing.T) {
	b := kafkatest.Start(t)
	topic := "govx." + dataset
	kafkatest.CreateTopic(t, b.Addr(), topic)
	kafkatest.Produce(t, b.Addr(), topic, upserts(t, 0, 5)...)
	tbl := newTable(t)
	other := newTable(t)
	r := startIngest(t, []string{b.Addr()}, "govx.", map[string]*store.Table{dataset: tbl, "no_such.register": other})
	select {
	case err := <-r.done:
		if err == nil || !strings.Contains(err.Error(), `"no_such.register"`) {
			t.Fatalf("Run: %v, want an error naming the unknown dataset", err)
		}
		r.done <- context.Canceled // for the cleanup, which expects Run's return
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return on an unknown dataset")
	}
	if len(tbl.Positions()) != 0 {
		t.Fatalf("the known dataset was ingested (%v) though Run refused to start", tbl.Positions())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.seen {
		if !errors.Is(s, ingest.ErrCatchingUp) {
			t.Fatalf("the known dataset went to state %v: ingest started though Run refused", s)
		}
	}
}

// TestIngestStopsAtARecordTheStoreCannotApply: when the table refuses a record for a
// reason of its own (here: it is closed, which the store reports as it reports a full
// table), the dataset stops there — not ready, a metric, positions not advanced past it
// — and an exchange restarted from the store's state resumes exactly there, losing
// nothing.
func TestIngestStopsAtARecordTheStoreCannotApply(t *testing.T) {
	b := kafkatest.Start(t)
	topic := "govx." + dataset
	kafkatest.CreateTopic(t, b.Addr(), topic)
	kafkatest.Produce(t, b.Addr(), topic, upserts(t, 0, 10)...)
	d, _ := schemas.MustLoad().Dataset(dataset)
	tbl := store.New(d)
	r := startIngest(t, []string{b.Addr()}, "govx.", map[string]*store.Table{dataset: tbl})
	servicetest.WaitFor(t, "caught up", func() bool { return r.state() == nil && tbl.Len() == 10 })

	// What a restart would load: the store's state before the failure.
	dir := t.TempDir()
	snap := tbl.Snapshot()
	if err := snap.WriteTo(dir); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	before := tbl.Positions()

	tbl.Close()
	kafkatest.Produce(t, b.Addr(), topic, upserts(t, 10, 16)...)
	var stopped *ingest.StoppedError
	servicetest.WaitFor(t, "the dataset stopped", func() bool { return errors.As(r.state(), &stopped) })
	if stopped.Dataset != dataset {
		t.Fatalf("stopped names dataset %q", stopped.Dataset)
	}
	if fmt.Sprint(tbl.Positions()) != fmt.Sprint(before) || fmt.Sprint(stopped.Positions) != fmt.Sprint(before) {
		t.Fatalf("positions moved past records not applied: %v (reported %v), were %v", tbl.Positions(), stopped.Positions, before)
	}
	if r.metric(t, "govx_ingest_stopped") != 1 || r.metric(t, "govx_ingest_ready") != 0 {
		t.Fatalf("govx_ingest_stopped %v, govx_ingest_ready %v; want 1 and 0",
			r.metric(t, "govx_ingest_stopped"), r.metric(t, "govx_ingest_ready"))
	}
	select {
	case err := <-r.done:
		t.Fatalf("Run returned (%v) when one dataset stopped; the others must go on", err)
	default:
	}

	// The restart: the table from the store's state, a new ingester.
	r.stop()
	reopened, err := store.Open(d, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reopened.Close)
	r2 := startIngest(t, []string{b.Addr()}, "govx.", map[string]*store.Table{dataset: reopened})
	servicetest.WaitFor(t, "the restarted ingest current", func() bool { return r2.state() == nil && reopened.Len() == 16 })
	for i := 0; i < 16; i++ {
		if key, _ := person(t, i, ""); func() bool { _, ok := lookup(reopened, key); return ok }() == false {
			t.Fatalf("person %d lost across the stop and restart", i)
		}
	}
}

// TestIngestRefusesRecordsItCannotReadAsMeant: a record whose headers name an operation
// the exchange does not know, or a schema version it does not serve, is not guessed at
// (applied as an upsert): it is counted invalid and not served.
func TestIngestRefusesRecordsItCannotReadAsMeant(t *testing.T) {
	b := kafkatest.Start(t)
	topic := "govx." + dataset
	kafkatest.CreateTopic(t, b.Addr(), topic)
	bogusOp := upsert(t, 1, "伪造")
	bogusOp.Headers = []kafka.Header{{Key: "govx-op", Value: []byte("bogus")}}
	future := upsert(t, 2, "未来")
	future.Headers = []kafka.Header{{Key: "govx-op", Value: []byte("upsert")}, {Key: "govx-schema-version", Value: []byte("999")}}
	good := upsert(t, 3, "王五")
	good.Headers = []kafka.Header{{Key: "govx-op", Value: []byte("upsert")}, {Key: "govx-schema-version", Value: []byte("1")}}
	kafkatest.Produce(t, b.Addr(), topic, bogusOp, future, good)

	tbl := newTable(t)
	r := startCaughtUp(t, b.Addr(), tbl)
	if got := r.in.Stats().Invalid; got != 2 {
		t.Fatalf("invalid records counted: %d, want 2", got)
	}
	for i, name := range map[int]string{1: "伪造", 2: "未来"} {
		if key, _ := person(t, i, ""); func() bool { _, ok := lookup(tbl, key); return ok }() {
			t.Fatalf("record %q served despite its headers", name)
		}
	}
	if key, _ := person(t, 3, ""); func() bool { rec, ok := lookup(tbl, key); return ok && rec["name"] == "王五" }() == false {
		t.Fatal("the record with correct headers is not served")
	}
}

// TestIngestRefusesHeadersThePayloadContradicts: when a record's headers and payload
// disagree the record is counted invalid, logged with its reason code and not applied:
// an upsert without a value (which read as a tombstone would delete the stored record),
// a delete with a value, a govx-dataset naming another dataset, a Kafka key that is not
// the value's key. A null value without headers stays a tombstone, as the contract says.
func TestIngestRefusesHeadersThePayloadContradicts(t *testing.T) {
	b := kafkatest.Start(t)
	topic := "govx." + dataset
	kafkatest.CreateTopic(t, b.Addr(), topic)
	noValue := upsert(t, 1, "")
	noValue.Value = nil
	withValue := upsert(t, 2, "李四改")
	withValue.Headers = []kafka.Header{{Key: "govx-op", Value: []byte("delete")}}
	otherDataset := upsert(t, 4, "赵六")
	otherDataset.Headers = append(otherDataset.Headers, kafka.Header{Key: "govx-dataset", Value: []byte("legal_entity.organization")})
	wrongKey := upsert(t, 5, "钱七")
	otherKey, _ := person(t, 6, "")
	wrongKey.Key = []byte(otherKey)
	bare := tombstone(t, 3)
	bare.Headers = nil
	sameDataset := upsert(t, 7, "孙八")
	sameDataset.Headers = append(sameDataset.Headers, kafka.Header{Key: "govx-dataset", Value: []byte(dataset)})
	kafkatest.Produce(t, b.Addr(), topic, upsert(t, 1, "张三"), upsert(t, 2, "李四"), upsert(t, 3, "王五"),
		noValue, withValue, otherDataset, wrongKey, bare, sameDataset)

	tbl := newTable(t)
	r := startCaughtUp(t, b.Addr(), tbl)
	if got := r.in.Stats().Invalid; got != 4 {
		t.Errorf("invalid records counted: %d, want 4", got)
	}
	for i, want := range map[int]string{1: "张三", 2: "李四", 7: "孙八"} {
		key, _ := person(t, i, "")
		if rec, ok := lookup(tbl, key); !ok || rec["name"] != want {
			t.Errorf("person %d: %v (%v), want name %s: a refused record changed it", i, rec, ok, want)
		}
	}
	for _, i := range []int{3, 4, 5, 6} {
		if key, _ := person(t, i, ""); func() bool { _, ok := lookup(tbl, key); return ok }() {
			t.Errorf("person %d is served; it was deleted or never validly published", i)
		}
	}
	log := r.logs.String()
	for code, n := range map[string]int{"reason=\"op_mismatch: header govx-op is upsert": 1, "reason=\"op_mismatch: header govx-op is delete": 1,
		"reason=\"dataset_mismatch:": 1, "reason=\"key_mismatch:": 1} {
		if got := strings.Count(log, code); got != n {
			t.Errorf("log lines with %s: %d, want %d; log:\n%s", code, got, n, log)
		}
	}
}

// startCaughtUp starts an ingest of the dataset into tbl and waits until it has caught up.
func startCaughtUp(t *testing.T, broker string, tbl *store.Table) *run {
	t.Helper()
	r := startIngest(t, []string{broker}, "govx.", map[string]*store.Table{dataset: tbl})
	select {
	case <-r.in.Ready():
	case <-time.After(30 * time.Second):
		t.Fatalf("not caught up after 30s: %v", r.state())
	}
	return r
}
