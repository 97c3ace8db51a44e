package schemas

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
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
		if n != 1 {
			errs = append(errs, FieldError{strings.Join(d.ExactlyOneOf, "|"), "exactly_one_of",
				fmt.Sprintf("exactly one of %s must be set, %d are", strings.Join(d.ExactlyOneOf, ", "), n)})
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

func (f *Field) validate(v any) (FieldError, bool) {
	fail := func(code, format string, args ...any) (FieldError, bool) {
		return FieldError{f.Name, code, fmt.Sprintf(format, args...)}, false
	}
	switch f.kind {
	case KindString:
		s, ok := v.(string)
		if !ok {
			return fail("type", "must be a string, got %s", jsonType(v))
		}
		if f.MaxLength > 0 && utf8.RuneCountInString(s) > f.MaxLength {
			return fail("max_length", "is %d characters long, at most %d allowed", utf8.RuneCountInString(s), f.MaxLength)
		}
		if len(f.Enum) > 0 && !contains(f.Enum, s) {
			return fail("enum", "%q is not one of %s", s, strings.Join(f.Enum, ", "))
		}
		if f.codeIndex != nil {
			if _, ok := f.codeIndex[s]; !ok {
				// The same code as enum: to a program reading the DLQ both mean "not
				// an allowed value".
				return fail("enum", "%q is not a code of the list: %s", s, strings.Join(f.Allowed(), ", "))
			}
		}
		if f.re != nil && !f.re.MatchString(s) {
			return fail("pattern", "%q does not match %s", s, f.Pattern)
		}
		if f.check != nil {
			if err := f.check(s); err != nil {
				return fail(checkCode(err), "%v", err)
			}
		}
	case KindInt64:
		n, ok := AsInt64(v)
		if !ok {
			return fail("type", "must be an integer, got %s", jsonType(v))
		}
		return f.inRange(float64(n))
	case KindFloat64:
		x, ok := AsFloat64(v)
		if !ok || math.IsNaN(x) || math.IsInf(x, 0) {
			return fail("type", "must be a finite number, got %s", jsonType(v))
		}
		return f.inRange(x)
	case KindDecimal:
		s, ok := v.(string)
		if !ok {
			return fail("type", "must be a decimal in a string, got %s", jsonType(v))
		}
		if err := checkDecimal(s, f.precision, f.scale); err != nil {
			return fail("decimal", "%v", err)
		}
		x, _ := strconv.ParseFloat(s, 64)
		return f.inRange(x)
	case KindDate:
		s, ok := v.(string)
		if !ok {
			return fail("type", "must be a date string YYYY-MM-DD, got %s", jsonType(v))
		}
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			return fail("date", "%q is not a real date in YYYY-MM-DD form", s)
		}
	case KindTimestamp:
		s, ok := v.(string)
		if !ok {
			return fail("type", "must be an RFC 3339 timestamp string, got %s", jsonType(v))
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return fail("timestamp", "%q is not an RFC 3339 timestamp", s)
		}
	case KindBool:
		if _, ok := v.(bool); !ok {
			return fail("type", "must be true or false, got %s", jsonType(v))
		}
	}
	return FieldError{}, true
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
		if n != math.Trunc(n) || math.Abs(n) > 1<<53 {
			return 0, false
		}
		return int64(n), true
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
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
