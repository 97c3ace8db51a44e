package schemas

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Kind is a field's value type.
type Kind int

// The field kinds; their canonical JSON forms are given in Field.Normalize.
const (
	KindString Kind = iota + 1
	KindInt64
	KindDecimal
	KindFloat64
	KindDate
	KindTimestamp
	KindBool
)

// Field is one column of a dataset.
type Field struct {
	Name        string      `yaml:"name"`
	Type        string      `yaml:"type"`
	Nullable    bool        `yaml:"nullable"`
	Sensitivity Sensitivity `yaml:"sensitivity"`
	Mask        string      `yaml:"mask"`
	Check       string      `yaml:"check"`
	Pattern     string      `yaml:"pattern"`
	Enum        []string    `yaml:"enum"`
	Codes       []Code      `yaml:"codes"`
	MaxLength   int         `yaml:"max_length"`
	Min         *float64    `yaml:"min"`
	Max         *float64    `yaml:"max"`
	Title       Title       `yaml:"title"`

	kind      Kind
	precision int // decimal(p,s)
	scale     int
	re        *pattern
	check     checkFunc
	codeIndex map[string]int // Codes by value
	// confined: the values are those of an enum, a code list or a named check, none of
	// which holds a control character, so CheckString need not look for one.
	confined bool
}

// Code is one entry of a field's code list: an enum whose values carry bilingual titles,
// for code lists people read (licence types), where a bare value would not say enough.
type Code struct {
	Code  string `yaml:"code"`
	Title Title  `yaml:"title"`
}

var decimalType = regexp.MustCompile(`^decimal\((\d{1,2}),(\d{1,2})\)$`)

var fieldName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func (f *Field) init() error {
	if !fieldName.MatchString(f.Name) {
		return fmt.Errorf("name must be lower_snake_case")
	}
	switch f.Type {
	case "string":
		f.kind = KindString
	case "int64":
		f.kind = KindInt64
	case "float64":
		f.kind = KindFloat64
	case "date":
		f.kind = KindDate
	case "timestamp":
		f.kind = KindTimestamp
	case "bool":
		f.kind = KindBool
	default:
		m := decimalType.FindStringSubmatch(strings.ReplaceAll(f.Type, " ", ""))
		if m == nil {
			return fmt.Errorf("unknown type %q (string, int64, decimal(p,s), float64, date, timestamp, bool)", f.Type)
		}
		f.kind = KindDecimal
		f.precision, _ = strconv.Atoi(m[1])
		f.scale, _ = strconv.Atoi(m[2])
		if f.precision < 1 || f.precision > 38 || f.scale > f.precision {
			return fmt.Errorf("type %q: need 1 <= p <= 38 and s <= p", f.Type)
		}
	}
	switch f.Sensitivity {
	case Public, Internal, Personal, SensitivePersonal:
	default:
		return fmt.Errorf("sensitivity %q is not one of public, internal, personal, sensitive_personal", f.Sensitivity)
	}
	if !masks[f.Mask] {
		return fmt.Errorf("mask %q is not one of id_card, name, phone, address, year, hash, null", f.Mask)
	}
	if f.Mask == "year" && f.kind != KindDate && f.kind != KindTimestamp {
		return fmt.Errorf("mask year needs a date or timestamp field")
	}
	if f.Title.Zh == "" || f.Title.En == "" {
		return fmt.Errorf("title needs both zh and en")
	}
	if f.Pattern != "" {
		re, err := compilePattern(f.Pattern)
		if err != nil {
			return fmt.Errorf("pattern: %v", err)
		}
		f.re = re
	}
	if f.Check != "" {
		c, ok := checks[f.Check]
		if !ok {
			return fmt.Errorf("check %q is not a known validator (%s)", f.Check, checkNames())
		}
		f.check = c
	}
	if (f.Pattern != "" || f.Check != "" || len(f.Enum) > 0 || len(f.Codes) > 0 || f.MaxLength > 0) && f.kind != KindString {
		return fmt.Errorf("check, pattern, enum, codes and max_length apply to string fields only")
	}
	if err := f.initCodes(); err != nil {
		return err
	}
	for _, v := range f.Allowed() {
		if controlAt(v) >= 0 {
			return fmt.Errorf("the allowed value %q holds a control character", v)
		}
	}
	f.confined = len(f.Enum) > 0 || f.codeIndex != nil || f.check != nil
	if (f.Min != nil || f.Max != nil) && f.kind != KindInt64 && f.kind != KindDecimal && f.kind != KindFloat64 {
		return fmt.Errorf("min and max apply to numeric fields only")
	}
	return nil
}

// Kind returns the field's value kind.
func (f *Field) Kind() Kind { return f.kind }

// DecimalPS returns the precision and scale of a decimal field.
func (f *Field) DecimalPS() (precision, scale int) { return f.precision, f.scale }

func (f *Field) initCodes() error {
	if len(f.Codes) == 0 {
		return nil
	}
	if len(f.Enum) > 0 {
		return fmt.Errorf("enum and codes both list the allowed values; use one")
	}
	f.codeIndex = make(map[string]int, len(f.Codes))
	for i, c := range f.Codes {
		if c.Code == "" {
			return fmt.Errorf("codes[%d]: code is empty", i)
		}
		if _, dup := f.codeIndex[c.Code]; dup {
			return fmt.Errorf("codes: %q is listed twice", c.Code)
		}
		if c.Title.Zh == "" || c.Title.En == "" {
			return fmt.Errorf("codes: %q needs a title with both zh and en", c.Code)
		}
		f.codeIndex[c.Code] = i
	}
	return nil
}

// CodeTitle returns the title of a value of the field's code list; false when the field
// has no code list or the value is not on it.
func (f *Field) CodeTitle(code string) (Title, bool) {
	i, ok := f.codeIndex[code]
	if !ok {
		return Title{}, false
	}
	return f.Codes[i].Title, true
}

// Allowed returns the values the field is restricted to (its enum, or the codes of its
// code list), or nil when any value passes.
func (f *Field) Allowed() []string {
	if len(f.Codes) == 0 {
		return f.Enum
	}
	out := make([]string, len(f.Codes))
	for i, c := range f.Codes {
		out[i] = c.Code
	}
	return out
}
