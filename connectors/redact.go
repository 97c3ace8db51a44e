package connectors

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// redactor removes secrets (a DSN, its password) from text that may reach a user or a
// log: drivers sometimes echo the connection string in their errors.
type redactor struct{ secrets []string }

var kvPassword = regexp.MustCompile(`(?i)password\s*=\s*('[^']*'|\S+)`)
var driverPassword = regexp.MustCompile(`^[^:/@]+:([^@]+)@`) // go-sql-driver: user:pass@tcp(...)

func newRedactor(dsn string) *redactor {
	r := &redactor{}
	if dsn == "" {
		return r
	}
	r.add(dsn)
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			r.add(pw)
			r.add(url.QueryEscape(pw))
			r.add(url.PathEscape(pw))
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
		r.add(strings.Trim(m[1], "'"))
	}
	if m := driverPassword.FindStringSubmatch(dsn); m != nil {
		r.add(m[1])
	}
	return r
}

func (r *redactor) add(s string) {
	if len(s) >= 3 { // shorter "secrets" would mangle ordinary words
		r.secrets = append(r.secrets, s)
	}
}

func (r *redactor) text(s string) string {
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, "[REDACTED]")
	}
	return s
}

// err returns err with every secret replaced; nil stays nil.
func (r *redactor) err(err error) error {
	if err == nil || len(r.secrets) == 0 {
		return err
	}
	msg := err.Error()
	red := r.text(msg)
	if red == msg {
		return err
	}
	return &redactedError{msg: red, err: err}
}

// redactedError keeps the chain for errors.Is (context.Canceled and friends) but prints
// only the redacted text.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Is(target error) bool {
	return errors.Is(e.err, target)
}
