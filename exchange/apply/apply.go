// Package apply runs the sharing application process (共享申请—答复) and corrections
// (校核纠错): a using department applies for a dataset, the data authority reviews the
// application for compliance, the providing department answers within its time limit
// (approved with conditions, or refused with reasons), a refused department may dispute,
// and the dispute ends negotiated with the provider or coordinated by the data authority.
// An application granted at any of these steps becomes a sharing agreement, written into
// the policy directory (agreements-applications.yaml) so the running exchange's policy
// reload serves it. Clocks run on the working-day calendar of the policy directory.
//
// Who may take each step is decided by the process policy (policies.Process, Rego
// data.govx.applications.decision); which steps are legal in which state is this
// package's state machine. Every step taken, and every step refused, is an audit event
// in the exchange's tamper-evident log, and a refused step changes nothing.
//
// State is one SQL database: SQLite in the exchange's data directory by default,
// PostgreSQL when configured; the same schema and migrations on both.
//
// Only the wiring (exchange/server, exchange/httpapi, cmd/govx) imports it.
package apply

import (
	"time"

	"govx/exchange"
)

// State is where an application stands.
type State string

// The states of an application.
const (
	Submitted    State = "submitted"     // awaiting the data authority's compliance review
	WithProvider State = "with_provider" // reviewed; awaiting the provider's answer
	Approved     State = "approved"      // granted with conditions: an agreement is in force
	Refused      State = "refused"       // refused with reasons
	Withdrawn    State = "withdrawn"     // withdrawn by the applicant
	Disputed     State = "disputed"      // refused, and the applicant still needs the data
	Negotiated   State = "negotiated"    // the dispute ended by agreement with the provider
	Coordinated  State = "coordinated"   // the dispute decided by the data authority
)

// Grants reports whether an application in state s (with outcome granted, for the
// states ending a dispute) holds an agreement in force.
func (a *Application) Grants() bool {
	switch a.State {
	case Approved:
		return true
	case Negotiated, Coordinated:
		return a.Granted
	}
	return false
}

// Step names: the actions of the process, as the policy and the audit log name them.
const (
	ActSubmit     = "application.submit"
	ActReview     = "application.review"
	ActApprove    = "application.approve"
	ActRefuse     = "application.refuse"
	ActWithdraw   = "application.withdraw"
	ActDispute    = "application.dispute"
	ActNegotiate  = "application.negotiate"
	ActCoordinate = "application.coordinate"
	ActRead       = "application.read"

	ActFlag         = "correction.flag"
	ActAnswerFix    = "correction.answer"
	ActCloseFix     = "correction.close"
	ActReadFix      = "correction.read"
	clockReview     = "review"
	clockAnswer     = "answer"
	clockPublish    = "publish_and_answer"
	clockCorrection = "correction"
)

// Access is what an application asks to do with the data; each maps to the agreement
// actions it needs (see agreementActions).
var accessActions = map[string][]string{
	"read":   {"read", "changes", "discover"},
	"lookup": {"lookup", "discover"},
	"verify": {"verify"},
}

// Application is one sharing application. The requested fields are the applicant's;
// Conditions, Reasons and the outcome are the answer's.
type Application struct {
	ID        string   `json:"id"`
	Applicant string   `json:"applicant"` // the applying department
	System    string   `json:"system"`    // the system the data is for
	Dataset   string   `json:"dataset"`
	Provider  string   `json:"provider"` // the dataset's providing department (schemas)
	Columns   []string `json:"columns"`
	Purpose   string   `json:"purpose"`
	// LegalBasis is the duty the data serves and its legal ground (履职依据).
	LegalBasis string `json:"legal_basis"`
	Scenario   string `json:"scenario"`
	CaseVolume int64  `json:"case_volume"` // cases a year, estimated
	// RowScope is a GB/T 2260 code; empty: the applicant's own region; "000000": nationwide.
	RowScope    string   `json:"row_scope,omitempty"`
	Access      []string `json:"access"` // read | lookup | verify
	ValidFrom   string   `json:"valid_from"`
	ValidUntil  string   `json:"valid_until"`
	Attachments []string `json:"attachments,omitempty"` // references, never content
	// Renews names the application whose agreement this one renews.
	Renews string `json:"renews,omitempty"`

	State      State       `json:"state"`
	Granted    bool        `json:"granted,omitempty"` // outcome of negotiated or coordinated
	Conditions *Conditions `json:"conditions,omitempty"`
	Reasons    []string    `json:"reasons,omitempty"` // why refused (required)
	Grounds    string      `json:"grounds,omitempty"` // why disputed (required)
	Agreement  string      `json:"agreement,omitempty"`

	// Clock names the time limit running (review, answer, publish_and_answer); Due is
	// when it ends (the end of its last working day). Both empty when none runs.
	Clock   string    `json:"clock,omitempty"`
	Due     time.Time `json:"due,omitzero"`
	Overdue bool      `json:"overdue"`

	Submitted time.Time `json:"submitted"`
	Updated   time.Time `json:"updated"`
	Version   int64     `json:"version"`
	Steps     []Step    `json:"steps,omitempty"`
}

// Conditions are what an approval grants: at most what was asked.
type Conditions struct {
	Columns  []string          `json:"columns"`
	Unmasked []string          `json:"unmasked,omitempty"`
	Masks    map[string]string `json:"masks,omitempty"`
	RowScope string            `json:"row_scope,omitempty"`
	MaxRows  int64             `json:"max_rows,omitempty"`
	Access   []string          `json:"access"`
	// ValidFrom and ValidUntil are dates (the whole day, China Standard Time).
	ValidFrom  string `json:"valid_from"`
	ValidUntil string `json:"valid_until"`
	// Approval is the approval document number (审批文号).
	Approval string `json:"approval"`
}

// Step is one entry of an application's or a correction's history.
type Step struct {
	At     time.Time        `json:"at"`
	By     exchange.Subject `json:"by"`
	Action string           `json:"action"`
	From   string           `json:"from"`
	To     string           `json:"to"`
	Detail string           `json:"detail,omitempty"`
}

// Correction states.
const (
	Flagged   State = "flagged"   // awaiting the provider's answer
	Corrected State = "corrected" // corrected at source; closes when the value is served
	Rejected  State = "rejected"  // the provider rejected it, with a reason
	Closed    State = "closed"    // the corrected value is served
)

// Correction is a record a consuming department flagged as wrong (校核纠错).
type Correction struct {
	ID       string `json:"id"`
	Flagger  string `json:"flagger"`
	System   string `json:"system"`
	Dataset  string `json:"dataset"`
	Provider string `json:"provider"`
	Key      string `json:"key"`
	Column   string `json:"column"`
	// Value is what the flagging department believes right, as text.
	Value    string `json:"value"`
	Evidence string `json:"evidence"` // a reference, never content

	State  State  `json:"state"`
	Answer string `json:"answer,omitempty"` // the provider's note, or why rejected

	Clock   string    `json:"clock,omitempty"`
	Due     time.Time `json:"due,omitzero"`
	Overdue bool      `json:"overdue"`

	Flagged time.Time `json:"flagged"`
	Updated time.Time `json:"updated"`
	Version int64     `json:"version"`
	Steps   []Step    `json:"steps,omitempty"`
}
