package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/segmentio/kafka-go"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"
	"golang.org/x/term"

	"govx/connectors"
	"govx/connectors/examples"
	_ "govx/connectors/filesrc" // the demo and `govx connector` read every source kind
	_ "govx/connectors/sqlsrc"
	"govx/connectors/synth"
	"govx/exchange"
	"govx/exchange/audit"
	"govx/exchange/auth"
	"govx/exchange/server"
	"govx/exchange/store"
	"govx/policies"
	"govx/schemas"
	"govx/schemas/ident"
)

type demoOptions struct {
	dir        string
	scale      int
	seed       uint64
	kafka      string
	clickhouse string
	flightAddr string
	httpAddr   string
	console    string
	pprof      string
}

func init() {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole exchange in one process on embedded defaults",
		Long: `Run everything in one process: generate the five providing departments' databases
(SQLite, once), start an in-process Kafka-protocol broker (or use --kafka), run the five
connectors, start the exchange (Flight and HTTP on 127.0.0.1) with the shipped policies,
issue tokens for the consumer departments, and audit to a local spool (or ClickHouse with
--clickhouse). When everything is ready it prints what to try next. Ctrl-C stops it.

A second run reuses the generated databases and starts everything else afresh.`,
		Example: "  go run ./cmd/govx demo\n  govx demo --dir /tmp/govx-demo --scale 1000000\n  govx demo --kafka 127.0.0.1:9092 --clickhouse 127.0.0.1:9000",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, o, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.dir, "dir", "govx-demo", "where the demo keeps its databases, tokens, profiles, store and audit spool")
	fl.IntVar(&o.scale, "scale", 5000, "persons to generate (organizations, parcels and indicators scale from it)")
	fl.Uint64Var(&o.seed, "seed", 1, "seed of the generated data")
	fl.StringVar(&o.kafka, "kafka", "", "use this Kafka cluster (host:port,…) instead of the in-process broker")
	fl.StringVar(&o.clickhouse, "clickhouse", "", "ship the audit log to this ClickHouse (host:port of its native protocol)")
	fl.StringVar(&o.flightAddr, "flight", "127.0.0.1:8815", "the exchange's Flight address")
	fl.StringVar(&o.httpAddr, "http", "127.0.0.1:8080", "the exchange's HTTP address")
	fl.StringVar(&o.console, "console", "127.0.0.1:8090", "the web console's address (empty: no console)")
	fl.StringVar(&o.pprof, "pprof", "", "serve the process's Go profiles and execution traces (/debug/pprof/) on this loopback address, e.g. 127.0.0.1:6060 (empty: none)")
	rootCmd.AddCommand(cmd)
}

func runDemo(ctx context.Context, o demoOptions, out io.Writer) error {
	started := time.Now()
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(dir, "demo.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := slog.New(slog.NewJSONHandler(logFile, nil))
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	say("govx demo in %s (logs: %s)", dir, logFile.Name())
	if o.pprof != "" {
		addr, stop, err := servePprof(o.pprof)
		if err != nil {
			return err
		}
		defer stop()
		say("pprof: http://%s/debug/pprof/ (e.g. go tool pprof http://%s/debug/pprof/profile?seconds=10)", addr, addr)
	}

	sources := filepath.Join(dir, "sources")
	if err := ensureSources(ctx, sources, o, out); err != nil {
		return err
	}

	brokers, prefix := o.kafka, "govx."
	if brokers == "" {
		cluster, err := startBroker()
		if err != nil {
			return err
		}
		defer cluster.Close()
		brokers = strings.Join(cluster.ListenAddrs(), ",")
		say("kafka: in-process broker at %s (try: kcat -b %s -L)", brokers, brokers)
	} else {
		// A real cluster keeps topics between runs: use the demo's own topics and start
		// them empty, so nothing stale is served.
		prefix = "govxdemo."
		if err := deleteTopics(ctx, brokers, prefix); err != nil {
			return fmt.Errorf("kafka %s: %w", brokers, err)
		}
		say("kafka: %s (topics %s*)", brokers, prefix)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	conns, connErr, err := startConnectors(runCtx, sources, brokers, prefix, log)
	if err != nil {
		return err
	}
	if err := waitConnectors(ctx, conns, connErr, out); err != nil {
		return err
	}

	xdir := filepath.Join(dir, "exchange")
	kept, err := freshExchangeDir(xdir, time.Now())
	if err != nil {
		return err
	}
	for _, k := range kept {
		say("audit: the previous run's audit log is kept in %s", k)
	}
	cfg := server.Defaults(xdir)
	cfg.Kafka.Brokers = strings.Split(brokers, ",")
	cfg.Kafka.TopicPrefix = prefix
	cfg.FlightAddr, cfg.HTTPAddr = o.flightAddr, o.httpAddr
	cfg.Console.Listen = o.console
	// The demo's policies live in DIR/policies, so a steward's edit there takes effect on
	// the running exchange; each run starts from the shipped ones.
	cfg.PoliciesDir = filepath.Join(dir, "policies")
	if err := os.RemoveAll(cfg.PoliciesDir); err != nil {
		return err
	}
	if err := policies.CopyEmbedded(cfg.PoliciesDir); err != nil {
		return err
	}
	// The licences were signed with keys derived from the seed; the shipped issuers data
	// holds seed 1's, so write the ones this run's licences verify with.
	if err := os.WriteFile(filepath.Join(cfg.PoliciesDir, "issuers.yaml"), synth.IssuersYAML(o.seed), 0o644); err != nil {
		return err
	}
	if o.clickhouse != "" {
		cfg.Audit.ClickHouse.Addr = o.clickhouse
	}
	// Each run rebuilds the store from topics started afresh (freshExchangeDir empties
	// the store's directory): a snapshot would never be read, and writing one copies and
	// fsyncs the whole store, stalling lookups at a million persons.
	x, err := server.Start(ctx, cfg, server.WithLogger(log), server.WithoutSnapshots())
	if err != nil {
		return err
	}
	defer x.Close()
	select {
	case <-x.Ready():
	case <-ctx.Done():
		return nil
	case <-x.Done():
		return fmt.Errorf("the exchange stopped: %w; see %s", x.Err(), logFile.Name())
	case <-time.After(10 * time.Minute):
		return errors.New("the exchange did not catch up with Kafka within 10 minutes; see " + logFile.Name())
	}
	profiles, err := issueDemoTokens(dir, cfg, x)
	if err != nil {
		return err
	}
	ready := time.Since(started)
	say("ready in %.1fs: Flight grpc://%s, HTTP http://%s, audit %s", ready.Seconds(), x.FlightAddr(), x.HTTPAddr(), auditWhere(cfg))
	if err := printTryNext(out, dir, cfg, x, profiles); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(dir, "ready"), []byte(fmt.Sprintf("%.3f\n", ready.Seconds())), 0o644)
	select {
	case <-ctx.Done():
	case err := <-connErr:
		if err != nil {
			return fmt.Errorf("a connector stopped: %w", err)
		}
	case <-x.Done():
		return fmt.Errorf("the exchange stopped: %w", x.Err())
	}
	say("stopping")
	os.Remove(filepath.Join(dir, "ready"))
	return nil
}

// The demo exchange's audit files (server.Defaults) and how a run's are kept.
var demoAuditFiles = []string{"audit-spool", "audit.checkpoints", "audit.key.pub"}

// freshExchangeDir empties the demo exchange's directory for a new run, but never
// deletes an audit log: the previous run's spool, its signed checkpoints and the
// public key they verify with are moved aside with the time as a suffix
// (audit-spool.20261129T034000Z, …), and earlier runs' kept ones stay. It returns the
// spools it moved aside now.
func freshExchangeDir(xdir string, now time.Time) ([]string, error) {
	// A demo still running in this directory owns its spool: moving it would split that
	// demo's chain between two directories.
	if spool := filepath.Join(xdir, demoAuditFiles[0]); audit.InUse(spool) {
		return nil, fmt.Errorf("another govx demo (or exchange) is running with its audit spool in %s: stop it first, or give this demo its own --dir", spool)
	}
	suffix := "." + now.UTC().Format("20060102T150405Z")
	for n := 2; ; n++ { // two runs within a second keep both
		if _, err := os.Lstat(filepath.Join(xdir, demoAuditFiles[0]+suffix)); errors.Is(err, os.ErrNotExist) {
			break
		}
		suffix = fmt.Sprintf(".%sZ-%d", now.UTC().Format("20060102T150405"), n)
	}
	var kept []string
	for _, name := range demoAuditFiles {
		from := filepath.Join(xdir, name)
		if _, err := os.Lstat(from); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := os.Rename(from, from+suffix); err != nil {
			return nil, fmt.Errorf("keeping the previous audit log: %w", err)
		}
		if name == demoAuditFiles[0] {
			kept = append(kept, from+suffix)
		}
	}
	entries, err := os.ReadDir(xdir)
	if errors.Is(err, os.ErrNotExist) {
		return kept, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if isKeptAudit(e.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(xdir, e.Name())); err != nil {
			return nil, err
		}
	}
	return kept, nil
}

func isKeptAudit(name string) bool {
	for _, a := range demoAuditFiles {
		if strings.HasPrefix(name, a+".") && len(name) > len(a)+1 && name[len(a)+1] >= '0' && name[len(a)+1] <= '9' {
			return true
		}
	}
	return false
}

func auditWhere(cfg *server.Config) string {
	if cfg.Audit.ClickHouse.Addr != "" {
		return "ClickHouse " + cfg.Audit.ClickHouse.Addr
	}
	return "spool " + cfg.Audit.SpoolDir
}

// ensureSources generates the SQLite databases unless the ones in dir were generated
// with the same scale and seed.
func ensureSources(ctx context.Context, dir string, o demoOptions, out io.Writer) error {
	marker := filepath.Join(dir, "generated.json")
	// The departments are part of the marker: sources generated before a register was
	// added lack its database, and its connector would fail on them.
	want, _ := json.Marshal(map[string]any{"scale": o.scale, "seed": o.seed, "departments": synth.Departments()})
	if have, err := os.ReadFile(marker); err == nil && string(have) == string(want) {
		fmt.Fprintf(out, "sources: reusing the databases in %s\n", dir)
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(out, "sources: generating %d persons into %s\n", o.scale, dir)
	if err := runGen(ctx, synth.DefaultOptions(o.scale, o.seed), "sqlite:"+dir, io.Discard, os.Stderr); err != nil {
		return err
	}
	return os.WriteFile(marker, want, 0o644)
}

func startBroker() (*kfake.Cluster, error) {
	// The usual Kafka port when it is free, so `kcat -b 127.0.0.1:9092` just works.
	port := 9092
	if ln, err := net.Listen("tcp", "127.0.0.1:9092"); err != nil {
		port = 0
	} else {
		ln.Close()
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port))
	if err != nil {
		return nil, fmt.Errorf("in-process kafka broker: %w", err)
	}
	return c, nil
}

func deleteTopics(ctx context.Context, brokers, prefix string) error {
	c := &kafka.Client{Addr: kafka.TCP(strings.Split(brokers, ",")...), Timeout: 10 * time.Second}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return err
	}
	var names []string
	for _, t := range md.Topics {
		if strings.HasPrefix(t.Name, prefix) {
			names = append(names, t.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	_, err = c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: names})
	if err != nil {
		return err
	}
	// Deletion is asynchronous: wait until the topics are gone before recreating them.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		gone := err == nil
		if err == nil {
			for _, t := range md.Topics {
				if t.Error == nil {
					gone = false
				}
			}
		}
		if gone {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("topics %v were not deleted within 30s", names)
}

func startConnectors(ctx context.Context, sources, brokers, prefix string, log *slog.Logger) ([]*connectors.Connector, <-chan error, error) {
	os.Setenv("GOVX_DATA_DIR", sources)
	os.Setenv("GOVX_KAFKA_BROKERS", brokers)
	var conns []*connectors.Connector
	for _, dept := range synth.Departments() {
		name := dept + ".sqlite.yaml"
		data, err := examples.FS.ReadFile(name)
		if err != nil {
			return nil, nil, err
		}
		cfg, err := connectors.ParseConfig(name, data)
		if err != nil {
			return nil, nil, err
		}
		cfg.Kafka.Brokers = strings.Split(brokers, ",")
		c, err := connectors.New(cfg, connectors.WithLogger(log.With("connector", dept)), connectors.WithTopicPrefix(prefix))
		if err != nil {
			return nil, nil, err
		}
		conns = append(conns, c)
	}
	errc := make(chan error, len(conns))
	for _, c := range conns {
		go func() {
			err := c.Run(ctx)
			if errors.Is(err, context.Canceled) {
				err = nil
			}
			errc <- err
		}()
	}
	return conns, errc, nil
}

func waitConnectors(ctx context.Context, conns []*connectors.Connector, errc <-chan error, out io.Writer) error {
	tty := false
	if f, ok := out.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for i := range conns {
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case err := <-errc:
				if err == nil {
					err = errors.New("stopped early")
				}
				return fmt.Errorf("connector: %w", err)
			case <-conns[i].Ready():
			case <-tick.C:
				if tty {
					var parts []string
					for _, c := range conns {
						p := c.Progress()
						parts = append(parts, fmt.Sprintf("%s %d rows", c.Config().Department, p.Published))
					}
					fmt.Fprintf(out, "\rconnectors: %s   ", strings.Join(parts, ", "))
				}
				continue
			}
			break
		}
	}
	if tty {
		fmt.Fprintln(out)
	}
	var parts []string
	for _, c := range conns {
		p := c.Progress()
		parts = append(parts, fmt.Sprintf("%s→%s %d published, %d invalid to the DLQ", c.Config().Department, c.Config().Dataset, p.Published, p.Invalid))
	}
	fmt.Fprintf(out, "connectors: snapshots done: %s\n", strings.Join(parts, "; "))
	return nil
}

// issueDemoTokens issues a token for each consumer department's "demo" system and
// writes its token file and client profile.
func issueDemoTokens(dir string, cfg *server.Config, x *server.Exchange) (map[string]string, error) {
	b := x.Policy().Bundle()
	cat, err := schemas.Load()
	if err != nil {
		return nil, err
	}
	providers := map[string]bool{}
	for _, d := range cat.Datasets() {
		providers[d.Provider.Code] = true
	}
	tokens := auth.OpenTokens(cfg.TokensFile)
	profiles := map[string]string{}
	for _, sub := range []string{"tokens", "profiles"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	for _, d := range b.Departments {
		if providers[d.Code] {
			continue
		}
		system := demoSystem(b, d.Code)
		tok, _, err := tokens.Issue(exchange.Subject{Department: d.Code, System: system}, "govx demo")
		if err != nil {
			return nil, err
		}
		tf := filepath.Join(dir, "tokens", d.Code+".token")
		if err := os.WriteFile(tf, []byte(tok+"\n"), 0o600); err != nil {
			return nil, err
		}
		pf := filepath.Join(dir, "profiles", d.Code+".yaml")
		prof := fmt.Sprintf("# %s (%s), system %s\nflight: %s\nhttp: http://%s\ntoken: %s\n", d.Name, d.Code, system, x.FlightAddr(), x.HTTPAddr(), tok)
		if err := os.WriteFile(pf, []byte(prof), 0o600); err != nil {
			return nil, err
		}
		profiles[d.Code] = pf
	}
	return profiles, nil
}

// demoSystem names a department's demo system: the one its agreements name, if any, so
// the printed commands run as the system an agreement actually grants.
func demoSystem(b *policies.Bundle, dept string) string {
	for _, a := range b.Agreements {
		if a.Consumer == dept && a.System != "" {
			return a.System
		}
	}
	return "demo"
}

// decisionLine describes, for the list of commands to try, what the policy decides when
// subject reads dataset for purpose at now: the agreement, the columns, the row scope
// and the masks, or the reasons for a refusal. It asks the policy the exchange runs, so
// the line says what the printed command gets, whatever the agreements say.
// decider is what the banner needs of the running policy (exchange/policy's engine): the
// service, which wraps it for requests, stays behind the edges.
type decider interface {
	Decide(ctx context.Context, req exchange.Request) exchange.Decision
}

func decisionLine(ctx context.Context, pol decider, b *policies.Bundle, subject exchange.Subject, dataset, purpose string, now time.Time) string {
	who := subject.Department
	for _, d := range b.Departments {
		if d.Code == subject.Department {
			who = d.Name + " (" + d.Code + ")"
		}
	}
	dec := pol.Decide(ctx, exchange.Request{Subject: subject, Action: exchange.ActionRead, Dataset: dataset, Purpose: purpose, Time: now})
	if !dec.Allow {
		codes := make([]string, len(dec.Reasons))
		for i, r := range dec.Reasons {
			codes[i] = r.Code
		}
		return fmt.Sprintf("# Denied to %s, reading %s for %s: %s", who, dataset, purpose, strings.Join(codes, ", "))
	}
	rows := "all rows"
	if len(dec.RowFilter) > 0 {
		var conds []string
		for _, f := range dec.RowFilter {
			cond := fmt.Sprintf("%s %s %v", f.Column, f.Op, f.Value)
			// A region prefix reads better with the region's name (3301: 杭州市).
			if v, ok := f.Value.(string); ok && f.Op == exchange.OpPrefix && len(v) <= 6 && len(v)%2 == 0 {
				if r, ok := ident.LookupRegion(v + strings.Repeat("0", 6-len(v))); ok {
					cond = r.Name + " (" + cond + ")"
				}
			}
			conds = append(conds, cond)
		}
		rows = "rows in " + strings.Join(conds, " and ")
	}
	masked := "nothing masked"
	var ms []string
	for _, c := range dec.Columns {
		if m, ok := dec.Masks[c]; ok {
			ms = append(ms, c+" ("+m+")")
		}
	}
	if len(ms) > 0 {
		masked = "masked: " + strings.Join(ms, ", ")
	}
	return fmt.Sprintf("# Granted to %s by %s: %s; %s; %s:", who, dec.Agreement, strings.Join(dec.Columns, ", "), rows, masked)
}

// sampleLicence returns the number and content digest of a licence in force, read from
// the exchange's store: what a citizen's copy would show, for the README's 证照核验.
func sampleLicence(x *server.Exchange) (no, digest string, err error) {
	t, ok := x.Tables()["license.certificate"]
	if !ok {
		return "", "", errors.New("license.certificate is not served")
	}
	snap := t.Snapshot()
	defer snap.Release()
	spec := store.Spec{Columns: []string{"licence_no", "content_digest", "valid_until"}, Filter: []exchange.Filter{
		{Column: "status", Op: exchange.OpEq, Value: "valid"}}}
	errFound := errors.New("found")
	// In force today: marked valid, and with no end or an end to come (a licence past
	// its valid_until verifies as expired whatever its status column says).
	today := arrow.Date32FromTime(time.Now())
	err = snap.Scan(context.Background(), spec, func(rec arrow.Record) error {
		until := rec.Column(2).(*array.Date32)
		for i := 0; i < int(rec.NumRows()); i++ {
			if until.IsNull(i) || until.Value(i) > today+30 {
				no = rec.Column(0).(*array.String).Value(i)
				digest = rec.Column(1).(*array.String).Value(i)
				return errFound
			}
		}
		return nil
	})
	if errors.Is(err, errFound) {
		return no, digest, nil
	}
	if err == nil {
		err = errors.New("no licence in force")
	}
	return "", "", err
}

// samplePerson returns the id_number, name and birth date of a live person whose
// household region starts with prefix, read from the exchange's store.
func samplePerson(x *server.Exchange, prefix string) (id, name, birth string, err error) {
	t, ok := x.Tables()["population.person"]
	if !ok {
		return "", "", "", errors.New("population.person is not served")
	}
	snap := t.Snapshot()
	defer snap.Release()
	spec := store.Spec{Columns: []string{"id_number", "name", "birth_date"}, Filter: []exchange.Filter{
		{Column: "household_region", Op: exchange.OpPrefix, Value: prefix}, {Column: "status", Op: exchange.OpEq, Value: "alive"}}}
	errFound := errors.New("found")
	err = snap.Scan(context.Background(), spec, func(rec arrow.Record) error {
		if rec.NumRows() == 0 {
			return nil
		}
		id = rec.Column(0).(*array.String).Value(0)
		name = rec.Column(1).(*array.String).Value(0)
		birth = rec.Column(2).(*array.Date32).Value(0).FormattedString()
		return errFound
	})
	if errors.Is(err, errFound) {
		return id, name, birth, nil
	}
	if err == nil {
		err = fmt.Errorf("no person in region %s*", prefix)
	}
	return "", "", "", err
}

func printTryNext(out io.Writer, dir string, cfg *server.Config, x *server.Exchange, profiles map[string]string) error {
	hzID, _, _, err := samplePerson(x, "3301")
	if err != nil {
		return err
	}
	nbID, nbName, nbBirth, err := samplePerson(x, "3302")
	if err != nil {
		return err
	}
	purpose := "minimum-living-allowance-review"
	// The README's walkthroughs read this key, so they work whatever the seed.
	if err := os.WriteFile(filepath.Join(dir, "sample-person"), []byte(hzID+"\n"), 0o644); err != nil {
		return err
	}
	// A licence copy to check (证照核验): its number and the digest printed on it.
	licNo, licDigest, err := sampleLicence(x)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sample-licence"), []byte(licNo+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sample-licence-digest"), []byte(licDigest+"\n"), 0o644); err != nil {
		return err
	}
	// Its record as the register holds it, for `govx audit subject --record`: the demo
	// stands in for the population register's steward, who would hand it to an auditor
	// answering the person.
	snap := x.Tables()["population.person"].Snapshot()
	rec, _ := snap.Lookup(hzID)
	snap.Release()
	recJSON, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sample-person.json"), append(recJSON, '\n'), 0o644); err != nil {
		return err
	}
	tokenFile := filepath.Join(dir, "tokens", "mz-3301.token")
	script := filepath.Join(dir, "pull.py")
	py := fmt.Sprintf(`import json, pyarrow.flight as flight
client = flight.connect("grpc://%s", generic_options=[("grpc.max_receive_message_length", -1)])
opts = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer " + open(%q).read().strip().encode())])
info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps({"dataset": "population.person", "purpose": %q})), opts)
print(client.do_get(info.endpoints[0].ticket, opts).read_all().slice(0, 5).to_pylist())
`, x.FlightAddr(), tokenFile, purpose)
	if err := os.WriteFile(script, []byte(py), 0o644); err != nil {
		return err
	}
	authorityProfile, err := seedApplications(context.Background(), dir, cfg, x, hzID, nbID)
	if err != nil {
		return err
	}
	p := func(dept string) string { return profiles[dept] }
	b := x.Policy().Bundle()
	decision := func(dept string) string {
		subject := exchange.Subject{Department: dept, System: demoSystem(b, dept)}
		return decisionLine(context.Background(), x.Policy(), b, subject, "population.person", purpose, time.Now())
	}
	lines := []string{
		"",
		"Try next (each line starting with $ is a command; `go run ./cmd/govx` works wherever it says govx):",
		"",
		"# The catalog the Hangzhou civil affairs bureau (mz-3301) may see:",
		"  $ govx catalog --profile " + p("mz-3301"),
		decision("mz-3301"),
		fmt.Sprintf("  $ govx pull population.person --purpose %s --limit 5 --profile %s", purpose, p("mz-3301")),
		decision("zj-3205"),
		fmt.Sprintf("  $ govx pull population.person --purpose %s --profile %s", purpose, p("zj-3205")),
		"# One record by key (the key travels in the body, not the URL):",
		fmt.Sprintf("  $ govx lookup population.person %s --purpose %s --profile %s", hzID, purpose, p("mz-3301")),
		"# Verify (核验): Ningbo health (wj-3302) learns only true/false, never the values:",
		fmt.Sprintf("  $ govx verify population.person %s --claim name=%s --claim birth_date=%s --purpose birth-certificate-issuance --profile %s", nbID, nbName, nbBirth, p("wj-3302")),
		"# Aggregates only (统计): the statistics bureau (tj-33) gets counts and sums by county, never a record; cells under 10 are suppressed:",
		fmt.Sprintf(`  $ govx aggregate "SELECT household_region, COUNT(*) AS persons FROM population.person GROUP BY household_region" --purpose population-statistics --profile %s`, p("tj-33")),
		fmt.Sprintf(`  $ govx aggregate "SELECT region_code, land_use, COUNT(*) AS parcels, SUM(area_m2) AS area FROM resource.land_parcel GROUP BY region_code, land_use ORDER BY area DESC LIMIT 10" --purpose land-resource-statistics --profile %s`, p("tj-33")),
		"# The same pull over HTTP, as CSV:",
		fmt.Sprintf(`  $ curl -s -H "Authorization: Bearer $(cat %s)" -H "Accept: text/csv" -H "Content-Type: application/json" -d '{"purpose":"%s","limit":5}' http://%s/v1/datasets/population.person/pull`, tokenFile, purpose, x.HTTPAddr()),
		"# A department system in Python (pyarrow.flight), the script is:",
	}
	for _, l := range strings.Split(strings.TrimSpace(py), "\n") {
		lines = append(lines, "#   "+l)
	}
	auditFlags := "--spool " + cfg.Audit.SpoolDir
	if cfg.Audit.ClickHouse.Addr != "" {
		auditFlags = "--clickhouse " + cfg.Audit.ClickHouse.Addr
	}
	lines = append(lines,
		"  $ python3 "+script,
		"# Why a decision came out as it did:",
		fmt.Sprintf("  $ govx policy explain --policies %s --as mz-3301/dibao-review --dataset population.person --action read --purpose %s", cfg.PoliciesDir, purpose),
		"# The sharing applications (共享申请) in every state, as the data authority sees them (OVERDUE: a time limit ran out):",
		"  $ govx applications list --profile "+authorityProfile,
		"# Who accessed what, from the audit log:",
		"  $ govx audit query "+auditFlags+" --department mz-3301",
		"",
	)
	lines = append(lines, consoleLines(dir, cfg, x)...)
	lines = append(lines,
		"Tokens: "+filepath.Join(dir, "tokens")+"/<department>.token, profiles: "+filepath.Join(dir, "profiles")+"/<department>.yaml",
		"Press Ctrl-C to stop.",
	)
	_, err = fmt.Fprintln(out, strings.Join(lines, "\n"))
	return err
}
