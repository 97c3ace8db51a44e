package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"

	"govx/exchange/store"
	"govx/schemas"
)

// decoder turns one dataset's record values into rows for the store. A record that is
// a flat JSON object of scalars is read by hand, in one pass over the message, straight
// into typed cells in the dataset's field order (store.Change.Row), each value checked
// as it is read by the same per-field checks schemas' Validate runs (CheckString,
// CheckDate, ...): no map, no `any` per value, no allocation (the cells' strings are
// the message's bytes, and the cells are reused batch after batch).
//
// Whatever the hand reader does not handle identically by construction — a nested
// object or array, a number float64 cannot hold, invalid UTF-8 or an escaped lone
// surrogate, a name given twice, an escaped name, bad syntax, anything after the
// object — is decoded by encoding/json into a map and
// checked by Validate instead (decodeStd), and goes to the store as a map
// (store.Change.Record), so odd and malformed records get exactly the reference
// treatment. The differential test (decode_test.go) holds the two paths to the same
// stored rows and the same rejections with the same reasons.
//
// A decoder is used by one goroutine at a time.
type decoder struct {
	d *schemas.Dataset
	// typed: the dataset's rows can go to the store as cells (its key fields are
	// strings); otherwise every record takes the map path.
	typed   bool
	keyAt   int            // position of the one key field, or -1 for a composite key
	index   map[string]int // field name → position
	quoted  []string       // each field's name as a JSON string: "name"
	oneOf   []int          // positions of the exactly_one_of fields
	vals    []member       // the record's value of each field, by position
	unknown []string       // names that are not fields
	slab    []store.Cell   // rows are cut from it; a new, larger one when it is used up
	buf     []byte         // unquoted text of an escaped string
	reason  []byte
}

// member is one field's value as read: kind is 0 when absent, else the JSON kind ('n'
// null, '"' string, '0' number, 't' true, 'f' false).
type member struct {
	kind byte
	s    string
	num  float64
}

// slabRows is how many rows of cells the decoder allocates at a time.
const slabRows = 1024

// reuse lets the decoder write over the rows it returned before: the caller is done
// with them (the store has applied them).
func (x *decoder) reuse() { x.slab = x.slab[:0] }

func newDecoder(d *schemas.Dataset) *decoder {
	// The fields a record names are tracked in a 64-bit mask (scan).
	x := &decoder{d: d, typed: store.TextKeyed(d) && len(d.Fields) <= 64, index: make(map[string]int, len(d.Fields)), vals: make([]member, len(d.Fields))}
	for i := range d.Fields {
		x.index[d.Fields[i].Name] = i
		x.quoted = append(x.quoted, `"`+d.Fields[i].Name+`"`)
	}
	for _, name := range d.ExactlyOneOf {
		x.oneOf = append(x.oneOf, x.index[name])
	}
	x.keyAt = -1
	if len(d.Key) == 1 {
		x.keyAt = x.index[d.Key[0]]
	}
	return x
}

// rowKey returns the record key of a row decode returned, when the dataset has a
// single key field (store.Table computes the same from the row).
func (x *decoder) rowKey(row []store.Cell) (string, bool) {
	if row == nil || x.keyAt < 0 {
		return "", false
	}
	return row[x.keyAt].Text()
}

// decode parses and validates one record value. A good record is returned as a row of
// cells or, when it took the encoding/json path, as a map; reason is empty exactly
// then. Only field names and check codes go into the reason, never values: logs must
// not carry personal data.
//
// The row's strings are value's bytes, not copies: value must not change until the
// store has applied the row (the store copies what it keeps). A Kafka message's value
// is the ingest's own, never written after it is fetched.
func (x *decoder) decode(value []byte) (row []store.Cell, rec map[string]any, reason string) {
	if x.typed && x.scan(unsafe.String(unsafe.SliceData(value), len(value))) {
		if row, reason, ok := x.row(); ok {
			return row, nil, reason
		}
	}
	rec, reason = decodeStd(x.d, value)
	return nil, rec, reason
}

// scan reads src as a flat JSON object of scalars into x.vals and x.unknown. It reports
// false when src is anything else, or when it cannot be sure to read it as
// encoding/json does; the caller then decodes it with encoding/json.
func (x *decoder) scan(src string) bool {
	clear(x.vals)
	x.unknown = x.unknown[:0]
	i := skipSpace(src, 0)
	if i == len(src) || src[i] != '{' {
		return false
	}
	i = skipSpace(src, i+1)
	if i < len(src) && src[i] == '}' {
		return skipSpace(src, i+1) == len(src)
	}
	next := 0       // the field expected next: producers write the fields in schema order
	var seen uint64 // the fields named so far, by position
	for {
		fi := -1 // the member's field, or -1 for a name that is not one
		var name string
		// The fields after the last one read, in order: a producer leaves out the null
		// ones, so the name is most often one of the next few (cheaper than hashing it).
		for j := next; j < len(x.quoted); j++ {
			if strings.HasPrefix(src[i:], x.quoted[j]) {
				fi = j
				break
			}
		}
		if fi >= 0 {
			i += len(x.quoted[fi])
		} else {
			var escaped, ok bool
			if name, escaped, i, ok = x.str(src, i); !ok || escaped {
				return false // an escaped name: rare, left to encoding/json
			}
			if f, known := x.index[name]; known {
				fi = f
			}
		}
		i = skipSpace(src, i)
		if i == len(src) || src[i] != ':' {
			return false
		}
		v, end, ok := x.scalar(src, skipSpace(src, i+1))
		if !ok {
			return false
		}
		if fi >= 0 {
			if seen&(1<<fi) != 0 {
				return false // a name given twice: refused, with the reason decodeStd gives
			}
			seen |= 1 << fi
			x.vals[fi] = v
			next = fi + 1
		} else {
			x.unknown = append(x.unknown, name)
		}
		i = skipSpace(src, end)
		if i == len(src) {
			return false
		}
		switch src[i] {
		case ',':
			i = skipSpace(src, i+1)
		case '}':
			return skipSpace(src, i+1) == len(src)
		default:
			return false
		}
	}
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// str reads the JSON string at s[i:] and returns its content (unescaped) and the
// position after it; ok is false for anything but a string of valid UTF-8.
func (x *decoder) str(s string, i int) (text string, escaped bool, end int, ok bool) {
	if i == len(s) || s[i] != '"' {
		return "", false, 0, false
	}
	var high byte // the bytes ORed: ≥ 0x80 when some are not ASCII
	j := i + 1
	// Eight bytes at a time while none of them is special.
	var high8 uint64
	for ; j+8 <= len(s); j += 8 {
		w := uint64(s[j]) | uint64(s[j+1])<<8 | uint64(s[j+2])<<16 | uint64(s[j+3])<<24 |
			uint64(s[j+4])<<32 | uint64(s[j+5])<<40 | uint64(s[j+6])<<48 | uint64(s[j+7])<<56
		if hasSpecial(w) {
			break
		}
		high8 |= w
	}
	if high8&highBits != 0 {
		high = utf8.RuneSelf
	}
	for ; j < len(s); j++ {
		c := s[j]
		if !stringSpecial[c] {
			high |= c
			continue
		}
		switch {
		case c == '"':
			text = s[i+1 : j]
			if high >= utf8.RuneSelf && !utf8.ValidString(text) {
				return "", false, 0, false // encoding/json replaces invalid UTF-8
			}
			if escaped {
				var err error
				if x.buf, err = jsontext.AppendUnquote(x.buf[:0], s[i:j+1]); err != nil {
					return "", false, 0, false
				}
				text = string(x.buf)
			}
			return text, escaped, j + 1, true
		case c == '\\':
			escaped = true
			j++ // the escaped character cannot end the string; AppendUnquote checks the rest
		default: // a control character
			return "", false, 0, false
		}
	}
	return "", false, 0, false
}

const (
	lowBits  = 0x0101010101010101
	highBits = 0x8080808080808080
)

// hasSpecial reports whether any byte of w is special in a JSON string (a control
// character, '"' or '\\'): the exact tests of "some byte is below n" and "some byte is
// zero" (Hacker's Delight, 6-1), which hold for bytes of any value.
func hasSpecial(w uint64) bool {
	q := w ^ (lowBits * '"')
	b := w ^ (lowBits * '\\')
	return ((w-lowBits*0x20)&^w|(q-lowBits)&^q|(b-lowBits)&^b)&highBits != 0
}

// stringSpecial marks the bytes that end a plain run of a JSON string's content.
var stringSpecial = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// scalar reads the JSON scalar at s[i:]; ok is false for an object, an array, or
// anything that is not JSON or that float64 cannot hold.
func (x *decoder) scalar(s string, i int) (v member, end int, ok bool) {
	if i == len(s) {
		return member{}, 0, false
	}
	switch c := s[i]; {
	case c == '"':
		text, _, end, ok := x.str(s, i)
		return member{kind: '"', s: text}, end, ok
	case c == 't' && len(s)-i >= 4 && s[i:i+4] == "true":
		return member{kind: 't'}, i + 4, true
	case c == 'f' && len(s)-i >= 5 && s[i:i+5] == "false":
		return member{kind: 'f'}, i + 5, true
	case c == 'n' && len(s)-i >= 4 && s[i:i+4] == "null":
		return member{kind: 'n'}, i + 4, true
	case c == '-' || c >= '0' && c <= '9':
		end := numberEnd(s, i)
		if end < 0 {
			return member{}, 0, false
		}
		f, err := strconv.ParseFloat(s[i:end], 64)
		if err != nil {
			return member{}, 0, false // out of range: encoding/json refuses the record
		}
		return member{kind: '0', num: f}, end, true
	}
	return member{}, 0, false
}

// numberEnd returns the end of the JSON number at s[i:], or -1 when it is not one:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func numberEnd(s string, i int) int {
	digits := func(i int) int { // the end of a run of at least one digit, or -1
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		i = digits(i)
	default:
		return -1
	}
	if i < len(s) && s[i] == '.' {
		if i = digits(i + 1); i < 0 {
			return -1
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		return digits(i)
	}
	return i
}

// row checks the scanned record as Validate would and returns it as cells, or the
// reason it fails. ok is false when a value must take the map path after all.
func (x *decoder) row() (row []store.Cell, reason string, ok bool) {
	nf := len(x.d.Fields)
	if cap(x.slab)-len(x.slab) < nf {
		// Rows cut before stay where they are; the next reuse starts on the larger slab.
		x.slab = make([]store.Cell, 0, max(slabRows*nf, 2*cap(x.slab)))
	}
	n := len(x.slab)
	row = x.slab[n : n+nf : n+nf]
	x.reason = x.reason[:0]
	for i := range x.d.Fields {
		f, v := &x.d.Fields[i], &x.vals[i]
		if v.kind == 0 || v.kind == 'n' {
			if !f.Nullable {
				x.fail(f.Name, "required")
			}
			row[i] = store.Null()
			continue
		}
		fe, valid, exact := setCell(&row[i], f, v)
		if !exact {
			return nil, "", false
		}
		if !valid {
			x.fail(fe.Field, fe.Code)
		}
	}
	if len(x.oneOf) > 0 {
		set := 0
		for _, fi := range x.oneOf {
			if k := x.vals[fi].kind; k != 0 && k != 'n' {
				set++
			}
		}
		if fe, ok := x.d.CheckExactlyOne(set); !ok {
			x.fail(fe.Field, fe.Code)
		}
	}
	if len(x.unknown) > 0 {
		slices.Sort(x.unknown)
		for i, name := range x.unknown {
			if i > 0 && name == x.unknown[i-1] {
				return nil, "", false // a name given twice: decodeStd says so
			}
			x.fail(name, "unknown_field")
		}
	}
	if len(x.reason) > 0 {
		return nil, string(x.reason), true
	}
	x.slab = x.slab[:n+nf]
	return row, "", true
}

func (x *decoder) fail(field, code string) {
	if len(x.reason) > 0 {
		x.reason = append(x.reason, "; "...)
	}
	x.reason = append(x.reason, field...)
	x.reason = append(x.reason, ": "...)
	x.reason = append(x.reason, code...)
}

// setCell checks a non-null value of field f with the field's own check and sets dst
// to it. exact is false when the store would not read the value as the cell says (a
// decimal that does not convert), for the map path to decide.
func setCell(dst *store.Cell, f *schemas.Field, v *member) (fe schemas.FieldError, valid, exact bool) {
	switch k := f.Kind(); {
	case k == schemas.KindString && v.kind == '"':
		*dst = store.Text(v.s)
		fe, valid = f.CheckString(v.s)
		return fe, valid, true
	case k == schemas.KindInt64 && v.kind == '0':
		if n, ok := schemas.IntOf(v.num); ok {
			*dst = store.Int(n)
			fe, valid = f.CheckInt64(n)
			return fe, valid, true
		}
	case k == schemas.KindFloat64 && v.kind == '0':
		*dst = store.Float(v.num)
		fe, valid = f.CheckFloat64(v.num)
		return fe, valid, true
	case k == schemas.KindDecimal && v.kind == '"':
		if fe, valid = f.CheckDecimal(v.s); !valid {
			return fe, false, true
		}
		c, err := store.DecimalText(f, v.s)
		*dst = c
		return fe, true, err == nil
	case k == schemas.KindDate && v.kind == '"':
		days, fe, valid := f.CheckDate(v.s)
		*dst = store.Date(days)
		return fe, valid, true
	case k == schemas.KindTimestamp && v.kind == '"':
		us, fe, valid := f.CheckTimestamp(v.s)
		*dst = store.Timestamp(us)
		return fe, valid, true
	case k == schemas.KindBool && (v.kind == 't' || v.kind == 'f'):
		*dst = store.Bool(v.kind == 't')
		return fe, true, true
	}
	*dst = store.Null()
	return f.TypeError(kindName(v.kind)), false, true
}

// kindName names a JSON kind as Validate's type errors do.
func kindName(kind byte) string {
	switch kind {
	case '"':
		return "a string"
	case '0':
		return "a number"
	}
	return "a boolean"
}

// decodeStd is the decoding of a record by encoding/json: the reference the typed path
// matches, and the path of every record it does not take. Beyond encoding/json, the
// text must be I-JSON (schemas.CheckJSONText): no name twice, no invalid UTF-8 or lone
// surrogate, which encoding/json would read by keeping the last value or replacing the
// text with U+FFFD.
func decodeStd(d *schemas.Dataset, value []byte) (map[string]any, string) {
	var rec map[string]any
	if err := json.Unmarshal(value, &rec); err != nil || rec == nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && strings.HasPrefix(te.Value, "number") {
			return nil, bigNumberMember(value) + ": number_range"
		}
		return nil, "value is not a JSON object"
	}
	if fe, ok := schemas.CheckJSONText(value); !ok {
		return nil, fe.Field + ": " + fe.Code
	}
	if reason := reasonOf(d.Validate(rec)); reason != "" {
		return nil, reason
	}
	return rec, ""
}

// bigNumberMember returns the name of the record's member whose value holds a number
// beyond float64 (1e999), which encoding/json's error does not name for a map, or
// "(value)". It names the member, never the value.
func bigNumberMember(value []byte) string {
	dec := jsontext.NewDecoder(bytes.NewReader(value), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return "(value)"
	}
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			break
		}
		name := tok.String() // before the next read, which reuses the token's bytes
		v, err := dec.ReadValue()
		if err != nil {
			break
		}
		if json.Unmarshal(v, new(any)) != nil {
			return name
		}
	}
	return "(value)"
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
