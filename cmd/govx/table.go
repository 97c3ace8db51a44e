package main

import (
	"io"
	"strings"

	"govx/exchange/audit/review"

	"github.com/mattn/go-runewidth"
)

// table prints rows in columns that line up on a terminal. A cell is measured by the
// columns it takes on screen — two for a Chinese character — where text/tabwriter
// counts one per rune and so pushed every column after a Chinese name out of line.
// Ambiguous-width characters (such as —) follow the locale, as the terminal does.
type table struct {
	w    io.Writer
	rows [][]string
}

// newTable returns a table whose first row is header, if any.
func newTable(w io.Writer, header ...string) *table {
	t := &table{w: w}
	if len(header) > 0 {
		t.add(header...)
	}
	return t
}

// add appends a row. Control characters are escaped: a newline or tab in a value would
// break the row.
func (t *table) add(cells ...string) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = review.Printable(c)
	}
	t.rows = append(t.rows, row)
}

// flush writes the rows: each column as wide as its widest cell and two spaces more,
// no spaces at the end of a line.
func (t *table) flush() error {
	var widths []int
	for _, row := range t.rows {
		for i, c := range row {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], runewidth.StringWidth(c))
		}
	}
	var b, line strings.Builder
	for _, row := range t.rows {
		line.Reset()
		for i, c := range row {
			line.WriteString(c)
			if i < len(row)-1 {
				line.WriteString(strings.Repeat(" ", widths[i]-runewidth.StringWidth(c)+2))
			}
		}
		// Empty last cells would leave padding at the end of the line.
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteByte('\n')
	}
	t.rows = nil
	_, err := io.WriteString(t.w, b.String())
	return err
}
