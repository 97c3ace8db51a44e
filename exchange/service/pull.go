package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"govx/exchange"
	"govx/exchange/auth"
	"govx/exchange/mask"
	"govx/exchange/store"
)

// ParseCmd decodes a pull command strictly: unknown fields, trailing data and wrong
// types are errors that say what is wrong.
func ParseCmd(data []byte) (exchange.PullCmd, error) {
	var cmd exchange.PullCmd
	if err := decodeStrict(data, &cmd); err != nil {
		return cmd, err
	}
	if cmd.Limit < 0 {
		return cmd, invalid("bad_limit", "limit must be zero (no limit) or positive")
	}
	if cmd.Limit > 0 && cmd.Since != "" {
		// The cursor returned names the whole version: changes cut off by a limit would
		// be lost for good.
		return cmd, invalid("limit_with_since", "a changes pull (since) takes no limit: it returns every change up to the cursor it gives")
	}
	return cmd, nil
}

func decodeStrict(data []byte, v any) error {
	if len(data) > 1<<20 {
		return invalid("body_too_large", "the request body is larger than 1 MiB")
	}
	if name, dup := exchange.DuplicateField(data); dup {
		// Decoders disagree on which of two equal names wins; the exchange picks none.
		return invalid("duplicate_field", "the JSON object names "+quote(name)+" twice")
	}
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		// null, a list or a bare value would decode as a command of no fields.
		return invalid("malformed_request", "the request body must be a JSON object: {…}")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return invalid("malformed_request", "the request is not valid JSON of the expected shape: "+err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("malformed_request", "unexpected data after the JSON object")
	}
	return nil
}

func invalid(code, msg string) *exchange.Error { return exchange.E(exchange.Invalid, code, msg) }

// Grant is an allowed pull, ready to stream: what the decision allows, bound to the
// caller. Flight seals it into the ticket; HTTP streams it at once.
type Grant struct {
	auth.Expiring
	RequestID  string            `json:"rid"`
	Subject    exchange.Subject  `json:"sub"`
	ClientAddr string            `json:"addr,omitempty"`
	Action     exchange.Action   `json:"act"`
	Dataset    string            `json:"ds"`
	Columns    []string          `json:"cols"`
	Masks      map[string]string `json:"masks,omitempty"`
	Filter     []exchange.Filter `json:"filter,omitempty"` // the decision's row filter AND the caller's
	Limit      int64             `json:"limit,omitempty"`
	MaxRows    int64             `json:"max,omitempty"`
	Since      []byte            `json:"since,omitempty"` // a store cursor, already verified
	Purpose    string            `json:"purpose,omitempty"`
	CaseRef    string            `json:"case,omitempty"`
	Keys       []string          `json:"keys,omitempty"`
	Agreement  string            `json:"agr,omitempty"`
	Revision   string            `json:"rev,omitempty"`
	// Instance and Boot name the replica, and its run, that issued the ticket: only
	// there is the ticket's single use recorded.
	Instance string `json:"inst,omitempty"`
	Boot     string `json:"boot,omitempty"`
}

const (
	ticketPurpose = "govx-ticket-v1"
	cursorPurpose = "govx-cursor-v1"
)

// sealedCursor is what a cursor carries: the dataset, the store's epoch (the Kafka
// cluster its offsets belong to), the department it was issued to and the
// per-partition positions.
type sealedCursor struct {
	Dataset string `json:"ds"`
	Epoch   string `json:"e,omitempty"`
	Dept    string `json:"dept"`
	Cursor  []byte `json:"c"`
}

// Open decides a pull: it validates the command, asks the policy, checks the result
// size against max_rows, and durably audits the decision. Only an allowed, audited
// request returns a Grant.
func (s *Service) Open(ctx context.Context, c Caller, cmd exchange.PullCmd) (*Grant, error) {
	return s.open(ctx, c, cmd, true)
}

// open is Open; count false skips the size check, for GetSchema, which sends no rows.
func (s *Service) open(ctx context.Context, c Caller, cmd exchange.PullCmd, count bool) (*Grant, error) {
	action := exchange.ActionRead
	if cmd.Since != "" {
		action = exchange.ActionChanges
	}
	req := exchange.Request{Subject: c.Subject, Action: action, Dataset: cmd.Dataset, Columns: cmd.Columns,
		Filter: cmd.Filter, Purpose: cmd.Purpose, CaseRef: cmd.CaseRef, Limit: cmd.Limit, Time: s.now()}
	rid := newRequestID()
	refuse := func(dec exchange.Decision, err error) (*Grant, error) {
		if aerr := s.auditDecision(ctx, c, rid, req, dec, nil, err); aerr != nil {
			return nil, aerr
		}
		return nil, err
	}
	var since []byte
	if cmd.Since != "" && cmd.Limit > 0 {
		return refuse(exchange.Decision{}, invalid("limit_with_since", "a changes pull (since) takes no limit: it returns every change up to the cursor it gives"))
	}
	if cmd.Since != "" {
		var sc sealedCursor
		if err := s.signer.Open(cursorPurpose, cmd.Since, &sc); err != nil || sc.Dataset != cmd.Dataset {
			return refuse(exchange.Decision{}, invalid("invalid_cursor", "the since cursor is not one this exchange issued for "+quote(cmd.Dataset)+"; use the cursor a previous pull returned"))
		}
		if sc.Epoch != s.epoch {
			return refuse(exchange.Decision{}, invalid("invalid_cursor", "the since cursor predates a rebuild of the exchange's store from another Kafka cluster; do a full pull for a new cursor"))
		}
		if sc.Dept != c.Subject.Department {
			// A cursor says how far a department has read; another department holding it
			// has no business continuing from there (and a cursor issued before cursors
			// were bound to departments names none).
			return refuse(exchange.Decision{}, exchange.E(exchange.PermissionDenied, "foreign_cursor",
				"the since cursor was issued to another department; use a cursor your own pulls returned, or do a full pull for a new one"))
		}
		since = sc.Cursor
	}
	d, t, dec, err := s.decide(ctx, c, req)
	if err != nil {
		return refuse(dec, err)
	}
	g := &Grant{
		RequestID: rid, Subject: c.Subject, ClientAddr: c.ClientAddr, Action: action, Dataset: d.ID,
		Columns: dec.Columns, Masks: dec.Masks, Filter: append(append([]exchange.Filter{}, dec.RowFilter...), cmd.Filter...),
		Limit: cmd.Limit, MaxRows: dec.MaxRows, Since: since, Purpose: cmd.Purpose, CaseRef: cmd.CaseRef,
		Agreement: dec.Agreement, Revision: dec.Revision,
	}
	if count && g.MaxRows == 0 && g.Since == nil {
		// No row cap to enforce: checking the filter is enough, and saves the scan a
		// count would cost (a third of a filtered pull's time at 1M rows).
		if err := store.CheckFilters(d, g.Filter); err != nil {
			return refuse(dec, err)
		}
	} else if count {
		// Count before anything leaves: an oversize result is refused, never truncated,
		// a wrongly typed filter value is caught here, and so is a cursor too old.
		snap := t.Snapshot()
		n, err := s.count(ctx, snap, g)
		snap.Release()
		if err != nil {
			return refuse(dec, err)
		}
		if g.Limit > 0 && n > g.Limit {
			n = g.Limit
		}
		if g.MaxRows > 0 && n > g.MaxRows {
			// The count itself stays out of the message: it would answer questions the
			// rows are not allowed to.
			return refuse(dec, exchange.E(exchange.ResourceExhausted, "max_rows_exceeded",
				fmt.Sprintf("the result has more than the %d rows your agreement %s allows per request; narrow the filter or set a limit", g.MaxRows, dec.Agreement)))
		}
	}
	if err := s.auditDecision(ctx, c, rid, req, dec, nil, nil); err != nil {
		return nil, err
	}
	return g, nil
}

func (s *Service) count(ctx context.Context, snap *store.Snapshot, g *Grant) (int64, error) {
	if g.Since == nil {
		return snap.Count(ctx, g.Filter)
	}
	since, err := store.DecodeCursor(g.Since)
	if err != nil {
		return 0, invalid("invalid_cursor", "the since cursor cannot be read")
	}
	return snap.CountChanges(ctx, since, g.Filter)
}

// Ticket seals a grant for Flight: signed, short-lived, bound to the caller.
func (s *Service) Ticket(g *Grant) ([]byte, error) {
	g.Expires = s.now().Add(s.ticketTTL)
	g.Instance, g.Boot = s.instance, s.boot
	t, err := s.signer.Seal(ticketPurpose, g)
	return []byte(t), err
}

// sealedTicket is what every kind of ticket carries to be checked when redeemed.
type sealedTicket struct {
	auth.Expiring
	subject             exchange.Subject
	instance, boot, rid string
}

// checkTicket checks a ticket opened with openErr and presented by c: issued here,
// unaltered, unexpired, the caller's, by this replica and run, redeemed once. It returns
// the refusal to audit, or nil.
func (s *Service) checkTicket(openErr error, t sealedTicket, c Caller) error {
	switch {
	case openErr != nil:
		return exchange.E(exchange.Unauthenticated, "bad_ticket", "the ticket was not issued by this exchange or was altered; call GetFlightInfo for a new one")
	case t.Check(s.now()) != nil:
		return exchange.E(exchange.Unauthenticated, "ticket_expired", "the ticket has expired; call GetFlightInfo for a new one")
	case t.subject != c.Subject:
		return exchange.E(exchange.PermissionDenied, "foreign_ticket", "the ticket was issued to another department or system")
	case t.instance != s.instance:
		// Replicas share the signing secret, but each knows only the tickets it saw
		// redeemed: honouring another's ticket would let one decision serve two streams.
		return exchange.E(exchange.PermissionDenied, "ticket_elsewhere", "the ticket was issued by exchange replica "+quote(t.instance)+
			" and is valid only there: redeem it at the location GetFlightInfo named, or call GetFlightInfo here for a new one")
	case t.boot != s.boot:
		return exchange.E(exchange.Unavailable, "ticket_stale", "the exchange restarted since it issued this ticket (its redemptions were not kept): call GetFlightInfo for a new one")
	case !s.redeemOnce(t.rid, t.Expires):
		return exchange.E(exchange.PermissionDenied, "ticket_used", "the ticket was already redeemed; each decision serves one stream, call GetFlightInfo for a new one")
	}
	return nil
}

// auditTicketRefused records a ticket refused at redemption and returns refused (or
// audit_unavailable). A genuine ticket (its signature held: replayed, expired, another's,
// another replica's or run's) is recorded with what it was issued for (req) and, in
// reasons, ticket_of:<the request it was issued to> and for another's ticket
// ticket_issued_to:<department>/<system>, so that an auditor can follow a replay back to
// the decision it tried to reuse; of a forged one nothing read from it is recorded.
func (s *Service) auditTicketRefused(ctx context.Context, c Caller, genuine bool, req exchange.Request, issuedTo exchange.Subject, rid string, refused error) error {
	if !genuine {
		action := exchange.ActionRead // a pull's DoGet
		if req.Action == exchange.ActionAggregate {
			action = exchange.ActionAggregate // an aggregate's: set by the caller, not read from the ticket
		}
		return s.auditRejected(ctx, c, action, "", refused)
	}
	req.Subject = c.Subject
	notes := []string{"ticket_of:" + rid}
	if issuedTo != c.Subject {
		notes = append(notes, "ticket_issued_to:"+issuedTo.Department+"/"+issuedTo.System)
	}
	if err := s.auditDecision(ctx, c, newRequestID(), req, exchange.Decision{}, nil, refused, notes...); err != nil {
		return err
	}
	return refused
}

// Redeem opens a Flight ticket presented by c. A forged, expired or foreign ticket is
// refused, and the refusal audited.
func (s *Service) Redeem(ctx context.Context, c Caller, ticket []byte) (*Grant, error) {
	var g Grant
	oerr := s.signer.Open(ticketPurpose, string(ticket), &g)
	err := s.checkTicket(oerr, sealedTicket{g.Expiring, g.Subject, g.Instance, g.Boot, g.RequestID}, c)
	if err != nil {
		req := exchange.Request{Action: exchange.ActionRead, Dataset: g.Dataset, Columns: g.Columns, Filter: g.Filter, Purpose: g.Purpose, CaseRef: g.CaseRef}
		if oerr == nil {
			req.Action = g.Action
		}
		return nil, s.auditTicketRefused(ctx, c, oerr == nil, req, g.Subject, g.RequestID, err)
	}
	g.ClientAddr = c.ClientAddr
	if err := s.redeemable(); err != nil {
		s.auditComplete(ctx, &g, 0, 0, s.now(), err) // tried: the spool may be back by now
		return nil, err
	}
	if err := s.stillGranted(ctx, &g); err != nil {
		// The decision was recorded as allow; its complete event says why nothing came.
		s.auditComplete(ctx, &g, 0, 0, s.now(), err)
		return nil, err
	}
	return &g, nil
}

// redeemable refuses a ticket while the audit log cannot record: its decision was
// recorded when it was issued, but no data leaves that the log could not close with a
// complete event, nor while the log that holds its decision may have been lost.
func (s *Service) redeemable() error {
	if err := s.audit.Writable(); err != nil {
		return auditUnavailable(err)
	}
	return nil
}

// stillGranted asks the policy again when a ticket is redeemed: a ticket carries the
// decision made at GetFlightInfo and lives up to the ticket TTL, in which an agreement
// may lapse or a steward may revoke it. The stream is served only if the policy still
// allows the request exactly as granted (columns, masks, row scope, row cap).
func (s *Service) stillGranted(ctx context.Context, g *Grant) error {
	req := exchange.Request{Subject: g.Subject, Action: g.Action, Dataset: g.Dataset, Columns: g.Columns,
		Purpose: g.Purpose, CaseRef: g.CaseRef, Limit: g.Limit, Time: s.now()}
	for _, f := range g.Filter {
		if !slices.Contains(req.Columns, f.Column) {
			req.Columns = append(slices.Clone(req.Columns), f.Column)
		}
	}
	dec := s.ask(ctx, req)
	if !dec.Allow {
		return exchange.Denied(dec)
	}
	if dec.Revision == g.Revision {
		return nil
	}
	n := len(dec.RowFilter)
	same := maps.Equal(dec.Masks, g.Masks) && dec.MaxRows == g.MaxRows && n <= len(g.Filter) &&
		slices.EqualFunc(dec.RowFilter, g.Filter[:n], func(a, b exchange.Filter) bool { return reflect.DeepEqual(a, b) })
	for _, col := range g.Columns {
		same = same && slices.Contains(dec.Columns, col)
	}
	if !same {
		return exchange.Denied(exchange.Decision{Agreement: dec.Agreement, Revision: dec.Revision, Reasons: []exchange.Reason{{Code: "policy_changed",
			Message: "the sharing policy changed since this ticket was issued and no longer grants it as it was; call GetFlightInfo for a new decision"}}})
	}
	return nil
}

// Sink receives a pull's stream: the schema once, then record batches.
type Sink interface {
	Begin(schema *arrow.Schema) error
	Write(rec arrow.Record) error
	// Bytes reports how many bytes went to the caller so far, for the audit log.
	Bytes() int64
}

// Flusher is a Sink whose writes may return before the data has left: Stream calls
// Flush after the last batch and counts the pull in progress, and writes its complete
// event, only once Flush returns.
type Flusher interface {
	Flush() error
}

// Stream sends the rows of an allowed pull to sink from one consistent version of the
// dataset, then audits its completion. The schema carries the cursor of that version
// (metadata "govx.cursor") for a later changes pull.
func (s *Service) Stream(ctx context.Context, g *Grant, sink Sink) (rows int64, err error) {
	started := time.Now()
	defer func() {
		// Every way out writes the complete event, a panic (a bug in a sink or an
		// encoder) included: the decision said allow, and the log must say how it ended.
		r := recover()
		if r != nil {
			err = fmt.Errorf("pull panicked: %v", r)
		}
		s.auditComplete(ctx, g, rows, sink.Bytes(), started, err)
		if r != nil {
			panic(r)
		}
	}()
	release, err := s.slots.take(g.Subject.Department)
	if err != nil {
		return 0, err
	}
	defer release()
	d, t, err := s.dataset(g.Dataset)
	if err != nil {
		return 0, err
	}
	snap := t.Snapshot()
	defer snap.Release()
	spec := store.Spec{Columns: g.Columns, Filter: g.Filter, Masks: g.Masks, MaskKey: s.departmentMaskKey(g.Subject.Department)}
	cursor, err := s.signer.Seal(cursorPurpose, sealedCursor{Dataset: d.ID, Epoch: s.epoch, Dept: g.Subject.Department, Cursor: snap.Cursor().Encode()})
	if err != nil {
		return 0, err
	}
	var schema *arrow.Schema
	if g.Since == nil {
		schema, err = snap.OutputSchema(spec)
	} else {
		schema, err = snap.ChangesSchema(spec)
	}
	if err != nil {
		return 0, err
	}
	schema = withMetadata(schema, map[string]string{exchange.MetaCursor: cursor, exchange.MetaRequestID: g.RequestID,
		exchange.MetaAgreement: g.Agreement, exchange.MetaPolicyRevision: g.Revision})
	if err := sink.Begin(schema); err != nil {
		return 0, err
	}
	emit := func(rec arrow.Record) error {
		n, last := rec.NumRows(), false
		if g.Limit > 0 && rows+n >= g.Limit {
			// The caller asked for at most Limit rows: these are the last.
			n, last = g.Limit-rows, true
		}
		if g.MaxRows > 0 && rows+n > g.MaxRows {
			// Rows arrived between the count and the scan: refuse rather than truncate.
			return exchange.E(exchange.ResourceExhausted, "max_rows_exceeded", "the result grew past max_rows "+strconv.FormatInt(g.MaxRows, 10)+" while streaming; pull again with a narrower filter")
		}
		if n < rec.NumRows() {
			rec = rec.NewSlice(0, n)
			defer rec.Release()
		}
		rows += n
		if err := sink.Write(rec); err != nil {
			return err
		}
		if last {
			return errLimitReached
		}
		return nil
	}
	scan := func(ctx context.Context, fn func(arrow.Record) error) error { return snap.Scan(ctx, spec, fn) }
	if g.Since != nil {
		since, derr := store.DecodeCursor(g.Since)
		if derr != nil {
			return 0, invalid("invalid_cursor", "the since cursor cannot be read")
		}
		scan = func(ctx context.Context, fn func(arrow.Record) error) error {
			return snap.Changes(ctx, since, spec, fn)
		}
	}
	err = pipeline(ctx, scan, emit)
	if errors.Is(err, errLimitReached) {
		err = nil
	}
	if f, ok := sink.(Flusher); ok && err == nil {
		err = f.Flush()
	}
	return rows, err
}

// pipeline runs scan on its own goroutine, a couple of batches ahead of emit, so that
// building the next batch (filter, take, masks) overlaps with encoding and sending this
// one: on two cores a pull costs the slower of the two, not their sum.
func pipeline(ctx context.Context, scan func(context.Context, func(arrow.Record) error) error, emit func(arrow.Record) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recs := make(chan arrow.Record, 2)
	scanErr := make(chan error, 1)
	go func() {
		defer close(recs)
		defer func() {
			// A bug in a scan must fail its request, not the whole exchange.
			if r := recover(); r != nil {
				scanErr <- fmt.Errorf("scan panicked: %v", r)
			}
		}()
		scanErr <- scan(ctx, func(rec arrow.Record) error {
			rec.Retain() // a scan's batch lives only during its callback
			select {
			case recs <- rec:
				return nil
			case <-ctx.Done():
				rec.Release()
				return ctx.Err()
			}
		})
	}()
	defer func() {
		// Also when emit panics: stop the scan and release what it had queued.
		cancel()
		for rec := range recs {
			rec.Release()
		}
	}()
	var err error
	for rec := range recs {
		if err == nil {
			if err = emitOne(emit, rec); err != nil {
				cancel() // stop the scan; the batches already queued are released below
			}
		}
		rec.Release()
	}
	if serr := <-scanErr; err == nil {
		err = serr
	}
	return err
}

// emitOne is emit(rec) that releases rec should emit panic (the caller releases it
// otherwise).
func emitOne(emit func(arrow.Record) error, rec arrow.Record) (err error) {
	defer func() {
		if r := recover(); r != nil {
			rec.Release()
			panic(r)
		}
	}()
	return emit(rec)
}

// errLimitReached stops a scan once the caller's own limit is met.
var errLimitReached = errors.New("limit reached")

func withMetadata(s *arrow.Schema, kv map[string]string) *arrow.Schema {
	md := s.Metadata()
	keys, vals := append([]string{}, md.Keys()...), append([]string{}, md.Values()...)
	for _, k := range sortedKeys(kv) {
		if i := md.FindKey(k); i >= 0 {
			vals[i] = kv[k]
			continue
		}
		keys, vals = append(keys, k), append(vals, kv[k])
	}
	m := arrow.NewMetadata(keys, vals)
	return arrow.NewSchema(s.Fields(), &m)
}

// MaskKey returns the hash mask's key of a consumer department, for the store to keep
// that department's pseudonyms materialized (store.Table.MaterializeMasks).
func (s *Service) MaskKey(dept string) []byte { return s.departmentMaskKey(dept) }

// departmentMaskKey derives the hash mask's key for one consumer department: stable
// for that department's joins, different for every other department.
func (s *Service) departmentMaskKey(dept string) []byte {
	return mask.DeriveKey(s.maskKey, dept)
}

// redeemOnce records that the ticket of requestID was redeemed and reports whether it
// was the first time. Entries are kept until their ticket would have expired anyway.
func (s *Service) redeemOnce(requestID string, expires time.Time) bool {
	s.redeemMu.Lock()
	defer s.redeemMu.Unlock()
	now := s.now()
	for id, exp := range s.redeemed {
		if now.After(exp) {
			delete(s.redeemed, id)
		}
	}
	if _, used := s.redeemed[requestID]; used {
		return false
	}
	s.redeemed[requestID] = expires
	return true
}
