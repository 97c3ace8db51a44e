package exchange

// The "one number" subject views (一号式) and licence verification (证照核验): wire types
// of POST /v1/subjects/person, POST /v1/subjects/organization and POST
// /v1/licenses/verify, and of the Flight actions of the same names.

// Subject view kinds: what the identifier of a SubjectCmd is.
const (
	SubjectPerson       = "person"       // a citizen ID number
	SubjectOrganization = "organization" // a unified social credit code (USCC)
)

// Flight action types (DoAction): the body is the JSON command, the one result the JSON
// answer, exactly as over HTTP.
const (
	ActionTypeSubjectPerson       = "subject.person"
	ActionTypeSubjectOrganization = "subject.organization"
	ActionTypeLicenceVerify       = "license.verify"
)

// SubjectCmd asks for everything the registers link to one identifier, as far as the
// caller's agreements allow each register. The identifier travels in the body, never
// the URL.
type SubjectCmd struct {
	ID      string `json:"id"` // the citizen ID number or the USCC
	Purpose string `json:"purpose"`
	CaseRef string `json:"case_ref,omitempty"`
}

// SubjectView is the answer to a SubjectCmd: one part per register, each decided by
// the policy on its own, all read from snapshots taken together.
type SubjectView struct {
	Kind string `json:"kind"` // SubjectPerson or SubjectOrganization
	// ID is the identifier as the exchange read it (normalized: upper-case X, no spaces).
	ID string `json:"id"`
	// RequestID is shared by every part's audit events.
	RequestID string        `json:"request_id"`
	Parts     []SubjectPart `json:"parts"`
}

// The parts of a subject view, in the order they are answered.
const (
	PartPerson              = "person"               // population.person: the person's record
	PartOrganizations       = "organizations"        // legal_entity.organization: where the person is legal representative
	PartOrganization        = "organization"         // legal_entity.organization: the organization's record
	PartLegalRepresentative = "legal_representative" // population.person: the organization's legal representative
	PartParcels             = "parcels"              // resource.land_parcel: parcels held
	PartLicences            = "licences"             // license.certificate: licences held
)

// SubjectPart is one register's part of a subject view. A withheld part has no records
// and says why: the policy's reasons, or the exchange's (e.g. link_not_granted).
type SubjectPart struct {
	Part     string `json:"part"`
	Dataset  string `json:"dataset"`
	Withheld bool   `json:"withheld"`
	// Reasons explain a withheld part.
	Reasons []Reason `json:"reasons,omitempty"`
	// Agreement granted the part.
	Agreement string `json:"agreement,omitempty"`
	// Records are the linked records within the caller's row scope, in key order,
	// projected and masked exactly as a lookup of each would return it; none when
	// nothing is linked (or nothing within the scope: the two answer alike).
	Records []map[string]any `json:"records"`
}

// LicenceVerifyCmd presents a licence's number and the content digest printed on the
// holder's copy (证照核验).
type LicenceVerifyCmd struct {
	LicenceNo string `json:"licence_no"`
	Digest    string `json:"digest"` // SHA-256 in hex, as printed on the copy
	Purpose   string `json:"purpose"`
	CaseRef   string `json:"case_ref,omitempty"`
}

// Licence verification results.
const (
	LicenceValid     = "valid"
	LicenceNotValid  = "not_valid" // the digest does not match, or the issuer's signature does not hold
	LicenceSuspended = "suspended"
	LicenceRevoked   = "revoked"
	LicenceExpired   = "expired"
)

// Issuer signature outcomes.
const (
	SignatureHolds         = "holds"
	SignatureDoesNotHold   = "does_not_hold"
	SignatureUnknownIssuer = "unknown_issuer" // the policy's issuers data has no key for the issuer
	SignatureMalformed     = "malformed"      // the stored licence cannot be checked
)

// LicenceVerdict answers a LicenceVerifyCmd without any of the licence's values.
type LicenceVerdict struct {
	RequestID string `json:"request_id"`
	LicenceNo string `json:"licence_no"`
	// Result is valid only when the digest matches, the signature holds and the
	// licence is in force today; suspended, revoked or expired for a genuine copy of a
	// licence not in force; not_valid otherwise.
	Result string `json:"result"`
	// DigestMatch reports whether the presented digest is the register's.
	DigestMatch bool `json:"digest_match"`
	// Signature says whether the issuer's signature over the register's licence holds.
	Signature string `json:"signature"`
}
