package main

// End-to-end tests: synthetic department databases (SQLite) → the four example
// connectors → real Kafka → the exchange (audit to real ClickHouse) → real clients (the
// Go client here, pyarrow in testdata/e2e/test_flight.py, the subject views over HTTP in
// testdata/e2e/test_subject.py). e2e_policy_test.go walks
// every rule of the shipped policy through the same running system.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/segmentio/kafka-go"

	"govx/connectors"
	"govx/connectors/examples"
	_ "govx/connectors/sqlsrc"
	"govx/connectors/synth"
	"govx/exchange/client"
	"govx/exchange/server"
	"govx/exchange/server/servertest"
	"govx/internal/testenv"
	"govx/policies"
)

const (
	e2eScale     = 3000
	e2eSeed      = 20261126
	purposeDibao = "minimum-living-allowance-review"
)

// e2eEnv is one running system: sources, connectors, Kafka topics, the exchange.
type e2eEnv struct {
	t       *testing.T
	dir     string
	sources string
	gen     *synth.Generator
	brokers string
	prefix  string
	conns   []*connectors.Connector
	cfg     *server.Config
	x       *server.Exchange
	mem     *memory.CheckedAllocator
	ch      clickhouse.Conn
	chDB    string
	tokens  map[string]string
	// frozen, when set, is the exchange's clock (Unix nanoseconds); zero is real time.
	frozen atomic.Int64
}

func (e *e2eEnv) now() time.Time {
	if n := e.frozen.Load(); n != 0 {
		return time.Unix(0, n).UTC()
	}
	return time.Now()
}

// setClock freezes the exchange's clock at tm; the zero time returns it to real time.
func (e *e2eEnv) setClock(tm time.Time) {
	if tm.IsZero() {
		e.frozen.Store(0)
		return
	}
	e.frozen.Store(tm.UnixNano())
}

func e2eSuffix() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// startE2E generates the sources, runs the connectors to the end of their snapshots and
// starts the exchange with a copy of the shipped policies, ready to serve.
func startE2E(t *testing.T) *e2eEnv {
	t.Helper()
	e := &e2eEnv{t: t, dir: t.TempDir(), tokens: map[string]string{}}
	e.brokers = testenv.Require(t, testenv.Kafka)
	chAddr := testenv.Require(t, testenv.ClickHouse)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	// Sources.
	e.sources = filepath.Join(e.dir, "sources")
	g, err := synth.New(synth.Options{Scale: e2eScale, Seed: e2eSeed, InvalidRate: synth.DefaultInvalidRate})
	if err != nil {
		t.Fatal(err)
	}
	e.gen = g
	w, err := synth.Open(ctx, "sqlite:"+e.sources)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := synth.Generate(ctx, g, w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()

	// Connectors, on topics of their own.
	e.prefix = "govxe2e" + e2eSuffix() + "."
	t.Setenv("GOVX_DATA_DIR", e.sources)
	t.Setenv("GOVX_KAFKA_BROKERS", e.brokers)
	runCtx, stopConns := context.WithCancel(ctx)
	errc := make(chan error, len(synth.Departments()))
	for _, dept := range synth.Departments() {
		name := dept + ".sqlite.yaml"
		raw, err := examples.FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := connectors.ParseConfig(name, raw)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Kafka.Brokers = []string{e.brokers}
		c, err := connectors.New(cfg, connectors.WithLogger(log.With("connector", dept)), connectors.WithTopicPrefix(e.prefix))
		if err != nil {
			t.Fatal(err)
		}
		e.conns = append(e.conns, c)
		go func() { errc <- c.Run(runCtx) }()
	}
	var stopped bool
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		stopConns()
		for range e.conns {
			if err := <-errc; err != nil {
				t.Errorf("connector stopped with an error: %v", err)
			}
		}
	}
	t.Cleanup(func() {
		stop()
		deleteE2ETopics(e.brokers, e.prefix)
	})
	deadline := time.After(60 * time.Second)
	for _, c := range e.conns {
		select {
		case <-c.Ready():
		case err := <-errc:
			stopped = true
			t.Fatalf("a connector stopped before its snapshot ended: %v", err)
		case <-deadline:
			t.Fatalf("connector %s: snapshot not done within 60s (progress %+v)", c.Config().Name, c.Progress())
		}
	}
	// Nothing is dropped silently: every planted invalid row went to the DLQ, every
	// other row to the dataset's topic.
	for _, c := range e.conns {
		p, dept := c.Progress(), c.Config().Department
		planted := int64(len(g.PlantedInvalid(dept)))
		if p.Invalid != planted || p.Published != int64(g.Count(dept))-planted {
			t.Fatalf("connector %s: %d published, %d to the DLQ; the source has %d rows of which %d planted invalid",
				dept, p.Published, p.Invalid, g.Count(dept), planted)
		}
	}

	// The exchange, auditing to a fresh ClickHouse database.
	e.chDB = "govx_e2e_" + e2eSuffix()
	e.ch, err = clickhouse.Open(&clickhouse.Options{Addr: []string{chAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.ch.Exec(context.Background(), "DROP DATABASE IF EXISTS "+e.chDB)
		e.ch.Close()
	})
	cfg := server.Defaults(filepath.Join(e.dir, "exchange"))
	cfg.FlightAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Kafka.Brokers = []string{e.brokers}
	cfg.Kafka.TopicPrefix = e.prefix
	cfg.PoliciesDir = filepath.Join(e.dir, "policies")
	cfg.Audit.ClickHouse.Addr = chAddr
	cfg.Audit.ClickHouse.Database = e.chDB
	if err := policies.CopyEmbedded(cfg.PoliciesDir); err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg
	e.mem = memory.NewCheckedAllocator(memory.NewGoAllocator())
	x, err := server.Start(ctx, cfg, server.WithAllocator(e.mem), server.WithClock(e.now), server.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	e.x = x
	t.Cleanup(func() {
		if err := x.Close(); err != nil {
			t.Errorf("exchange close: %v", err)
		}
		e.mem.AssertSize(t, 0)
	})
	select {
	case <-x.Ready():
	case <-time.After(60 * time.Second):
		t.Fatalf("exchange not caught up with Kafka after 60s (err: %v)", x.Err())
	}
	return e
}

func deleteE2ETopics(brokers, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(brokers), Timeout: 10 * time.Second}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return
	}
	var names []string
	for _, tp := range md.Topics {
		if strings.HasPrefix(tp.Name, prefix) {
			names = append(names, tp.Name)
		}
	}
	if len(names) > 0 {
		c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: names})
	}
}

// token issues (once) a token for subject "dept/system".
func (e *e2eEnv) token(subject string) string {
	if tok, ok := e.tokens[subject]; ok {
		return tok
	}
	tok := servertest.Token(e.t, e.cfg.TokensFile, subject)
	e.tokens[subject] = tok
	return tok
}

func (e *e2eEnv) client(subject string) *client.Client {
	c, err := client.New(client.Config{Flight: e.x.FlightAddr(), HTTP: "http://" + e.x.HTTPAddr(), Token: e.token(subject)})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// flushAudit ships every spooled audit event to ClickHouse.
func (e *e2eEnv) flushAudit() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.x.Spool().Flush(ctx); err != nil {
		e.t.Fatalf("audit flush to ClickHouse: %v", err)
	}
}

// auditCount counts distinct decision events in ClickHouse matching where.
func (e *e2eEnv) auditCount(where string) uint64 {
	var n uint64
	q := "SELECT uniqExact(event_id) FROM " + e.chDB + ".access_log WHERE kind = 'decision' AND " + where
	if err := e.ch.QueryRow(context.Background(), q).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestIntegrationPyarrow(t *testing.T) {
	python := testenv.Require(t, testenv.Python)
	e := startE2E(t)
	subjects := []string{"mz-3301/dibao-review", "mz-3201/case-system", "zj-3205/housing-security", "sw-33/tax"}
	toks := map[string]string{}
	for _, s := range subjects {
		toks[s] = e.token(s)
	}
	tokFile := filepath.Join(e.dir, "tokens.json")
	raw, _ := json.Marshal(toks)
	if err := os.WriteFile(tokFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs(filepath.Join("testdata", "e2e", "test_flight.py"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, script,
		"--flight", e.x.FlightAddr(), "--http", "http://"+e.x.HTTPAddr(), "--sources", e.sources, "--tokens", tokFile,
		"--expect-invalid-persons", fmt.Sprint(len(e.gen.PlantedInvalid(synth.DeptPopulation))),
		"--expect-invalid-orgs", fmt.Sprint(len(e.gen.PlantedInvalid(synth.DeptMarket))))
	out, err := cmd.CombinedOutput()
	t.Logf("test_flight.py:\n%s", out)
	if err != nil {
		t.Fatalf("test_flight.py failed (%v); its output above says which check", err)
	}

	// The subject views (一号式) over HTTP, every value against the source tables.
	script, err = filepath.Abs(filepath.Join("testdata", "e2e", "test_subject.py"))
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.CommandContext(ctx, python, script, "--http", "http://"+e.x.HTTPAddr(), "--sources", e.sources, "--tokens", tokFile)
	out, err = cmd.CombinedOutput()
	t.Logf("test_subject.py:\n%s", out)
	if err != nil {
		t.Fatalf("test_subject.py failed (%v); its output above says which check", err)
	}

	// Every pull the script made, allowed or denied, is in the audit log in ClickHouse.
	e.flushAudit()
	for _, c := range []struct {
		what, where string
		min         uint64
	}{
		{"allowed population pulls by mz-3301 (Flight and HTTP)", "department = 'mz-3301' AND dataset = 'population.person' AND action = 'read' AND decision = 'allow'", 3},
		{"allowed population pull by mz-3201", "department = 'mz-3201' AND dataset = 'population.person' AND decision = 'allow'", 1},
		{"denied pulls by zj-3205 with reason no_agreement", "department = 'zj-3205' AND dataset = 'population.person' AND decision = 'deny' AND has(reasons, 'no_agreement')", 2},
		{"catalog discover decisions", "action = 'discover'", 8},
	} {
		if n := e.auditCount(c.where); n < c.min {
			t.Errorf("audit log in ClickHouse: %d %s, want at least %d", n, c.what, c.min)
		}
	}
}

// codes is the error's stable code followed by its policy reason codes, comma-joined;
// "<nil>" when err is nil.
func codes(err error) string {
	if err == nil {
		return "<nil>"
	}
	var ce *client.Error
	if errors.As(err, &ce) {
		out := []string{ce.Code}
		for _, r := range ce.Reasons {
			out = append(out, r.Code)
		}
		return strings.Join(out, ",")
	}
	return "unclassified: " + err.Error()
}
