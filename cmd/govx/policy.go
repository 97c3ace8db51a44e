package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"govx/exchange"
	"govx/exchange/policy"
	"govx/policies"
	"govx/schemas"
)

func init() { rootCmd.AddCommand(newPolicyCmd()) }

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "The data steward's tools: test, check and explain the sharing policy",
		Long: `The sharing policy is Rego (package govx.sharing) plus data a steward edits: the sharing
catalog (catalog.yaml), the departments (departments.yaml) and the sharing agreements
(agreements.yaml). The exchange reloads a policy directory when it changes; these
commands test a change before it goes live. DIR defaults to the policy built into this
binary. See docs/policies.md.`,
	}
	cmd.AddCommand(newPolicyTestCmd(), newPolicyCheckCmd(), newPolicyExplainCmd())
	return cmd
}

// loadPolicy loads DIR, or the embedded policy without one.
func loadPolicy(dir string) (*policies.Bundle, error) {
	if dir == "" {
		return policies.Embedded()
	}
	return policies.Load(dir)
}

func argDir(args []string) string {
	if len(args) > 0 {
		return args[0]
	}
	return ""
}

func newPolicyTestCmd() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "test [DIR]",
		Short: "Run the policy's Rego tests and report coverage",
		Long: `Runs every test_* rule of the *_test.rego files in DIR with the embedded OPA, against the
directory's own data, and reports failures and the coverage of the policy (not test)
modules. Exits 1 if any test fails, 2 if the tests cannot run (e.g. the Rego does not
compile).`,
		Example: `  govx policy test                 # the policy built into govx
  govx policy test ./policies -v   # a working copy, every test listed`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			b, err := loadPolicy(argDir(args))
			if err != nil {
				printProblems(out, err)
				return &exitError{code: 2, err: errors.New("the policy could not be loaded")}
			}
			rep, err := policies.RunTests(cmd.Context(), b)
			if err != nil {
				printProblems(out, err)
				return &exitError{code: 2, err: errors.New("the Rego tests could not run")}
			}
			for _, r := range rep.Results {
				switch {
				case r.Err != nil:
					fmt.Fprintf(out, "ERROR %s (%s:%d): %v\n", r.Name, r.File, r.Line, r.Err)
				case !r.Pass:
					fmt.Fprintf(out, "FAIL  %s (%s:%d)\n", r.Name, r.File, r.Line)
					if r.Failed != "" {
						fmt.Fprintf(out, "      false: %s\n", r.Failed)
					}
				case verbose:
					fmt.Fprintf(out, "PASS  %s (%s)\n", r.Name, r.Duration.Round(time.Microsecond))
				}
			}
			failed := rep.Failed()
			fmt.Fprintf(out, "%d tests, %d passed, %d failed; coverage %.1f%% of the policy\n",
				len(rep.Results), len(rep.Results)-failed, failed, rep.Coverage)
			if verbose && len(rep.NotCovered) > 0 {
				fmt.Fprintf(out, "not covered: %s\n", strings.Join(rep.NotCovered, ", "))
			}
			if len(rep.Results) == 0 {
				return &exitError{code: 1, err: errors.New("no Rego tests found: write test_* rules in *_test.rego files")}
			}
			if failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d Rego tests failed", failed, len(rep.Results))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list every test and the lines no test covers")
	return cmd
}

func newPolicyCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check [DIR]",
		Short: "Compile the policy strictly and check its data",
		Long: `Compiles the Rego strictly and checks the data against the dataset schemas and against
itself: every agreement must name a registered department, a catalogued dataset, that
dataset's columns, known actions and masks, and a validity that ends after it starts;
unknown keys are errors. Each problem names its file, line and entry. Exits 1 on any
problem. The exchange refuses to load, or reload, a policy that fails this check.

A policy that passes is also analysed for the exchange's decision cache: "decision
cache: on" when its decisions provably depend on nothing but the request and the
agreement validity boundaries, otherwise "off" with every place that reads the time (or
could) in another way, such as sharing.rego:42 reads input.time via time.clock. An
uncached policy is decided correctly, only more slowly. "compiled decision: on" when
the policy is the shipped sharing.rego (compared as parsed Rego), whose rules the
exchange also runs as Go, checked at load against the Rego (docs/policies.md).`,
		Example: `  govx policy check ./policies`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			b, err := loadPolicy(argDir(args))
			if err != nil {
				printProblems(out, err)
				return &exitError{code: 1, err: errors.New("the policy has problems")}
			}
			cat, err := schemas.Load()
			if err != nil {
				return err
			}
			if probs := policies.Check(b, cat); len(probs) > 0 {
				printProblems(out, policies.Problems(probs))
				return &exitError{code: 1, err: fmt.Errorf("the policy has %d problem(s)", len(probs))}
			}
			fmt.Fprintf(out, "ok: %s: %d datasets, %d departments, %d agreements; revision %s\n",
				b.Source, len(b.Datasets), len(b.Departments), len(b.Agreements), b.Revision)
			imode, err := policy.IndexModeOf(b)
			if err != nil {
				return err
			}
			printMode(out, "decision index: ", imode.On, imode.Why)
			cmode := policy.CompiledModeOf(b)
			printMode(out, "compiled decision: ", cmode.On, cmode.Why)
			mode, err := policy.CacheModeOf(b)
			if err != nil {
				return err
			}
			printMode(out, "decision cache: ", mode.On, mode.Why)
			return nil
		},
	}
}

// printMode prints whether the exchange would index or cache the policy's decisions:
// the first reason on the line, any others under it.
func printMode(w io.Writer, label string, on bool, whys []string) {
	state := "off"
	if on {
		state = "on"
	}
	for i, why := range whys {
		if i == 0 {
			fmt.Fprintf(w, "%s%s — %s\n", label, state, why)
			continue
		}
		fmt.Fprintf(w, "%*s%s\n", utf8.RuneCountInString(label+state+" — "), "", why)
	}
	if len(whys) == 0 {
		fmt.Fprintf(w, "%s%s\n", label, state)
	}
}

func printProblems(w io.Writer, err error) {
	for _, p := range policies.AsProblems(err) {
		fmt.Fprintln(w, p.String())
	}
}

func newPolicyExplainCmd() *cobra.Command {
	var (
		as, dataset, action, purpose, caseRef, at, dir string
		columns                                        []string
		asJSON                                         bool
	)
	cmd := &cobra.Command{
		Use:   "explain --as DEPT[/SYSTEM] --dataset D [flags]",
		Short: "Show the decision for a request, and why",
		Long: `Decides a request exactly as the exchange would, through the same engine, and shows the
decision: allowed or denied, the agreement that granted it, each reason, the columns,
masks, row filter and row cap, and the policy revision. Nothing is read or audited.`,
		Example: `  govx policy explain --as mz-3301/dibao-review --dataset population.person \
      --purpose minimum-living-allowance-review --columns id_number,name,household_region
  govx policy explain --as wj-3302 --dataset population.person --action verify \
      --purpose birth-certificate-issuance --time 2027-01-01
  govx policy explain --policies ./policies --as zj-3205 --dataset resource.land_parcel --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if as == "" || dataset == "" {
				return &exitError{code: 2, err: errors.New("--as and --dataset are required")}
			}
			dept, sys, _ := strings.Cut(as, "/")
			t := time.Now()
			if at != "" {
				var err error
				if t, err = parseExplainTime(at); err != nil {
					return &exitError{code: 2, err: err}
				}
			}
			b, err := loadPolicy(dir)
			if err != nil {
				printProblems(cmd.OutOrStdout(), err)
				return &exitError{code: 1, err: errors.New("the policy could not be loaded")}
			}
			cat, err := schemas.Load()
			if err != nil {
				return err
			}
			eng, err := policy.New(cat, policy.WithBundle(b), policy.WithCacheSize(0), policy.WithIndex(false))
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			req := exchange.Request{
				Subject: exchange.Subject{Department: dept, System: sys},
				Action:  exchange.Action(action), Dataset: dataset, Columns: columns,
				Purpose: purpose, CaseRef: caseRef, Time: t,
			}
			d := eng.Decide(cmd.Context(), req)
			if asJSON {
				ds, _ := cat.Dataset(dataset)
				in, err := policy.Input(req, ds)
				if err != nil {
					return err
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				return enc.Encode(map[string]any{"input": in, "decision": d})
			}
			printDecision(cmd.OutOrStdout(), b, req, d)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&as, "as", "", "the requesting department, optionally with its system: DEPT[/SYSTEM]")
	f.StringVar(&dataset, "dataset", "", "the dataset, e.g. population.person")
	f.StringVar(&action, "action", "read", "read, changes, lookup, verify or discover")
	f.StringVar(&purpose, "purpose", "", "the purpose of the request, e.g. minimum-living-allowance-review")
	f.StringSliceVar(&columns, "columns", nil, "the columns asked for, comma-separated (default: every granted column)")
	f.StringVar(&caseRef, "case-ref", "", "the case (办件编号) the request serves")
	f.StringVar(&at, "time", "", "decide as of this time: RFC 3339, or a date meaning its midnight in China Standard Time (default now)")
	f.StringVar(&dir, "policies", "", "the policy directory (default the policy built into govx)")
	f.BoolVar(&asJSON, "json", false, "print the policy input and the decision as JSON")
	return cmd
}

func parseExplainTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t, err = time.ParseInLocation(time.DateOnly, s, schemas.ChinaTime)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("--time %q: want RFC 3339 (2026-11-26T12:00:00+08:00) or a date (2026-11-26)", s)
	}
	// Outside the times the policy can read it would explain a policy_error, not a
	// decision; and Go's zero time (year 1) the engine reads as now.
	if !policy.Decidable(t) {
		return time.Time{}, fmt.Errorf("--time %q: the policy decides only times from %s to %s", s,
			time.Unix(0, math.MinInt64).UTC().Format(time.RFC3339Nano), time.Unix(0, math.MaxInt64).UTC().Format(time.RFC3339Nano))
	}
	return t, nil
}

func printDecision(w io.Writer, b *policies.Bundle, req exchange.Request, d exchange.Decision) {
	verdict := "DENY"
	if d.Allow {
		verdict = "ALLOW"
	}
	fmt.Fprintf(w, "decision    %s\n", verdict)
	fmt.Fprintf(w, "request     %s %s %s", req.Subject, req.Action, req.Dataset)
	if req.Purpose != "" {
		fmt.Fprintf(w, " for %s", req.Purpose)
	}
	fmt.Fprintf(w, " at %s\n", req.Time.Format(time.RFC3339))
	if dept, ok := b.Department(req.Department); ok {
		level := dept.Level
		if dept.Region != "" {
			level += " " + dept.Region
		}
		fmt.Fprintf(w, "department  %s (%s)\n", dept.Name, level)
	}
	if d.Agreement != "" {
		fmt.Fprintf(w, "agreement   %s", d.Agreement)
		if a, ok := b.Agreement(d.Agreement); ok {
			fmt.Fprintf(w, " %s (approval %s; valid %s to %s)", a.Title, a.Approval, a.ValidFrom, a.ValidUntil)
			if a.Application != "" {
				fmt.Fprintf(w, "\napplication %s (the approved sharing application that granted it)", a.Application)
			}
		}
		fmt.Fprintln(w)
	} else if d.Allow {
		fmt.Fprintln(w, "agreement   none needed (unconditional sharing)")
	}
	for _, r := range d.Reasons {
		fmt.Fprintf(w, "reason      %s: %s\n", r.Code, r.Message)
	}
	if d.Allow {
		fmt.Fprintf(w, "columns     %s\n", strings.Join(d.Columns, ", "))
		if len(d.Masks) == 0 {
			fmt.Fprintln(w, "masks       none")
		} else {
			cols := make([]string, 0, len(d.Masks))
			for c := range d.Masks {
				cols = append(cols, c)
			}
			sort.Strings(cols)
			parts := make([]string, len(cols))
			for i, c := range cols {
				parts[i] = c + " → " + d.Masks[c]
			}
			fmt.Fprintf(w, "masks       %s\n", strings.Join(parts, ", "))
		}
		if len(d.RowFilter) == 0 {
			fmt.Fprintln(w, "row filter  none (every region)")
		} else {
			parts := make([]string, len(d.RowFilter))
			for i, f := range d.RowFilter {
				parts[i] = fmt.Sprintf("%s %s %q", f.Column, f.Op, fmt.Sprint(f.Value))
			}
			fmt.Fprintf(w, "row filter  %s\n", strings.Join(parts, " and "))
		}
		if d.MaxRows > 0 {
			fmt.Fprintf(w, "max rows    %d\n", d.MaxRows)
		} else {
			fmt.Fprintln(w, "max rows    no cap")
		}
		if t := d.Aggregate; t != nil {
			fmt.Fprintf(w, "aggregate   group by %s; measures %s; groups under %d suppressed\n", strings.Join(t.GroupBy, ", "), strings.Join(t.Measures, ", "), t.MinGroupSize)
		}
	}
	fmt.Fprintf(w, "revision    %s  %s\n", d.Revision, b.Source)
}
