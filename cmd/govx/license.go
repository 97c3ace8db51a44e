package main

import (
	"github.com/spf13/cobra"

	"govx/exchange"
)

func init() {
	parent := &cobra.Command{Use: "license", Short: "E-licences (电子证照): verify a presented copy"}
	var cf consumerFlags
	var purpose, caseRef, digest string
	cmd := &cobra.Command{
		Use:   "verify LICENCE_NO --digest HEX",
		Short: "Verify a licence copy (证照核验) by its number and content digest",
		Long: `Check a copy of an e-licence a citizen or organization presents: its number and the
content digest printed on it. The answer says valid, not_valid (the digest does not
match, or the issuer's signature over the register's licence does not hold), suspended,
revoked or expired, and whether the issuer's signature holds — none of the licence's
values.`,
		Example: `  govx license verify "$(cat govx-demo/sample-licence)" --digest "$(cat govx-demo/sample-licence-digest)" --purpose housing-security-qualification --profile govx-demo/profiles/zj-3205.yaml`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.VerifyLicence(cmd.Context(), exchange.LicenceVerifyCmd{LicenceNo: args[0], Digest: digest, Purpose: purpose, CaseRef: caseRef})
			if err != nil {
				return err
			}
			return printJSON(cmd, v)
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&digest, "digest", "", "the content digest printed on the copy: 64 hexadecimal characters (required)")
	cmd.Flags().StringVar(&purpose, "purpose", "", "why you verify, as your sharing agreement names it (required)")
	cmd.Flags().StringVar(&caseRef, "case", "", "the case (办件编号) this serves, for the audit log")
	cmd.MarkFlagRequired("digest")
	cmd.MarkFlagRequired("purpose")
	parent.AddCommand(cmd)
	rootCmd.AddCommand(parent)
}
