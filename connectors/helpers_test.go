package connectors_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/segmentio/kafka-go"

	"govx/connectors"
	_ "govx/connectors/filesrc"
	_ "govx/connectors/sqlsrc"
	"govx/connectors/synth"
	"govx/internal/testenv"
)

func randID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newPostgresDB creates a database of its own for the test and returns its URL.
func newPostgresDB(t *testing.T) string {
	t.Helper()
	admin := testenv.Require(t, testenv.Postgres)
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	name := "govx_conn_" + randID()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("creating database: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", admin)
		if err == nil {
			db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
			db.Close()
		}
	})
	u, _ := url.Parse(admin)
	u.Path = "/" + name
	return u.String()
}

// generate loads synthetic department tables into target (synth, as `govx gen` does).
func generate(t *testing.T, target string, scale int, depts ...string) *synth.Generator {
	t.Helper()
	opts := synth.DefaultOptions(scale, 7)
	opts.InvalidRate = 0.02
	opts.Departments = depts
	g, err := synth.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w, err := synth.Open(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := synth.Generate(ctx, g, w, nil); err != nil {
		t.Fatalf("generating %v: %v", depts, err)
	}
	return g
}

// exampleConfig loads connectors/examples/<name> pointed at the test broker, with the
// source DSN in a per-test environment variable.
func exampleConfig(t testing.TB, name, dsn string) *connectors.Config {
	t.Helper()
	broker := testenv.Require(t, testenv.Kafka)
	t.Setenv("GOVX_KAFKA_BROKERS", broker)
	if dsn != "" {
		t.Setenv("GOVX_SOURCE_DSN", dsn)
	}
	cfg, err := connectors.LoadConfig("examples/" + name)
	if err != nil {
		t.Fatal(err)
	}
	cfg.PollInterval = connectors.Duration(200 * time.Millisecond)
	return cfg
}

func quietLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// running is a connector started in the background.
type running struct {
	c      *connectors.Connector
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg *connectors.Config, prefix string, opts ...connectors.Option) *running {
	t.Helper()
	opts = append([]connectors.Option{connectors.WithTopicPrefix(prefix), connectors.WithLogger(quietLogger(t))}, opts...)
	c, err := connectors.New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("connector stopped with: %v", err)
		}
		close(r.done)
	case <-time.After(30 * time.Second):
		t.Errorf("connector did not stop within 30s of cancel")
	default:
		// Already stopped and drained.
	}
}

func (r *running) waitReady(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-r.c.Ready():
	case err := <-r.done:
		r.done <- err
		t.Fatalf("connector ended before its snapshot was done: %v", err)
	case <-time.After(d):
		t.Fatalf("snapshot not done within %v: %+v", d, r.c.Progress())
	}
}

// record is the last state of one key in a topic.
type record struct {
	value   map[string]any // nil for a tombstone
	headers map[string]string
}

// readTopic reads every partition of topic to its end offsets with kafka-go readers and
// returns the last record per key, plus the number of records read. Right after a broker
// restart metadata and offsets may briefly be unavailable; it retries for 30 s.
func readTopic(t testing.TB, topic string) (map[string]record, int) {
	t.Helper()
	broker := testenv.Require(t, testenv.Kafka)
	var m map[string]record
	var n int
	testenv.WaitForState(t, 30*time.Second, "reading "+topic, func() (bool, string) {
		var err error
		if m, n, err = tryReadTopic(broker, topic); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return m, n
}

func tryReadTopic(broker, topic string) (map[string]record, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A transport of its own: the default one caches metadata from before the topic existed.
	client := &kafka.Client{Addr: kafka.TCP(broker), Transport: &kafka.Transport{}}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, 0, err
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return nil, 0, fmt.Errorf("topic %s: %+v", topic, md.Topics)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.LastOffsetOf(p.ID), kafka.FirstOffsetOf(p.ID))
	}
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, 0, err
	}
	if len(offs.Topics[topic]) != len(md.Topics[0].Partitions) {
		return nil, 0, fmt.Errorf("offsets for %d of %d partitions", len(offs.Topics[topic]), len(md.Topics[0].Partitions))
	}
	out := map[string]record{}
	n := 0
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return nil, 0, fmt.Errorf("partition %d: %w", po.Partition, po.Error)
		}
		if po.LastOffset <= po.FirstOffset {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: po.Partition, MaxWait: 200 * time.Millisecond})
		r.SetOffset(po.FirstOffset)
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				return nil, 0, fmt.Errorf("reading %s/%d: %w", topic, po.Partition, err)
			}
			n++
			rec := record{headers: map[string]string{}}
			for _, h := range m.Headers {
				rec.headers[h.Key] = string(h.Value)
			}
			if m.Value != nil {
				if err := json.Unmarshal(m.Value, &rec.value); err != nil {
					r.Close()
					return nil, 0, fmt.Errorf("%s/%d@%d: value is not a JSON object: %v", topic, po.Partition, m.Offset, err)
				}
			}
			out[string(m.Key)] = rec
			if m.Offset >= po.LastOffset-1 {
				break
			}
		}
		r.Close()
	}
	return out, n, nil
}

// dlqRecords reads the dead-letter topic: every record (not per key).
func dlqRecords(t testing.TB, topic string) []record {
	t.Helper()
	broker := testenv.Require(t, testenv.Kafka)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", broker)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	var out []record
	for _, p := range parts {
		pc, err := kafka.DialLeader(ctx, "tcp", broker, topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := pc.ReadOffsets()
		pc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last <= first {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: p.ID, MaxWait: 200 * time.Millisecond})
		r.SetOffset(first)
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("reading %s: %v", topic, err)
			}
			rec := record{headers: map[string]string{}}
			for _, h := range m.Headers {
				rec.headers[h.Key] = string(h.Value)
			}
			json.Unmarshal(m.Value, &rec.value)
			out = append(out, rec)
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	return out
}

// canonical renders a record for comparison: JSON with sorted keys, nulls dropped.
func canonical(m map[string]any) string {
	c := map[string]any{}
	for k, v := range m {
		if v != nil {
			c[k] = v
		}
	}
	b, _ := json.Marshal(c)
	return string(b)
}

// expectSynth checks that topic holds exactly the valid rows of dept with the values
// synth.ToDataset gives, and that the dead-letter topic holds the planted invalid ones.
func expectSynth(t *testing.T, g *synth.Generator, dept string, cfg *connectors.Config, got map[string]record, dlq []record) {
	t.Helper()
	ds := cfg.Dataset
	want := map[string]string{}
	invalid := 0
	for i, row := range g.Rows(dept) {
		if g.IsPlantedInvalid(dept, i) {
			invalid++
			continue
		}
		rec, err := synth.ToDataset(dept, row)
		if err != nil {
			t.Fatal(err)
		}
		key := datasetKey(t, ds, rec)
		want[key] = canonical(rec)
	}
	var missing, wrong []string
	for k, v := range want {
		r, ok := got[k]
		switch {
		case !ok || r.value == nil:
			missing = append(missing, k)
		case canonical(r.value) != v:
			wrong = append(wrong, fmt.Sprintf("%s:\n   got  %s\n   want %s", k, canonical(r.value), v))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("%s: %d of %d valid keys missing from the topic, e.g. %v", ds, len(missing), len(want), missing[:min(5, len(missing))])
	}
	if len(wrong) > 0 {
		t.Errorf("%s: %d keys with a wrong value, e.g.\n%s", ds, len(wrong), strings.Join(wrong[:min(3, len(wrong))], "\n"))
	}
	if extra := len(got) - len(want) + len(missing); extra != 0 {
		t.Errorf("%s: topic has %d keys, %d valid rows in the source", ds, len(got), len(want))
	}
	n := 0
	for _, r := range dlq {
		if r.headers["govx-dataset"] != ds {
			continue
		}
		n++
		if r.headers["govx-source"] != cfg.Department || r.headers["govx-error"] == "" || r.value == nil {
			t.Errorf("%s: dead letter without source, reasons or native row: %+v", ds, r)
		}
		var reasons []map[string]string
		if err := json.Unmarshal([]byte(r.headers["govx-error"]), &reasons); err != nil || len(reasons) == 0 {
			t.Errorf("%s: govx-error %q is not a non-empty JSON list of reasons", ds, r.headers["govx-error"])
		}
	}
	if n != invalid {
		t.Errorf("%s: %d rows in the dead-letter topic, %d planted invalid", ds, n, invalid)
	}
	if len(want)+invalid != g.Count(dept) {
		t.Errorf("%s: counts do not reconcile: %d valid + %d invalid != %d source rows", ds, len(want), invalid, g.Count(dept))
	}
	t.Logf("%s: %d rows = %d published + %d dead letters", ds, g.Count(dept), len(got), n)
}

func datasetKey(t testing.TB, dataset string, rec map[string]any) string {
	t.Helper()
	ds, ok := catalog.Dataset(dataset)
	if !ok {
		t.Fatalf("no dataset %s", dataset)
	}
	k, err := ds.RecordKey(rec)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sqlOpenMySQL(user, pass, addr string) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = user, pass, "tcp", addr
	return sql.Open("mysql", cfg.FormatDSN())
}
