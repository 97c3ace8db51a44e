// Package strictyaml decodes the YAML files govx reads — dataset schemas, policy data,
// the exchange's config, connector configs and client profiles — one way: one document
// a file, every mapping key known to the Go type it decodes into, and every problem
// reported as "file:line: message". Any govx package may import it; it imports nothing
// of govx.
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrEmpty is the cause of the error for a file that holds no YAML document (empty, or
// only comments). Callers for which an empty file is fine test for it with errors.Is.
var ErrEmpty = errors.New("no YAML document")

// Error is one problem of a YAML file.
type Error struct {
	File string
	Line int    // 1-based; 0 when the problem has no line (an empty file)
	Msg  string // the problem, without file and line
	// Key is the unknown key when that is the problem, for callers that add a hint.
	Key string

	err error
}

// Error returns "file:line: message", or "file: message" without a line.
func (e *Error) Error() string {
	if e.Line > 0 {
		return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
	}
	return e.File + ": " + e.Msg
}

// Unwrap returns ErrEmpty for an empty file, else the error of a custom unmarshaler if
// there was one.
func (e *Error) Unwrap() error { return e.err }

// Decode decodes data, the contents of file, into v strictly: exactly one YAML document,
// whose every mapping key must name a field of v. The error, if any, is an *Error or,
// when yaml.v3 reports several problems at once, errors.Join of them in file order
// (one a line when printed); Problems lists them.
//
// A custom UnmarshalYAML loses the decoder's check of keys: it must check them itself
// and report a key it does not know as yaml.v3 does (a *yaml.TypeError "line N: field K
// not found in type T"); an error of its own is best "line N: message".
func Decode(file string, data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return &Error{File: file, Msg: ErrEmpty.Error(), err: ErrEmpty}
		}
		return convert(file, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return convert(file, err)
	case next.Kind == yaml.DocumentNode && len(next.Content) == 1 && next.Content[0].Tag == "!!null" && next.Content[0].Value == "":
		return nil // a trailing "---" with nothing after it
	default:
		return &Error{File: file, Line: next.Line, Msg: "a second YAML document: a file holds one (remove the --- and what follows, or split the file)"}
	}
}

// Problems returns the problems of an error returned by Decode, in file order; an error
// from elsewhere is one problem with the error's text. Nil gives nil.
func Problems(err error) []*Error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*Error
		for _, e := range j.Unwrap() {
			out = append(out, Problems(e)...)
		}
		return out
	}
	var e *Error
	if errors.As(err, &e) {
		return []*Error{e}
	}
	return []*Error{{Msg: err.Error(), err: err}}
}

var (
	lineRE    = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownRE = regexp.MustCompile(`^field (\S+) not found in type .+$`)
)

// convert turns an error of yaml.v3 (or of a custom unmarshaler it passed on) into
// problems with file and line. The line is yaml.v3's: exact for unknown keys, type
// errors and scanner errors; some parser errors (an unclosed flow sequence) name the
// line where the construct began, or the one before it.
func convert(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, 0, len(te.Errors))
		for _, m := range te.Errors {
			errs = append(errs, problem(file, m, nil))
		}
		if len(errs) == 1 {
			return errs[0]
		}
		return errors.Join(errs...)
	}
	return problem(file, strings.TrimPrefix(err.Error(), "yaml: "), err)
}

func problem(file, msg string, cause error) *Error {
	e := &Error{File: file, Msg: msg, err: cause}
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = m[2]
	}
	if m := unknownRE.FindStringSubmatch(e.Msg); m != nil {
		e.Key = m[1]
		e.Msg = fmt.Sprintf("unknown key %q", m[1])
	}
	return e
}
