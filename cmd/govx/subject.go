package main

import (
	"github.com/spf13/cobra"

	"govx/exchange"
)

func init() {
	parent := &cobra.Command{
		Use:   "subject",
		Short: "Everything the registers link to one citizen ID or USCC (一号式), as your agreements allow",
		Long: `The "one number" view: one request for what each register links to a citizen ID number
(the person, the organizations they represent, the parcels and the licences they hold)
or to a unified social credit code (the organization, its legal representative, its
parcels and its licences). Each register's part is decided by the sharing policy on its
own; a part your department may not see is withheld and listed with the policy's reasons.`,
	}
	for _, k := range []struct{ use, kind, short, example string }{
		{"person ID_NUMBER", exchange.SubjectPerson, "The subject view of a citizen ID number",
			`  govx subject person 330106199003071236 --purpose minimum-living-allowance-review --case 330106-2026-000123 --profile govx-demo/profiles/mz-3301.yaml`},
		{"org USCC", exchange.SubjectOrganization, "The subject view of an organization's unified social credit code",
			`  govx subject org 91330106MA2H000010 --purpose tax-registration-check --profile govx-demo/profiles/sw-33.yaml`},
	} {
		var cf consumerFlags
		var purpose, caseRef string
		cmd := &cobra.Command{
			Use: k.use, Short: k.short, Example: k.example, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := cf.client()
				if err != nil {
					return err
				}
				defer c.Close()
				sc := exchange.SubjectCmd{ID: args[0], Purpose: purpose, CaseRef: caseRef}
				var v *exchange.SubjectView
				if k.kind == exchange.SubjectPerson {
					v, err = c.SubjectPerson(cmd.Context(), sc)
				} else {
					v, err = c.SubjectOrganization(cmd.Context(), sc)
				}
				if err != nil {
					return err
				}
				return printJSON(cmd, v)
			},
		}
		cf.register(cmd)
		cmd.Flags().StringVar(&purpose, "purpose", "", "why you need it, as your sharing agreements name it (required)")
		cmd.Flags().StringVar(&caseRef, "case", "", "the case (办件编号) this serves, for the audit log")
		cmd.MarkFlagRequired("purpose")
		parent.AddCommand(cmd)
	}
	rootCmd.AddCommand(parent)
}
