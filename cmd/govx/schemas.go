package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"govx/schemas"
)

func init() {
	cmd := &cobra.Command{
		Use:   "schemas",
		Short: "List, show and check the shared dataset schemas",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the datasets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := schemas.Load()
			if err != nil {
				return err
			}
			w := newTable(cmd.OutOrStdout(), "DATASET", "VERSION", "KEY", "PROVIDER", "TITLE")
			for _, d := range cat.Datasets() {
				w.add(d.ID, strconv.Itoa(d.Version), strings.Join(d.Key, ","), d.Provider.Code, d.Title.Zh+" / "+d.Title.En)
			}
			return w.flush()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "show DATASET",
		Short:   "Show one dataset's fields, sensitivities, masks and checks",
		Example: "  govx schemas show population.person",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := lookupDataset(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s  %s / %s  (version %d)\n", d.ID, d.Title.Zh, d.Title.En, d.Version)
			fmt.Fprintf(out, "provider: %s %s\nkey: %s\n", d.Provider.Code, d.Provider.Zh, strings.Join(d.Key, ", "))
			if len(d.ExactlyOneOf) > 0 {
				fmt.Fprintf(out, "exactly one of: %s\n", strings.Join(d.ExactlyOneOf, ", "))
			}
			fmt.Fprintln(out)
			w := newTable(out, "FIELD", "TYPE", "NULL", "SENSITIVITY", "MASK", "CHECK", "TITLE")
			for _, f := range d.Fields {
				check := f.Check
				switch {
				case check != "":
				case len(f.Codes) > 0:
					check = fmt.Sprintf("code list (%d codes, below)", len(f.Codes))
				case len(f.Enum) > 0:
					check = "one of " + strings.Join(f.Enum, "|")
				case f.Pattern != "":
					check = f.Pattern
				default:
					check = "-"
				}
				null := "no"
				if f.Nullable {
					null = "yes"
				}
				w.add(f.Name, f.Type, null, string(f.Sensitivity), f.Mask, check, f.Title.Zh+" / "+f.Title.En)
			}
			if err := w.flush(); err != nil {
				return err
			}
			for _, f := range d.Fields {
				if len(f.Codes) == 0 {
					continue
				}
				fmt.Fprintf(out, "\n%s codes:\n", f.Name)
				codes := newTable(out)
				for _, c := range f.Codes {
					codes.add("  "+c.Code, c.Title.Zh+" / "+c.Title.En)
				}
				if err := codes.flush(); err != nil {
					return err
				}
			}
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "check DATASET FILE.jsonl",
		Short: "Validate a JSON-lines file of records against a dataset schema",
		Long: `Validate every line of FILE.jsonl (one JSON object per line, in the canonical form
connectors publish: dates YYYY-MM-DD, timestamps RFC 3339, decimals as strings) against the
dataset's schema. Each invalid row is printed with its line number and every reason; the
command exits with status 1 if any row is invalid. Use "-" to read standard input.`,
		Example: "  govx schemas check population.person persons.jsonl",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := lookupDataset(args[0])
			if err != nil {
				return err
			}
			in := os.Stdin
			if args[1] != "-" {
				if in, err = os.Open(args[1]); err != nil {
					return err
				}
				defer in.Close()
			}
			out := cmd.OutOrStdout()
			total, bad, err := d.CheckJSONL(in, func(r schemas.LineResult) {
				key := ""
				if r.Key != "" {
					key = " (key " + r.Key + ")"
				}
				fmt.Fprintf(out, "line %d%s:\n", r.Line, key)
				for _, e := range r.Errors {
					fmt.Fprintf(out, "  %s: %s [%s]\n", e.Field, e.Message, e.Code)
				}
			})
			if err != nil {
				return fmt.Errorf("reading %s: %w", args[1], err)
			}
			fmt.Fprintf(out, "%d records, %d valid, %d invalid\n", total, total-bad, bad)
			if bad > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d records in %s are invalid for %s", bad, total, args[1], d.ID)}
			}
			return nil
		},
	})
	rootCmd.AddCommand(cmd)
}

// lookupDataset finds a dataset by id, with an error listing the known ones.
func lookupDataset(id string) (*schemas.Dataset, error) {
	cat, err := schemas.Load()
	if err != nil {
		return nil, err
	}
	d, ok := cat.Dataset(id)
	if !ok {
		var ids []string
		for _, d := range cat.Datasets() {
			ids = append(ids, d.ID)
		}
		return nil, fmt.Errorf("unknown dataset %q; known datasets: %s", id, strings.Join(ids, ", "))
	}
	return d, nil
}
