package main

import (
	"encoding/json"
	"strings"

	"github.com/spf13/cobra"

	"govx/exchange"
)

func init() {
	var cf consumerFlags
	var purpose, caseRef, columns string
	cmd := &cobra.Command{
		Use:   "lookup DATASET KEY",
		Short: "Fetch one record by key, as your agreement allows",
		Long: `Fetch one record by its key. The key travels in the request body, not the URL. A key
outside your department's scope answers "not found", exactly like a missing one. For a
composite key give a JSON array, e.g. '["GDP","330100","2024Q3"]'.`,
		Example: `  govx lookup population.person 330106199003071236 --purpose minimum-living-allowance-review --profile demo/profiles/mz-3301.yaml`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			lc := exchange.LookupCmd{Key: keyJSON(args[1]), Purpose: purpose, CaseRef: caseRef}
			if columns != "" {
				lc.Columns = strings.Split(columns, ",")
			}
			rec, err := c.Lookup(cmd.Context(), args[0], lc)
			if err != nil {
				return err
			}
			return printJSON(cmd, rec)
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&purpose, "purpose", "", "why you need the record, as your sharing agreement names it (required)")
	cmd.Flags().StringVar(&caseRef, "case", "", "the case (办件编号) this serves, for the audit log")
	cmd.Flags().StringVar(&columns, "columns", "", "comma-separated columns (default: every granted column)")
	cmd.MarkFlagRequired("purpose")
	rootCmd.AddCommand(cmd)
}

// keyJSON turns a key argument into JSON: an array stays an array, anything else is a
// string.
func keyJSON(arg string) json.RawMessage {
	if strings.HasPrefix(strings.TrimSpace(arg), "[") && json.Valid([]byte(arg)) {
		return json.RawMessage(arg)
	}
	b, _ := json.Marshal(arg)
	return b
}

func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
