package apply

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"govx/exchange"
	"govx/exchange/audit"
	"govx/exchange/auth"
	"govx/policies"
	"govx/schemas"
)

// PolicySource is the sharing policy now deciding, and a way to make it reread its
// directory at once (exchange/policy.Engine is one).
type PolicySource interface {
	Bundle() *policies.Bundle
	Reload() error
}

// Auditor takes audit events durably (*audit.Spool is one).
type Auditor interface {
	Append(ctx context.Context, ev *audit.Event) error
}

// Values reads the value the exchange now serves for a record's column, for closing
// corrections; ok is false when the record is not served.
type Values func(dataset, key, column string) (value string, ok bool)

// Config is what a Service needs.
type Config struct {
	Store   *Store
	Audit   Auditor
	Policy  PolicySource
	Catalog *schemas.Catalog
	Process *policies.Process
	// PolicyDir is the policy directory the exchange reloads, where grants are written.
	// Without one, grants are refused (no_policy_dir): an agreement nobody serves is
	// not a grant.
	PolicyDir string
	Values    Values
	Now       func() time.Time
	Log       *slog.Logger
}

// Service runs the process. It is safe for concurrent use; steps are taken one at a
// time, so that the agreements file is always written from the state just committed.
type Service struct {
	cfg   Config
	authz *authorizer
	mu    sync.Mutex
}

// New returns the service, after bringing the agreements file in line with the database
// (a crash between a grant's commit and its file write is repaired here).
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Store == nil || cfg.Audit == nil || cfg.Policy == nil || cfg.Catalog == nil || cfg.Process == nil {
		return nil, errors.New("apply: Store, Audit, Policy, Catalog and Process are required")
	}
	az, err := newAuthorizer(cfg.Process)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, authz: az}
	if cfg.PolicyDir != "" {
		removeStaleTemps(cfg.PolicyDir)
		if err := s.syncAgreements(ctx); err != nil {
			return nil, fmt.Errorf("apply: write %s: %w", AgreementsFile, err)
		}
	}
	return s, nil
}

// Caller is who takes a step: from credentials only.
type Caller struct {
	Subject    exchange.Subject
	ClientAddr string
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Millisecond) }

func (s *Service) registered(dept string) bool {
	_, ok := s.cfg.Policy.Bundle().Department(dept)
	return ok
}

func (s *Service) catalogEntry(dataset string) *policies.CatalogEntry {
	for _, e := range s.cfg.Policy.Bundle().Datasets {
		if e.Dataset == dataset {
			return &e
		}
	}
	return nil
}

// deadline is the end of a time limit of the applicant's province starting now.
func (s *Service) deadline(dept string, now time.Time, pick func(policies.TimeLimit) int) (time.Time, error) {
	region := ""
	if d, ok := s.cfg.Policy.Bundle().Department(dept); ok {
		region = d.Region
	}
	due, err := s.cfg.Process.Calendar.Deadline(now, pick(s.cfg.Process.Limit(region)))
	if err != nil {
		return time.Time{}, &exchange.Error{Kind: exchange.Unavailable, Code: "outside_calendar",
			Message: "the deadline cannot be computed: " + err.Error(), Err: err}
	}
	return due, nil
}

// Request is what an applicant submits.
type Request struct {
	System      string   `json:"system"`
	Dataset     string   `json:"dataset"`
	Columns     []string `json:"columns"`
	Purpose     string   `json:"purpose"`
	LegalBasis  string   `json:"legal_basis"`
	Scenario    string   `json:"scenario"`
	CaseVolume  int64    `json:"case_volume"`
	RowScope    string   `json:"row_scope"`
	Access      []string `json:"access"`
	ValidFrom   string   `json:"valid_from"`
	ValidUntil  string   `json:"valid_until"`
	Attachments []string `json:"attachments"`
	Renews      string   `json:"renews"`
}

var (
	purposeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,127}$`)
	regionRE  = regexp.MustCompile(`^[0-9]{6}$`)
)

func invalid(format string, args ...any) error {
	return exchange.E(exchange.Invalid, "invalid_application", fmt.Sprintf(format, args...))
}

// MaxText is the longest free text a step takes (a legal basis, a scenario, grounds,
// reasons all together, a note): a record of the process, not a place for documents
// (attachments are references).
const MaxText = 4096

// tooLong refuses a free-text field over MaxText bytes, naming it.
func tooLong(field string, vs ...string) error {
	n := 0
	for _, v := range vs {
		n += len(v)
	}
	if n > MaxText {
		return exchange.E(exchange.Invalid, "text_too_long", fmt.Sprintf("%s: at most %d bytes (%d given); attach longer documents by reference", field, MaxText, n))
	}
	return nil
}

func parseDate(field, v string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return t, invalid("%s %q is not a date (2026-12-31)", field, v)
	}
	return t, nil
}

// checkRequest validates an application as submitted; every problem is Invalid.
func (s *Service) checkRequest(r *Request) (*schemas.Dataset, error) {
	if e := s.catalogEntry(r.Dataset); e != nil && e.Share == "none" {
		return nil, exchange.E(exchange.PermissionDenied, "dataset_not_shared",
			r.Dataset+" is not shared (不予共享): "+e.LegalBasis+"; no application can grant it")
	}
	ds, ok := s.cfg.Catalog.Dataset(r.Dataset)
	if !ok {
		return nil, exchange.E(exchange.NotFound, "unknown_dataset", "no dataset "+strconv.Quote(r.Dataset)+"; govx schemas list lists them")
	}
	if len(r.Columns) == 0 {
		return nil, invalid("columns: name the columns needed (the minimum the duty requires)")
	}
	seen := map[string]bool{}
	for _, c := range r.Columns {
		if _, ok := ds.Field(c); !ok {
			return nil, exchange.E(exchange.Invalid, "unknown_column", fmt.Sprintf("%s has no column %q", r.Dataset, c))
		}
		if seen[c] {
			return nil, exchange.E(exchange.Invalid, "duplicate_column", "column "+strconv.Quote(c)+" is named twice")
		}
		seen[c] = true
	}
	if !purposeRE.MatchString(r.Purpose) {
		return nil, invalid("purpose %q: a name of lower-case letters, digits and dashes (e.g. housing-security-qualification)", r.Purpose)
	}
	if strings.TrimSpace(r.LegalBasis) == "" {
		return nil, invalid("legal_basis: cite the duty the data serves and its legal ground (履职依据)")
	}
	if strings.TrimSpace(r.Scenario) == "" {
		return nil, invalid("scenario: say in which procedure the data is used")
	}
	for field, v := range map[string]string{"legal_basis": r.LegalBasis, "scenario": r.Scenario} {
		if err := tooLong(field, v); err != nil {
			return nil, err
		}
	}
	if r.CaseVolume < 0 {
		return nil, invalid("case_volume must not be negative")
	}
	if r.RowScope != "" && !regionRE.MatchString(r.RowScope) {
		return nil, invalid("row_scope %q: a GB/T 2260 code of six digits, 000000 for nationwide, or empty for the department's own region", r.RowScope)
	}
	if err := checkAccess(r.Access, nil); err != nil {
		return nil, err
	}
	from, err := parseDate("valid_from", r.ValidFrom)
	if err != nil {
		return nil, err
	}
	until, err := parseDate("valid_until", r.ValidUntil)
	if err != nil {
		return nil, err
	}
	if until.Before(from) {
		return nil, invalid("valid_until %s is before valid_from %s", r.ValidUntil, r.ValidFrom)
	}
	for _, a := range r.Attachments {
		if strings.TrimSpace(a) == "" || len(a) > 512 {
			return nil, invalid("attachments are references (a document number or URL), not empty and at most 512 bytes")
		}
	}
	return ds, nil
}

// checkAccess checks a list of access kinds, and that it stays within allowed when given.
func checkAccess(acc, allowed []string) error {
	if len(acc) == 0 {
		return invalid("access: any of read, lookup, verify")
	}
	for _, a := range acc {
		if _, ok := accessActions[a]; !ok {
			return invalid("access %q: one of read, lookup, verify", a)
		}
		if allowed != nil && !slices.Contains(allowed, a) {
			return exchange.E(exchange.Invalid, "invalid_conditions", fmt.Sprintf("access %q was not applied for (%s)", a, strings.Join(allowed, ", ")))
		}
	}
	return nil
}

// Submit files a new application for the caller's department.
func (s *Service) Submit(ctx context.Context, c Caller, r Request) (*Application, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if r.System == "" {
		r.System = c.Subject.System
	}
	r.System = strings.TrimSpace(r.System)
	a := &Application{Applicant: c.Subject.Department, System: r.System, Dataset: r.Dataset, Columns: r.Columns,
		Purpose: r.Purpose, LegalBasis: r.LegalBasis, Scenario: r.Scenario, CaseVolume: r.CaseVolume, RowScope: r.RowScope,
		Access: r.Access, ValidFrom: r.ValidFrom, ValidUntil: r.ValidUntil, Attachments: r.Attachments, Renews: r.Renews,
		State: Submitted, Submitted: now, Updated: now, Version: 1}
	if ds, ok := s.cfg.Catalog.Dataset(r.Dataset); ok {
		a.Provider = ds.Provider.Code
	}
	refuse := func(err error) (*Application, error) { return nil, s.auditRefusal(ctx, c, ActSubmit, a, err) }
	if err := s.authz.decide(ctx, c.Subject, s.registered(c.Subject.Department), ActSubmit,
		caseOf{Applicant: a.Applicant, Provider: a.Provider, Dataset: a.Dataset}); err != nil {
		return refuse(err)
	}
	if _, err := s.checkRequest(&r); err != nil {
		return refuse(err)
	}
	// The system is one of the applicant's own, named as its credentials name systems:
	// never another department's ("gab/steward"), never markup. (The policy data lists
	// no systems per department, so a well-formed name is all that can be checked.)
	if _, err := auth.ParseSubject(a.Applicant + "/" + r.System); err != nil || r.System == "" {
		return refuse(exchange.E(exchange.Invalid, "bad_system", fmt.Sprintf(
			"system %q: the name of one of your department's systems, as its token or certificate names it (lower-case letters, digits, '.', '_' or '-', e.g. %q)", r.System, c.Subject.System)))
	}
	due, err := s.deadline(a.Applicant, now, func(l policies.TimeLimit) int { return l.Review })
	if err != nil {
		return refuse(err)
	}
	a.Clock, a.Due = clockReview, due
	err = s.cfg.Store.tx(ctx, func(tx *sql.Tx) error {
		if r.Renews != "" {
			old, err := s.cfg.Store.getApplication(ctx, tx, r.Renews)
			if err != nil {
				return invalid("renews: %v", err)
			}
			if !old.Grants() || old.Applicant != a.Applicant || old.Dataset != a.Dataset {
				return invalid("renews %s: only an application of the same department for the same dataset holding an agreement can be renewed", r.Renews)
			}
		}
		id, err := s.cfg.Store.nextID(ctx, tx, "APP", now.In(chinaZone).Year())
		if err != nil {
			return err
		}
		a.ID = id
		if err := s.cfg.Store.putApplication(ctx, tx, a, true); err != nil {
			return err
		}
		st := Step{At: now, By: c.Subject, Action: ActSubmit, To: string(Submitted), Detail: a.Purpose}
		if err := s.cfg.Store.addStep(ctx, tx, a.ID, 1, st); err != nil {
			return err
		}
		return s.auditStep(ctx, c, ActSubmit, a, "")
	})
	if err != nil {
		a.ID = ""
		return refuse(err)
	}
	return s.show(ctx, a.ID, now)
}

// Outcome is the answer of a step that decides: a review, an approval, a refusal, the
// end of a dispute.
type Outcome struct {
	// Grant is true to pass a review, to approve, or to end a dispute granted.
	Grant bool `json:"grant"`
	// Conditions of a grant; fields left empty take what was applied for, and nothing
	// beyond what was applied for is granted. Approval (the document number) is required.
	Conditions *Conditions `json:"conditions,omitempty"`
	// Reasons of a refusal: required.
	Reasons []string `json:"reasons,omitempty"`
	// Grounds of a dispute: required.
	Grounds string `json:"grounds,omitempty"`
}

// Review is the data authority's compliance review: passed, an application goes to the
// provider, or, for a dataset shared unconditionally, is approved at once (the outcome's
// conditions and approval number apply); failed, it is refused with reasons.
func (s *Service) Review(ctx context.Context, c Caller, id string, o Outcome) (*Application, error) {
	return s.take(ctx, c, id, ActReview, func(a *Application, now time.Time) error {
		if !o.Grant {
			return s.refuseWith(a, o.Reasons)
		}
		e := s.catalogEntry(a.Dataset)
		if e != nil && e.Share == "unconditional" {
			return s.grant(a, Approved, o.Conditions)
		}
		pick, clock := func(l policies.TimeLimit) int { return l.Answer }, clockAnswer
		if e == nil {
			// Within the provider's duties but not yet shared: it publishes, then answers.
			pick, clock = func(l policies.TimeLimit) int { return l.PublishAndAnswer }, clockPublish
		}
		due, err := s.deadline(a.Applicant, now, pick)
		if err != nil {
			return err
		}
		a.State, a.Clock, a.Due = WithProvider, clock, due
		return nil
	})
}

// Approve is the provider's approval, with conditions.
func (s *Service) Approve(ctx context.Context, c Caller, id string, cond *Conditions) (*Application, error) {
	return s.take(ctx, c, id, ActApprove, func(a *Application, _ time.Time) error { return s.grant(a, Approved, cond) })
}

// Refuse is the provider's refusal, with reasons.
func (s *Service) Refuse(ctx context.Context, c Caller, id string, reasons []string) (*Application, error) {
	return s.take(ctx, c, id, ActRefuse, func(a *Application, _ time.Time) error { return s.refuseWith(a, reasons) })
}

// Withdraw is the applicant's withdrawal of an open application.
func (s *Service) Withdraw(ctx context.Context, c Caller, id string) (*Application, error) {
	return s.take(ctx, c, id, ActWithdraw, func(a *Application, _ time.Time) error {
		a.State, a.Clock, a.Due = Withdrawn, "", time.Time{}
		return nil
	})
}

// Dispute is a refused applicant saying it still needs the data, and why.
func (s *Service) Dispute(ctx context.Context, c Caller, id, grounds string) (*Application, error) {
	return s.take(ctx, c, id, ActDispute, func(a *Application, _ time.Time) error {
		if strings.TrimSpace(grounds) == "" {
			return exchange.E(exchange.Invalid, "grounds_required", "a dispute states why the data is still needed")
		}
		if err := tooLong("grounds", grounds); err != nil {
			return err
		}
		a.State, a.Grounds = Disputed, grounds
		return nil
	})
}

// Negotiate ends a dispute by agreement between provider and applicant, as the provider
// records it: granted with conditions, or the refusal confirmed with reasons.
func (s *Service) Negotiate(ctx context.Context, c Caller, id string, o Outcome) (*Application, error) {
	return s.take(ctx, c, id, ActNegotiate, func(a *Application, _ time.Time) error { return s.settle(a, Negotiated, o) })
}

// Coordinate ends a dispute by the data authority's decision.
func (s *Service) Coordinate(ctx context.Context, c Caller, id string, o Outcome) (*Application, error) {
	return s.take(ctx, c, id, ActCoordinate, func(a *Application, _ time.Time) error { return s.settle(a, Coordinated, o) })
}

func (s *Service) settle(a *Application, to State, o Outcome) error {
	if !o.Grant {
		if err := s.refuseWith(a, o.Reasons); err != nil {
			return err
		}
		a.State, a.Granted = to, false
		return nil
	}
	if err := s.grant(a, to, o.Conditions); err != nil {
		return err
	}
	a.Granted = true
	return nil
}

func (s *Service) refuseWith(a *Application, reasons []string) error {
	if len(reasons) == 0 {
		return exchange.E(exchange.Invalid, "reasons_required", "a refusal states its reasons")
	}
	for _, r := range reasons {
		if strings.TrimSpace(r) == "" {
			return exchange.E(exchange.Invalid, "reasons_required", "a refusal's reasons must not be empty")
		}
	}
	if err := tooLong("reasons", reasons...); err != nil {
		return err
	}
	a.State, a.Reasons, a.Clock, a.Due = Refused, reasons, "", time.Time{}
	return nil
}

// grant sets the conditions of a grant, at most what was applied for.
func (s *Service) grant(a *Application, to State, in *Conditions) error {
	bad := func(format string, args ...any) error {
		return exchange.E(exchange.Invalid, "invalid_conditions", fmt.Sprintf(format, args...))
	}
	if s.catalogEntry(a.Dataset) == nil {
		return exchange.E(exchange.Invalid, "not_published", a.Dataset+" is not in the sharing catalog yet: the provider publishes it (catalog.yaml) before it can be granted")
	}
	var c Conditions
	if in != nil {
		c = *in
	}
	if strings.TrimSpace(c.Approval) == "" {
		return exchange.E(exchange.Invalid, "approval_required", "a grant names its approval document number (审批文号)")
	}
	if len(c.Columns) == 0 {
		c.Columns = a.Columns
	}
	for _, col := range c.Columns {
		if !slices.Contains(a.Columns, col) {
			return bad("column %q was not applied for (%s)", col, strings.Join(a.Columns, ", "))
		}
	}
	for _, col := range c.Unmasked {
		if !slices.Contains(c.Columns, col) {
			return bad("unmasked column %q is not among the granted columns", col)
		}
	}
	for col := range c.Masks {
		if !slices.Contains(c.Columns, col) {
			return bad("mask for %q, which is not among the granted columns", col)
		}
	}
	if len(c.Access) == 0 {
		c.Access = a.Access
	}
	if err := checkAccess(c.Access, a.Access); err != nil {
		return err
	}
	if c.RowScope == "" {
		c.RowScope = a.RowScope
	}
	if c.RowScope != "" && !regionRE.MatchString(c.RowScope) {
		return bad("row_scope %q: six digits (GB/T 2260)", c.RowScope)
	}
	if applied := s.appliedScope(a); c.RowScope != "" && !within(c.RowScope, applied) {
		return bad("row_scope %s is wider than %s, which was applied for", c.RowScope, applied)
	}
	if c.MaxRows < 0 {
		return bad("max_rows must not be negative")
	}
	if c.ValidFrom == "" {
		c.ValidFrom = a.ValidFrom
	}
	if c.ValidUntil == "" {
		c.ValidUntil = a.ValidUntil
	}
	from, err1 := time.Parse(time.DateOnly, c.ValidFrom)
	until, err2 := time.Parse(time.DateOnly, c.ValidUntil)
	if err1 != nil || err2 != nil || until.Before(from) {
		return bad("validity %s to %s: two dates, the first not after the second", c.ValidFrom, c.ValidUntil)
	}
	if c.ValidFrom < a.ValidFrom || c.ValidUntil > a.ValidUntil {
		return bad("validity %s to %s is outside %s to %s, which was applied for", c.ValidFrom, c.ValidUntil, a.ValidFrom, a.ValidUntil)
	}
	a.State, a.Conditions, a.Agreement, a.Clock, a.Due = to, &c, AgreementID(a.ID), "", time.Time{}
	return nil
}

// appliedScope is the row scope an application asked for: its own, or else the
// applicant's region ("000000", nationwide, for a national department).
func (s *Service) appliedScope(a *Application) string {
	if a.RowScope != "" {
		return a.RowScope
	}
	if d, ok := s.cfg.Policy.Bundle().Department(a.Applicant); ok && d.Region != "" {
		return d.Region
	}
	return "000000"
}

// within reports whether the region scope x lies inside scope w, both GB/T 2260 codes
// read as the policy reads them: a province 330000 is the prefix 33, a city 330100 the
// prefix 3301.
func within(x, w string) bool {
	prefix := func(c string) string {
		for strings.HasSuffix(c, "00") {
			c = c[:len(c)-2]
		}
		return c
	}
	return strings.HasPrefix(prefix(x), prefix(w))
}

// take runs one step on an application: authorized by the process policy, legal in the
// application's state, its own checks passed, recorded with its history and its audit
// event in one transaction; a grant's agreement is checked against the policy before the
// commit and written after it. Whatever refuses the step leaves everything unchanged and
// is audited as a denied step.
func (s *Service) take(ctx context.Context, c Caller, id, step string, fn func(a *Application, now time.Time) error) (*Application, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var result *Application
	grants := false
	var auditRef *Application
	err := s.cfg.Store.tx(ctx, func(tx *sql.Tx) error {
		a, err := s.cfg.Store.getApplication(ctx, tx, id)
		if err != nil {
			return err
		}
		auditRef = a
		if err := s.authz.decide(ctx, c.Subject, s.registered(c.Subject.Department), step,
			caseOf{Applicant: a.Applicant, Provider: a.Provider, Dataset: a.Dataset}); err != nil {
			return err
		}
		if err := checkLegal(a.ID, a.State, step); err != nil {
			return err
		}
		from := a.State
		next := *a
		if err := fn(&next, now); err != nil {
			return err
		}
		next.Version, next.Updated = a.Version+1, now
		if err := s.cfg.Store.putApplication(ctx, tx, &next, false); err != nil {
			return err
		}
		var detail string
		switch {
		case next.Grants():
			detail = "agreement " + next.Agreement + ", approval " + next.Conditions.Approval
		case next.State == Disputed:
			detail = next.Grounds
		case next.State == Refused || next.State == Negotiated || next.State == Coordinated:
			detail = strings.Join(next.Reasons, "; ")
		}
		if err := s.cfg.Store.addStep(ctx, tx, a.ID, a.Version+1, Step{At: now, By: c.Subject, Action: step,
			From: string(from), To: string(next.State), Detail: detail}); err != nil {
			return err
		}
		if next.Grants() {
			grants = true
			content, err := s.renderFrom(ctx, tx)
			if err != nil {
				return err
			}
			if dir := s.cfg.PolicyDir; dir == "" {
				return exchange.E(exchange.Unavailable, "no_policy_dir", "the exchange serves the built-in policy, so it has nowhere to write an agreement; configure policies_dir")
			} else if err := checkWith(dir, content, s.cfg.Catalog); err != nil {
				return &exchange.Error{Kind: exchange.Invalid, Code: "agreement_rejected",
					Message: "the agreement would not pass the policy check: " + err.Error(), Err: err}
			}
		}
		result = &next
		return s.auditStep(ctx, c, step, &next, string(from))
	})
	if err != nil {
		ref := auditRef
		if ref == nil {
			ref = &Application{ID: id}
		}
		return nil, s.auditRefusal(ctx, c, step, ref, err)
	}
	if grants {
		if err := s.syncAgreements(ctx); err != nil {
			s.cfg.Log.Error("a granted application's agreement could not be written; it is written at the next grant or restart",
				"application", id, "err", err)
			return nil, &exchange.Error{Kind: exchange.Unavailable, Code: "agreement_not_written",
				Message: "the application is " + string(result.State) + ", but its agreement could not be written to the policy directory yet; the exchange retries at the next grant and at start", Err: err}
		}
	}
	return s.show(ctx, result.ID, now)
}

// renderFrom renders the agreements file from the granted applications as tx sees them.
func (s *Service) renderFrom(ctx context.Context, q queryer) ([]byte, error) {
	var granted []*Application
	for _, st := range []State{Approved, Negotiated, Coordinated} {
		as, err := s.cfg.Store.listApplications(ctx, q, Filter{State: st})
		if err != nil {
			return nil, err
		}
		for _, a := range as {
			if a.Grants() {
				granted = append(granted, a)
			}
		}
	}
	return renderAgreements(granted)
}

// syncAgreements writes the agreements file from the committed database, if it differs,
// and has the policy engine reload at once rather than at its next poll.
func (s *Service) syncAgreements(ctx context.Context) error {
	if s.cfg.PolicyDir == "" {
		return nil
	}
	content, err := s.renderFrom(ctx, s.cfg.Store.db)
	if err != nil {
		return err
	}
	if crashHook != nil {
		crashHook("after-commit")
	}
	// Unchanged (every start, and a step that grants nothing): no write, and no reload
	// that would read, check and compile the policy again for the same revision.
	if old, err := os.ReadFile(filepath.Join(s.cfg.PolicyDir, AgreementsFile)); err == nil && bytes.Equal(old, content) {
		return nil
	}
	if err := writeAtomic(s.cfg.PolicyDir, AgreementsFile, content); err != nil {
		return err
	}
	if err := s.cfg.Policy.Reload(); err != nil {
		s.cfg.Log.Warn("policy reload after writing agreements failed; the engine's poll retries", "err", err)
	}
	return nil
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return "req-" + hex.EncodeToString(b[:])
}

// auditTimeout bounds how long a step waits for the spool.
const auditTimeout = 10 * time.Second

// auditStep records a step taken: who, which step, on which application and dataset,
// the transition (as the first reason, "state:from->to"), and the reasons or grounds
// given. It is appended inside the step's transaction: if it cannot be written, the step
// is rolled back (no change without its audit event).
func (s *Service) auditStep(ctx context.Context, c Caller, step string, a *Application, from string) error {
	ev := s.event(c, step, a.ID, a.Dataset, a.Columns, a.Purpose)
	ev.Decision = audit.Allow
	ev.Reasons = append([]string{"state:" + from + "->" + string(a.State)}, dueReasons(a.Clock, a.Due)...)
	ev.Reasons = append(ev.Reasons, a.Reasons...)
	if a.State == Disputed {
		ev.Reasons = append(ev.Reasons, a.Grounds)
	}
	if a.Grants() {
		ev.Agreement = a.Agreement
		ev.Columns = a.Conditions.Columns
		// What the grant lifted or set, so that the audit log alone shows a mask lifted.
		c := a.Conditions
		masks := make([]string, 0, len(c.Masks))
		for col, m := range c.Masks {
			masks = append(masks, col+"="+m)
		}
		sort.Strings(masks)
		ev.Reasons = append(ev.Reasons, fmt.Sprintf("granted: approval %s; unmasked [%s]; masks [%s]; row scope %q; max rows %d; valid %s..%s",
			c.Approval, strings.Join(c.Unmasked, ","), strings.Join(masks, ","), c.RowScope, c.MaxRows, c.ValidFrom, c.ValidUntil))
	}
	return s.append(ctx, ev)
}

// DuePrefix starts the reason of a step's audit event that names the time limit the
// step started: "due:<clock>:<RFC 3339 instant, UTC>", second after the transition, so
// that an auditor's report finds overdue matters from the audit log alone.
const DuePrefix = "due:"

// dueReasons is the due reason of a clock, none when no clock runs.
func dueReasons(clock string, due time.Time) []string {
	if clock == "" || due.IsZero() {
		return nil
	}
	return []string{DuePrefix + clock + ":" + due.UTC().Format(time.RFC3339)}
}

func (s *Service) event(c Caller, step, id, dataset string, columns []string, purpose string) *audit.Event {
	return &audit.Event{Kind: audit.KindDecision, RequestID: newRequestID(), Department: c.Subject.Department,
		System: c.Subject.System, ClientAddr: c.ClientAddr, Action: step, Dataset: dataset, Columns: columns,
		Purpose: purpose, CaseRef: id, PolicyRevision: s.authz.revision}
}

func (s *Service) append(ctx context.Context, ev *audit.Event) error {
	audit.Bound(ev, audit.DefaultLimits)
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if err := s.cfg.Audit.Append(actx, ev); err != nil {
		return &exchange.Error{Kind: exchange.Unavailable, Code: "audit_unavailable",
			Message: "the exchange cannot record this step in its audit log, so it refuses it; retry later", Err: err}
	}
	return nil
}

// auditRefusal records a refused step as a denied event with the refusal's code, and
// returns the refusal (or audit_unavailable when even that cannot be recorded).
func (s *Service) auditRefusal(ctx context.Context, c Caller, step string, a *Application, refused error) error {
	ev := s.event(c, step, a.ID, a.Dataset, a.Columns, a.Purpose)
	ev.Decision = audit.Deny
	ev.Error = "internal"
	if xe, ok := errors.AsType[*exchange.Error](refused); ok {
		ev.Error = xe.Code
		for _, r := range xe.Reasons {
			ev.Reasons = append(ev.Reasons, r.Code)
		}
		if len(xe.Reasons) == 0 {
			ev.Reasons = []string{xe.Code}
		}
		if xe.Code == "audit_unavailable" {
			return refused
		}
	} else {
		s.cfg.Log.Error("application step failed", "step", step, "application", a.ID, "err", refused)
	}
	if err := s.append(ctx, ev); err != nil {
		return err
	}
	return refused
}

// Show returns an application with its history, if the caller is a party to it (the
// applicant, the provider's stewards, the data authority).
func (s *Service) Show(ctx context.Context, c Caller, id string) (*Application, error) {
	now := s.now()
	a, err := s.cfg.Store.getApplication(ctx, s.cfg.Store.db, id)
	if err != nil {
		return nil, err
	}
	if err := s.authz.decide(ctx, c.Subject, s.registered(c.Subject.Department), ActRead,
		caseOf{Applicant: a.Applicant, Provider: a.Provider, Dataset: a.Dataset}); err != nil {
		return nil, err
	}
	return s.show(ctx, id, now)
}

func (s *Service) show(ctx context.Context, id string, now time.Time) (*Application, error) {
	a, err := s.cfg.Store.getApplication(ctx, s.cfg.Store.db, id)
	if err != nil {
		return nil, err
	}
	if a.Steps, err = s.cfg.Store.steps(ctx, s.cfg.Store.db, id); err != nil {
		return nil, err
	}
	a.Overdue = !a.Due.IsZero() && !now.Before(a.Due)
	return a, nil
}

// List returns the applications the caller may open (Show): all of them for the data
// authority, otherwise those its department applied for, and, for the provider's
// stewards, those for the data their department provides.
func (s *Service) List(ctx context.Context, c Caller, f Filter) ([]*Application, error) {
	if !s.registered(c.Subject.Department) {
		return nil, &exchange.Error{Kind: exchange.PermissionDenied, Code: "permission_denied", Message: "the sharing process policy refused the step",
			Reasons: []exchange.Reason{{Code: "unknown_department", Message: "department " + strconv.Quote(c.Subject.Department) + " is not registered with the exchange"}}}
	}
	f.Now = s.now()
	if !s.isAuthority(ctx, c.Subject) {
		f.Party = c.Subject.Department
	}
	as, err := s.cfg.Store.listApplications(ctx, s.cfg.Store.db, f)
	if err != nil {
		return nil, err
	}
	// Only what the caller may open (Show's rule): a department's system that is not
	// its steward does not see the applications for the data its department provides.
	as = slices.DeleteFunc(as, func(a *Application) bool {
		return s.authz.decide(ctx, c.Subject, true, ActRead, caseOf{Applicant: a.Applicant, Provider: a.Provider, Dataset: a.Dataset}) != nil
	})
	for _, a := range as {
		a.Overdue = !a.Due.IsZero() && !f.Now.Before(a.Due)
	}
	return as, nil
}

// isAuthority reports whether subj holds the data authority's role, by the policy.
func (s *Service) isAuthority(ctx context.Context, subj exchange.Subject) bool {
	return s.authz.decide(ctx, subj, true, ActReview, caseOf{}) == nil
}

// Overdue counts the open applications and corrections whose time limit has run out.
func (s *Service) Overdue(ctx context.Context) (apps, fixes int64, err error) {
	return s.cfg.Store.countOverdue(ctx, s.now())
}

// Collectors returns the gauges of overdue applications and corrections for /metrics.
func (s *Service) Collectors() []prometheus.Collector {
	gauge := func(name, help string, pick func(a, f int64) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			a, f, err := s.Overdue(ctx)
			if err != nil {
				return -1
			}
			return float64(pick(a, f))
		})
	}
	return []prometheus.Collector{
		gauge("govx_applications_overdue", "Sharing applications whose review or answer time limit has run out (-1: the applications database cannot be read).",
			func(a, _ int64) int64 { return a }),
		gauge("govx_corrections_overdue", "Flagged records whose provider's answer time limit has run out (-1: the applications database cannot be read).",
			func(_, f int64) int64 { return f }),
	}
}

// chinaZone is China Standard Time, in which ids are numbered by year and working days
// are counted.
var chinaZone = schemas.ChinaTime
