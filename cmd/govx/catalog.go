package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func init() {
	var cf consumerFlags
	cmd := &cobra.Command{
		Use:     "catalog",
		Short:   "List the datasets your department may see on the exchange",
		Example: "  govx catalog --profile demo/profiles/mz-3301.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			list, err := c.Catalog(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "DATASET\tROWS\tPROVIDER\tTITLE")
			for _, d := range list {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s / %s\n", d.ID, d.Rows, d.Provider, d.TitleZh, d.TitleEn)
			}
			return w.Flush()
		},
	}
	cf.register(cmd)
	rootCmd.AddCommand(cmd)
}
