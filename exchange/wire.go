package exchange

import (
	"bytes"
	"encoding/json"
	"unicode"
	"unicode/utf8"
)

// PullCmd is a bulk or changes pull: the Flight descriptor's cmd and the HTTP pull
// body. It is the wire contract department systems program against.
type PullCmd struct {
	Dataset string   `json:"dataset"`
	Columns []string `json:"columns,omitempty"`
	Filter  []Filter `json:"filter,omitempty"`
	Purpose string   `json:"purpose"`
	CaseRef string   `json:"case_ref,omitempty"`
	Limit   int64    `json:"limit,omitempty"`
	// Since is a cursor from an earlier pull; it makes this a changes pull.
	Since string `json:"since,omitempty"`
}

// LookupCmd asks for one record by key. Keys travel in bodies, never URLs, so
// identifiers stay out of proxy logs.
type LookupCmd struct {
	Key     json.RawMessage `json:"key"` // a string, or an array for a composite key
	Columns []string        `json:"columns,omitempty"`
	Purpose string          `json:"purpose"`
	CaseRef string          `json:"case_ref,omitempty"`
}

// VerifyCmd checks claims about one record (核验) without returning stored values.
type VerifyCmd struct {
	Key     json.RawMessage `json:"key"`
	Claims  map[string]any  `json:"claims"`
	Purpose string          `json:"purpose"`
	CaseRef string          `json:"case_ref,omitempty"`
}

// DatasetInfo describes a dataset in a caller's catalog.
type DatasetInfo struct {
	ID       string   `json:"id"`
	Version  int      `json:"version"`
	TitleZh  string   `json:"title_zh"`
	TitleEn  string   `json:"title_en"`
	Provider string   `json:"provider"`
	Key      []string `json:"key"`
	// Rows counts the rows in the caller's scope; nil (omitted) when its only access
	// is aggregates, whose suppressed cells a count of every row would give away.
	Rows   *int64      `json:"rows,omitempty"`
	Fields []FieldInfo `json:"fields"`
}

// FieldInfo describes a field in the catalog.
type FieldInfo struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Nullable    bool   `json:"nullable"`
	Sensitivity string `json:"sensitivity"`
	TitleZh     string `json:"title_zh"`
	TitleEn     string `json:"title_en"`
}

// ErrorBody is the JSON body of every HTTP error response.
type ErrorBody struct {
	Error struct {
		Code    string   `json:"code"`
		Message string   `json:"message"`
		Reasons []Reason `json:"reasons,omitempty"`
	} `json:"error"`
}

// Over Arrow Flight an error travels as a gRPC status whose details are
// google.rpc.ErrorInfo messages: first one in ErrorDomain whose Reason is the stable code
// and whose Metadata["message"] is the message, then one in ReasonDomain per policy
// reason, in order, Reason its code and Metadata["message"] its message. The status
// message repeats all of it as text for people (pyarrow shows only the text).
const (
	ErrorDomain  = "govx.exchange"
	ReasonDomain = "govx.policy"
)

// Arrow schema metadata keys the exchange sets on every pull's stream.
const (
	MetaCursor         = "govx.cursor" // the cursor of the version served; pass as since
	MetaRequestID      = "govx.request_id"
	MetaAgreement      = "govx.agreement"
	MetaPolicyRevision = "govx.policy_revision"
)

// DuplicateField returns the first field name that an object in the JSON text data
// names twice, at any depth. Names that differ only in case count as the same: Go's
// decoder matches struct fields case-insensitively, so {"purpose":…,"Purpose":…} would
// otherwise be read as whichever came last. Text that is not valid JSON reports no
// duplicate; the strict decoder reports what is wrong with it.
func DuplicateField(data []byte) (string, bool) {
	type frame struct {
		object    bool
		expectKey bool
		names     map[string]bool
	}
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // numbers stay text: nothing to overflow or round
	for {
		tok, err := dec.Token()
		if err != nil { // io.EOF at the end, or not JSON
			return "", false
		}
		var top *frame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		if name, ok := tok.(string); ok && top != nil && top.object && top.expectKey {
			folded := foldName(name)
			if top.names[folded] {
				return name, true
			}
			top.names[folded] = true
			top.expectKey = false
			continue
		}
		// Any other token is (the start of) a value: in an object, a name comes next.
		if top != nil && top.object {
			top.expectKey = true
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, expectKey: true, names: map[string]bool{}})
		case json.Delim('['):
			stack = append(stack, frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

// foldName maps every rune to the smallest of its simple case folds, so two names fold
// alike exactly when strings.EqualFold (what encoding/json matches fields with) holds.
func foldName(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b = utf8.AppendRune(b, least)
	}
	return string(b)
}
