package synth

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/transform"
)

// CSVCharset returns the character encoding of dept's CSV export: market regulation's
// export is GB18030, as such exports from Chinese government systems often are; the
// others are UTF-8. A CSV connector must be configured with it.
func CSVCharset(dept string) string {
	if dept == DeptMarket {
		return "GB18030"
	}
	return "UTF-8"
}

// CSVPath returns the file of dept's table under a csv:DIR target.
func CSVPath(dir, dept string) string {
	return filepath.Join(dir, dept, TableOf(dept).Name+".csv")
}

type csvTarget struct{ dir string }

func openCSV(dir string) (Writer, error) {
	if dir == "" {
		return nil, fmt.Errorf("csv target needs a directory: csv:DIR")
	}
	return &csvTarget{dir: dir}, nil
}

func (c *csvTarget) String() string { return "csv:" + c.dir }
func (c *csvTarget) Close() error   { return nil }

// Create writes to a temporary file beside the final one and renames it on commit, so
// a reader never sees half a table and a failed run leaves the previous file.
func (c *csvTarget) Create(ctx context.Context, t *Table) (TableWriter, error) {
	path := CSVPath(c.dir, t.Dept)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create the CSV folder: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+t.Name+"-*.csv")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	var out io.Writer = bw
	var enc io.WriteCloser
	if CSVCharset(t.Dept) == "GB18030" {
		enc = transform.NewWriter(bw, simplifiedchinese.GB18030.NewEncoder())
		out = enc
	}
	ct := &csvTable{f: f, bw: bw, enc: enc, w: csv.NewWriter(out), t: t, path: path, rec: make([]string, len(t.Columns))}
	if err := ct.w.Write(t.ColumnNames()); err != nil {
		ct.Abort()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ct, nil
}

type csvTable struct {
	f    *os.File
	bw   *bufio.Writer
	enc  io.WriteCloser
	w    *csv.Writer
	t    *Table
	path string
	rec  []string
}

func (c *csvTable) Write(ctx context.Context, rows [][]any) error {
	for _, row := range rows {
		for k, v := range row {
			c.rec[k] = csvField(c.t.Columns[k], v)
		}
		if err := c.w.Write(c.rec); err != nil {
			return fmt.Errorf("%s: %w", c.path, err)
		}
	}
	return ctx.Err()
}

// csvField renders a value; NULL is the empty field (no generated text is empty).
func csvField(col Column, v any) string {
	switch x := textValue(col, v).(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return formatFloat(x)
	default:
		return fmt.Sprint(x)
	}
}

func (c *csvTable) Commit(ctx context.Context) error {
	c.w.Flush()
	err := c.w.Error()
	if err == nil && c.enc != nil {
		err = c.enc.Close()
	}
	if err == nil {
		err = c.bw.Flush()
	}
	if err == nil {
		err = c.f.Close()
	}
	if err == nil {
		err = os.Chmod(c.f.Name(), 0o644) // CreateTemp makes 0600; exports are for others to read
	}
	if err == nil {
		err = os.Rename(c.f.Name(), c.path)
	}
	if err != nil {
		c.Abort()
		return fmt.Errorf("%s: %w", c.path, err)
	}
	return nil
}

func (c *csvTable) Abort() {
	c.f.Close()
	os.Remove(c.f.Name())
}
