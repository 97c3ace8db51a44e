package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"govx/exchange"
	"govx/exchange/apply"
	"govx/exchange/audit/review"
	"govx/exchange/client"
	"govx/schemas"
)

// processClient calls the exchange's /v1/applications and /v1/corrections endpoints with
// the token of a department system, resolved as the consumer commands resolve it.
type processClient struct {
	base, token string
	http        *http.Client
}

func (f *consumerFlags) processClient() (*processClient, error) {
	var cfg client.Config
	if f.profile != "" {
		p, err := client.LoadProfile(f.profile)
		if err != nil {
			return nil, err
		}
		cfg = p
	}
	if f.token != "" {
		cfg.Token = f.token
	} else if v := os.Getenv("GOVX_TOKEN"); v != "" && cfg.Token == "" {
		cfg.Token = v
	}
	if f.http != "" {
		cfg.HTTP = f.http
	} else if v := os.Getenv("GOVX_HTTP"); v != "" && cfg.HTTP == "" {
		cfg.HTTP = v
	}
	if cfg.HTTP == "" {
		cfg.HTTP = "http://127.0.0.1:8080"
	}
	if cfg.Token == "" {
		return nil, fmt.Errorf("no token: give --profile, --token or $GOVX_TOKEN (govx token issue makes one)")
	}
	return &processClient{base: strings.TrimRight(cfg.HTTP, "/"), token: cfg.Token, http: &http.Client{Timeout: time.Minute}}, nil
}

// call sends in as JSON (nil: no body) and decodes the answer into out; an error answer
// becomes an *exchange.Error with its code and reasons.
func (p *processClient) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var eb exchange.ErrorBody
		if json.Unmarshal(raw, &eb) != nil || eb.Error.Code == "" {
			return fmt.Errorf("http_error: %s from %s", resp.Status, p.base)
		}
		return &exchange.Error{Code: eb.Error.Code, Message: eb.Error.Message, Reasons: eb.Error.Reasons}
	}
	return json.Unmarshal(raw, out)
}

func init() {
	rootCmd.AddCommand(newApplyCmd(), newApplicationsCmd(), newCorrectionsCmd())
}

func newApplyCmd() *cobra.Command {
	var cf consumerFlags
	var r apply.Request
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Apply for shared data (共享申请): the data authority reviews, the provider answers",
		Long: `apply files a sharing application for your department: the dataset, the columns
your duty needs, the purpose and its legal basis (履职依据), the scenario, the access
(read, lookup, verify) and the validity asked for. The data authority reviews it within
its time limit, then the providing department answers within its own; an approval
becomes a sharing agreement the exchange serves at once. govx applications show ID
follows it.`,
		Example: `  govx apply --profile govx-demo/profiles/zj-3205.yaml --dataset population.person \
    --columns id_number,name,household_region,status --purpose housing-security-qualification \
    --legal-basis '《城镇住房保障条例》：住房保障资格审核' --scenario 住房保障资格审核 \
    --access read,lookup --valid-from 2026-03-01 --valid-until 2027-02-28`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := cf.processClient()
			if err != nil {
				return err
			}
			var a apply.Application
			if err := p.call(cmd.Context(), "POST", "/v1/applications", r, &a); err != nil {
				return err
			}
			return printApplication(cmd.OutOrStdout(), &a, asJSON)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&r.Dataset, "dataset", "", "the dataset applied for")
	fl.StringSliceVar(&r.Columns, "columns", nil, "the columns needed, comma-separated")
	fl.StringVar(&r.Purpose, "purpose", "", "the purpose, as requests will state it (e.g. housing-security-qualification)")
	fl.StringVar(&r.LegalBasis, "legal-basis", "", "the duty the data serves and its legal ground (履职依据)")
	fl.StringVar(&r.Scenario, "scenario", "", "the procedure the data is used in")
	fl.Int64Var(&r.CaseVolume, "case-volume", 0, "cases a year, estimated")
	fl.StringVar(&r.RowScope, "row-scope", "", "rows of this GB/T 2260 region (000000: nationwide; default your own region)")
	fl.StringSliceVar(&r.Access, "access", []string{"read"}, "read, lookup, verify")
	fl.StringVar(&r.ValidFrom, "valid-from", "", "first day of the validity asked for (2026-03-01)")
	fl.StringVar(&r.ValidUntil, "valid-until", "", "last day of the validity asked for (2027-02-28)")
	fl.StringArrayVar(&r.Attachments, "attachment", nil, "a reference to a supporting document (repeatable)")
	fl.StringVar(&r.Renews, "renews", "", "the application whose agreement this one renews")
	fl.StringVar(&r.System, "system", "", "the system the data is for (default the token's)")
	fl.BoolVar(&asJSON, "json", false, "print the application as JSON")
	cf.register(cmd)
	return cmd
}

// printApplication prints an application, its clock and its history.
func printApplication(w io.Writer, a *apply.Application, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(a)
	}
	w = textOut{w}
	fmt.Fprintf(w, "application %s  %s\n", a.ID, a.State)
	fmt.Fprintf(w, "applicant   %s/%s\n", a.Applicant, a.System)
	fmt.Fprintf(w, "dataset     %s (provider %s), columns %s, access %s\n", a.Dataset, a.Provider, strings.Join(a.Columns, ","), strings.Join(a.Access, ","))
	fmt.Fprintf(w, "purpose     %s — %s\n", a.Purpose, review.Printable(a.Scenario))
	fmt.Fprintf(w, "legal basis %s\n", review.Printable(a.LegalBasis))
	fmt.Fprintf(w, "validity    %s to %s\n", a.ValidFrom, a.ValidUntil)
	if a.Clock != "" {
		over := ""
		if a.Overdue {
			over = "  OVERDUE"
		}
		fmt.Fprintf(w, "clock       %s due by %s%s\n", a.Clock, dueDay(a.Due), over)
	}
	if a.Conditions != nil {
		c := a.Conditions
		fmt.Fprintf(w, "granted     columns %s, access %s, valid %s to %s, approval %s\n", strings.Join(c.Columns, ","), strings.Join(c.Access, ","), c.ValidFrom, c.ValidUntil, review.Printable(c.Approval))
		if len(c.Unmasked) > 0 || len(c.Masks) > 0 || c.RowScope != "" || c.MaxRows > 0 {
			fmt.Fprintf(w, "            unmasked %s, masks %v, row scope %s, max rows %d\n", orDash(strings.Join(c.Unmasked, ",")), c.Masks, orDash(c.RowScope), c.MaxRows)
		}
		fmt.Fprintf(w, "agreement   %s\n", a.Agreement)
	}
	for _, r := range a.Reasons {
		fmt.Fprintf(w, "reason      %s\n", review.Printable(r))
	}
	if a.Grounds != "" {
		fmt.Fprintf(w, "grounds     %s\n", review.Printable(a.Grounds))
	}
	printSteps(w, a.Steps)
	return nil
}

func printSteps(w io.Writer, steps []apply.Step) {
	for _, s := range steps {
		fmt.Fprintf(w, "  %s  %-22s %-13s -> %-13s by %s", s.At.In(schemas.ChinaTime).Format("2006-01-02 15:04"), s.Action, orDash(s.From), s.To, s.By)
		if s.Detail != "" {
			fmt.Fprintf(w, "  %s", review.Printable(s.Detail))
		}
		fmt.Fprintln(w)
	}
}

// dueDay is the last working day of a clock: Due is the instant that day ends.
func dueDay(due time.Time) string {
	return due.In(schemas.ChinaTime).Add(-time.Nanosecond).Format(time.DateOnly)
}

// textOut escapes, line by line, the control characters of what other departments
// wrote (reasons, legal bases, approval numbers), so an application shown on a
// reviewer's terminal cannot rewrite that terminal.
type textOut struct{ w io.Writer }

func (t textOut) Write(p []byte) (int, error) {
	lines := strings.Split(string(p), "\n")
	for i := range lines {
		lines[i] = review.Printable(lines[i])
	}
	if _, err := io.WriteString(t.w, strings.Join(lines, "\n")); err != nil {
		return 0, err
	}
	return len(p), nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newApplicationsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "applications",
		Short: "Review, answer, refuse, dispute and coordinate sharing applications",
		Long: `applications runs the sharing process (共享申请—答复) on the exchange. Each step is
taken by its role: the data authority reviews (review) and coordinates disputes
(coordinate); the provider's stewards answer (answer, refuse) and record negotiated
outcomes (negotiate); the applicant withdraws and disputes. Every step is audited; a step
refused changes nothing. list flags what is overdue on the working-day calendar.`,
	}
	var cf consumerFlags
	withClient := func(c *cobra.Command, run func(ctx context.Context, p *processClient, args []string) (*apply.Application, error)) *cobra.Command {
		var asJSON bool
		c.RunE = func(cmd *cobra.Command, args []string) error {
			p, err := cf.processClient()
			if err != nil {
				return err
			}
			a, err := run(cmd.Context(), p, args)
			if err != nil {
				return err
			}
			return printApplication(cmd.OutOrStdout(), a, asJSON)
		}
		c.Flags().BoolVar(&asJSON, "json", false, "print the application as JSON")
		cf.register(c)
		return c
	}
	step := func(name string, body any) func(ctx context.Context, p *processClient, args []string) (*apply.Application, error) {
		return func(ctx context.Context, p *processClient, args []string) (*apply.Application, error) {
			var a apply.Application
			err := p.call(ctx, "POST", "/v1/applications/"+url.PathEscape(args[0])+"/"+name, body, &a)
			return &a, err
		}
	}

	var state string
	var overdue bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the applications you are a party to (all of them for the data authority)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := cf.processClient()
			if err != nil {
				return err
			}
			q := url.Values{}
			if state != "" {
				q.Set("state", state)
			}
			if overdue {
				q.Set("overdue", "true")
			}
			var out struct {
				Applications []*apply.Application `json:"applications"`
			}
			if err := p.call(cmd.Context(), "GET", "/v1/applications?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			w := newTable(cmd.OutOrStdout(), "ID", "STATE", "APPLICANT", "DATASET", "PURPOSE", "DUE", "")
			for _, a := range out.Applications {
				due, flag := "", ""
				if a.Clock != "" {
					due = a.Clock + " " + dueDay(a.Due)
				}
				if a.Overdue {
					flag = "OVERDUE"
				}
				w.add(a.ID, string(a.State), a.Applicant, a.Dataset, a.Purpose, due, flag)
			}
			return w.flush()
		},
	}
	list.Flags().StringVar(&state, "state", "", "only this state (submitted, with_provider, approved, refused, withdrawn, disputed, negotiated, coordinated)")
	list.Flags().BoolVar(&overdue, "overdue", false, "only those whose time limit has run out")
	cf.register(list)

	show := withClient(&cobra.Command{Use: "show ID", Short: "Show an application, its clock and its history", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, p *processClient, args []string) (*apply.Application, error) {
			var a apply.Application
			err := p.call(ctx, "GET", "/v1/applications/"+url.PathEscape(args[0]), nil, &a)
			return &a, err
		})

	var review apply.Outcome
	var reviewFail bool
	var reviewCond apply.Conditions
	reviewCmd := withClient(&cobra.Command{Use: "review ID", Short: "The data authority's compliance review: pass (default) or --fail with --reason", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, p *processClient, args []string) (*apply.Application, error) {
			review.Grant = !reviewFail
			if reviewCond.Approval != "" {
				review.Conditions = &reviewCond
			}
			return step("review", review)(ctx, p, args)
		})
	reviewCmd.Flags().BoolVar(&reviewFail, "fail", false, "the application fails the review (give --reason)")
	reviewCmd.Flags().StringArrayVar(&review.Reasons, "reason", nil, "a reason for failing it (repeatable)")
	reviewCmd.Flags().StringVar(&reviewCond.Approval, "approval", "", "approval document number, for a dataset shared unconditionally (granted on review)")

	var cond apply.Conditions
	answer := withClient(&cobra.Command{Use: "answer ID", Short: "The provider approves, with conditions (at most what was applied for)", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, p *processClient, args []string) (*apply.Application, error) {
			return step("approve", cond)(ctx, p, args)
		})
	conditionFlags(answer, &cond)

	var reasons []string
	refuse := withClient(&cobra.Command{Use: "refuse ID", Short: "The provider refuses, with reasons", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, p *processClient, args []string) (*apply.Application, error) {
			return step("refuse", map[string]any{"reasons": nonNilStrings(reasons)})(ctx, p, args)
		})
	refuse.Flags().StringArrayVar(&reasons, "reason", nil, "a reason (repeatable; at least one)")

	withdraw := withClient(&cobra.Command{Use: "withdraw ID", Short: "The applicant withdraws an open application", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, p *processClient, args []string) (*apply.Application, error) {
			return step("withdraw", nil)(ctx, p, args)
		})

	var grounds string
	dispute := withClient(&cobra.Command{Use: "dispute ID", Short: "A refused applicant that still needs the data disputes the refusal", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, p *processClient, args []string) (*apply.Application, error) {
			return step("dispute", map[string]any{"grounds": grounds})(ctx, p, args)
		})
	dispute.Flags().StringVar(&grounds, "grounds", "", "why the data is still needed")

	settle := func(name, short string) *cobra.Command {
		var o apply.Outcome
		var c apply.Conditions
		cmd := withClient(&cobra.Command{Use: name + " ID", Short: short, Args: cobra.ExactArgs(1)},
			func(ctx context.Context, p *processClient, args []string) (*apply.Application, error) {
				if o.Grant {
					o.Conditions = &c
				}
				return step(name, o)(ctx, p, args)
			})
		cmd.Flags().BoolVar(&o.Grant, "grant", false, "the dispute ends granted (with the condition flags); otherwise give --reason")
		cmd.Flags().StringArrayVar(&o.Reasons, "reason", nil, "why the refusal stands (repeatable)")
		conditionFlags(cmd, &c)
		return cmd
	}
	cmd.AddCommand(list, show, reviewCmd, answer, refuse, withdraw, dispute,
		settle("negotiate", "The provider records the outcome negotiated with the applicant"),
		settle("coordinate", "The data authority decides a dispute"))
	return cmd
}

func conditionFlags(cmd *cobra.Command, c *apply.Conditions) {
	fl := cmd.Flags()
	fl.StringVar(&c.Approval, "approval", "", "the approval document number (审批文号); required for a grant")
	fl.StringSliceVar(&c.Columns, "columns", nil, "granted columns (default: those applied for)")
	fl.StringSliceVar(&c.Unmasked, "unmasked", nil, "granted columns returned without their mask")
	fl.StringToStringVar(&c.Masks, "mask", nil, "column=mask overriding the schema's default mask")
	fl.StringVar(&c.RowScope, "row-scope", "", "row scope as a GB/T 2260 code (default: as applied for)")
	fl.Int64Var(&c.MaxRows, "max-rows", 0, "cap on one result (default: the catalog's)")
	fl.StringSliceVar(&c.Access, "access", nil, "granted access: read, lookup, verify (default: as applied for)")
	fl.StringVar(&c.ValidFrom, "valid-from", "", "first valid day (default: as applied for)")
	fl.StringVar(&c.ValidUntil, "valid-until", "", "last valid day (default: as applied for)")
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func newCorrectionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "corrections",
		Short: "Flag a shared record as wrong (校核纠错) and answer flags as its provider",
		Long: `corrections sends a record your department believes wrong back to its source: the
provider's stewards see it in their queue (list), answer it within their time limit
(corrected at source, or rejected with a reason), and the flag closes once the corrected
value reaches the exchange through the connector like any change and is served.`,
	}
	var cf consumerFlags
	printFix := func(w io.Writer, x *apply.Correction) {
		w = textOut{w}
		fmt.Fprintf(w, "correction %s  %s\n", x.ID, x.State)
		fmt.Fprintf(w, "record     %s %s, column %s: believed %q\n", x.Dataset, x.Key, x.Column, x.Value)
		fmt.Fprintf(w, "flagged by %s/%s, evidence %s; provider %s\n", x.Flagger, x.System, review.Printable(x.Evidence), x.Provider)
		if x.Clock != "" {
			over := ""
			if x.Overdue {
				over = "  OVERDUE"
			}
			fmt.Fprintf(w, "clock      answer due by %s%s\n", dueDay(x.Due), over)
		}
		if x.Answer != "" {
			fmt.Fprintf(w, "answer     %s\n", review.Printable(x.Answer))
		}
		printSteps(w, x.Steps)
	}
	run := func(c *cobra.Command, fn func(ctx context.Context, p *processClient, args []string) (*apply.Correction, error)) *cobra.Command {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			p, err := cf.processClient()
			if err != nil {
				return err
			}
			x, err := fn(cmd.Context(), p, args)
			if err != nil {
				return err
			}
			printFix(cmd.OutOrStdout(), x)
			return nil
		}
		cf.register(c)
		return c
	}
	var f apply.Flag
	flag := run(&cobra.Command{Use: "flag", Short: "Flag a record's column as wrong, with the value believed right and the evidence", Args: cobra.NoArgs},
		func(ctx context.Context, p *processClient, _ []string) (*apply.Correction, error) {
			var x apply.Correction
			return &x, p.call(ctx, "POST", "/v1/corrections", f, &x)
		})
	flag.Flags().StringVar(&f.Dataset, "dataset", "", "the dataset")
	flag.Flags().StringVar(&f.Key, "key", "", "the record's key")
	flag.Flags().StringVar(&f.Column, "column", "", "the wrong column")
	flag.Flags().StringVar(&f.Value, "value", "", "the value believed right")
	flag.Flags().StringVar(&f.Evidence, "evidence", "", "a reference to the evidence (document number or URL)")

	show := run(&cobra.Command{Use: "show ID", Short: "Show a correction and its history", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, p *processClient, args []string) (*apply.Correction, error) {
			var x apply.Correction
			return &x, p.call(ctx, "GET", "/v1/corrections/"+url.PathEscape(args[0]), nil, &x)
		})
	var ans apply.Answer
	var reject bool
	answer := run(&cobra.Command{Use: "answer ID", Short: "The provider answers: corrected at source (default), or --reject with --note", Args: cobra.ExactArgs(1)},
		func(ctx context.Context, p *processClient, args []string) (*apply.Correction, error) {
			ans.Corrected = !reject
			var x apply.Correction
			return &x, p.call(ctx, "POST", "/v1/corrections/"+url.PathEscape(args[0])+"/answer", ans, &x)
		})
	answer.Flags().BoolVar(&reject, "reject", false, "the record is right: reject the flag (give --note)")
	answer.Flags().StringVar(&ans.Note, "note", "", "what was done, or why rejected")

	var state string
	var overdue bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the corrections you flagged or must answer (all of them for the data authority)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := cf.processClient()
			if err != nil {
				return err
			}
			q := url.Values{}
			if state != "" {
				q.Set("state", state)
			}
			if overdue {
				q.Set("overdue", "true")
			}
			var out struct {
				Corrections []*apply.Correction `json:"corrections"`
			}
			if err := p.call(cmd.Context(), "GET", "/v1/corrections?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			w := newTable(cmd.OutOrStdout(), "ID", "STATE", "FLAGGED BY", "DATASET", "KEY", "COLUMN", "DUE", "")
			for _, x := range out.Corrections {
				due, flag := "", ""
				if x.Clock != "" {
					due = dueDay(x.Due)
				}
				if x.Overdue {
					flag = "OVERDUE"
				}
				w.add(x.ID, string(x.State), x.Flagger, x.Dataset, x.Key, x.Column, due, flag)
			}
			return w.flush()
		},
	}
	list.Flags().StringVar(&state, "state", "", "only this state (flagged, corrected, rejected, closed)")
	list.Flags().BoolVar(&overdue, "overdue", false, "only those whose time limit has run out")
	cf.register(list)
	cmd.AddCommand(flag, list, show, answer)
	return cmd
}
