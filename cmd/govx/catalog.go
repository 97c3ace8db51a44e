package main

import (
	"strconv"

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
			w := newTable(cmd.OutOrStdout(), "DATASET", "ROWS", "PROVIDER", "TITLE")
			for _, d := range list {
				rows := "-" // aggregates only: no row count
				if d.Rows != nil {
					rows = strconv.FormatInt(*d.Rows, 10)
				}
				w.add(d.ID, rows, d.Provider, d.TitleZh+" / "+d.TitleEn)
			}
			return w.flush()
		},
	}
	cf.register(cmd)
	rootCmd.AddCommand(cmd)
}
