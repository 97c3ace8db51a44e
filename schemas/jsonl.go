package schemas

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
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
		text, textOK := CheckJSONText(b)
		if !textOK && text.Code != "json" {
			res.Errors = []FieldError{text}
		} else if err := dec.Decode(&rec); err != nil || rec == nil {
			msg := "is not a JSON object"
			if err != nil {
				msg = fmt.Sprintf("is not a JSON object: %v", err)
			}
			res.Errors = []FieldError{{Field: "(line)", Code: "json", Message: msg}}
		} else if !textOK { // more than the object on the line
			res.Errors = []FieldError{{Field: "(line)", Code: "json", Message: text.Message}}
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

// CheckJSONText checks a record's JSON text for what encoding/json lets through and
// reads by guessing: a name given twice (encoding/json keeps the last value, so the
// value checked is not the one a reader of the text sees first) is duplicate_field;
// invalid UTF-8 or an escaped lone surrogate ("\ud800"), which encoding/json turns into
// U+FFFD, is invalid_utf8. It is RFC 7493 (I-JSON) as jsontext validates it; any other
// fault of the text is json. The failure names the top-level member where the fault
// is, or "(value)" when it is not inside one (a bad name). Each path that decodes a
// record with encoding/json runs it: govx schemas check and the exchange's ingest.
func CheckJSONText(b []byte) (FieldError, bool) {
	if jsontext.Value(b).IsValid() {
		return FieldError{}, true
	}
	_, err := jsontext.NewDecoder(bytes.NewReader(b)).ReadValue()
	var se *jsontext.SyntacticError
	if err == nil || !errors.As(err, &se) {
		return FieldError{"(value)", "json", fmt.Sprintf("is not valid JSON: %v", err)}, false
	}
	field := "(value)"
	if top, _, _ := strings.Cut(strings.TrimPrefix(string(se.JSONPointer), "/"), "/"); top != "" {
		field = strings.NewReplacer("~1", "/", "~0", "~").Replace(top)
	}
	switch msg := se.Err.Error(); {
	case se.Err == jsontext.ErrDuplicateName:
		return FieldError{field, "duplicate_field", "is given more than once; give each name once"}, false
	case strings.Contains(msg, "UTF-8") || strings.Contains(msg, "surrogate"):
		return FieldError{field, "invalid_utf8", "holds text that is not valid UTF-8 (invalid bytes, or an escaped lone surrogate)"}, false
	}
	return FieldError{field, "json", fmt.Sprintf("is not valid JSON: %v", se.Err)}, false
}
