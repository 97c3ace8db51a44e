// Package server wires one exchange together from its configuration: the store and
// its snapshots, Kafka ingest, the policy engine, the audit spool (and its ClickHouse
// shipper), tokens, and the Flight and HTTP listeners. `govx exchange serve` and
// `govx demo` run it; tests start it in-process.
//
// Only cmd/govx and tests import it.
package server

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"govx/exchange/apply"
	"govx/exchange/audit"
	"govx/exchange/auth"
	xflight "govx/exchange/flight"
	"govx/exchange/httpapi"
	"govx/exchange/ingest"
	"govx/exchange/netopt"
	"govx/exchange/pki"
	"govx/exchange/policy"
	"govx/exchange/service"
	"govx/exchange/store"
	"govx/schemas"
)

// Exchange is a running exchange.
type Exchange struct {
	cfg      *Config
	log      *slog.Logger
	tables   map[string]*store.Table
	ingester *ingest.Ingester
	policy   *policy.Engine
	spool    *audit.Spool
	tokens   *auth.Tokens
	svc      *service.Service
	flight   *xflight.Server
	http     *http.Server
	flightLn net.Listener
	httpLn   net.Listener
	ops      *http.Server // nil without ops.listen
	opsLn    net.Listener
	console  *http.Server // nil without console.listen
	conLn    net.Listener
	revs     *pki.Revocations // nil without tls.crl
	cluster  string
	epoch    string // what cursors are bound to: the Kafka cluster id
	// written is, per dataset, the position (encoded cursor) of the snapshot file in
	// DataDir: a table still at it is not written again (snapshot).
	written     map[string]string
	noSnapshots bool // WithoutSnapshots
	ready       Readiness

	// apply runs the sharing application process; applyStore is its database.
	apply      *apply.Service
	applyStore *apply.Store

	// The parts (Flight, HTTP, ingest, snapshots) run under one supervisor: the first
	// to stop while the exchange is not closing sets err and closes done.
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error
	done    chan struct{}
	closing bool
}

// Option adjusts how Start builds the exchange.
type Option func(*options)

type options struct {
	log         *slog.Logger
	mem         memory.Allocator
	clock       func() time.Time
	noSnapshots bool
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithAllocator sets the Arrow allocator (tests pass a checked one).
func WithAllocator(m memory.Allocator) Option { return func(o *options) { o.mem = m } }

// WithClock sets the clock decisions and tickets use (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.clock = now } }

// WithoutSnapshots never writes the store to DataDir (neither every snapshot_interval
// nor at Close), for an exchange whose store is rebuilt from Kafka at every start anyway
// (govx demo: a new in-process broker each run), where a snapshot would be written and
// never read.
func WithoutSnapshots() Option { return func(o *options) { o.noSnapshots = true } }

// Start builds the exchange and starts serving; it returns once the listeners are
// bound. Readiness (caught up with Kafka) comes later: see Ready.
func Start(ctx context.Context, cfg *Config, opts ...Option) (*Exchange, error) {
	o := options{log: slog.Default(), mem: memory.DefaultAllocator, clock: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	p, err := prepare(cfg, o.log, false)
	if err != nil {
		return nil, err
	}
	cat, tlsConfig, revs := p.cat, p.tls, p.revs
	x := &Exchange{cfg: cfg, log: o.log, done: make(chan struct{}), written: map[string]string{}, noSnapshots: o.noSnapshots}
	applyMemoryLimit(cfg, o.log)
	ok := false
	defer func() {
		if !ok {
			x.Close()
		}
	}()
	secret, err := readOrCreateSecret(cfg.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("exchange secret: %w", err)
	}
	kcfg := ingest.Config{Brokers: cfg.Kafka.Brokers, TopicPrefix: cfg.Kafka.TopicPrefix}
	x.cluster, err = ingest.ClusterID(ctx, kcfg)
	if err != nil {
		return nil, fmt.Errorf("cannot reach Kafka (kafka.brokers %v): %w", cfg.Kafka.Brokers, err)
	}
	if x.tables, err = x.openTables(cat, o.mem); err != nil {
		return nil, err
	}

	popts := []policy.Option{policy.WithLogger(o.log)}
	if cfg.PoliciesDir != "" {
		popts = append(popts, policy.WithDir(cfg.PoliciesDir))
	}
	if x.policy, err = policy.New(cat, popts...); err != nil {
		return nil, err
	}
	if x.spool, err = openAudit(cfg, o.log); err != nil {
		return nil, err
	}
	// While the spool cannot write, every request is refused: say so to the load balancer
	// too, until the spool heals.
	x.ready.Check("audit", func() error {
		if err := x.spool.Writable(); err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), "audit: ")) // the check's name says it
		}
		return nil
	})
	x.tokens = auth.OpenTokens(cfg.TokensFile)
	// A damaged token file refuses every token holder: send them to another replica.
	x.ready.Check("tokens", x.tokens.Check)
	svcOpts := []service.Option{service.WithLogger(o.log), service.WithAllocator(o.mem), service.WithClock(o.clock),
		service.WithTicketTTL(cfg.TicketTTL), service.WithRateLimit(cfg.RateLimit.PerSecond, cfg.RateLimit.Burst),
		service.WithPullsInProgress(cfg.RateLimit.PullsInProgress), service.WithPullStallTimeout(cfg.RateLimit.PullStallTimeout),
		service.WithCursorEpoch(x.epoch), service.WithInstance(x.spool.Instance())}
	svc, err := service.New(cat, x.tables, x.policy, x.spool, secret, svcOpts...)
	if err != nil {
		return nil, err
	}
	x.svc = svc
	if revs != nil {
		// Checked at the handshake (a new connection) and at every call (a connection
		// opened before the revocation), and while the list cannot be used every client
		// certificate is refused: say so to the load balancer too.
		x.revs = revs
		x.tokens.CheckCertificates(revs.Check)
		x.ready.Check("tls.crl", revs.Err)
	}

	if x.flightLn, err = net.Listen("tcp", cfg.FlightAddr); err != nil {
		return nil, fmt.Errorf("flight_addr: %w", err)
	}
	if x.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("http_addr: %w", err)
	}
	x.httpLn = netopt.Listener(x.httpLn)
	if cfg.Ops.Listen != "" {
		if x.opsLn, err = net.Listen("tcp", cfg.Ops.Listen); err != nil {
			return nil, fmt.Errorf("ops.listen: %w", err)
		}
	}
	if cfg.Console.Listen != "" {
		if x.conLn, err = net.Listen("tcp", cfg.Console.Listen); err != nil {
			return nil, fmt.Errorf("console.listen: %w", err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(x.policy.Collectors()...)
	reg.MustRegister(auditCollectors(x.spool, cfg.Audit.ClickHouse.Addr != "")...)
	reg.MustRegister(svc.Collectors()...)
	// Each dataset is a readiness check of its own: catching up, waiting for Kafka or
	// stopped at a record the store cannot apply all turn /readyz not ready, saying so.
	kcfg.OnStatus = func(id string, err error) { x.ready.Set("ingest/"+id, err) }
	x.ingester = ingest.New(kcfg, cat, x.tables, o.log)
	reg.MustRegister(x.ingester.Collectors()...)
	if revs != nil {
		reg.MustRegister(crlCollectors(revs)...)
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	x.cancel = cancel
	hs := handshakes{svc: svc, log: o.log}
	x.flight = xflight.New(svc, x.tokens, tlsConfig, o.mem, xflight.WithAdvertise(cfg.FlightAdvertise, tlsConfig != nil),
		xflight.WithHandshakeErrors(hs.flight))
	var apiOpts []httpapi.Option
	if x.opsLn != nil && !cfg.Ops.AlsoOnAPI {
		apiOpts = append(apiOpts, httpapi.WithoutOps())
	}
	if err := x.startApplications(ctx, cat, reg); err != nil {
		return nil, err
	}
	api := httpapi.New(svc, x.tokens, x.ready.Err, reg, o.log, apiOpts...)
	api.MountApplications(x.apply)
	x.http = &http.Server{Handler: api, TLSConfig: tlsConfig,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
		// Refused handshakes (a revoked or foreign certificate) are counted and logged,
		// bounded, like Flight's; other lines go to the structured log.
		ErrorLog: log.New(hs.httpErrorLog(), "", 0)}
	if x.opsLn != nil {
		x.ops = &http.Server{Handler: httpapi.Ops(x.ready.Err, reg),
			ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
		x.goRun("ops", func() error {
			if err := x.ops.Serve(x.opsLn); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	if x.conLn != nil {
		if err := x.startConsole(cat, tlsConfig, secret, o); err != nil {
			return nil, err
		}
	}
	x.goRun("flight", func() error { return x.flight.Serve(x.flightLn) })
	x.goRun("http", func() error {
		var err error
		if tlsConfig != nil {
			err = x.http.ServeTLS(x.httpLn, "", "")
		} else {
			err = x.http.Serve(x.httpLn)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	x.goRun("ingest", func() error { return x.ingester.Run(runCtx) })
	if !x.noSnapshots {
		x.goRun("snapshots", func() error { x.snapshotLoop(runCtx); return nil })
	}
	x.goRun("masks", func() error { x.maskLoop(runCtx); return nil })
	x.goRun("corrections", func() error { x.closeCorrections(runCtx, time.Second); return nil })
	ok = true
	o.log.Info("exchange serving", "flight", x.FlightAddr(), "http", x.HTTPAddr(), "ops", x.OpsAddr(), "kafka_cluster", x.cluster,
		"policy_revision", x.policy.Revision(), "audit_instance", x.spool.Instance())
	return x, nil
}

// goRun runs one part of the exchange. Each part runs until Close: one that returns
// before, with an error or without, leaves the exchange serving half its API or stale
// data, so it fails the part's readiness check, sets Err and closes Done, and the
// process running the exchange is expected to close it and exit non-zero.
func (x *Exchange) goRun(name string, fn func() error) {
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		err := fn()
		x.mu.Lock()
		defer x.mu.Unlock()
		if x.closing {
			return
		}
		if err == nil {
			err = errors.New("stopped")
		}
		x.log.Error("exchange part stopped; the exchange must be restarted", "part", name, "err", err)
		x.ready.Set(name, err)
		if x.err == nil {
			x.err = fmt.Errorf("%s: %w", name, err)
			close(x.done)
		}
	}()
}

// Done returns a channel closed when a part of the exchange (Flight, HTTP, ingest,
// snapshots) stopped while the exchange was not closing; Err says which and why.
func (x *Exchange) Done() <-chan struct{} { return x.done }

// Err returns the first error that stopped a part of the exchange, if any.
func (x *Exchange) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

// Ready returns a channel closed once every dataset has caught up with Kafka for the
// first time. Whether the exchange is ready now is IsReady.
func (x *Exchange) Ready() <-chan struct{} { return x.ingester.Ready() }

// IsReady reports whether every readiness check passes now (see Readiness).
func (x *Exchange) IsReady() bool { return x.ready.Err() == nil }

// Readiness returns the checks behind /readyz. A part adds its own with one call, e.g.
// x.Readiness().Check("audit", spool.Writable).
func (x *Exchange) Readiness() *Readiness { return &x.ready }

// FlightAddr is the bound Flight address.
func (x *Exchange) FlightAddr() string { return x.flightLn.Addr().String() }

// HTTPAddr is the bound HTTP address.
func (x *Exchange) HTTPAddr() string { return x.httpLn.Addr().String() }

// OpsAddr is the bound operations address, or "" without ops.listen (the operations
// endpoints are then on HTTPAddr).
func (x *Exchange) OpsAddr() string {
	if x.opsLn == nil {
		return ""
	}
	return x.opsLn.Addr().String()
}

// ConsoleAddr is the bound console address, or "" without console.listen.
func (x *Exchange) ConsoleAddr() string {
	if x.conLn == nil {
		return ""
	}
	return x.conLn.Addr().String()
}

// Policy returns the policy engine (its revision, reloads).
func (x *Exchange) Policy() *policy.Engine { return x.policy }

// Spool returns the audit spool.
func (x *Exchange) Spool() *audit.Spool { return x.spool }

// Tables returns the store tables by dataset id.
func (x *Exchange) Tables() map[string]*store.Table { return x.tables }

// Close stops serving, writes a last snapshot and closes the audit spool (which ships
// what it can and checkpoints the chain head).
func (x *Exchange) Close() error {
	x.mu.Lock()
	x.closing = true
	x.mu.Unlock()
	if x.flight != nil {
		x.flight.Shutdown()
	}
	for _, srv := range []*http.Server{x.http, x.ops, x.console} {
		if srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			srv.Shutdown(ctx)
			cancel()
		}
	}
	for _, ln := range []net.Listener{x.flightLn, x.httpLn, x.opsLn, x.conLn} {
		if ln != nil {
			ln.Close()
		}
	}
	if x.cancel != nil {
		x.cancel()
	}
	x.wg.Wait()
	if x.svc != nil {
		x.svc.Wait()
	}
	var errs []error
	if x.tables != nil && x.ingester != nil && !x.noSnapshots {
		errs = append(errs, x.snapshot())
	}
	if x.policy != nil {
		errs = append(errs, x.policy.Close())
	}
	if x.applyStore != nil {
		errs = append(errs, x.applyStore.Close())
	}
	if x.spool != nil {
		errs = append(errs, x.spool.Close())
	}
	for _, t := range x.tables {
		t.Close()
	}
	return errors.Join(errs...)
}

const clusterFile = "kafka-cluster-id"

// openTables loads each dataset's snapshot when it was taken from this Kafka cluster,
// and starts empty otherwise: offsets of another cluster mean nothing here.
func (x *Exchange) openTables(cat *schemas.Catalog, mem memory.Allocator) (map[string]*store.Table, error) {
	want := map[string]bool{} // names checked by prepare
	for _, id := range x.cfg.Datasets {
		want[id] = true
	}
	if err := os.MkdirAll(x.cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	prev, _ := os.ReadFile(filepath.Join(x.cfg.DataDir, clusterFile))
	reuse := strings.TrimSpace(string(prev)) == x.cluster && x.cluster != ""
	if !reuse && len(prev) > 0 {
		x.log.Warn("kafka cluster changed since the last snapshot; rebuilding the store from the topics",
			"was", strings.TrimSpace(string(prev)), "now", x.cluster)
	}
	tables := map[string]*store.Table{}
	for _, d := range cat.Datasets() {
		if len(want) > 0 && !want[d.ID] {
			continue
		}
		dir := filepath.Join(x.cfg.DataDir, d.ID)
		if reuse {
			t, err := store.Open(d, dir, store.WithAllocator(mem))
			if err == nil {
				tables[d.ID] = t
				snap := t.Snapshot()
				x.written[d.ID] = string(snap.Cursor().Encode())
				snap.Release()
				continue
			}
			if !errors.Is(err, os.ErrNotExist) {
				x.log.Warn("store snapshot unreadable; rebuilding from Kafka", "dataset", d.ID, "err", err)
			}
		}
		os.RemoveAll(dir)
		tables[d.ID] = store.New(d, store.WithAllocator(mem))
	}
	if err := os.WriteFile(filepath.Join(x.cfg.DataDir, clusterFile), []byte(x.cluster+"\n"), 0o600); err != nil {
		return nil, err
	}
	// Cursors carry Kafka offsets, meaningful in this cluster only, and the same for
	// every replica and every rebuild reading it: the cluster id is their epoch.
	x.epoch = x.cluster
	return tables, nil
}

func (x *Exchange) snapshotLoop(ctx context.Context) {
	t := time.NewTicker(x.cfg.SnapshotInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := x.snapshot(); err != nil {
				x.log.Warn("store snapshot failed; will retry", "err", err)
			}
		}
	}
}

// snapshot writes every table that ingested something since its file was written. A
// table at the same position holds the same rows, so its file stands: rewriting it
// would copy the whole table (hundreds of MB at a million rows) and fsync it for
// nothing, every interval, stalling the audit spool's fsyncs and the lookups waiting on
// them while the exchange is idle or only serving.
func (x *Exchange) snapshot() error {
	var errs []error
	for id, t := range x.tables {
		snap := t.Snapshot()
		pos := string(snap.Cursor().Encode())
		if have, ok := x.written[id]; ok && have == pos {
			snap.Release()
			continue
		}
		dir := filepath.Join(x.cfg.DataDir, id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			snap.Release()
			errs = append(errs, err)
			continue
		}
		if err := snap.WriteTo(dir); err != nil {
			errs = append(errs, fmt.Errorf("snapshot %s: %w", id, err))
		} else {
			x.written[id] = pos
		}
		snap.Release()
	}
	return errors.Join(errs...)
}

func openAudit(cfg *Config, log *slog.Logger) (*audit.Spool, error) {
	if _, err := os.Stat(cfg.Audit.SigningKey); errors.Is(err, os.ErrNotExist) {
		if err := audit.GenerateKey(cfg.Audit.SigningKey, cfg.Audit.SigningKey+".pub"); err != nil {
			return nil, fmt.Errorf("audit signing key: %w", err)
		}
	}
	key, err := audit.LoadPrivateKey(cfg.Audit.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	opts := []audit.Option{audit.WithInstance(cfg.Audit.Instance), audit.WithLogger(log),
		audit.WithCheckpoints(key, cfg.Audit.Checkpoint, 10*time.Second)}
	if r := cfg.Audit.FreeSpaceReserve; r != nil {
		opts = append(opts, audit.WithFreeSpaceReserve(*r))
	}
	sink, err := clickHouseOf(cfg)
	if err != nil {
		return nil, err
	}
	if sink != nil {
		opts = append(opts, audit.WithSink(sink))
	}
	s, err := audit.OpenSpool(cfg.Audit.SpoolDir, opts...)
	if err != nil {
		return nil, fmt.Errorf("audit spool %s: %w", cfg.Audit.SpoolDir, err)
	}
	return s, nil
}

// crlCollectors expose the revocation list, so an alert fires before its next update
// passes and client certificates start being refused.
func crlCollectors(revs *pki.Revocations) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "govx_tls_crl_usable", Help: "1 while the client certificate revocation list is loaded and current; 0 while every client certificate is refused."},
			func() float64 {
				if revs.Err() != nil {
					return 0
				}
				return 1
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "govx_tls_crl_next_update_timestamp_seconds", Help: "When the loaded revocation list (the earliest, with several CAs) must be replaced by a fresh one (Unix time); 0 when none is loaded."},
			func() float64 {
				t := revs.NextUpdate()
				if t.IsZero() {
					return 0
				}
				return float64(t.Unix())
			}),
	}
}

// auditCollectors exposes the audit spool: appends and fsyncs (group commit at work),
// and, with ClickHouse configured, the events not yet shipped — the backlog an operator
// watches during a ClickHouse outage.
func auditCollectors(sp *audit.Spool, shipping bool) []prometheus.Collector {
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "govx_audit_appends_total", Help: "Audit events appended durably to the spool."},
			func() float64 { a, _ := sp.Stats(); return float64(a) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "govx_audit_fsyncs_total", Help: "Spool fsyncs (many events share one: group commit)."},
			func() float64 { _, f := sp.Stats(); return float64(f) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "govx_audit_writable", Help: "1 while the audit spool accepts events; 0 while it cannot write (requests are refused until it heals)."},
			func() float64 {
				if sp.Writable() != nil {
					return 0
				}
				return 1
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "govx_audit_checkpoint_failures_total", Help: "Periodic audit checkpoints that could not be written to the checkpoint file; while it rises, new events are covered by no signature."},
			func() float64 { return float64(sp.CheckpointFailures()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "govx_audit_spool_bytes", Help: "Bytes held in the audit spool's segment files."},
			func() float64 { return float64(sp.SpoolBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "govx_audit_free_space_margin_bytes", Help: "Free bytes on the spool's file system above the reserve; at or below 0 requests are refused."},
			func() float64 { return float64(sp.FreeSpaceMargin()) }),
	}
	if shipping {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "govx_audit_unshipped_events", Help: "Audit events in the spool not yet acknowledged by ClickHouse."},
			func() float64 { return float64(sp.Committed() - sp.Shipped()) }))
	}
	return cs
}
