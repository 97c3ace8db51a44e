package service

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"govx/exchange"
	"govx/exchange/mask"
	"govx/schemas"
)

// ParseLookup decodes a lookup body strictly.
func ParseLookup(data []byte) (exchange.LookupCmd, error) {
	if c, ok := fastLookup(data); len(data) <= 1<<20 && ok {
		return c, nil
	}
	var c exchange.LookupCmd
	return c, decodeStrict(data, &c)
}

// ParseVerify decodes a verify body strictly.
func ParseVerify(data []byte) (exchange.VerifyCmd, error) {
	var c exchange.VerifyCmd
	if err := decodeStrict(data, &c); err != nil {
		return c, err
	}
	if len(c.Claims) == 0 {
		return c, invalid("no_claims", "verify needs at least one claim, e.g. {\"claims\":{\"name\":\"张三\"}}")
	}
	return c, nil
}

// keyText turns a body key into the store's key text, normalized as connectors
// normalize source values, so a lower-case x or full-width digits still find the record.
func keyText(d *schemas.Dataset, raw json.RawMessage) (string, []string, error) {
	bad := invalid("bad_key", fmt.Sprintf("key must be %s", keyShape(d)))
	// Key parts are strings only: a number would be rounded to a float64 (an 18-digit
	// citizen ID loses digits) and then miss, or match, the wrong record.
	var parts []*string
	if len(d.Key) == 1 {
		var s *string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", nil, bad
		}
		parts = []*string{s}
	} else if err := json.Unmarshal(raw, &parts); err != nil || len(parts) != len(d.Key) {
		return "", nil, bad
	}
	rec := map[string]any{}
	for i, name := range d.Key {
		if parts[i] == nil {
			return "", nil, bad
		}
		f, _ := d.Field(name)
		v, err := f.Normalize(*parts[i])
		if err != nil || v == nil {
			return "", nil, bad
		}
		rec[name] = v
	}
	k, err := d.RecordKey(rec)
	if err != nil {
		return "", nil, bad
	}
	return k, []string{k}, nil
}

func keyShape(d *schemas.Dataset) string {
	if len(d.Key) == 1 {
		return "the " + d.Key[0] + " as a JSON string"
	}
	return fmt.Sprintf("a JSON array of strings: %v", d.Key)
}

// Reply sends an allowed lookup's record to the caller and returns how many bytes went
// out, and the error, if the sending failed (the client went away): the lookup's
// complete event records that outcome, so a record that never reached its caller is not
// logged as read, nor one that did as aborted.
type Reply func(rec map[string]any) (bytes int64, err error)

// Lookup finds one record, projected and masked as the decision says, and sends it with
// reply. A key outside the caller's row scope answers not found, exactly as a missing
// key does, so existence is not leaked; both are audited with the key. An error
// returned before reply was called is the refusal to send the caller; an error from
// reply is returned as it is.
func (s *Service) Lookup(ctx context.Context, c Caller, dataset string, cmd exchange.LookupCmd, reply Reply) (err error) {
	started := time.Now()
	req := exchange.Request{Subject: c.Subject, Action: exchange.ActionLookup, Dataset: dataset,
		Columns: cmd.Columns, Purpose: cmd.Purpose, CaseRef: cmd.CaseRef, Time: s.now()}
	g, d, rec, err := s.keyed(ctx, c, req, cmd.Key)
	if err != nil {
		return err
	}
	// From here the decision says allow: every way out writes the complete event, a
	// panic (a bug in a mask) included.
	var sent int64
	rows := int64(0)
	defer func() {
		r := recover()
		if r != nil {
			err = fmt.Errorf("lookup panicked: %v", r)
		}
		done := func() { s.auditComplete(ctx, g, rows, sent, started, err) }
		// The record is out; it need not wait for the complete event's fsync too.
		// Wait waits for it.
		if r != nil || !s.later(done) {
			done()
		}
		if r != nil {
			panic(r)
		}
	}()
	sent, err = reply(s.maskRecord(c.Subject.Department, d, g.Columns, g.Masks, rec))
	if err == nil {
		rows = 1
	}
	return err
}

// maskRecord projects one record to cols and masks it as masks say (mask.Record), for
// the caller's department: what a lookup returns, and each part of a subject view.
func (s *Service) maskRecord(dept string, d *schemas.Dataset, cols []string, masks map[string]string, rec map[string]any) map[string]any {
	out, withheld := mask.Record(rec, cols, masks,
		mask.Options{Key: s.departmentMaskKey(dept), Region: regionOf(d, rec), Text: schemas.CanonicalText})
	for _, w := range withheld {
		s.log.Error("mask failed; value withheld", "dataset", d.ID, "column", w.Column, "mask", w.Mask, "err", w.Err)
	}
	return out
}

// Verify compares claims with one record's stored values and returns only whether each
// matches. Claims are normalized as connectors normalize source values.
func (s *Service) Verify(ctx context.Context, c Caller, dataset string, cmd exchange.VerifyCmd) (map[string]bool, error) {
	cols := make([]string, 0, len(cmd.Claims))
	for k := range cmd.Claims {
		cols = append(cols, k)
	}
	sort.Strings(cols)
	req := exchange.Request{Subject: c.Subject, Action: exchange.ActionVerify, Dataset: dataset,
		Columns: cols, Purpose: cmd.Purpose, CaseRef: cmd.CaseRef, Time: s.now()}
	_, d, rec, err := s.keyed(ctx, c, req, cmd.Key)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(cols))
	for _, col := range cols {
		f, _ := d.Field(col)
		claim, err := f.Normalize(cmd.Claims[col])
		out[col] = err == nil && claim != nil && equalValues(claim, rec[col])
	}
	return out, nil
}

func equalValues(a, b any) bool {
	if b == nil {
		return false
	}
	if fa, ok := a.(float64); ok {
		fb, ok := b.(float64)
		return ok && fa == fb
	}
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// keyed decides and audits a lookup or verify, then finds the record within the
// caller's row scope. The key is read first, so that even a refusal records which
// record was asked for.
func (s *Service) keyed(ctx context.Context, c Caller, req exchange.Request, rawKey json.RawMessage) (*Grant, *schemas.Dataset, map[string]any, error) {
	rid := newRequestID()
	var keys []string
	refuse := func(dec exchange.Decision, err error) (*Grant, *schemas.Dataset, map[string]any, error) {
		if aerr := s.auditDecision(ctx, c, rid, req, dec, keys, err); aerr != nil {
			return nil, nil, nil, aerr
		}
		return nil, nil, nil, err
	}
	var key string
	if d, ok := s.cat.Dataset(req.Dataset); ok {
		var err error
		if key, keys, err = keyText(d, rawKey); err != nil {
			return refuse(exchange.Decision{}, err)
		}
	}
	d, t, dec, err := s.decide(ctx, c, req)
	if err != nil {
		return refuse(dec, err)
	}
	if err := s.spendKey(c, req.Action, d.ID, key, dec.Agreement); err != nil {
		return refuse(dec, err)
	}
	snap := t.Snapshot()
	rec, found, err := snap.LookupScoped(key, dec.RowFilter)
	snap.Release()
	if err != nil {
		return refuse(dec, err)
	}
	if !found {
		return refuse(dec, exchange.E(exchange.NotFound, "not_found", "no record with that key in your scope"))
	}
	if err := s.auditDecision(ctx, c, rid, req, dec, keys, nil); err != nil {
		return nil, nil, nil, err
	}
	g := &Grant{RequestID: rid, Subject: c.Subject, ClientAddr: c.ClientAddr, Action: req.Action, Dataset: d.ID,
		Columns: dec.Columns, Masks: dec.Masks, Purpose: req.Purpose, CaseRef: req.CaseRef, Keys: keys,
		Agreement: dec.Agreement, Revision: dec.Revision}
	return g, d, rec, nil
}

// regionOf returns the record's region code (its first region_code-checked field), the
// address mask's hint for where the county-level name ends.
func regionOf(d *schemas.Dataset, rec map[string]any) string {
	for _, f := range d.Fields {
		if f.Check == "region_code" {
			s, _ := rec[f.Name].(string)
			return s
		}
	}
	return ""
}
