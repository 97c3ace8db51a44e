package service

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"govx/exchange"
	"govx/exchange/store"
	"govx/schemas"
	"govx/schemas/ident"
)

// The "one number" subject views (一号式): everything the registers link to one citizen
// ID or USCC, each register's part decided by the policy on its own. A part is a lookup
// (action lookup, the caller's purpose and case_ref) through the one decide path: by
// key for the subject's own record, or with a filter on the linking column (holder,
// legal representative) for the records linked to it — so a link is followed only
// where the caller is granted the linking column unmasked (filter_not_granted
// otherwise), exactly as a pull filtering on it would be. Every part is read from one
// set of snapshots taken together, row-scoped by its decision and masked by the
// function lookups mask with. Each part writes its own decision event, all with the
// view's request id, and an allowed part a complete event once the answer went out.

// SubjectReply sends a subject view to the caller and returns the bytes that went out
// and whether the sending failed; each allowed part's complete event records it.
type SubjectReply func(v *exchange.SubjectView) (bytes int64, err error)

// ParseSubject decodes a subject view body strictly.
func ParseSubject(data []byte) (exchange.SubjectCmd, error) {
	var c exchange.SubjectCmd
	return c, decodeStrict(data, &c)
}

// linkPart is one register's part of a subject view: the subject's record by key
// (column ""), or the records whose column holds the subject's identifier.
type linkPart struct {
	part, dataset, column string
}

var subjectParts = map[string][]linkPart{
	exchange.SubjectPerson: {
		{exchange.PartPerson, "population.person", ""},
		{exchange.PartOrganizations, "legal_entity.organization", "legal_rep_id_number"},
		{exchange.PartParcels, "resource.land_parcel", "holder_id_number"},
		{exchange.PartLicences, "license.certificate", "holder_id_number"},
	},
	exchange.SubjectOrganization: {
		{exchange.PartOrganization, "legal_entity.organization", ""},
		// Keyed by the organization's legal_rep_id_number: see legalRep.
		{exchange.PartLegalRepresentative, "population.person", ""},
		{exchange.PartParcels, "resource.land_parcel", "holder_uscc"},
		{exchange.PartLicences, "license.certificate", "holder_uscc"},
	},
}

// legalRepColumn links an organization to its legal representative's person record.
const legalRepColumn = "legal_rep_id_number"

// subjectID reads the identifier of a subject view: a citizen ID number or a USCC,
// normalized as connectors normalize them, with its check character verified.
func subjectID(kind, raw string) (string, error) {
	id := schemas.NormalizeText(raw)
	var err error
	switch kind {
	case exchange.SubjectPerson:
		id = strings.ToUpper(id)
		err = ident.CheckCitizenID(id)
	case exchange.SubjectOrganization:
		id = strings.ToUpper(id)
		err = ident.CheckUSCC(id)
	default:
		return "", exchange.E(exchange.NotFound, "no_route", "no subject view of kind "+quote(kind))
	}
	if raw == "" || err != nil {
		what := "a citizen ID number (18 characters, its check character right)"
		if kind == exchange.SubjectOrganization {
			what = "a unified social credit code (18 characters, its check character right)"
		}
		return "", invalid("bad_subject_id", "id must be "+what+`, as a JSON string: {"id":"…","purpose":"…"}`)
	}
	return id, nil
}

// partGrant is an allowed part, for its complete event.
type partGrant struct {
	g     *Grant
	rows  int64
	bytes int64
}

// Subject answers a subject view of kind (exchange.SubjectPerson or
// exchange.SubjectOrganization) and sends it with reply. An error returned before reply
// was called is the refusal to send the caller (a malformed identifier, a rate limit,
// the audit log unavailable); a part the policy denies is not an error but a withheld
// part with the policy's reasons.
func (s *Service) Subject(ctx context.Context, c Caller, kind string, cmd exchange.SubjectCmd, reply SubjectReply) error {
	started := time.Now()
	parts, ok := subjectParts[kind]
	anchor := ""
	if ok {
		anchor = parts[0].dataset
	}
	id, err := subjectID(kind, cmd.ID)
	if err == nil {
		err = checkText(exchange.Request{Purpose: cmd.Purpose, CaseRef: cmd.CaseRef})
	}
	if err == nil {
		err = s.admit(c)
	}
	if err != nil {
		return s.auditRejected(ctx, c, exchange.ActionLookup, anchor, err)
	}
	rid := newRequestID()

	// One set of snapshots, taken together before any part is read.
	snaps := map[string]*store.Snapshot{}
	for _, p := range parts {
		if t, ok := s.tables[p.dataset]; ok && snaps[p.dataset] == nil {
			snaps[p.dataset] = t.Snapshot()
		}
	}
	defer func() {
		for _, sn := range snaps {
			sn.Release()
		}
	}()

	view := &exchange.SubjectView{Kind: kind, ID: id, RequestID: rid, Parts: make([]exchange.SubjectPart, 0, len(parts))}
	var grants []partGrant
	// fail closes the parts already allowed: an answer that never went out must not
	// read as data served.
	fail := func(err error) error {
		for _, pg := range grants {
			s.auditComplete(ctx, pg.g, 0, 0, started, err)
		}
		return err
	}
	var org map[string]any // the organization's record, when its part was allowed and found
	var orgDec exchange.Decision
	for _, p := range parts {
		req := exchange.Request{Subject: c.Subject, Action: exchange.ActionLookup, Dataset: p.dataset,
			Purpose: cmd.Purpose, CaseRef: cmd.CaseRef, Time: s.now()}
		key := id
		if p.column != "" {
			req.Filter = []exchange.Filter{{Column: p.column, Op: exchange.OpEq, Value: id}}
		}
		keys := []string{id}
		part := exchange.SubjectPart{Part: p.part, Dataset: p.dataset, Records: []map[string]any{}}
		withhold := func(dec exchange.Decision, refusal error) error {
			part.Withheld, part.Reasons = true, reasonsOf(dec, refusal)
			view.Parts = append(view.Parts, part)
			return s.auditDecision(ctx, c, rid, req, dec, keys, refusal)
		}
		d, _, dec, err := s.decide(ctx, c, req)
		if err != nil {
			if aerr := withhold(dec, err); aerr != nil {
				return fail(aerr)
			}
			continue
		}
		if p.part == exchange.PartLegalRepresentative {
			rep, denial := legalRep(org, orgDec, dec)
			if denial != nil {
				if aerr := withhold(*denial, exchange.Denied(*denial)); aerr != nil {
					return fail(aerr)
				}
				continue
			}
			key = rep
			if rep != "" {
				keys = append(keys, rep)
			}
		}
		var recs []map[string]any
		if key != "" {
			err = s.spendKey(c, exchange.ActionLookup, p.dataset, key, dec.Agreement)
		}
		if err == nil {
			recs, err = linked(snaps[p.dataset], p, key, dec.RowFilter)
		}
		if err == nil && dec.MaxRows > 0 && int64(len(recs)) > dec.MaxRows {
			err = exchange.E(exchange.ResourceExhausted, "max_rows_exceeded", "more records are linked than the agreement's max_rows; the part is withheld, never cut short")
		}
		if err != nil {
			if aerr := withhold(dec, err); aerr != nil {
				return fail(aerr)
			}
			continue
		}
		if p.part == exchange.PartOrganization && len(recs) == 1 {
			org, orgDec = recs[0], dec
		}
		for _, rec := range recs {
			if k, err := d.RecordKey(rec); err == nil && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
			part.Records = append(part.Records, s.maskRecord(c.Subject.Department, d, dec.Columns, dec.Masks, rec))
		}
		part.Agreement = dec.Agreement
		if err := s.auditDecision(ctx, c, rid, req, dec, keys, nil); err != nil {
			return fail(err)
		}
		b, _ := json.Marshal(part.Records)
		grants = append(grants, partGrant{rows: int64(len(recs)), bytes: int64(len(b)), g: &Grant{RequestID: rid, Subject: c.Subject,
			ClientAddr: c.ClientAddr, Action: exchange.ActionLookup, Dataset: d.ID, Columns: dec.Columns, Masks: dec.Masks,
			Purpose: cmd.Purpose, CaseRef: cmd.CaseRef, Keys: keys, Agreement: dec.Agreement, Revision: dec.Revision}})
		view.Parts = append(view.Parts, part)
	}
	_, rerr := reply(view)
	done := func() {
		for _, pg := range grants {
			rows, bytes := pg.rows, pg.bytes
			if rerr != nil {
				rows, bytes = 0, 0
			}
			s.auditComplete(ctx, pg.g, rows, bytes, started, rerr)
		}
	}
	if !s.later(done) {
		done()
	}
	return rerr
}

// linked returns a part's records in the snapshot within the row scope: the record
// with key, or those whose linking column holds it. A register the exchange does not
// serve was refused by decide already.
func linked(snap *store.Snapshot, p linkPart, key string, scope []exchange.Filter) ([]map[string]any, error) {
	if snap == nil {
		return nil, exchange.E(exchange.NotFound, "unknown_dataset", "the exchange does not serve "+p.dataset)
	}
	if p.column != "" {
		return snap.LookupBy(p.column, key, scope)
	}
	if key == "" {
		return nil, nil
	}
	rec, found, err := snap.LookupScoped(key, scope)
	if err != nil || !found {
		return nil, err
	}
	return []map[string]any{rec}, nil
}

// legalRep returns the citizen ID of the organization's legal representative, or the
// denial of the legal_representative part: the link is the organization's
// legal_rep_id_number, so it is followed only when the organization's part was allowed
// with that column granted unmasked. An organization not found (or outside the scope)
// links to nobody: the part is answered, empty.
func legalRep(org map[string]any, orgDec, dec exchange.Decision) (string, *exchange.Decision) {
	_, masked := orgDec.Masks[legalRepColumn]
	if !orgDec.Allow || masked || !slices.Contains(orgDec.Columns, legalRepColumn) {
		return "", &exchange.Decision{Agreement: dec.Agreement, Revision: dec.Revision, Reasons: []exchange.Reason{{Code: "link_not_granted",
			Message: "the legal representative is found through legal_entity.organization's legal_rep_id_number, which your department is not granted unmasked for this purpose"}}}
	}
	rep, _ := org[legalRepColumn].(string)
	return rep, nil
}

// reasonsOf explains a withheld part: the policy's reasons, or the refusal's own code
// and message.
func reasonsOf(dec exchange.Decision, refusal error) []exchange.Reason {
	if xe, ok := errors.AsType[*exchange.Error](refusal); ok {
		if len(xe.Reasons) > 0 {
			return xe.Reasons
		}
		return []exchange.Reason{{Code: xe.Code, Message: xe.Message}}
	}
	if len(dec.Reasons) > 0 {
		return dec.Reasons
	}
	return []exchange.Reason{{Code: "internal", Message: "internal error; the exchange logged it"}}
}
