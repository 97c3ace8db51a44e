package service

import (
	"encoding/json"
	"unicode/utf8"

	"govx/exchange"
)

// fastLookup decodes the lookup body every client sends — one flat object naming key,
// purpose, case_ref and columns exactly so, each once, with string values (an array of
// strings for columns or a composite key) free of escapes — without reflection and
// with one allocation per value: at thousands of lookups a second, decodeStrict's
// three passes (duplicate names, the decoder, the trailing-data check) were the
// largest part of a lookup's own CPU and garbage. It reports false for anything else,
// and the caller then decodes strictly: it accepts only bodies whose decoding has one
// meaning, the one decodeStrict gives them (TestFastLookupAgreesWithStrict).
func fastLookup(data []byte) (exchange.LookupCmd, bool) {
	var c exchange.LookupCmd
	p := jsonScan{b: data}
	if !p.byte('{') {
		return c, false
	}
	seen := 0
	for first := true; ; first = false {
		if p.byte('}') {
			break
		}
		if !first && !p.byte(',') {
			return c, false
		}
		name, ok := p.str()
		if !ok || !p.byte(':') {
			return c, false
		}
		bit, start := 0, 0
		switch string(name) {
		case "key":
			bit = 1
			p.space()
			start = p.i
			if !p.strOrStrings(nil) {
				return c, false
			}
			c.Key = json.RawMessage(append([]byte(nil), data[start:p.i]...))
		case "purpose":
			bit = 2
			v, ok := p.str()
			if !ok {
				return c, false
			}
			c.Purpose = string(v)
		case "case_ref":
			bit = 4
			v, ok := p.str()
			if !ok {
				return c, false
			}
			c.CaseRef = string(v)
		case "columns":
			bit = 8
			if !p.strOrStrings(&c.Columns) || c.Columns == nil {
				return c, false // a lone string is not a list of columns
			}
		default:
			return c, false
		}
		if seen&bit != 0 {
			return c, false
		}
		seen |= bit
	}
	p.space()
	return c, p.i == len(p.b)
}

// jsonScan reads the plain JSON fastLookup accepts.
type jsonScan struct {
	b []byte
	i int
}

func (p *jsonScan) space() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n' || p.b[p.i] == '\r') {
		p.i++
	}
}

// byte consumes c after white space, if it is next.
func (p *jsonScan) byte(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string with no escape and no control character, valid UTF-8, and
// returns its contents (sharing the input).
func (p *jsonScan) str() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	for ; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// strOrStrings reads a string, or an array of strings (into out, when not nil).
func (p *jsonScan) strOrStrings(out *[]string) bool {
	if !p.byte('[') {
		_, ok := p.str()
		return ok
	}
	list := []string{}
	if p.byte(']') {
		if out != nil {
			*out = list
		}
		return true
	}
	for {
		s, ok := p.str()
		if !ok {
			return false
		}
		list = append(list, string(s))
		if p.byte(']') {
			break
		}
		if !p.byte(',') {
			return false
		}
	}
	if out != nil {
		*out = list
	}
	return true
}
