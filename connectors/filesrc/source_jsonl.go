package filesrc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"

	"govx/connectors"
)

func init() {
	connectors.Register("jsonl", func(ctx context.Context, spec connectors.Spec) (connectors.Source, error) {
		return open(spec.DSN, spec, loadJSONL)
	})
}

// loadJSONL reads one JSON object per line; a column absent from a line is NULL, but a
// column absent from every line is a mapping mistake and reported.
func loadJSONL(path string, spec connectors.Spec) ([]row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	seen := map[string]bool{}
	var rows []row
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		vals := make([]any, len(spec.Columns))
		for i, c := range spec.Columns {
			v, ok := obj[c]
			if !ok {
				continue
			}
			seen[c] = true
			if n, ok := v.(json.Number); ok {
				v = n.String()
			}
			vals[i] = v
		}
		rows = append(rows, row{values: vals})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(rows) > 0 {
		if err := missingColumns(append(append([]string{}, spec.Columns...), spec.Cursor), seen, "the JSON lines"); err != nil {
			return nil, err
		}
	}
	return rows, nil
}
