package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/csv"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"govx/exchange"
	"govx/exchange/arrowtext"
	"govx/exchange/client"
)

func init() {
	var cf consumerFlags
	var columns, purpose, caseRef, since, format, out string
	var where []string
	var limit int64
	cmd := &cobra.Command{
		Use:   "pull DATASET --purpose P [flags]",
		Short: "Pull a dataset (or its changes since a cursor) over Arrow Flight",
		Long: `Pull the rows of DATASET that your sharing agreement grants, over Arrow Flight. Columns,
row scope and masks are decided by the exchange's policy; a request naming a column outside
your grant is refused as a whole. --where conditions (ANDed) narrow the rows:

  COLUMN OP VALUE   with OP one of = != in prefix < <= > >= is_null ('in' takes a comma list)

--format arrow writes the Arrow IPC stream the exchange sends as it arrives (the fastest:
no batch is decoded or encoded again); parquet encodes with Snappy, columns in parallel,
keeping the Arrow schema and its field metadata; csv, jsonl and table go row by row.

When the pull ends, the cursor of the version you received is printed to standard error:
pass it as --since to get only the changes made after it.`,
		Example: `  govx pull population.person --purpose minimum-living-allowance-review --profile demo/profiles/mz-3301.yaml
  govx pull population.person --purpose minimum-living-allowance-review --where 'household_region prefix 330106' --format csv -o persons.csv
  govx pull population.person --purpose minimum-living-allowance-review --since CURSOR`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			// Interrupted (Ctrl-C, a terminal closed, a service stopped), the pull ends
			// through its own error path, so that -o's temporary file is removed.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			pc := exchange.PullCmd{Dataset: args[0], Purpose: purpose, CaseRef: caseRef, Since: since, Limit: limit}
			if columns != "" {
				pc.Columns = strings.Split(columns, ",")
			}
			if len(where) > 0 {
				if pc.Filter, err = typedFilter(ctx, c, pc, where); err != nil {
					return err
				}
			}
			var w io.Writer = cmd.OutOrStdout()
			var file *outputFile
			if out != "" && out != "-" {
				if file, err = createOutput(out); err != nil {
					return err
				}
				defer file.abort()
				// Writer alone: the Parquet writer closes a writer that can be closed,
				// and the file must stay open for commit to sync it.
				w = struct{ io.Writer }{file}
			}
			bar := pullProgress()
			shown := int64(0)
			progress := func(rows, bytes int64) {
				if bar != nil {
					bar.Describe(fmt.Sprintf("pulling %s (%.1f MB)", args[0], float64(bytes)/1e6))
					bar.Add64(rows - shown)
					shown = rows
				}
			}
			var res client.PullResult
			if format == "arrow" {
				// The exchange's messages are written through as they come: no batch
				// is decoded into rows or encoded again.
				res, err = c.PullIPC(ctx, pc, w, progress)
			} else {
				res, err = pullFormatted(ctx, c, pc, format, w, progress)
			}
			if bar != nil {
				bar.Finish()
				fmt.Fprintln(os.Stderr)
			}
			if err == nil && file != nil {
				err = file.commit()
			}
			if err != nil && ctx.Err() != nil && cmd.Context().Err() == nil {
				kept := ""
				if file != nil {
					kept = "; " + out + " is left as it was"
				}
				return &exitError{code: 130, err: fmt.Errorf("pull interrupted%s", kept)}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d rows of %s\ncursor: %s\n", res.Rows, args[0], res.Cursor)
			return nil
		},
	}
	cf.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&purpose, "purpose", "", "why you need the data, as your sharing agreement names it (required)")
	fl.StringVar(&caseRef, "case", "", "the case (办件编号) this pull serves, for the audit log")
	fl.StringVar(&columns, "columns", "", "comma-separated columns (default: every granted column)")
	fl.StringArrayVar(&where, "where", nil, "a row condition 'COLUMN OP VALUE' (repeatable, ANDed)")
	fl.StringVar(&since, "since", "", "a cursor from an earlier pull: return only the changes after it")
	fl.Int64Var(&limit, "limit", 0, "return at most this many rows (0: all)")
	fl.StringVar(&format, "format", "table", "output format: arrow (IPC stream), parquet, csv, jsonl or table")
	fl.StringVarP(&out, "output", "o", "", "write to FILE instead of standard output; FILE changes only when the pull succeeds (a new FILE is created readable by you alone)")
	cmd.MarkFlagRequired("purpose")
	rootCmd.AddCommand(cmd)
}

// pullFormatted writes a pull in a format other than arrow, batch by batch.
func pullFormatted(ctx context.Context, c *client.Client, pc exchange.PullCmd, format string, w io.Writer, progress func(rows, bytes int64)) (client.PullResult, error) {
	sink, err := newPullSink(format, w)
	if err != nil {
		return client.PullResult{}, err
	}
	var rows, bytes int64
	res, err := c.Pull(ctx, pc, sink.begin, func(rec arrow.Record) error {
		for _, col := range rec.Columns() {
			for _, b := range col.Data().Buffers() {
				if b != nil {
					bytes += int64(b.Len())
				}
			}
		}
		rows += rec.NumRows()
		progress(rows, bytes)
		return sink.write(rec)
	})
	if err != nil {
		return res, err
	}
	return res, sink.close()
}

// typedFilter parses the --where conditions and types each value by its column, so
// numbers and booleans go as such (the exchange refuses a wrongly typed value rather
// than guess). The types come from the schema this very pull would return (GetSchema
// with the pull's dataset, purpose, columns and filter), not from the catalog: listing
// the catalog decides a discover for every dataset and writes a denial for each one the
// caller may not see, so a day of ordinary pulls read as probing in `govx audit report`.
func typedFilter(ctx context.Context, c *client.Client, pc exchange.PullCmd, where []string) ([]exchange.Filter, error) {
	var text []exchange.Filter
	for _, w := range where {
		f, err := client.ParseWhere(w, nil)
		if err != nil {
			return nil, err
		}
		text = append(text, f)
	}
	ask := pc
	ask.Since, ask.Filter = "", text
	if len(pc.Columns) > 0 {
		// Columns only filtered on must be in the schema too, to have their types.
		ask.Columns = slices.Clone(pc.Columns)
		for _, f := range text {
			if !slices.Contains(ask.Columns, f.Column) {
				ask.Columns = append(ask.Columns, f.Column)
			}
		}
	}
	sc, err := c.Schema(ctx, ask)
	if err != nil {
		if pc.Since == "" {
			// The exchange decided the read this pull is; it would refuse the pull the
			// same way, and asking twice would write the refusal twice.
			return nil, err
		}
		// A changes pull may be granted where a read is not: the values go as text and
		// the exchange decides the pull itself.
		return text, nil
	}
	types := map[string]string{}
	for _, f := range sc.Fields() {
		types[f.Name] = whereType(f.Type)
	}
	filter := make([]exchange.Filter, 0, len(where))
	for _, w := range where {
		f, err := client.ParseWhere(w, func(col string) string { return types[col] })
		if err != nil {
			return nil, err
		}
		filter = append(filter, f)
	}
	return filter, nil
}

// whereType names an Arrow type as the schema types client.ParseWhere sends typed;
// every other value (text, dates, timestamps, decimals) goes as text.
func whereType(t arrow.DataType) string {
	switch t.ID() {
	case arrow.INT64:
		return "int64"
	case arrow.FLOAT64:
		return "float64"
	case arrow.BOOL:
		return "bool"
	}
	return ""
}

func pullProgress() *progressbar.ProgressBar {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	// No rate: batches arrive in bursts, so a rate between two of them reads as
	// nonsense (tens of millions of rows a second, then none).
	return progressbar.NewOptions64(-1, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowCount(),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionThrottle(100_000_000), progressbar.OptionSetDescription("pulling"))
}

// pullSink writes a pull's batches in one output format.
type pullSink struct {
	begin func(*arrow.Schema) error
	write func(arrow.Record) error
	close func() error
}

func newPullSink(format string, w io.Writer) (*pullSink, error) {
	s := &pullSink{close: func() error { return nil }}
	switch format {
	case "arrow":
		var iw *ipc.Writer
		s.begin = func(sc *arrow.Schema) error { iw = ipc.NewWriter(w, ipc.WithSchema(sc)); return nil }
		s.write = func(r arrow.Record) error { return iw.Write(r) }
		s.close = func() error {
			if iw == nil {
				return nil
			}
			return iw.Close()
		}
	case "parquet":
		return parquetSink(w), nil
	case "csv":
		var cw *csv.Writer
		s.begin = func(sc *arrow.Schema) error {
			// Decimals as the exact text of their scale: Arrow's CSV writer prints them
			// through a float (76.6263 as 76.626300000000000003).
			cw = csv.NewWriter(w, arrowtext.Schema(sc), csv.WithHeader(true), csv.WithNullWriter(""))
			return nil
		}
		s.write = func(r arrow.Record) error {
			exact := arrowtext.Record(r, memory.DefaultAllocator)
			defer exact.Release()
			return cw.Write(exact)
		}
		s.close = func() error {
			if cw == nil {
				return nil
			}
			cw.Flush()
			return cw.Error()
		}
	case "jsonl":
		s.begin = func(*arrow.Schema) error { return nil }
		s.write = func(r arrow.Record) error {
			// Decimals as the exact text of their scale, a JSON string, as the HTTP
			// API's NDJSON gives them ("204.2640", not Arrow's "204.264").
			exact := arrowtext.Record(r, memory.DefaultAllocator)
			defer exact.Release()
			return array.RecordToJSON(exact, w)
		}
	case "table":
		var tw *table
		s.begin = func(sc *arrow.Schema) error {
			names := make([]string, sc.NumFields())
			for i, f := range sc.Fields() {
				names[i] = strings.ToUpper(f.Name)
			}
			tw = newTable(w, names...)
			return nil
		}
		s.write = func(r arrow.Record) error {
			for i := 0; i < int(r.NumRows()); i++ {
				cells := make([]string, r.NumCols())
				for j, col := range r.Columns() {
					if col.IsNull(i) {
						cells[j] = "-"
					} else {
						cells[j] = col.ValueStr(i)
					}
				}
				tw.add(cells...)
			}
			return nil
		}
		s.close = func() error {
			if tw == nil {
				return nil
			}
			return tw.flush()
		}
	default:
		return nil, fmt.Errorf("--format %q: use arrow, parquet, csv, jsonl or table", format)
	}
	return s, nil
}
