package exchange

import "encoding/json"

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
	ID       string      `json:"id"`
	Version  int         `json:"version"`
	TitleZh  string      `json:"title_zh"`
	TitleEn  string      `json:"title_en"`
	Provider string      `json:"provider"`
	Key      []string    `json:"key"`
	Rows     int64       `json:"rows"`
	Fields   []FieldInfo `json:"fields"`
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

// Arrow schema metadata keys the exchange sets on every pull's stream.
const (
	MetaCursor         = "govx.cursor" // the cursor of the version served; pass as since
	MetaRequestID      = "govx.request_id"
	MetaAgreement      = "govx.agreement"
	MetaPolicyRevision = "govx.policy_revision"
)
