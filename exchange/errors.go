package exchange

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind classifies an Error so that each edge maps it to its protocol's code: gRPC status
// codes for Flight, HTTP statuses for the HTTP API.
type Kind uint8

// The kinds. Other is the zero value, treated as Internal at the edges.
const (
	Other             Kind = iota
	Invalid                // the request is malformed: gRPC InvalidArgument, HTTP 400
	Unauthenticated        // no or bad credentials: gRPC Unauthenticated, HTTP 401
	PermissionDenied       // the policy denied it: gRPC PermissionDenied, HTTP 403
	NotFound               // no such dataset or key: gRPC NotFound, HTTP 404
	ResourceExhausted      // over a quota or max_rows: gRPC ResourceExhausted, HTTP 429
	Unavailable            // try again later: gRPC Unavailable, HTTP 503
	Internal               // a bug or broken invariant: gRPC Internal, HTTP 500
)

var kindNames = [...]string{
	Other:             "other",
	Invalid:           "invalid",
	Unauthenticated:   "unauthenticated",
	PermissionDenied:  "permission_denied",
	NotFound:          "not_found",
	ResourceExhausted: "resource_exhausted",
	Unavailable:       "unavailable",
	Internal:          "internal",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Error is the one error type the exchange's parts return to the edges. Code is a
// stable string listed in docs/errors.md; Message is for people; Reasons carry the
// policy's reasons on a denial.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	Reasons []Reason
	// Err is the underlying cause, if any; it is never shown to callers.
	Err error
}

// E returns an Error of the given kind, code and message.
func E(kind Kind, code, message string) *Error {
	return &Error{Kind: kind, Code: code, Message: message}
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Code)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	for _, r := range e.Reasons {
		b.WriteString("; ")
		b.WriteString(r.Code)
		b.WriteString(": ")
		b.WriteString(r.Message)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of the first *Error in err's chain, or Internal when there is
// none: an error nobody classified is a bug, not the caller's fault.
func KindOf(err error) Kind {
	if err == nil {
		return Other
	}
	if e, ok := errors.AsType[*Error](err); ok && e.Kind != Other {
		return e.Kind
	}
	return Internal
}

// Denied returns the PermissionDenied error for a denying decision, carrying its
// reasons to the caller.
func Denied(d Decision) *Error {
	return &Error{
		Kind:    PermissionDenied,
		Code:    "permission_denied",
		Message: "the sharing policy denied the request",
		Reasons: d.Reasons,
	}
}

// ClientGone marks err, a failure to send a response to the caller, as the caller going
// away: it matches context.Canceled, so the audit log records the response as aborted
// and the edges count it as the client's doing (HTTP 499), not as the exchange's error.
func ClientGone(err error) error { return clientGone{err} }

type clientGone struct{ err error }

func (c clientGone) Error() string   { return "the client went away: " + c.err.Error() }
func (c clientGone) Unwrap() []error { return []error{context.Canceled, c.err} }

// ErrClientStalled matches the errors of ClientStalled.
var ErrClientStalled = errors.New("the client stopped reading")

// ClientStalled is the error of a pull the exchange ended because its client took
// nothing of it for d (rate_limit.pull_stall_timeout): the audit log records it as
// aborted, "client stopped reading"; a Flight client reading again finds pull_stalled
// (an HTTP response can only be cut short).
func ClientStalled(d time.Duration) error {
	return &Error{Kind: ResourceExhausted, Code: "pull_stalled",
		Message: fmt.Sprintf("the exchange ended this pull: your client took nothing of it for %s (rate_limit.pull_stall_timeout); read a pull as it arrives, then pull again", d),
		Err:     ErrClientStalled}
}
