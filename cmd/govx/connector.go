package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"govx/connectors"
	_ "govx/connectors/filesrc" // csv, jsonl
	_ "govx/connectors/sqlsrc"  // postgres, mysql, sqlite
)

func init() {
	cmd := &cobra.Command{
		Use:   "connector",
		Short: "Run or check a department connector (database or export file → Kafka)",
		Long: `A connector publishes one department table onto Kafka as a govx dataset: a full
snapshot first, then every change, polled by an update-time cursor. Rows failing the
dataset's validation go to the dead-letter topic with every reason. Progress is
checkpointed in Kafka, so a restarted connector continues where it stopped.

The config is YAML; see connectors/examples/ and docs/connectors.md.`,
	}
	cmd.AddCommand(connectorRunCmd(), connectorCheckCmd())
	rootCmd.AddCommand(cmd)
}

func connectorRunCmd() *cobra.Command {
	var (
		file, metricsAddr, topicPrefix string
		verbose                        bool
	)
	c := &cobra.Command{
		Use:   "run -c FILE",
		Short: "Run a connector until interrupted",
		Example: `  export GOVX_SOURCE_DSN='postgres://gab_reader:…@db.gab.example:5432/rk'
  govx connector run -c connectors/examples/gab.postgres.yaml --metrics-addr 127.0.0.1:9464`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := connectors.LoadConfig(file)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			stderr := cmd.ErrOrStderr()
			tty := false
			if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				tty = true
			}
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
			opts := []connectors.Option{connectors.WithLogger(logger)}
			if topicPrefix != "" {
				opts = append(opts, connectors.WithTopicPrefix(topicPrefix))
			}
			conn, err := connectors.New(cfg, opts...)
			if err != nil {
				return err
			}
			if metricsAddr != "" {
				srv, err := serveMetrics(metricsAddr)
				if err != nil {
					return err
				}
				defer srv.Close()
				logger.Info("metrics", "url", "http://"+metricsAddr+"/metrics")
			}
			done := make(chan struct{})
			if tty {
				go showProgress(conn, stderr, done)
			}
			err = conn.Run(ctx)
			close(done)
			if err != nil {
				return err
			}
			p := conn.Progress()
			logger.Info("stopped", "read", p.Read, "published", p.Published, "deleted", p.Deleted, "invalid", p.Invalid)
			return nil
		},
	}
	c.Flags().StringVarP(&file, "config", "c", "", "connector config (YAML)")
	c.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address, e.g. 127.0.0.1:9464")
	c.Flags().StringVar(&topicPrefix, "topic-prefix", "", "publish to <prefix><dataset> instead of the config's prefix")
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "debug logs (one line per invalid row sample)")
	_ = c.MarkFlagRequired("config")
	return c
}

func serveMetrics(addr string) (*http.Server, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(connectors.Collectors()...)
	reg.MustRegister(collectors.NewGoCollector())
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return srv, nil
}

// showProgress draws a bar with rows/s and ETA while the snapshot runs, on a terminal.
func showProgress(conn *connectors.Connector, w io.Writer, done <-chan struct{}) {
	var bar *progressbar.ProgressBar
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			if bar != nil {
				bar.Finish()
			}
			return
		case <-conn.Ready():
			if bar != nil {
				p := conn.Progress()
				bar.Set64(p.SnapshotRows)
				bar.Finish()
				fmt.Fprintln(w)
			}
			return
		case <-t.C:
			p := conn.Progress()
			if p.Phase != connectors.PhaseSnapshot || p.SnapshotTotal < 0 {
				continue
			}
			if bar == nil {
				bar = progressbar.NewOptions64(p.SnapshotTotal,
					progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("snapshot"),
					progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("rows"),
					progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(200*time.Millisecond),
					progressbar.OptionFullWidth())
			}
			bar.Set64(p.SnapshotRows)
		}
	}
}

func connectorCheckCmd() *cobra.Command {
	var (
		file    string
		offline bool
		samples int
	)
	c := &cobra.Command{
		Use:   "check -c FILE [--offline]",
		Short: "Validate a connector config; unless --offline, connect and map a few sample rows",
		Long: `check validates the config strictly (unknown fields are errors naming the line),
shows how each dataset field is mapped, and unless --offline connects to the source and
to Kafka and shows a few source rows mapped and validated, without publishing anything.
It warns (without failing) when a source table lacks the index on (cursor, key) that
pages and polls read by, and prints the CREATE INDEX statement to run in the source
database. It exits non-zero on any problem, including invalid sample rows.`,
		Example: `  govx connector check -c connectors/examples/gab.postgres.yaml --offline
  GOVX_DATA_DIR=/tmp/govx govx connector check -c connectors/examples/gab.sqlite.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			cfg, err := connectors.LoadConfig(file)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "config %s: ok — connector %s, %s → %s (department %s)\n\n", file, cfg.Name, cfg.Source.Driver, cfg.Topic(), cfg.Department)
			printMapping(out, cfg.Mapping())
			if offline {
				return nil
			}
			conn, err := connectors.New(cfg, connectors.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			rep, err := conn.Check(ctx, samples)
			if rep != nil && rep.SourceRows >= 0 {
				fmt.Fprintf(out, "\nsource: %d rows\n", rep.SourceRows)
			}
			if err != nil {
				return err
			}
			switch adv := rep.CursorIndex; {
			case adv.Missing():
				fmt.Fprintf(out, "WARNING: %s\n", adv.Warning())
			case adv != nil:
				fmt.Fprintf(out, "index: %s serves the (%s) order of pages and polls\n", adv.Index, strings.Join(adv.Columns, ", "))
			}
			fmt.Fprintf(out, "kafka: %s reachable\n\nsample rows:\n", rep.Kafka)
			bad := 0
			for i, s := range rep.Samples {
				if len(s.Errors) == 0 {
					fmt.Fprintf(out, "%d. ok  key %s\n   %s\n", i+1, s.Key, s.Value)
					continue
				}
				bad++
				var reasons []string
				for _, e := range s.Errors {
					reasons = append(reasons, e.Error())
				}
				fmt.Fprintf(out, "%d. INVALID (would go to %s): %s\n   native %s\n", i+1, cfg.Kafka.DLQTopic, strings.Join(reasons, "; "), s.Native)
			}
			if bad > 0 {
				return &exitError{code: 3, err: fmt.Errorf("%d of %d sample rows are invalid; fix the mapping (values, formats) or the source data", bad, len(rep.Samples))}
			}
			fmt.Fprintln(out, "\ncheck passed")
			return nil
		},
	}
	c.Flags().StringVarP(&file, "config", "c", "", "connector config (YAML)")
	c.Flags().BoolVar(&offline, "offline", false, "check the config only; connect to nothing")
	c.Flags().IntVar(&samples, "samples", 5, "how many source rows to map and validate")
	_ = c.MarkFlagRequired("config")
	return c
}

func printMapping(out io.Writer, lines []connectors.MappingLine) {
	w := newTable(out, "FIELD", "TYPE", "NULL", "FROM COLUMN", "CONVERSION")
	for _, l := range lines {
		col := l.Column
		if col == "" {
			col = "(unmapped: always null)"
		}
		null := ""
		if l.Nullable {
			null = "yes"
		}
		w.add(l.Field, l.Type, null, col, l.Detail)
	}
	w.flush()
}
