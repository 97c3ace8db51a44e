package connectors

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/width"

	"govx/schemas"
)

// The snapshot's hot path normalizes every text value of every row. schemas.NormalizeText
// runs a golang.org/x/text transform, which allocates on every call even when nothing
// changes; most department text is ASCII or Chinese characters that fold to themselves.
// normText and mappedField.normalize give the same results as schemas.NormalizeText and
// Field.Normalize (normalize_test.go compares them) and fall back to them for anything
// they do not handle themselves.

// normText is schemas.NormalizeText without the allocation when no character folds.
func normText(s string) string {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return schemas.NormalizeText(s)
		}
		if width.LookupRune(r).Narrow() != 0 {
			return schemas.NormalizeText(s)
		}
		i += size
	}
	return strings.TrimFunc(s, unicode.IsSpace)
}

// normalize is Field.Normalize for text values of string and date fields, the values
// a database driver yields most; every other value goes to Field.Normalize.
func (mf *mappedField) normalize(v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return mf.f.Normalize(v, mf.formats...)
	}
	switch mf.f.Kind() {
	case schemas.KindString:
		if s = normText(s); s == "" {
			return nil, nil
		}
		if mf.f.Check != "" {
			// Check characters are upper-case by standard; people type a lower-case x.
			s = strings.ToUpper(s)
		}
		return s, nil
	case schemas.KindDate:
		if s = normText(s); s == "" {
			return nil, nil
		}
		for _, l := range mf.dateLayouts {
			if t, err := time.ParseInLocation(l, s, cst); err == nil {
				return t.Format(time.DateOnly), nil
			}
		}
		// Not a date: Field.Normalize words the error.
		return mf.f.Normalize(s, mf.formats...)
	}
	return mf.f.Normalize(v, mf.formats...)
}
