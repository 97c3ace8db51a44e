package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"govx/connectors/synth"
)

func init() {
	var (
		scale       int
		seed        uint64
		to          string
		departments []string
		invalidRate float64
		issuers     string
	)
	cmd := &cobra.Command{
		Use:   "gen --to TARGET",
		Short: "Generate synthetic department databases (SQLite, PostgreSQL, MariaDB/MySQL, CSV)",
		Long: `gen writes synthetic registers into each providing department's own native tables:
  gab    公安      rk_jbxx   persons (--scale of them)
  scjgj  市场监管  scztdj    organizations (scale/10), legal representatives from the persons
  zrzyb  自然资源  bdc_zd    land parcels (scale/5), held by those organizations or persons
  tjj    统计      tj_zbsj   indicators for every region used × 2023–2025 years, quarters, months
  zwfw   政务服务  dzzz_zzxx e-licences: a registration certificate per organization, a
                             real-estate certificate per parcel, scale/4 personal licences
                             or permits; signed with demo issuer keys derived from --seed

The same --seed and --scale give identical rows in every target. Tables that exist are
dropped and recreated, so re-running is safe. About --invalid-rate of the rows are made
invalid on purpose (a wrong check character, an impossible date, …) for connectors'
dead-letter queue; pass --invalid-rate 0 for clean data. --issuers FILE writes the
licence issuers' public keys for --seed as policy data (an issuers.yaml for the policy
directory the exchange verifies licences with).

Targets:
  sqlite:DIR                      DIR/<dept>.db, one SQLite file per department
  csv:DIR                         DIR/<dept>/<table>.csv, header row, UTF-8
                                  (scjgj's export is GB18030, as such exports often are)
  postgres://user:pass@host/db    one schema per department, named by its code
  mysql://user:pass@host:port/    one database per department, govx_<dept>, utf8mb4
                                  (add ?prefix=P to name them P<dept> instead)

Passwords are never printed.`,
		Example: `  govx gen --scale 10000 --to sqlite:./demo-data
  govx gen --scale 1000000 --seed 7 --to postgres://govx:govx@127.0.0.1:15432/govx?sslmode=disable
  govx gen --scale 100000 --to mysql://govx:govx@127.0.0.1:13306/ --departments gab,scjgj
  govx gen --scale 2000 --invalid-rate 0 --to csv:./exports`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return fmt.Errorf("--to is required: e.g. --to sqlite:./demo-data (see govx gen --help)")
			}
			opts := synth.Options{Scale: scale, Seed: seed, InvalidRate: invalidRate, Departments: departments}
			if issuers != "" {
				if err := os.WriteFile(issuers, synth.IssuersYAML(seed), 0o644); err != nil {
					return fmt.Errorf("--issuers: %w", err)
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			return runGen(ctx, opts, to, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.IntVar(&scale, "scale", 10000, "number of persons; organizations are scale/10, parcels scale/5")
	f.Uint64Var(&seed, "seed", 1, "random seed: the same seed and scale give the same rows")
	f.StringVar(&to, "to", "", "target: sqlite:DIR, csv:DIR, postgres://… or mysql://…")
	f.StringSliceVar(&departments, "departments", synth.Departments(), "departments to generate")
	f.Float64Var(&invalidRate, "invalid-rate", synth.DefaultInvalidRate, "share of rows made invalid on purpose (0 to 0.5)")
	f.StringVar(&issuers, "issuers", "", "also write the licence issuers' public keys for --seed to this policy data file")
	rootCmd.AddCommand(cmd)
}

// runGen is `govx gen` without the flag parsing.
func runGen(ctx context.Context, opts synth.Options, target string, stdout, stderr io.Writer) error {
	g, err := synth.New(opts)
	if err != nil {
		return err
	}
	w, err := synth.Open(ctx, target)
	if err != nil {
		return err
	}
	defer w.Close()
	var p synth.Progress = &logProgress{w: stderr, target: w.String()}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p = &barProgress{w: stderr, target: w.String()}
	}
	sums, err := synth.Generate(ctx, g, w, p)
	for _, s := range sums {
		fmt.Fprintf(stdout, "%-6s %-8s %9d rows in %6.1fs  %9.0f rows/s  → %s\n",
			s.Dept, s.Table, s.Rows, s.Elapsed.Seconds(), s.RowsPerSecond(), w.String())
	}
	return err
}

// barProgress draws a progress bar per department on a terminal.
type barProgress struct {
	w      io.Writer
	target string
	bar    *progressbar.ProgressBar
}

func (b *barProgress) Start(dept, table string, total int) {
	b.bar = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetDescription(fmt.Sprintf("%-6s %-8s", dept, table)),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("rows"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetWidth(30),
	)
}

func (b *barProgress) Add(n int)          { b.bar.Add(n) }
func (b *barProgress) Done(synth.Summary) { b.bar.Finish() }

// logProgress writes a plain line every few seconds when stderr is not a terminal
// (CI logs, pipes), where a redrawn bar would be noise.
type logProgress struct {
	w            io.Writer
	target       string
	dept, table  string
	total, done  int
	start, last  time.Time
	logEveryTime time.Duration
}

func (l *logProgress) Start(dept, table string, total int) {
	l.dept, l.table, l.total, l.done = dept, table, total, 0
	l.start, l.last = time.Now(), time.Now()
	if l.logEveryTime == 0 {
		l.logEveryTime = 5 * time.Second
	}
	fmt.Fprintf(l.w, "gen: %s.%s: writing %d rows to %s\n", dept, table, total, l.target)
}

func (l *logProgress) Add(n int) {
	l.done += n
	if time.Since(l.last) < l.logEveryTime {
		return
	}
	l.last = time.Now()
	rate := float64(l.done) / time.Since(l.start).Seconds()
	fmt.Fprintf(l.w, "gen: %s.%s: %d/%d rows (%s%%), %.0f rows/s\n", l.dept, l.table, l.done, l.total,
		strings.TrimSuffix(fmt.Sprintf("%.1f", 100*float64(l.done)/float64(max(1, l.total))), ".0"), rate)
}

func (l *logProgress) Done(synth.Summary) {}
