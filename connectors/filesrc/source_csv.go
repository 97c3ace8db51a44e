package filesrc

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/transform"

	"govx/connectors"
)

func init() {
	connectors.Register("csv", func(ctx context.Context, spec connectors.Spec) (connectors.Source, error) {
		return open(spec.DSN, spec, loadCSV)
	})
}

// loadCSV reads a CSV export with a header row. GB18030 (and its subset GBK) is what
// many department systems on Windows still export; the decoder turns it into UTF-8.
func loadCSV(path string, spec connectors.Spec) ([]row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = bufio.NewReader(f)
	switch strings.ToLower(spec.Encoding) {
	case "gb18030":
		r = transform.NewReader(r, simplifiedchinese.GB18030.NewDecoder())
	case "gbk":
		r = transform.NewReader(r, simplifiedchinese.GBK.NewDecoder())
	}
	cr := csv.NewReader(r)
	if spec.Delimiter != "" {
		cr.Comma = []rune(spec.Delimiter)[0]
	}
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("the file is empty: a header row naming the columns is required")
	}
	if err != nil {
		return nil, err
	}
	idx := map[string]int{}
	have := map[string]bool{}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		idx[h], have[h] = i, true
	}
	if err := missingColumns(append(append([]string{}, spec.Columns...), spec.Cursor), have, "the CSV header"); err != nil {
		return nil, err
	}
	var rows []row
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, err
		}
		vals := make([]any, len(spec.Columns))
		for i, c := range spec.Columns {
			if j := idx[c]; j < len(rec) && rec[j] != "" {
				vals[i] = rec[j]
			}
		}
		rows = append(rows, row{values: vals})
	}
}
