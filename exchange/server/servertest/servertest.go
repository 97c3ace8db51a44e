// Package servertest holds what tests of a running exchange share: issuing tokens and
// reading pulled batches back as rows. Only tests import it.
package servertest

import (
	"context"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"

	"govx/exchange"
	"govx/exchange/auth"
	"govx/exchange/client"
)

// Null is how Rows shows a null value.
const Null = "<null>"

// Token issues a token for subject ("DEPT/SYSTEM") in the exchange's token file.
func Token(t testing.TB, tokensFile, subject string) string {
	t.Helper()
	subj, err := auth.ParseSubject(subject)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := auth.OpenTokens(tokensFile).Issue(subj, "test")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Rows appends the rows of rec to rows, each as column → value text (Null for null).
func Rows(rows []map[string]string, rec arrow.Record) []map[string]string {
	for i := 0; i < int(rec.NumRows()); i++ {
		row := make(map[string]string, rec.NumCols())
		for j, col := range rec.Columns() {
			if col.IsNull(i) {
				row[rec.ColumnName(j)] = Null
			} else {
				row[rec.ColumnName(j)] = col.ValueStr(i)
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// Pull pulls over Flight with c and returns the rows, the schema and the cursor.
func Pull(t testing.TB, c *client.Client, cmd exchange.PullCmd) ([]map[string]string, *arrow.Schema, string, error) {
	t.Helper()
	var rows []map[string]string
	res, err := c.Pull(context.Background(), cmd, nil, func(rec arrow.Record) error {
		rows = Rows(rows, rec)
		return nil
	})
	return rows, res.Schema, res.Cursor, err
}
