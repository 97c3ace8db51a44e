package service

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"govx/exchange"
	"govx/exchange/mask"
	"govx/exchange/store"
	"govx/schemas"
)

// This file is the one place a request meets the sharing policy. Every action — read,
// changes, lookup, verify, discover — is decided by ask; decide checks the request
// against the schema before and the decision against the request after.

// decide is the one place a request meets the policy: the request is checked against
// the schema, decided, and the decision checked against the request. A non-nil error
// is the refusal to audit (with dec, what the policy said) and return.
func (s *Service) decide(ctx context.Context, c Caller, req exchange.Request) (*schemas.Dataset, *store.Table, exchange.Decision, error) {
	if err := s.admit(c); err != nil {
		return nil, nil, exchange.Decision{}, err
	}
	if err := checkText(req); err != nil {
		return nil, nil, exchange.Decision{}, err
	}
	d, t, err := s.dataset(req.Dataset)
	if err != nil {
		dec, err := s.unserved(ctx, req, err)
		return nil, nil, dec, err
	}
	if err := checkColumns(d, req.Columns); err != nil {
		return nil, nil, exchange.Decision{}, err
	}
	for _, f := range req.Filter {
		if _, ok := d.Field(f.Column); !ok {
			return nil, nil, exchange.Decision{}, invalid("unknown_column", fmt.Sprintf("%s has no column %q to filter on; `govx schemas show %s` lists them", d.ID, f.Column, d.ID))
		}
	}
	// Columns only filtered on are asked of the policy too: they must be granted, like
	// the columns returned, and unmasked (below).
	preq := req
	if len(req.Columns) > 0 {
		preq.Columns = withFilterColumns(req.Columns, req.Filter)
	}
	dec := s.ask(ctx, preq)
	if !dec.Allow {
		return nil, nil, dec, exchange.Denied(dec)
	}
	if err := checkDecision(d, preq, dec); err != nil {
		// A decision the exchange cannot apply as it stands is a policy bug: fail closed.
		s.log.Error("policy decision not applicable", "err", err, "dataset", d.ID, "revision", dec.Revision)
		return nil, nil, exchange.Decision{Revision: dec.Revision}, &exchange.Error{Kind: exchange.PermissionDenied, Code: "policy_error",
			Message: "the sharing policy returned a decision the exchange cannot apply; ask the data steward", Err: err}
	}
	// A filter is a question about the rows: asked of a column the caller may not see,
	// or sees only masked, its answer (which rows come back) would reveal the values.
	var hidden []string
	granted := map[string]bool{}
	for _, col := range dec.Columns {
		granted[col] = true
	}
	for _, f := range req.Filter {
		if _, masked := dec.Masks[f.Column]; !granted[f.Column] || masked {
			hidden = append(hidden, f.Column)
		}
	}
	if len(hidden) > 0 {
		denial := exchange.Decision{Agreement: dec.Agreement, Revision: dec.Revision, Reasons: []exchange.Reason{{Code: "filter_not_granted",
			Message: fmt.Sprintf("filters may test only columns granted unmasked; not granted unmasked: %s", strings.Join(hidden, ", "))}}}
		return nil, nil, denial, exchange.Denied(denial)
	}
	if len(req.Columns) > 0 {
		dec.Columns = req.Columns // return what was asked for, not the filter's columns
	}
	return d, t, dec, nil
}

// withFilterColumns returns cols followed by the filter's columns not among them.
func withFilterColumns(cols []string, filter []exchange.Filter) []string {
	out := cols
	for _, f := range filter {
		if !slices.Contains(out, f.Column) {
			if len(out) == len(cols) {
				out = slices.Clone(cols)
			}
			out = append(out, f.Column)
		}
	}
	return out
}

// checkText bounds the free-text parts of a request: they reach the policy, its cache
// and every audit event.
func checkText(req exchange.Request) error {
	if req.Purpose != "" && !purposePattern.MatchString(req.Purpose) {
		return invalid("bad_purpose", "purpose must be an agreed purpose code: lower-case letters, digits and '-', at most 64 characters (e.g. minimum-living-allowance-review)")
	}
	if len(req.CaseRef) > 64 || strings.ContainsFunc(req.CaseRef, unicode.IsControl) {
		return invalid("bad_case_ref", "case_ref must be at most 64 characters without control characters")
	}
	return nil
}

var purposePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// unserved answers a request for a dataset the exchange does not serve. The policy
// still speaks first: a dataset the sharing catalog lists as not shared (不予共享) is
// denied with its legal basis, not as unknown.
func (s *Service) unserved(ctx context.Context, req exchange.Request, notFound error) (exchange.Decision, error) {
	dec := s.ask(ctx, req)
	if !dec.Allow && len(dec.Reasons) > 0 && dec.Reasons[0].Code != "unknown_dataset" && dec.Reasons[0].Code != "policy_error" {
		return dec, exchange.Denied(dec)
	}
	return exchange.Decision{Revision: dec.Revision}, notFound
}

func (s *Service) dataset(id string) (*schemas.Dataset, *store.Table, error) {
	d, ok := s.cat.Dataset(id)
	t, served := s.tables[id]
	if !ok || !served {
		return nil, nil, exchange.E(exchange.NotFound, "unknown_dataset", "no dataset "+quote(id)+"; `govx catalog` lists the datasets you may see")
	}
	return d, t, nil
}

func checkColumns(d *schemas.Dataset, cols []string) error {
	var unknown []string
	seen := map[string]bool{}
	for _, c := range cols {
		if _, ok := d.Field(c); !ok {
			unknown = append(unknown, c)
		}
		if seen[c] {
			return invalid("duplicate_column", "column "+quote(c)+" is named twice")
		}
		seen[c] = true
	}
	if len(unknown) > 0 {
		return invalid("unknown_column", fmt.Sprintf("%s has no column %v; `govx schemas show %s` lists them", d.ID, unknown, d.ID))
	}
	return nil
}

// checkDecision checks an allowing decision against the schema and the request: the
// exchange applies only what it can apply exactly.
func checkDecision(d *schemas.Dataset, req exchange.Request, dec exchange.Decision) error {
	if len(dec.Columns) == 0 {
		return errors.New("an allowing decision names no columns")
	}
	granted := make(map[string]bool, len(dec.Columns))
	for _, c := range dec.Columns {
		if _, ok := d.Field(c); !ok {
			return fmt.Errorf("decision column %q is not in %s", c, d.ID)
		}
		granted[c] = true
	}
	for _, c := range req.Columns {
		if !granted[c] {
			return fmt.Errorf("the decision allows the request but does not grant its column %q", c)
		}
	}
	for c, m := range dec.Masks {
		if !granted[c] || !mask.Valid(m) {
			return fmt.Errorf("decision mask %q on %q does not apply", m, c)
		}
	}
	for _, f := range dec.RowFilter {
		if _, ok := d.Field(f.Column); !ok || !exchange.ValidOp(f.Op) {
			return fmt.Errorf("decision row filter %v is not applicable to %s", f, d.ID)
		}
	}
	return nil
}

// ask is the one call to the policy: whatever the action, a decision comes from here.
func (s *Service) ask(ctx context.Context, req exchange.Request) exchange.Decision {
	return s.policy.Decide(ctx, req)
}
