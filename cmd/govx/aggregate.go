package main

import (
	"encoding/csv"
	"fmt"
	"io"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/spf13/cobra"
)

func init() {
	var cf consumerFlags
	var purpose, caseRef, format string
	cmd := &cobra.Command{
		Use:   "aggregate SQL",
		Short: "Counts and sums over groups, as an aggregate-only agreement allows",
		Long: `Run an aggregate query over Flight SQL: counts, sums, averages, minima and maxima over
groups, never rows. The SQL accepted is

  SELECT <group columns>, COUNT(*) | SUM(col) | AVG(col) | MIN(col) | MAX(col), …
  FROM <register>.<entity>
  [WHERE <column> =|<>|<|<=|>|>=|IN|LIKE 'prefix%'|IS [NOT] NULL … AND …]
  [GROUP BY <columns>] [ORDER BY <output columns or positions> [DESC]] [LIMIT n]

Your agreement names the columns you may group by and filter on, the measures, and the
smallest group shown: the cells of those columns with fewer rows are suppressed and
count in no group, so totals leave them out (see docs/aggregate.md). The answer never
says how many cells were suppressed (that would tell an empty cell from a small one);
the audit log keeps it.`,
		Example: `  govx aggregate "SELECT household_region, COUNT(*) FROM population.person GROUP BY household_region" \
      --purpose population-statistics --profile demo/profiles/tj-33.yaml
  govx aggregate "SELECT land_use, SUM(area_m2), COUNT(*) FROM resource.land_parcel WHERE region_code LIKE '3301%' GROUP BY land_use ORDER BY 2 DESC" \
      --purpose land-resource-statistics --profile demo/profiles/tj-33.yaml --format csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "csv" {
				return fmt.Errorf("--format must be table or csv, not %q", format)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			rec, err := c.Aggregate(cmd.Context(), args[0], purpose, caseRef)
			if err != nil {
				return err
			}
			defer rec.Release()
			var header []string
			for _, f := range rec.Schema().Fields() {
				header = append(header, f.Name)
			}
			out := cmd.OutOrStdout()
			rows := make([][]string, rec.NumRows())
			for r := range rows {
				for i := range header {
					col := rec.Column(i)
					cell := ""
					if d, ok := col.(*array.Decimal128); ok && !col.IsNull(r) {
						// With the column's scale: 1200.50, not arrow's 1200.5.
						cell = d.Value(r).ToString(d.DataType().(*arrow.Decimal128Type).Scale)
					} else if !col.IsNull(r) {
						cell = col.ValueStr(r)
					}
					rows[r] = append(rows[r], cell)
				}
			}
			if format == "csv" {
				if err := writeCSV(out, header, rows); err != nil {
					return err
				}
			} else {
				t := newTable(out, header...)
				for _, row := range rows {
					t.add(row...)
				}
				if err := t.flush(); err != nil {
					return err
				}
			}
			md := rec.Schema().Metadata()
			note, _ := md.GetValue("govx.suppression")
			fmt.Fprintf(cmd.ErrOrStderr(), "%d groups; %s\n", rec.NumRows(), note)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&purpose, "purpose", "", "why you need the figures, as your agreement names it (required)")
	cmd.Flags().StringVar(&caseRef, "case", "", "the case (办件编号) this serves, for the audit log")
	cmd.Flags().StringVar(&format, "format", "table", "table or csv")
	cmd.MarkFlagRequired("purpose")
	rootCmd.AddCommand(cmd)
}

// writeCSV writes a header and rows as CSV.
func writeCSV(w io.Writer, header []string, rows [][]string) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return err
	}
	if err := cw.WriteAll(rows); err != nil {
		return err
	}
	return cw.Error()
}
