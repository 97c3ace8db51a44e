package ingest

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"

	"govx/schemas"
)

// decoder turns one dataset's record values into rows for the store. It reads each
// value with a streaming tokenizer (jsontext) into a map sized for the schema whose
// keys are the schema's own field-name strings, so a record costs one map and one
// string per text field instead of encoding/json's validity pre-scan, reflection and
// a string per name.
//
// The store takes a row as a map (store.Change.Record), so a map is what is built;
// the values are exactly what encoding/json gives an `any` (string, float64, bool,
// nil), so the dataset's Validate, and everything the store does with a row, sees the
// same record as before. Whatever the fast path does not handle identically by
// construction — a nested object or array, a number float64 cannot hold, invalid
// UTF-8, bad syntax, anything after the object — is decoded by encoding/json instead
// (decodeStd), so odd and malformed records get exactly the old treatment. The
// differential test (decode_test.go) holds the two to the same result.
//
// A decoder is used by one goroutine at a time.
type decoder struct {
	d     *schemas.Dataset
	names map[string]string // field name → the schema's string of it (map keys share it)
	dec   *jsontext.Decoder
	src   bytes.Buffer
	buf   []byte // unquoted text of an escaped string
}

func newDecoder(d *schemas.Dataset) *decoder {
	names := make(map[string]string, len(d.Fields))
	for i := range d.Fields {
		names[d.Fields[i].Name] = d.Fields[i].Name
	}
	// Duplicate names are allowed as encoding/json allows them (the last one wins, as
	// the map assignment below does); invalid UTF-8 is an error here, sending the
	// record to encoding/json, which replaces it.
	x := &decoder{d: d, names: names}
	x.dec = jsontext.NewDecoder(&x.src, jsontext.AllowDuplicateNames(true))
	return x
}

// decode parses and validates one record value; reason is empty when it is good. Only
// field names and check codes go into the reason, never values: logs must not carry
// personal data.
func (x *decoder) decode(value []byte) (map[string]any, string) {
	rec, ok := x.parse(value)
	if !ok {
		return decodeStd(x.d, value)
	}
	if reason := reasonOf(x.d.Validate(rec)); reason != "" {
		return nil, reason
	}
	return rec, ""
}

// parse reads value as a flat JSON object of scalars. ok is false when the value is
// anything else, or when the fast path cannot be sure to decode it as encoding/json
// does; the caller then decodes it with encoding/json.
func (x *decoder) parse(value []byte) (rec map[string]any, ok bool) {
	x.src = *bytes.NewBuffer(value) // read in place: jsontext does not copy a *bytes.Buffer
	x.dec.Reset(&x.src, jsontext.AllowDuplicateNames(true))
	if tok, err := x.dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil, false
	}
	rec = make(map[string]any, len(x.d.Fields))
	for {
		if x.dec.PeekKind() == '}' {
			if _, err := x.dec.ReadToken(); err != nil {
				return nil, false
			}
			break
		}
		raw, err := x.dec.ReadValue() // the member's name
		if err != nil {
			return nil, false
		}
		nameText, ok := x.text(raw)
		if !ok {
			return nil, false
		}
		name, known := x.names[string(nameText)]
		if !known {
			name = string(nameText)
		}
		raw, err = x.dec.ReadValue()
		if err != nil {
			return nil, false
		}
		var v any
		switch raw.Kind() {
		case '"':
			t, ok := x.text(raw)
			if !ok {
				return nil, false
			}
			v = string(t)
		case '0':
			f, err := strconv.ParseFloat(string(raw), 64)
			if err != nil {
				return nil, false // out of range: encoding/json refuses the record
			}
			v = f
		case 't':
			v = true
		case 'f':
			v = false
		case 'n':
			v = nil
		default: // an object or an array
			return nil, false
		}
		rec[name] = v
	}
	if _, err := x.dec.ReadToken(); err != io.EOF {
		return nil, false // something after the object
	}
	return rec, true
}

// text returns the content of a raw JSON string: in place when it has no escapes,
// else unquoted into x.buf. The result is valid until the next call.
func (x *decoder) text(raw jsontext.Value) ([]byte, bool) {
	if len(raw) < 2 {
		return nil, false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw[1 : len(raw)-1], true
	}
	var err error
	x.buf, err = jsontext.AppendUnquote(x.buf[:0], raw)
	return x.buf, err == nil
}

// decodeStd is the decoding of a record by encoding/json: the reference the fast path
// matches, and the path of every record it does not take.
func decodeStd(d *schemas.Dataset, value []byte) (map[string]any, string) {
	var rec map[string]any
	if err := json.Unmarshal(value, &rec); err != nil || rec == nil {
		return nil, "value is not a JSON object"
	}
	if reason := reasonOf(d.Validate(rec)); reason != "" {
		return nil, reason
	}
	return rec, ""
}

// reasonOf joins validation failures into a record's reason: field names and check
// codes only.
func reasonOf(errs []schemas.FieldError) string {
	if len(errs) == 0 {
		return ""
	}
	reason := ""
	for i, e := range errs {
		if i > 0 {
			reason += "; "
		}
		reason += e.Field + ": " + e.Code
	}
	return reason
}
