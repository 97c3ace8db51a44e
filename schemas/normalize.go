package schemas

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/width"
)

// ChinaTime is China Standard Time (UTC+8), the one zone of govx: source timestamps
// without an offset, agreement and licence dates, the working calendar and the audit
// reports' default all use it. China has had no daylight saving since 1991, so a fixed
// zone is exact and does not depend on the host's tz database.
var ChinaTime = time.FixedZone("CST", 8*3600)

// NormalizeText trims a value and folds full-width characters (ＡＢＣ１２３, the
// ideographic space) to half-width, as department systems and citizens type them
// inconsistently. Chinese characters are unchanged.
func NormalizeText(s string) string {
	// Most department text is ASCII or Chinese characters that fold to themselves; the
	// transform allocates on every call, so it runs only when a character would change.
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || width.LookupRune(r).Narrow() != 0 {
			s = width.Narrow.String(s)
			break
		}
		i += size
	}
	return strings.TrimFunc(s, unicode.IsSpace)
}

// DateLayouts are the source date formats Normalize understands without configuration.
var DateLayouts = []string{
	"2006-01-02", "20060102", "2006/01/02", "2006.01.02", "2006年01月02日", "2006年1月2日",
	"2006-1-2", "2006/1/2", time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05",
}

// TimestampLayouts are the source timestamp formats Normalize understands; those
// without an offset are taken as China Standard Time.
var TimestampLayouts = []string{
	time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05Z07:00", "2006/01/02 15:04:05", "20060102150405",
}

// Normalize turns a source value (as a database driver or file reader yields it) into
// the field's canonical form: strings trimmed and half-width (identifiers upper-cased);
// int64; decimals as strings with exactly the field's scale; float64; dates
// "YYYY-MM-DD"; timestamps RFC 3339 in UTC; bools. Nil and empty strings become nil.
// The extra layouts, if any, are tried first for dates and timestamps.
func (f *Field) Normalize(v any, layouts ...string) (any, error) {
	if b, ok := v.([]byte); ok {
		v = string(b)
	}
	if s, ok := v.(string); ok {
		s = NormalizeText(s)
		if s == "" {
			return nil, nil
		}
		v = s
	}
	if v == nil {
		return nil, nil
	}
	switch f.kind {
	case KindString:
		s := CanonicalText(v)
		if f.Check != "" {
			// Check characters are upper-case by standard; people type a lower-case x.
			s = strings.ToUpper(s)
		}
		return s, nil
	case KindInt64:
		switch n := v.(type) {
		case string:
			i, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not an integer", f.Name, n)
			}
			return i, nil
		default:
			if i, ok := AsInt64(v); ok {
				return i, nil
			}
			if i, ok := v.(int32); ok {
				return int64(i), nil
			}
		}
	case KindFloat64:
		switch n := v.(type) {
		case string:
			x, err := strconv.ParseFloat(n, 64)
			if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, fmt.Errorf("%s: %q is not a number", f.Name, n)
			}
			return x, nil
		case float32:
			return float64(n), nil
		default:
			if x, ok := AsFloat64(v); ok {
				return x, nil
			}
		}
	case KindDecimal:
		return f.normalizeDecimal(v)
	case KindDate:
		if t, ok := v.(time.Time); ok {
			return t.Format(time.DateOnly), nil
		}
		if s, ok := v.(string); ok {
			return NormalizeDate(s, layouts...)
		}
	case KindTimestamp:
		if t, ok := v.(time.Time); ok {
			return t.UTC().Format(time.RFC3339Nano), nil
		}
		if s, ok := v.(string); ok {
			return NormalizeTimestamp(s, layouts...)
		}
	case KindBool:
		switch b := v.(type) {
		case bool:
			return b, nil
		case int64:
			return b != 0, nil
		case string:
			switch strings.ToLower(b) {
			case "true", "1", "t", "y", "yes", "是":
				return true, nil
			case "false", "0", "f", "n", "no", "否":
				return false, nil
			}
		}
	}
	return nil, fmt.Errorf("%s: cannot read %T value %v as %s", f.Name, v, v, f.Type)
}

func (f *Field) normalizeDecimal(v any) (any, error) {
	var r big.Rat
	switch n := v.(type) {
	case string:
		if _, ok := r.SetString(n); !ok || strings.ContainsAny(n, "/eE") {
			return nil, fmt.Errorf("%s: %q is not a decimal number", f.Name, n)
		}
	case float64:
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return nil, fmt.Errorf("%s: %v is not a decimal number", f.Name, n)
		}
		// Through the shortest decimal text, so 0.1 stays 0.1 and not its binary value.
		r.SetString(strconv.FormatFloat(n, 'f', -1, 64))
	case int64:
		r.SetInt64(n)
	case int:
		r.SetInt64(int64(n))
	default:
		return nil, fmt.Errorf("%s: cannot read %T value as %s", f.Name, v, f.Type)
	}
	return r.FloatString(f.scale), nil
}

// NormalizeDate parses a source date in one of layouts (then DateLayouts) and returns it
// as YYYY-MM-DD.
func NormalizeDate(s string, layouts ...string) (string, error) {
	s = NormalizeText(s)
	for _, ls := range [2][]string{layouts, DateLayouts} {
		for _, l := range ls {
			if t, err := time.ParseInLocation(l, s, ChinaTime); err == nil {
				return t.Format(time.DateOnly), nil
			}
		}
	}
	return "", fmt.Errorf("%q is not a real date (expected e.g. 2024-09-30 or 20240930)", s)
}

// NormalizeTimestamp parses a source timestamp in one of layouts (then
// TimestampLayouts; no offset means China Standard Time) and returns RFC 3339 in UTC.
func NormalizeTimestamp(s string, layouts ...string) (string, error) {
	s = NormalizeText(s)
	for _, ls := range [2][]string{layouts, TimestampLayouts} {
		for _, l := range ls {
			if t, err := time.ParseInLocation(l, s, ChinaTime); err == nil {
				return t.UTC().Format(time.RFC3339Nano), nil
			}
		}
	}
	return "", fmt.Errorf("%q is not a timestamp (expected RFC 3339 or 2006-01-02 15:04:05)", s)
}

// CanonicalText returns the text of a value, the one conversion govx has: a canonical
// value (as Normalize returns it) is written this way in record keys, hashed this way by
// the hash mask (exchange/mask's Array must agree, over every column type; a test in
// exchange/store checks it), and source values are matched this way against a
// connector's value maps. Strings are as they are; int64 in decimal; float64 in the
// shortest decimal that reads back exactly, without an exponent; bools true or false;
// nil is empty. For values before normalization: []byte is its text, a time.Time RFC
// 3339 with nanoseconds in its own zone, anything else as fmt prints it.
func CanonicalText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return string(AppendCanonicalText(nil, v))
}

// AppendCanonicalText appends CanonicalText(v) to dst.
func AppendCanonicalText(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return dst
	case string:
		return append(dst, x...)
	case []byte:
		return append(dst, x...)
	case int64:
		return strconv.AppendInt(dst, x, 10)
	case float64:
		return strconv.AppendFloat(dst, x, 'f', -1, 64)
	case bool:
		return strconv.AppendBool(dst, x)
	case time.Time:
		return x.AppendFormat(dst, time.RFC3339Nano)
	}
	return fmt.Append(dst, v)
}

// NormalizeRecord normalizes every field of a source record in place of a copy, and
// returns the canonical record and the fields that could not be read.
func (d *Dataset) NormalizeRecord(src map[string]any) (map[string]any, []FieldError) {
	out := make(map[string]any, len(src))
	var errs []FieldError
	for name, v := range src {
		f, ok := d.Field(name)
		if !ok {
			out[name] = v // Validate reports it as unknown.
			continue
		}
		n, err := f.Normalize(v)
		if err != nil {
			errs = append(errs, FieldError{name, "type", err.Error()})
			continue
		}
		out[name] = n
	}
	return out, errs
}
