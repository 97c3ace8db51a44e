package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"govx/exchange"
)

func init() {
	var cf consumerFlags
	var purpose, caseRef string
	var claims []string
	cmd := &cobra.Command{
		Use:   "verify DATASET KEY --claim FIELD=VALUE...",
		Short: "Check claims about one record (核验) without seeing its values",
		Long: `Check whether claims match the record with KEY. The answer is only true or false per
claim, never the stored value. Claims are normalized as connectors normalize source values
(spaces, full-width characters, a lower-case x).`,
		Example: `  govx verify population.person 330106199003071236 --claim name=张三 --claim birth_date=1990-03-07 --purpose medical-insurance-enrolment --profile demo/profiles/wj-3302.yaml`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(claims) == 0 {
				return fmt.Errorf("give at least one --claim FIELD=VALUE")
			}
			vc := exchange.VerifyCmd{Key: keyJSON(args[1]), Claims: map[string]any{}, Purpose: purpose, CaseRef: caseRef}
			for _, cl := range claims {
				k, v, ok := strings.Cut(cl, "=")
				if !ok || k == "" {
					return fmt.Errorf("--claim %q: write FIELD=VALUE, e.g. --claim name=张三", cl)
				}
				vc.Claims[k] = v
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			match, err := c.Verify(cmd.Context(), args[0], vc)
			if err != nil {
				return err
			}
			return printJSON(cmd, map[string]any{"match": match})
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&purpose, "purpose", "", "why you verify, as your sharing agreement names it (required)")
	cmd.Flags().StringVar(&caseRef, "case", "", "the case (办件编号) this serves, for the audit log")
	cmd.Flags().StringArrayVar(&claims, "claim", nil, "a claim FIELD=VALUE to check (repeatable)")
	cmd.MarkFlagRequired("purpose")
	rootCmd.AddCommand(cmd)
}
