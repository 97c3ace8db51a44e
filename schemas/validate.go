package schemas

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// FieldError is one failed check of one field of a record.
type FieldError struct {
	Field   string `json:"field"`
	Code    string `json:"code"` // stable: required, type, unknown_field, pattern, enum, ...
	Message string `json:"message"`
}

func (e FieldError) Error() string { return e.Field + ": " + e.Message }

// Validate checks a record in canonical form (as Normalize produces and Kafka values
// carry) and returns every failing field with a reason, in field order; none means valid.
// Numbers may be float64, int64 or json.Number, as JSON decoders produce them.
func (d *Dataset) Validate(rec map[string]any) []FieldError {
	var errs []FieldError
	for i := range d.Fields {
		f := &d.Fields[i]
		v, present := rec[f.Name]
		if !present || v == nil {
			if !f.Nullable {
				errs = append(errs, FieldError{f.Name, "required", "is required"})
			}
			continue
		}
		if fe, ok := f.validate(v); !ok {
			errs = append(errs, fe)
		}
	}
	if len(d.ExactlyOneOf) > 0 {
		n := 0
		for _, name := range d.ExactlyOneOf {
			if rec[name] != nil {
				n++
			}
		}
		if fe, ok := d.CheckExactlyOne(n); !ok {
			errs = append(errs, fe)
		}
	}
	var unknown []string
	for name := range rec {
		if _, ok := d.index[name]; !ok {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	for _, name := range unknown {
		errs = append(errs, FieldError{name, "unknown_field", fmt.Sprintf("is not a field of %s", d.ID)})
	}
	return errs
}

// CheckExactlyOne checks that n, the number of the exactly_one_of fields a record sets
// (not null), is one.
func (d *Dataset) CheckExactlyOne(n int) (FieldError, bool) {
	if n == 1 {
		return FieldError{}, true
	}
	return FieldError{strings.Join(d.ExactlyOneOf, "|"), "exactly_one_of",
		fmt.Sprintf("exactly one of %s must be set, %d are", strings.Join(d.ExactlyOneOf, ", "), n)}, false
}

// validate checks one non-null value of a record as a JSON decoder gives it. Each kind's
// rule is one of the typed checks below, which a decoder reading values straight into
// typed columns (the exchange's ingest) calls too: one implementation of every rule.
func (f *Field) validate(v any) (FieldError, bool) {
	switch f.kind {
	case KindString:
		if s, ok := v.(string); ok {
			return f.CheckString(s)
		}
	case KindInt64:
		if n, ok := AsInt64(v); ok {
			return f.CheckInt64(n)
		}
	case KindFloat64:
		if x, ok := AsFloat64(v); ok {
			return f.CheckFloat64(x)
		}
		if n, ok := v.(json.Number); ok {
			return f.fail("number_range", "%s is beyond what a 64-bit float holds", n)
		}
	case KindDecimal:
		if s, ok := v.(string); ok {
			return f.CheckDecimal(s)
		}
	case KindDate:
		if s, ok := v.(string); ok {
			_, fe, ok := f.CheckDate(s)
			return fe, ok
		}
	case KindTimestamp:
		if s, ok := v.(string); ok {
			_, fe, ok := f.CheckTimestamp(s)
			return fe, ok
		}
	case KindBool:
		if _, ok := v.(bool); ok {
			return FieldError{}, true
		}
	}
	return f.TypeError(jsonType(v)), false
}

// TypeError is the failure of a value of the wrong JSON type for the field; got names
// the type the value has ("a string", "a number", "a boolean", "an array", "an object").
func (f *Field) TypeError(got string) FieldError {
	var want string
	switch f.kind {
	case KindString:
		want = "a string"
	case KindInt64:
		want = "an integer"
	case KindFloat64:
		want = "a finite number"
	case KindDecimal:
		want = "a decimal in a string"
	case KindDate:
		want = "a date string YYYY-MM-DD"
	case KindTimestamp:
		want = "an RFC 3339 timestamp string"
	case KindBool:
		want = "true or false"
	}
	return FieldError{f.Name, "type", fmt.Sprintf("must be %s, got %s", want, got)}
}

func (f *Field) fail(code, format string, args ...any) (FieldError, bool) {
	return FieldError{f.Name, code, fmt.Sprintf(format, args...)}, false
}

// CheckString checks a value of a string field: not empty when the field is required,
// no control or bidi control character (in a field whose enum, code list or named
// check lets none through, that check refuses it instead), its length, enum or code
// list, pattern and named check, in that order; the first failure is returned.
func (f *Field) CheckString(s string) (FieldError, bool) {
	if s == "" && !f.Nullable {
		return f.fail("empty", "is required and must not be empty")
	}
	if i := f.controlAt(s); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		if isBidiControl(r) {
			return f.fail("bidi_control", "holds the bidirectional control character U+%04X at byte %d", r, i)
		}
		return f.fail("control_character", "holds the control character U+%04X at byte %d", r, i)
	}
	if f.MaxLength > 0 && len(s) > f.MaxLength && utf8.RuneCountInString(s) > f.MaxLength {
		return f.fail("max_length", "is %d characters long, at most %d allowed", utf8.RuneCountInString(s), f.MaxLength)
	}
	if len(f.Enum) > 0 && !contains(f.Enum, s) {
		return f.fail("enum", "%q is not one of %s", s, strings.Join(f.Enum, ", "))
	}
	if f.codeIndex != nil {
		if _, ok := f.codeIndex[s]; !ok {
			// The same code as enum: to a program reading the DLQ both mean "not
			// an allowed value".
			return f.fail("enum", "%q is not a code of the list: %s", s, strings.Join(f.Allowed(), ", "))
		}
	}
	if f.re != nil && !f.re.MatchString(s) {
		return f.fail("pattern", "%q does not match %s", s, f.Pattern)
	}
	if f.check != nil {
		if err := f.check(s); err != nil {
			return f.fail(checkCode(err), "%v", err)
		}
	}
	return FieldError{}, true
}

// CheckInt64 checks a value of an int64 field (its range).
func (f *Field) CheckInt64(n int64) (FieldError, bool) { return f.inRange(float64(n)) }

// CheckFloat64 checks a value of a float64 field: finite, and in its range.
func (f *Field) CheckFloat64(x float64) (FieldError, bool) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return f.TypeError("a number"), false
	}
	return f.inRange(x)
}

// CheckDecimal checks a value of a decimal(p,s) field: a plain decimal literal that
// fits, in its range.
func (f *Field) CheckDecimal(s string) (FieldError, bool) {
	if err := checkDecimal(s, f.precision, f.scale); err != nil {
		return f.fail("decimal", "%v", err)
	}
	x, _ := strconv.ParseFloat(s, 64)
	return f.inRange(x)
}

// CheckDate checks a value of a date field, a real date YYYY-MM-DD, and returns it as
// days since 1970-01-01 (Arrow's date32).
func (f *Field) CheckDate(s string) (int32, FieldError, bool) {
	days, ok := ParseDate(s)
	if !ok {
		fe, _ := f.fail("date", "%q is not a real date in YYYY-MM-DD form", s)
		return 0, fe, false
	}
	if days < minDay || days > maxDay {
		fe, _ := f.fail("year_range", "%q is outside the years 0001 to 9999", s)
		return 0, fe, false
	}
	return days, FieldError{}, true
}

// CheckTimestamp checks a value of a timestamp field, RFC 3339, and returns it as
// microseconds since 1970-01-01T00:00:00Z (rounded down, as time.Time.UnixMicro does).
func (f *Field) CheckTimestamp(s string) (int64, FieldError, bool) {
	us, ok := ParseTimestamp(s)
	if !ok {
		fe, _ := f.fail("timestamp", "%q is not an RFC 3339 timestamp", s)
		return 0, fe, false
	}
	if us < minMicro || us > maxMicro {
		fe, _ := f.fail("year_range", "%q is outside the years 0001 to 9999 in UTC", s)
		return 0, fe, false
	}
	return us, FieldError{}, true
}

func (f *Field) inRange(x float64) (FieldError, bool) {
	if f.Min != nil && x < *f.Min {
		return FieldError{f.Name, "range", fmt.Sprintf("%v is below the minimum %v", x, *f.Min)}, false
	}
	if f.Max != nil && x > *f.Max {
		return FieldError{f.Name, "range", fmt.Sprintf("%v is above the maximum %v", x, *f.Max)}, false
	}
	return FieldError{}, true
}

// checkDecimal reports whether s is a plain decimal literal fitting decimal(p,s).
func checkDecimal(s string, precision, scale int) error {
	digits := strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(digits, ".")
	if intPart == "" || !allDigits(intPart) || (strings.Contains(digits, ".") && (frac == "" || !allDigits(frac))) {
		return fmt.Errorf("%q is not a decimal number", s)
	}
	if len(frac) > scale {
		return fmt.Errorf("%q has %d decimal places, at most %d allowed", s, len(frac), scale)
	}
	if n := len(strings.TrimLeft(intPart, "0")); n > precision-scale {
		return fmt.Errorf("%q has %d integer digits, at most %d allowed", s, n, precision-scale)
	}
	return nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// AsInt64 reads an integer as JSON decoders and drivers give it (int64, int, int32, an
// integral float64 within ±2^53, json.Number).
func AsInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case float64:
		return IntOf(n)
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
}

// IntOf reads a JSON number as an integer: integral and within ±2^53, where float64
// holds every integer exactly.
func IntOf(x float64) (int64, bool) {
	if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
		return 0, false
	}
	return int64(x), true
}

// AsFloat64 reads a finite number as JSON decoders and drivers give it.
func AsFloat64(v any) (float64, bool) {
	var x float64
	switch n := v.(type) {
	case float64:
		x = n
	case int64:
		x = float64(n)
	case int:
		x = float64(n)
	case json.Number:
		f, err := n.Float64()
		if err != nil {
			return 0, false
		}
		x = f
	default:
		return 0, false
	}
	return x, !math.IsNaN(x) && !math.IsInf(x, 0)
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, int64, int, json.Number:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
