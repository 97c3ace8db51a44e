package apply

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"govx/exchange"
	"govx/policies"
	"govx/schemas"
)

// Flag is what a consuming department sends to flag a record as wrong.
type Flag struct {
	Dataset  string `json:"dataset"`
	Key      string `json:"key"`
	Column   string `json:"column"`
	Value    string `json:"value"`
	Evidence string `json:"evidence"`
}

// Answer is the provider's answer to a flag: corrected at source, or rejected with a
// reason.
type Answer struct {
	Corrected bool   `json:"corrected"`
	Note      string `json:"note"`
}

func invalidFix(format string, args ...any) error {
	return exchange.E(exchange.Invalid, "invalid_correction", fmt.Sprintf(format, args...))
}

// FlagRecord files a correction for the provider's queue, its clock running.
func (s *Service) FlagRecord(ctx context.Context, c Caller, f Flag) (*Correction, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	x := &Correction{Flagger: c.Subject.Department, System: c.Subject.System, Dataset: f.Dataset, Key: f.Key,
		Column: f.Column, Value: f.Value, Evidence: f.Evidence, State: Flagged, Flagged: now, Updated: now, Version: 1}
	ds, known := s.cfg.Catalog.Dataset(f.Dataset)
	if known {
		x.Provider = ds.Provider.Code
	}
	refuse := func(err error) (*Correction, error) { return nil, s.auditFixRefusal(ctx, c, ActFlag, x, err) }
	if err := s.authz.decide(ctx, c.Subject, s.registered(c.Subject.Department), ActFlag,
		caseOf{Applicant: x.Flagger, Provider: x.Provider, Dataset: x.Dataset}); err != nil {
		return refuse(err)
	}
	if !known {
		return refuse(exchange.E(exchange.NotFound, "unknown_dataset", "no dataset "+strconv.Quote(f.Dataset)))
	}
	// Only a department the dataset is shared with has seen its records: anyone else's
	// flag names a citizen it has no business with, and would read, in the citizen's
	// subject report, as a department touching the record.
	if !s.holdsAgreement(x.Flagger, f.Dataset, now) {
		return refuse(exchange.E(exchange.PermissionDenied, "no_agreement",
			"only a department holding an agreement in force for "+f.Dataset+" may flag its records"))
	}
	key, err := flagKey(ds, f.Key)
	if err != nil {
		return refuse(err)
	}
	x.Key = key
	if _, ok := ds.Field(f.Column); !ok {
		return refuse(exchange.E(exchange.Invalid, "unknown_column", fmt.Sprintf("%s has no column %q", f.Dataset, f.Column)))
	}
	if ds.IsKey(f.Column) {
		return refuse(invalidFix("%s is the record's key: a wrong key is a different record; flag the record's other columns, or ask the provider", f.Column))
	}
	if len(f.Value) > 4096 {
		return refuse(invalidFix("value: at most 4096 bytes"))
	}
	if strings.TrimSpace(f.Evidence) == "" || len(f.Evidence) > 512 {
		return refuse(invalidFix("evidence: a reference to the evidence (a document number or URL), at most 512 bytes"))
	}
	due, err := s.deadline(x.Flagger, now, func(l policies.TimeLimit) int { return l.Correction })
	if err != nil {
		return refuse(err)
	}
	x.Clock, x.Due = clockCorrection, due
	err = s.cfg.Store.tx(ctx, func(tx *sql.Tx) error {
		id, err := s.cfg.Store.nextID(ctx, tx, "COR", now.In(chinaZone).Year())
		if err != nil {
			return err
		}
		x.ID = id
		if err := s.cfg.Store.putCorrection(ctx, tx, x, true); err != nil {
			return err
		}
		if err := s.cfg.Store.addStep(ctx, tx, x.ID, 1, Step{At: now, By: c.Subject, Action: ActFlag, To: string(Flagged), Detail: f.Evidence}); err != nil {
			return err
		}
		return s.auditFix(ctx, c, ActFlag, x, "")
	})
	if err != nil {
		x.ID = ""
		return refuse(err)
	}
	return s.showFix(ctx, x.ID, now)
}

// holdsAgreement reports whether dept holds an agreement for dataset in force on now's
// day (China Standard Time), in the policy the exchange serves.
func (s *Service) holdsAgreement(dept, dataset string, now time.Time) bool {
	today := now.In(chinaZone).Format(time.DateOnly)
	for _, a := range s.cfg.Policy.Bundle().Agreements {
		if a.Consumer == dept && a.Dataset == dataset && (a.ValidFrom == "" || a.ValidFrom <= today) &&
			(a.ValidUntil == "" || today <= a.ValidUntil) {
			return true
		}
	}
	return false
}

// flagKey checks a flag's key as the dataset's key fields are checked in every record
// (type, pattern, a citizen ID's check digit): a key no record can have names nobody.
// It returns the key as the store and the lookups' audit events write it.
func flagKey(ds *schemas.Dataset, key string) (string, error) {
	shape := "the record's " + ds.Key[0]
	if len(ds.Key) > 1 {
		shape = fmt.Sprintf("a JSON array of the record's %v", ds.Key)
	}
	bad := func(why string) error {
		return exchange.E(exchange.Invalid, "bad_key", "key: "+shape+why)
	}
	if strings.TrimSpace(key) == "" || len(key) > 256 {
		return "", bad(", at most 256 bytes")
	}
	parts, err := ds.ParseKey(strings.TrimSpace(key))
	if err != nil {
		return "", bad("")
	}
	rec := map[string]any{}
	for i, name := range ds.Key {
		f, _ := ds.Field(name)
		v, err := f.Normalize(parts[i])
		if err != nil || v == nil {
			return "", bad(": " + name + " " + strconv.Quote(parts[i]) + " is not one")
		}
		rec[name] = v
	}
	for _, fe := range ds.Validate(rec) {
		if ds.IsKey(fe.Field) {
			return "", bad(": " + fe.Error())
		}
	}
	k, err := ds.RecordKey(rec)
	if err != nil {
		return "", bad("")
	}
	return k, nil
}

// AnswerFlag is the provider's answer. A correction corrected at source stays open until
// the exchange serves the value the flag named (CloseServed); a rejected one needs a
// reason.
func (s *Service) AnswerFlag(ctx context.Context, c Caller, id string, ans Answer) (*Correction, error) {
	return s.takeFix(ctx, c, id, ActAnswerFix, true, func(x *Correction) error {
		if !ans.Corrected && strings.TrimSpace(ans.Note) == "" {
			return exchange.E(exchange.Invalid, "reasons_required", "a rejected correction states its reason")
		}
		if err := tooLong("note", ans.Note); err != nil {
			return err
		}
		x.State, x.Answer, x.Clock, x.Due = Rejected, ans.Note, "", time.Time{}
		if ans.Corrected {
			x.State = Corrected
		}
		return nil
	})
}

// exchangeSubject is who closes corrections: the exchange itself, on what it serves.
var exchangeSubject = exchange.Subject{Department: "exchange", System: "corrections"}

// CloseServed closes every correction corrected at source whose value the exchange now
// serves, and returns how many it closed. The exchange calls it periodically; it needs
// Config.Values.
func (s *Service) CloseServed(ctx context.Context) (int, error) {
	if s.cfg.Values == nil {
		return 0, nil
	}
	open, err := s.cfg.Store.listCorrections(ctx, s.cfg.Store.db, Filter{State: Corrected})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, x := range open {
		v, ok := s.cfg.Values(x.Dataset, x.Key, x.Column)
		if !ok || strings.TrimSpace(v) != strings.TrimSpace(x.Value) {
			continue
		}
		if _, err := s.takeFix(ctx, Caller{Subject: exchangeSubject}, x.ID, ActCloseFix, false, func(x *Correction) error {
			x.State = Closed
			return nil
		}); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (s *Service) takeFix(ctx context.Context, c Caller, id, step string, authorize bool, fn func(*Correction) error) (*Correction, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	ref := &Correction{ID: id}
	err := s.cfg.Store.tx(ctx, func(tx *sql.Tx) error {
		x, err := s.cfg.Store.getCorrection(ctx, tx, id)
		if err != nil {
			return err
		}
		ref = x
		if authorize {
			if err := s.authz.decide(ctx, c.Subject, s.registered(c.Subject.Department), step,
				caseOf{Applicant: x.Flagger, Provider: x.Provider, Dataset: x.Dataset}); err != nil {
				return err
			}
		}
		if err := checkLegal(x.ID, x.State, step); err != nil {
			return err
		}
		from := x.State
		next := *x
		if err := fn(&next); err != nil {
			return err
		}
		next.Version, next.Updated = x.Version+1, now
		if err := s.cfg.Store.putCorrection(ctx, tx, &next, false); err != nil {
			return err
		}
		if err := s.cfg.Store.addStep(ctx, tx, x.ID, next.Version, Step{At: now, By: c.Subject, Action: step,
			From: string(from), To: string(next.State), Detail: next.Answer}); err != nil {
			return err
		}
		return s.auditFix(ctx, c, step, &next, string(from))
	})
	if err != nil {
		return nil, s.auditFixRefusal(ctx, c, step, ref, err)
	}
	return s.showFix(ctx, id, now)
}

// auditFix records a correction's step: the record's key is the event's key.
func (s *Service) auditFix(ctx context.Context, c Caller, step string, x *Correction, from string) error {
	ev := s.event(c, step, x.ID, x.Dataset, []string{x.Column}, "")
	ev.Keys = []string{x.Key}
	ev.Decision = "allow"
	ev.Reasons = append([]string{"state:" + from + "->" + string(x.State)}, dueReasons(x.Clock, x.Due)...)
	if x.Answer != "" {
		ev.Reasons = append(ev.Reasons, x.Answer)
	}
	return s.append(ctx, ev)
}

func (s *Service) auditFixRefusal(ctx context.Context, c Caller, step string, x *Correction, refused error) error {
	a := &Application{ID: x.ID, Dataset: x.Dataset}
	if x.Column != "" {
		a.Columns = []string{x.Column}
	}
	return s.auditRefusal(ctx, c, step, a, refused)
}

// ShowFix returns a correction with its history, to the flagging department, the
// provider's stewards and the data authority.
func (s *Service) ShowFix(ctx context.Context, c Caller, id string) (*Correction, error) {
	x, err := s.cfg.Store.getCorrection(ctx, s.cfg.Store.db, id)
	if err != nil {
		return nil, err
	}
	if err := s.authz.decide(ctx, c.Subject, s.registered(c.Subject.Department), ActReadFix,
		caseOf{Applicant: x.Flagger, Provider: x.Provider, Dataset: x.Dataset}); err != nil {
		return nil, err
	}
	return s.showFix(ctx, id, s.now())
}

func (s *Service) showFix(ctx context.Context, id string, now time.Time) (*Correction, error) {
	x, err := s.cfg.Store.getCorrection(ctx, s.cfg.Store.db, id)
	if err != nil {
		return nil, err
	}
	if x.Steps, err = s.cfg.Store.steps(ctx, s.cfg.Store.db, id); err != nil {
		return nil, err
	}
	x.Overdue = !x.Due.IsZero() && !now.Before(x.Due)
	return x, nil
}

// ListFixes returns the corrections the caller may see: all for the data authority,
// otherwise those its department flagged or must answer (the provider's queue).
func (s *Service) ListFixes(ctx context.Context, c Caller, f Filter) ([]*Correction, error) {
	if !s.registered(c.Subject.Department) {
		return nil, &exchange.Error{Kind: exchange.PermissionDenied, Code: "permission_denied", Message: "the sharing process policy refused the step",
			Reasons: []exchange.Reason{{Code: "unknown_department", Message: "department " + strconv.Quote(c.Subject.Department) + " is not registered with the exchange"}}}
	}
	f.Now = s.now()
	if !s.isAuthority(ctx, c.Subject) {
		f.Party = c.Subject.Department
	}
	xs, err := s.cfg.Store.listCorrections(ctx, s.cfg.Store.db, f)
	if err != nil {
		return nil, err
	}
	// Only what the caller may open (ShowFix's rule): another system of the provider's
	// department that is not a steward is not a party.
	xs = slices.DeleteFunc(xs, func(x *Correction) bool {
		return s.authz.decide(ctx, c.Subject, true, ActReadFix, caseOf{Applicant: x.Flagger, Provider: x.Provider, Dataset: x.Dataset}) != nil
	})
	for _, x := range xs {
		x.Overdue = !x.Due.IsZero() && !f.Now.Before(x.Due)
	}
	return xs, nil
}
