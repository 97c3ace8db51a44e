package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"govx/exchange"
	"govx/exchange/audit"
	"govx/exchange/audit/review"
	"govx/policies"
)

// auditFlags are shared by the auditor's subcommands.
type auditFlags struct {
	clickhouse, database, table, user string
	spool                             string
	tz                                string
	since, until                      string
	filter                            audit.Filter
}

func (a *auditFlags) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&a.clickhouse, "clickhouse", "", "ClickHouse native address host:port (default: read the local spool); password from $GOVX_CLICKHOUSE_PASSWORD")
	f.StringVar(&a.database, "database", "govx", "ClickHouse database of the audit table")
	f.StringVar(&a.table, "table", "access_log", "ClickHouse audit table")
	f.StringVar(&a.user, "user", "default", "ClickHouse user")
	f.StringVar(&a.spool, "spool", audit.DefaultSpoolDir, "local audit spool directory, read when --clickhouse is not given")
	f.StringVar(&a.tz, "tz", "Asia/Shanghai", "time zone for times shown and for dates given without one")
}

func (a *auditFlags) registerFilters(cmd *cobra.Command, keyFlag bool) {
	f := cmd.Flags()
	f.StringVar(&a.since, "since", "", "from this time: RFC 3339, YYYY-MM-DD, 'YYYY-MM-DD HH:MM', or a duration back from now (24h, 7d)")
	f.StringVar(&a.until, "until", "", "before this time (same forms as --since)")
	f.StringVar(&a.filter.Department, "department", "", "department code, e.g. mz-3301")
	f.StringVar(&a.filter.System, "system", "", "department system, e.g. dibao-review")
	f.StringVar(&a.filter.Dataset, "dataset", "", "dataset id, e.g. population.person")
	f.StringVar(&a.filter.Action, "action", "", strings.Join(actionNames(), " | "))
	f.StringVar(&a.filter.Decision, "decision", "", "allow | deny (decision events only)")
	f.StringVar(&a.filter.Purpose, "purpose", "", "declared purpose")
	f.StringVar(&a.filter.Agreement, "agreement", "", "sharing agreement id")
	f.StringVar(&a.filter.CaseRef, "case", "", "case reference (办件编号)")
	f.StringVar(&a.filter.RequestID, "request", "", "request id (a decision and its complete)")
	if keyFlag {
		f.StringVar(&a.filter.Key, "key", "", "a record key a lookup or verify touched (e.g. a citizen ID number)")
	}
}

// actionNames are the actions an event may record, as --action takes them.
func actionNames() []string {
	var names []string
	for _, act := range exchange.Actions() {
		names = append(names, string(act))
	}
	return names
}

func (a *auditFlags) location() (*time.Location, error) {
	loc, err := time.LoadLocation(a.tz)
	if err != nil {
		return nil, fmt.Errorf("--tz %q: %w", a.tz, err)
	}
	return loc, nil
}

// parseWhen accepts an absolute time or a duration back from now ("7d", "36h").
func parseWhen(s string, loc *time.Location, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(d, "%d", &n); err == nil && n > 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use RFC 3339, YYYY-MM-DD, 'YYYY-MM-DD HH:MM', or a duration such as 24h or 7d", s)
}

func (a *auditFlags) resolve() (*time.Location, error) {
	loc, err := a.location()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if a.filter.Since, err = parseWhen(a.since, loc, now); err != nil {
		return nil, fmt.Errorf("--since: %w", err)
	}
	if a.filter.Until, err = parseWhen(a.until, loc, now); err != nil {
		return nil, fmt.Errorf("--until: %w", err)
	}
	if d := a.filter.Decision; d != "" && d != audit.Allow && d != audit.Deny {
		return nil, fmt.Errorf("--decision %q: use allow or deny", d)
	}
	return loc, nil
}

// open returns the store to read: ClickHouse when --clickhouse is given, else the spool.
func (a *auditFlags) open() (audit.Store, bool, error) {
	if a.clickhouse == "" {
		st, err := audit.OpenSpoolStore(a.spool)
		if err == nil && st.Instance() == "" {
			return nil, true, fmt.Errorf("%s holds no audit spool (no instance file): give the spool directory with --spool, or a ClickHouse with --clickhouse", a.spool)
		}
		return st, true, err
	}
	st, err := audit.NewClickHouse(audit.ClickHouseConfig{Addr: a.clickhouse, Database: a.database,
		Table: a.table, Username: a.user, Password: os.Getenv("GOVX_CLICKHOUSE_PASSWORD")})
	return st, false, err
}

func newAuditCmd() *cobra.Command {
	a := &auditFlags{}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "The auditor's tools: query, report, subject, verify, repair, keygen",
		Long: `Read the tamper-evident access log: every request to the exchange, allowed or denied
(a "decision" event), and for data-bearing requests how it ended (a "complete" event).

The log is read from ClickHouse with --clickhouse host:port, or else from the local
audit spool (--spool, default ` + audit.DefaultSpoolDir + `), which holds everything when
the exchange runs without ClickHouse and the events not yet shipped when it runs with it.`,
	}
	a.register(cmd)
	cmd.AddCommand(auditQueryCmd(a), auditReportCmd(a), auditSubjectCmd(a), auditVerifyCmd(a), auditRepairCmd(a), auditKeygenCmd())
	return cmd
}

func init() { rootCmd.AddCommand(newAuditCmd()) }

func auditQueryCmd(a *auditFlags) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "query",
		Short: "List audit events matching filters",
		Example: `  govx audit query --clickhouse 127.0.0.1:9000 --since 2026-03-01 --until 2026-04-01 --department mz-3301
  govx audit query --dataset population.person --decision deny --since 7d
  govx audit query --case 330106-2026-000123 --format jsonl
  govx audit query --since 24h --format csv > today.csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runQuery(cmd, a, format)
		},
	}
	a.registerFilters(cmd, true)
	cmd.Flags().StringVar(&format, "format", "table", "table | csv | jsonl")
	return cmd
}

// warnDamage tells the auditor, on standard error, of damaged stretches of a spool that
// a read passed over: what they see is not the whole log, and verify says more.
func warnDamage(cmd *cobra.Command, it audit.Iterator) {
	w, ok := it.(audit.Warner)
	if !ok {
		return
	}
	for _, msg := range w.Warnings() {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", review.Printable(msg))
	}
}

func runQuery(cmd *cobra.Command, a *auditFlags, format string) error {
	loc, err := a.resolve()
	if err != nil {
		return err
	}
	st, _, err := a.open()
	if err != nil {
		return err
	}
	defer st.Close()
	it, err := st.Events(cmd.Context(), a.filter)
	if err != nil {
		return err
	}
	n, err := review.WriteEvents(cmd.OutOrStdout(), it, format, loc)
	warnDamage(cmd, it)
	if err != nil {
		return err
	}
	if format == "table" {
		fmt.Fprintf(cmd.ErrOrStderr(), "%d events\n", n)
	}
	return nil
}

func auditReportCmd(a *auditFlags) *cobra.Command {
	var (
		format, workHours, agreements string
		opt                           review.ReportOptions
	)
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Sum use per department and dataset and flag anomalies",
		Long: `Sum requests, rows, bytes, denials, failed requests (allowed, then aborted or in error:
they returned nothing) and unfinished streams (allowed reads with no complete event) per
department and dataset, and flag:

  off-hours          a burst of requests by one system outside working hours (weekends too)
  volume             a day whose rows are far above the department's own median day
  deny-burst         many denials of one system within minutes: probing the policy
  enumeration        many distinct keys looked up or verified by one system in an hour,
                     against its other hours
  key-sweep          very many distinct keys from one department in an hour, whatever its
                     other hours
  key-guessing       many verifies of one key by one department: guessing its values
  budget-exhausted   lookups or verifies refused by the department's key budget
  agreement-expiry   use of an agreement close to (or after) its end (needs --policies)
  application-overdue, correction-overdue
                     a sharing application or a flagged record whose time limit ran
                     out: its next step came late, or none came by --until (or now);
                     from the deadlines the steps' events name

Working hours are local to --tz (default Asia/Shanghai).`,
		Example: `  govx audit report --since 2026-03-01 --until 2026-04-01
  govx audit report --clickhouse 127.0.0.1:9000 --since 30d --work-hours 08:30-18:00 --policies /etc/govx/policies
  govx audit report --since 7d --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			loc, err := a.resolve()
			if err != nil {
				return err
			}
			opt.Location = loc
			if opt.WorkStart, opt.WorkEnd, err = review.ParseWorkHours(workHours); err != nil {
				return fmt.Errorf("--work-hours: %w", err)
			}
			if agreements != "" {
				b, err := policies.Load(agreements)
				if err != nil {
					return fmt.Errorf("--policies %s: %w", agreements, err)
				}
				opt.Agreements = review.AgreementsOf(b)
			}
			// Open matters are judged overdue at the end of the period read, never later
			// than now (zero: BuildReport takes now).
			if u := a.filter.Until; u.Before(time.Now()) {
				opt.Now = u
			}
			st, _, err := a.open()
			if err != nil {
				return err
			}
			defer st.Close()
			it, err := st.Events(cmd.Context(), a.filter)
			if err != nil {
				return err
			}
			rep, err := review.BuildReport(cmd.Context(), it, opt)
			warnDamage(cmd, it)
			if err != nil {
				return err
			}
			switch format {
			case "json":
				return printJSON(cmd, rep)
			case "text":
				return rep.WriteText(cmd.OutOrStdout(), loc)
			}
			return fmt.Errorf("--format %q: use text or json", format)
		},
	}
	a.registerFilters(cmd, false)
	f := cmd.Flags()
	f.StringVar(&format, "format", "text", "text | json")
	f.StringVar(&workHours, "work-hours", "08:30-18:00", "working hours on weekdays, HH:MM-HH:MM")
	f.StringVar(&agreements, "policies", "", "policy directory whose agreements' validity flags use near or after expiry (read as the exchange reads it)")
	f.IntVar(&opt.OffHoursMin, "off-hours-min", 20, "requests by one system in one off-hours stretch that make a finding")
	f.IntVar(&opt.EnumMin, "enum-min", 200, "distinct keys per system per hour that make an enumeration finding")
	f.Float64Var(&opt.EnumFactor, "enum-factor", 5, "… and how many times the system's median over its other hours")
	f.IntVar(&opt.SweepMin, "sweep-min", 1000, "distinct keys per department per hour that make a key-sweep finding, whatever its baseline")
	f.IntVar(&opt.GuessMin, "guess-min", 10, "verifies of one key by one department within --guess-window that make a key-guessing finding")
	f.DurationVar(&opt.GuessWindow, "guess-window", 24*time.Hour, "window for --guess-min")
	f.IntVar(&opt.DenyBurst, "deny-burst", 20, "denials of one system within --deny-window that make a finding")
	f.DurationVar(&opt.DenyWindow, "deny-window", 10*time.Minute, "window for --deny-burst")
	f.Float64Var(&opt.VolumeFactor, "volume-factor", 5, "a department's day above this many times its median day is flagged")
	f.Uint64Var(&opt.VolumeMinRows, "volume-min-rows", 10000, "… when it is at least this many rows")
	f.DurationVar(&opt.ExpiryWarn, "expiry-warn", 30*24*time.Hour, "flag use of an agreement this close to its end")
	return cmd
}

func auditVerifyCmd(a *auditFlags) *cobra.Command {
	var ckptFiles, pubkeys []string
	var format string
	var allowUnverified bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Prove the audit log was not altered: check its hash chains against signed checkpoints",
		Long: `Walk every instance's hash chain (ordered by instance and seq, duplicates from
at-least-once delivery removed), recompute each event's hash, and check the chain heads
against the signed checkpoints, which the exchange writes apart from ClickHouse.

Names the first event that was changed, removed, inserted, duplicated or reordered, a
stretch of a spool segment that is damaged (file and offset), a tail cut off before a
checkpoint, and every gap recorded by ` + "`govx audit repair`" + `. From the chain alone
every change is detected except a clean cut of the newest events: that needs the
checkpoints.

With --spool only, events the exchange already shipped to ClickHouse are no longer in the
spool: the spool's signed shipped marker says so, and verify fails unless they are checked
too (add --clickhouse: the spool and ClickHouse are verified together) or you accept that
with --allow-unverified-shipped.

Exit status: 0 intact, 2 verification failed, 1 the tool could not run.`,
		Example: `  govx audit verify --clickhouse 127.0.0.1:9000 --checkpoints /var/lib/govx/audit/checkpoints.jsonl --pubkey audit-signing.key.pub
  govx audit verify --clickhouse 127.0.0.1:9000 --spool /var/lib/govx/audit/spool   # ClickHouse and the unshipped rest together
  govx audit verify        # the local spool, default checkpoints and key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opt := audit.VerifyOptions{AllowUnverifiedShipped: allowUnverified}
			if len(ckptFiles) == 0 && fileExists(audit.DefaultCheckpointFile) {
				ckptFiles = []string{audit.DefaultCheckpointFile}
			}
			if len(pubkeys) == 0 && fileExists(audit.DefaultKeyFile+".pub") {
				pubkeys = []string{audit.DefaultKeyFile + ".pub"}
			}
			if err := verifyKeys(&opt, ckptFiles, pubkeys); err != nil {
				return err
			}
			it, err := a.chain(cmd, &opt)
			if err != nil {
				return err
			}
			res, err := audit.Verify(cmd.Context(), it, opt)
			if err != nil {
				return err
			}
			warnDamage(cmd, it) // and misnamed segments, which the chain alone does not show
			switch format {
			case "json":
				if err := printJSON(cmd, res); err != nil {
					return err
				}
			case "text":
				fmt.Fprint(cmd.OutOrStdout(), res.Summary())
			default:
				return fmt.Errorf("--format %q: use text or json", format)
			}
			if !res.OK() {
				return &exitError{code: 2, err: fmt.Errorf("audit log failed verification: %s", res.Problems[0])}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&ckptFiles, "checkpoints", nil, "signed checkpoint file (default "+audit.DefaultCheckpointFile+" if present); repeat it for each replica's file")
	cmd.Flags().StringArrayVar(&pubkeys, "pubkey", nil, "public key of the checkpoints (default "+audit.DefaultKeyFile+".pub if present); repeat it, in the order of --checkpoints, when replicas sign with keys of their own")
	cmd.Flags().StringVar(&format, "format", "text", "text | json")
	cmd.Flags().BoolVar(&allowUnverified, "allow-unverified-shipped", false, "with the spool alone: accept that events shipped to ClickHouse are not checked (a note instead of a failure)")
	return cmd
}

// verifyKeys reads the checkpoint files and the public keys that signed them into opt.
// Each replica signs its own file, perhaps with a key of its own: the i-th key checks
// the i-th file, or one key checks them all. The first key also checks a spool's
// shipped marker, with or without checkpoints.
func verifyKeys(opt *audit.VerifyOptions, files, pubkeys []string) error {
	if len(files) > 0 && len(pubkeys) == 0 {
		return errors.New("checkpoints need the public key that signed them: give --pubkey")
	}
	if len(files) > 0 && len(pubkeys) != 1 && len(pubkeys) != len(files) {
		return fmt.Errorf("%d checkpoint files and %d public keys: give one --pubkey for all, or one per --checkpoints in the same order", len(files), len(pubkeys))
	}
	keys := make([]ed25519.PublicKey, len(pubkeys))
	for i, p := range pubkeys {
		var err error
		if keys[i], err = audit.LoadPublicKey(p); err != nil {
			return err
		}
	}
	if len(keys) > 0 {
		opt.PublicKey = keys[0]
	}
	for i, f := range files {
		cps, err := audit.ReadCheckpoints(f)
		if err != nil {
			return err
		}
		opt.CheckpointsGiven = true
		opt.Checkpoints = append(opt.Checkpoints, cps...)
		if len(keys) == 1 {
			continue
		}
		if opt.Keys == nil {
			opt.Keys = map[string]ed25519.PublicKey{}
		}
		for _, c := range cps {
			if k, ok := opt.Keys[c.Instance]; ok && !k.Equal(keys[i]) {
				return fmt.Errorf("instance %s has checkpoints in %s and in an earlier file given with another key: give each instance's checkpoints once", review.Printable(c.Instance), f)
			}
			opt.Keys[c.Instance] = keys[i]
		}
	}
	return nil
}

// chain opens the chain to verify: ClickHouse, the spool, or both merged when both
// --clickhouse and --spool are given.
func (a *auditFlags) chain(cmd *cobra.Command, opt *audit.VerifyOptions) (audit.Iterator, error) {
	spoolGiven := cmd.Flag("spool") != nil && cmd.Flag("spool").Changed
	var its []audit.Iterator
	closeAll := func() {
		for _, it := range its {
			it.Close()
		}
	}
	if a.clickhouse == "" || spoolGiven {
		st, err := audit.OpenSpoolStore(a.spool)
		if err != nil {
			return nil, err
		}
		m, err := st.Shipped()
		if err != nil {
			return nil, err
		}
		if st.Instance() == "" && !opt.CheckpointsGiven {
			return nil, fmt.Errorf("%s holds no audit spool (no instance file); if one was there, verify with its --checkpoints to see what was removed", a.spool)
		}
		opt.Spool = &audit.SpoolSource{Instance: st.Instance(), Shipped: m, WithSink: a.clickhouse != ""}
		it, err := st.Chain(cmd.Context())
		if err != nil {
			return nil, err
		}
		its = append(its, it)
	}
	if a.clickhouse != "" {
		st, _, err := a.open()
		if err != nil {
			closeAll()
			return nil, err
		}
		it, err := st.Chain(cmd.Context())
		if err != nil {
			closeAll()
			return nil, err
		}
		its = append(its, it)
	}
	if len(its) == 2 {
		return audit.MergeChains(its[1], its[0]), nil
	}
	return its[0], nil
}

func auditRepairCmd(a *auditFlags) *cobra.Command {
	var ckpts, key string
	cmd := &cobra.Command{
		Use:   "repair",
		Short: "Make a damaged audit spool usable again without destroying anything",
		Long: `The exchange refuses to start on a spool with damage other than a torn final frame
(a crash mid-write), naming the file, offset and seq. Stop the exchange, keep a copy of
the spool directory, then run repair: it moves the damaged segment and every segment after
it, byte for byte, into a damaged-<time> directory beside the segments, keeps the intact
events before the damage in the live chain, and appends a "gap" event that links to the
last intact event and records the lost range. The gap is signed with the checkpoint key
when given, and ` + "`govx audit verify`" + ` reports it from then on (exit 2): the repair
is evidence too. Give the damaged-<time> directory to the auditors.`,
		Example: `  govx audit repair --spool /var/lib/govx/audit/spool --key /etc/govx/audit-signing.key --checkpoints /var/lib/govx/audit/checkpoints.jsonl`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opt := audit.RepairOptions{CheckpointFile: ckpts}
			if ckpts == "" && fileExists(audit.DefaultCheckpointFile) {
				opt.CheckpointFile = audit.DefaultCheckpointFile
			}
			if key == "" && fileExists(audit.DefaultKeyFile) {
				key = audit.DefaultKeyFile
			}
			if key != "" {
				k, err := audit.LoadPrivateKey(key)
				if err != nil {
					return err
				}
				opt.Key = k
			}
			res, err := audit.Repair(a.spool, opt)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !res.Repaired {
				if opt.CheckpointFile == "" {
					fmt.Fprintf(out, "nothing to repair that the spool alone shows: %s has no damage and no gap. Events removed from its end show only against the exchange's checkpoint file: if the exchange still refuses the spool, run this again with --checkpoints FILE (its audit.checkpoints)\n", a.spool)
					return nil
				}
				fmt.Fprintf(out, "nothing to repair: spool %s has no damage and no gap (a torn final frame, if any, is cut by the exchange when it opens the spool)\n", a.spool)
				return nil
			}
			if res.Gap == nil {
				fmt.Fprintf(out, "repaired spool %s\n  damage: %s\n  nothing lost: %s\n", a.spool, res.Problem, res.Fixed)
				return nil
			}
			fmt.Fprintf(out, "repaired spool %s\n  damage: %s\n  lost from the live chain: seq %d..%d\n  set aside intact in: %s\n  gap event: %s (seq %d)\n",
				a.spool, res.Problem, res.LostFrom, res.LostTo, res.MovedTo, res.Gap.EventID, res.Gap.Seq)
			if opt.Key == nil {
				fmt.Fprintln(out, "  note: no signing key given: the gap event is chained but not covered by a checkpoint until the exchange signs its head")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&ckpts, "checkpoints", "", "checkpoint file: bounds the lost range and receives a checkpoint at the gap (default "+audit.DefaultCheckpointFile+" if present)")
	cmd.Flags().StringVar(&key, "key", "", "checkpoint signing key (default "+audit.DefaultKeyFile+" if present)")
	return cmd
}

func auditKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Create the Ed25519 key that signs audit checkpoints",
		Long: `Write a new Ed25519 private key (PKCS #8 PEM, mode 0600) for the exchange to sign
audit checkpoints with, and its public key next to it (FILE.pub) for auditors. Refuses to
overwrite an existing key: checkpoints signed with it could no longer be verified.`,
		Example: `  govx audit keygen
  govx audit keygen --out /etc/govx/audit-signing.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := audit.GenerateKey(out, out+".pub"); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (keep it secret, readable by the exchange only) and %s (give it to auditors)\n", out, out+".pub")
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", audit.DefaultKeyFile, "private key file to write")
	return cmd
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
