package client

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"govx/exchange"
)

// whereOps maps the CLI's operators to the filter ops of the API.
var whereOps = map[string]string{
	"=": exchange.OpEq, "!=": exchange.OpNe, "in": exchange.OpIn, "prefix": exchange.OpPrefix,
	"<": exchange.OpLt, "<=": exchange.OpLe, ">": exchange.OpGt, ">=": exchange.OpGe, "is_null": exchange.OpIsNull,
}

// ParseWhere parses a `--where 'COLUMN OP VALUE'` condition. OP is one of = != in
// prefix < <= > >= is_null; `in` takes a comma list; is_null takes no value. typeOf,
// if not nil, gives a column's schema type so numbers and booleans are sent typed
// (the exchange refuses a wrongly typed value rather than guessing).
func ParseWhere(s string, typeOf func(column string) string) (exchange.Filter, error) {
	var f exchange.Filter
	s = strings.TrimSpace(s)
	col, rest, _ := strings.Cut(s, " ")
	rest = strings.TrimSpace(rest)
	op, value, _ := strings.Cut(rest, " ")
	value = strings.TrimSpace(value)
	apiOp, ok := whereOps[op]
	if col == "" || !ok {
		return f, fmt.Errorf("--where %q: write COLUMN OP VALUE with OP one of = != in prefix < <= > >= is_null, e.g. --where 'household_region prefix 3301'", s)
	}
	f.Column, f.Op = col, apiOp
	if apiOp == exchange.OpIsNull {
		if value != "" {
			return f, fmt.Errorf("--where %q: is_null takes no value", s)
		}
		return f, nil
	}
	if value == "" {
		return f, fmt.Errorf("--where %q: %s needs a value", s, op)
	}
	typ := ""
	if typeOf != nil {
		typ = typeOf(col)
	}
	if apiOp == exchange.OpIn {
		var vals []any
		for _, v := range strings.Split(value, ",") {
			tv, err := typed(strings.TrimSpace(v), typ)
			if err != nil {
				return f, fmt.Errorf("--where %q: %w", s, err)
			}
			vals = append(vals, tv)
		}
		f.Value = vals
		return f, nil
	}
	tv, err := typed(value, typ)
	if err != nil {
		return f, fmt.Errorf("--where %q: %w", s, err)
	}
	f.Value = tv
	return f, nil
}

func typed(v, typ string) (any, error) {
	switch typ {
	case "int64":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", v)
		}
		return n, nil
	case "float64":
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", v)
		}
		return json.Number(strconv.FormatFloat(x, 'f', -1, 64)), nil
	case "bool":
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%q is not true or false", v)
		}
		return b, nil
	}
	return v, nil
}
