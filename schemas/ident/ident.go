// Package ident validates the identifiers that key govx's base registers, exactly as
// their national standards define them: the citizen identity number (公民身份号码,
// GB 11643-1999), the unified social credit code (统一社会信用代码, GB 32100-2015) and
// administrative division codes (行政区划代码, GB/T 2260), together with the small
// region table the demo ships.
//
// Connectors use it to route invalid rows to the dead-letter topic, the exchange uses it
// to reject malformed keys before they reach the policy or the store, and the synthetic
// data generator uses the check-character functions to build valid values. It imports
// nothing else of govx, so any package may import it.
//
// The checkers take values that are already normalized (no spaces, upper-case letters,
// half-width characters); normalization belongs to the caller because connectors and the
// verify API normalize the same way for every field, not only identifiers. A value is
// checked rule by rule in a fixed, documented order and the first failed rule is
// reported as an *Error whose Kind is a stable reason code.
package ident

import "fmt"

// Reason codes carried in Error.Kind. They are stable: they appear in the govx-error
// header of dead-letter records and in API error details.
const (
	KindLength    = "length"     // wrong number of characters
	KindCharset   = "charset"    // a character the format does not allow at that position
	KindProvince  = "province"   // the first two digits are not a province-level code
	KindDate      = "date"       // the birth date is not a calendar date, before 1800 or in the future
	KindCheckChar = "check_char" // the check character does not match the rest
	KindAuthority = "authority"  // USCC position 1 is not a registration authority code
	KindOrgType   = "org_type"   // USCC position 2 is not a type that authority issues
	KindRegion    = "region"     // a region code that is not a GB/T 2260 code
)

// Error reports why an identifier is invalid. Kind is one of the Kind constants; Msg is
// written for the person who has to correct the value.
type Error struct {
	Kind string
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func errorf(kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}
