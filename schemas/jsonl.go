package schemas

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// LineResult is the outcome of checking one line of a JSON-lines file.
type LineResult struct {
	Line   int
	Key    string // the record's key, when it has one
	Errors []FieldError
}

// CheckJSONL validates each non-blank line of r as one record of d in canonical form,
// calling invalid for every line that fails. It returns the number of records read and
// of invalid ones; a read error (not a bad record) ends it early.
func (d *Dataset) CheckJSONL(r io.Reader, invalid func(LineResult)) (total, bad int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		total++
		res := LineResult{Line: line}
		var rec map[string]any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&rec); err != nil || rec == nil {
			msg := "is not a JSON object"
			if err != nil {
				msg = fmt.Sprintf("is not a JSON object: %v", err)
			}
			res.Errors = []FieldError{{Field: "(line)", Code: "json", Message: msg}}
		} else {
			res.Key, _ = d.RecordKey(rec)
			res.Errors = d.Validate(rec)
		}
		if len(res.Errors) > 0 {
			bad++
			invalid(res)
		}
	}
	return total, bad, sc.Err()
}
