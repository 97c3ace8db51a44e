package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"govx/exchange/auth"
)

func init() {
	var file string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Issue, list and revoke department system credentials",
		Long: `Manage the bearer tokens department systems use. The exchange keeps only each token's
SHA-256 hash in the token file; a token is shown once, when it is issued. Revoking takes
effect on the next request, without restarting the exchange.`,
	}
	cmd.PersistentFlags().StringVar(&file, "tokens", envOr("GOVX_TOKENS_FILE", "tokens.json"), "the exchange's token file (env GOVX_TOKENS_FILE)")
	var note string
	issue := &cobra.Command{
		Use:     "issue DEPT[/SYSTEM]",
		Short:   "Issue a token for a department system and print it (once)",
		Example: "  govx token issue mz-3301/dibao-review --note 'minimum living allowance review system'",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			subj, err := auth.ParseSubject(args[0])
			if err != nil {
				return err
			}
			token, rec, err := auth.OpenTokens(file).Issue(subj, note)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "issued %s for %s; keep the token secret, it is not shown again:\n", rec.ID, subj)
			fmt.Fprintln(cmd.OutOrStdout(), token)
			return nil
		},
	}
	issue.Flags().StringVar(&note, "note", "", "what the token is for")
	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (ids, subjects, dates; never the tokens)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			recs, err := auth.OpenTokens(file).List()
			if err != nil {
				return err
			}
			w := newTable(cmd.OutOrStdout(), "ID", "SUBJECT", "ISSUED", "REVOKED", "NOTE")
			for _, r := range recs {
				revoked := "-"
				if r.Revoked() {
					revoked = r.RevokedAt.Format(time.RFC3339)
				}
				w.add(r.ID, r.Subject.String(), r.IssuedAt.Format(time.RFC3339), revoked, r.Note)
			}
			return w.flush()
		},
	}
	revoke := &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke a token; a running exchange refuses it from the next request on",
		Example: "  govx token revoke tok-1a2b3c4d5e6f",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rec, err := auth.OpenTokens(file).Revoke(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s (%s)\n", rec.ID, rec.Subject)
			return nil
		},
	}
	cmd.AddCommand(issue, list, revoke)
	rootCmd.AddCommand(cmd)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
