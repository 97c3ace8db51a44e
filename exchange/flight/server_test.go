package flight

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/flight"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"govx/exchange"
	"govx/exchange/audit"
	"govx/exchange/client"
	"govx/exchange/service"
	"govx/exchange/service/servicetest"
	"govx/exchange/store"
)

const dibao = "minimum-living-allowance-review"

// serve starts a Flight server over f on addr ("127.0.0.1:0" for any port) and stops
// it when the test ends.
func serve(t *testing.T, f *servicetest.Fixture, addr string, opts ...Option) (*Server, *servicetest.Listener) {
	t.Helper()
	lis := servicetest.Listen(t, addr)
	return serveOn(t, f, lis, opts...), lis
}

// serveOn starts a Flight server over f on lis and stops it when the test (or
// benchmark) ends.
func serveOn(tb testing.TB, f *servicetest.Fixture, lis net.Listener, opts ...Option) *Server {
	tb.Helper()
	srv := New(f.Svc, f.Tokens, nil, f.Mem, opts...)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	var once atomic.Bool
	tb.Cleanup(func() {
		if once.CompareAndSwap(false, true) {
			srv.Shutdown()
			<-done
		}
	})
	return srv
}

// raw is a plain Arrow Flight client, as any language's would be: no govx code.
func raw(t *testing.T, addr string) flight.Client {
	t.Helper()
	c, err := flight.NewClientWithMiddleware(addr, nil, nil, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// smallWindow is a plain Flight client whose window is fixed at 64 KB (a window set
// turns gRPC's growing one off): a stream stalls as soon as it stops reading.
func smallWindow(t *testing.T, addr string) flight.Client {
	t.Helper()
	c, err := flight.NewClientWithMiddleware(addr, nil, nil, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// stallPull opens the pull of population.person for pension review (names unmasked, so
// any padding goes out) on c and reads its first message only.
func stallPull(t *testing.T, c flight.Client, token string) flight.FlightService_DoGetClient {
	t.Helper()
	info, err := c.GetFlightInfo(as(token), cmdDesc(exchange.PullCmd{Dataset: "population.person", Purpose: "pension-qualification-review"}))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := c.DoGet(as(token), info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	return stream
}

func as(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func cmdDesc(v any) *flight.FlightDescriptor {
	b, ok := v.([]byte)
	if !ok {
		b, _ = json.Marshal(v)
	}
	return &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: b}
}

// drain reads a DoGet stream to its end and returns the schema and the rows.
func drain(stream flight.FlightService_DoGetClient) (*arrow.Schema, int64, error) {
	rdr, err := flight.NewRecordReader(stream)
	if err != nil {
		return nil, 0, err
	}
	defer rdr.Release()
	var n int64
	for rdr.Next() {
		n += rdr.Record().NumRows()
	}
	if err := rdr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return rdr.Schema(), n, err
	}
	return rdr.Schema(), n, nil
}

// pull runs GetFlightInfo and DoGet as token and returns the schema and row count.
func pull(c flight.Client, token string, cmd any) (*arrow.Schema, int64, error) {
	ctx := as(token)
	info, err := c.GetFlightInfo(ctx, cmdDesc(cmd))
	if err != nil {
		return nil, 0, err
	}
	stream, err := c.DoGet(ctx, info.Endpoint[0].Ticket)
	if err != nil {
		return nil, 0, err
	}
	return drain(stream)
}

func ticket(t *testing.T, c flight.Client, token string, cmd any) *flight.Ticket {
	t.Helper()
	info, err := c.GetFlightInfo(as(token), cmdDesc(cmd))
	if err != nil {
		t.Fatal(err)
	}
	return info.Endpoint[0].Ticket
}

func redeem(c flight.Client, token string, tkt *flight.Ticket) error {
	stream, err := c.DoGet(as(token), tkt)
	if err != nil {
		return err
	}
	_, _, err = drain(stream)
	return err
}

// errorInfo returns the exchange's ErrorInfo details of a gRPC error: the error's own
// and one per policy reason.
func errorInfo(err error) (own *errdetails.ErrorInfo, reasons []exchange.Reason) {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		switch {
		case !ok:
		case info.Domain == exchange.ErrorDomain && own == nil:
			own = info
		case info.Domain == exchange.ReasonDomain:
			reasons = append(reasons, exchange.Reason{Code: info.Reason, Message: info.Metadata["message"]})
		}
	}
	return own, reasons
}

// checkStatus checks err against the code's row in docs/errors.md: the gRPC code, the
// ErrorInfo detail with the code and message, and the text for people.
func checkStatus(t *testing.T, docs map[string]servicetest.DocRow, err error, code string) {
	t.Helper()
	st, ok := status.FromError(err)
	if err == nil || !ok {
		t.Fatalf("got %v, want a gRPC status for %s", err, code)
	}
	row, documented := docs[code]
	if !documented {
		t.Fatalf("%s is not in docs/errors.md", code)
	}
	if st.Code().String() != row.GRPC {
		t.Errorf("%s: gRPC code %s, docs/errors.md says %s", code, st.Code(), row.GRPC)
	}
	own, _ := errorInfo(err)
	if own == nil || own.Reason != code || own.Metadata["message"] == "" {
		t.Errorf("%s: ErrorInfo detail %v, want reason %s with a message", code, own, code)
	} else if !strings.HasPrefix(st.Message(), code+": "+own.Metadata["message"]) {
		t.Errorf("%s: status message %q does not start with the code and message", code, st.Message())
	}
}

// TestErrorMapping drives every error the Flight edge can answer through a real
// server and checks each against docs/errors.md, detail included.
func TestErrorMapping(t *testing.T) {
	docs := servicetest.DocumentedErrors(t)
	var offset atomic.Int64 // moves the service's clock
	f := servicetest.New(t, servicetest.Config{Options: []service.Option{
		service.WithClock(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })}})
	_, lis := serve(t, f, "127.0.0.1:0")
	c := raw(t, lis.Addr().String())
	hz := f.Token(t, "mz-3301/dibao-review")
	rs := f.Token(t, "rs-33/pension")
	read := func(mod func(*exchange.PullCmd)) exchange.PullCmd {
		cmd := exchange.PullCmd{Dataset: "population.person", Purpose: dibao}
		if mod != nil {
			mod(&cmd)
		}
		return cmd
	}
	info := func(token string, cmd any) error {
		_, err := c.GetFlightInfo(as(token), cmdDesc(cmd))
		return err
	}
	_, _, err := pull(c, hz, read(nil))
	if err != nil {
		t.Fatal(err)
	}
	var cursor string
	{
		info, _ := c.GetFlightInfo(as(hz), cmdDesc(read(nil)))
		stream, _ := c.DoGet(as(hz), info.Endpoint[0].Ticket)
		schema, _, err := drain(stream)
		if err != nil {
			t.Fatal(err)
		}
		cursor, _ = schema.Metadata().GetValue(exchange.MetaCursor)
	}

	covered := map[string]bool{}
	for _, tt := range []struct {
		code    string
		reason  string // the policy reason carried, if any
		request func() error
	}{
		{"unauthenticated", "", func() error { return info("", read(nil)) }},
		{"unauthenticated", "", func() error { return info("govx_not-a-token", read(nil)) }},
		{"bad_ticket", "", func() error { return redeem(c, hz, &flight.Ticket{Ticket: []byte("forged")}) }},
		{"ticket_expired", "", func() error {
			tkt := ticket(t, c, hz, read(nil))
			offset.Store(int64(time.Hour))
			defer offset.Store(0)
			return redeem(c, hz, tkt)
		}},
		{"ticket_used", "", func() error {
			tkt := ticket(t, c, hz, read(nil))
			if err := redeem(c, hz, tkt); err != nil {
				return err
			}
			return redeem(c, hz, tkt)
		}},
		{"foreign_ticket", "", func() error { return redeem(c, rs, ticket(t, c, hz, read(nil))) }},
		{"ticket_elsewhere", "", func() error { return redeem(c, hz, mint(t, "exchange-b", hz, f)) }},
		{"ticket_stale", "", func() error { return redeem(c, hz, mint(t, "", hz, f)) }},
		{"permission_denied", "no_agreement", func() error { return info(f.Token(t, "zj-3205/housing-security"), read(nil)) }},
		{"permission_denied", "filter_not_granted", func() error {
			return info(hz, read(func(c *exchange.PullCmd) {
				c.Filter = []exchange.Filter{{Column: "id_number", Op: "prefix", Value: "3301"}}
			}))
		}},
		{"policy_error", "", func() error { return info(f.Token(t, "mz-3301/broken"), read(nil)) }},
		{"unknown_dataset", "", func() error { return info(hz, read(func(c *exchange.PullCmd) { c.Dataset = "population.people" })) }},
		{"unknown_column", "", func() error { return info(hz, read(func(c *exchange.PullCmd) { c.Columns = []string{"shoe_size"} })) }},
		{"duplicate_column", "", func() error {
			return info(hz, read(func(c *exchange.PullCmd) { c.Columns = []string{"name", "name"} }))
		}},
		{"invalid_filter", "", func() error {
			return info(hz, read(func(c *exchange.PullCmd) {
				c.Filter = []exchange.Filter{{Column: "household_region", Op: "like", Value: "3301"}}
			}))
		}},
		{"invalid_cursor", "", func() error { return info(hz, read(func(c *exchange.PullCmd) { c.Since = "not-a-cursor" })) }},
		{"foreign_cursor", "", func() error {
			return info(rs, exchange.PullCmd{Dataset: "population.person", Purpose: "pension-qualification-review", Since: cursor})
		}},
		{"malformed_request", "", func() error { return info(hz, []byte(`{"dataset":`)) }},
		{"malformed_request", "", func() error {
			_, err := c.GetFlightInfo(as(hz), &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"population.person"}})
			return err
		}},
		{"duplicate_field", "", func() error {
			return info(hz, []byte(`{"dataset":"population.person","purpose":"`+dibao+`","purpose":"other"}`))
		}},
		{"body_too_large", "", func() error {
			return info(hz, read(func(c *exchange.PullCmd) { c.CaseRef = strings.Repeat("x", 1<<20) }))
		}},
		{"bad_purpose", "", func() error { return info(hz, read(func(c *exchange.PullCmd) { c.Purpose = "Curiosity!" })) }},
		{"bad_case_ref", "", func() error { return info(hz, read(func(c *exchange.PullCmd) { c.CaseRef = "line\nbreak" })) }},
		{"limit_with_since", "", func() error {
			return info(hz, read(func(c *exchange.PullCmd) { c.Since, c.Limit = cursor, 5 }))
		}},
		{"bad_limit", "", func() error { return info(hz, read(func(c *exchange.PullCmd) { c.Limit = -1 })) }},
		{"max_rows_exceeded", "", func() error { return info(f.Token(t, "mz-3301/max5"), read(nil)) }},
		{"bad_subject_id", "", func() error {
			return doAction(c, hz, exchange.ActionTypeSubjectPerson, map[string]any{"id": "330106199001011230", "purpose": dibao})
		}},
		{"bad_digest", "", func() error {
			return doAction(c, hz, exchange.ActionTypeLicenceVerify, map[string]any{"licence_no": "JSZ-330106-000001", "digest": "abc", "purpose": dibao})
		}},
		{"unknown_action", "", func() error { return doAction(c, hz, "drop.tables", map[string]any{}) }},
	} {
		err := tt.request()
		checkStatus(t, docs, err, tt.code)
		if _, reasons := errorInfo(err); tt.reason != "" && (len(reasons) != 1 || reasons[0].Code != tt.reason || reasons[0].Message == "") {
			t.Errorf("%s: reasons %v, want exactly %s with a message", tt.code, reasons, tt.reason)
		}
		covered[tt.code] = true
	}

	t.Run("rate_limited", func(t *testing.T) {
		f := servicetest.New(t, servicetest.Config{Options: []service.Option{service.WithRateLimit(0.001, 1)}})
		_, lis := serve(t, f, "127.0.0.1:0")
		c, tok := raw(t, lis.Addr().String()), f.Token(t, "mz-3301/dibao-review")
		if _, err := c.GetFlightInfo(as(tok), cmdDesc(read(nil))); err != nil {
			t.Fatal(err)
		}
		_, err := c.GetFlightInfo(as(tok), cmdDesc(read(nil)))
		checkStatus(t, docs, err, "rate_limited")
	})
	covered["rate_limited"] = true
	t.Run("pulls_in_progress", func(t *testing.T) {
		// A pull whose client stops reading after its first message holds the
		// department's one slot: the client's window is fixed at 64 KB (a window set
		// turns gRPC's growing one off), so the stream stalls as a slow reader's does.
		f := servicetest.New(t, servicetest.Config{Persons: 60000, NamePad: 200,
			Options: []service.Option{service.WithPullsInProgress(1)}})
		_, lis := serve(t, f, "127.0.0.1:0")
		c := smallWindow(t, lis.Addr().String())
		tok := f.Token(t, "rs-33/pension")
		stalled := stallPull(t, c, tok)
		pension := exchange.PullCmd{Dataset: "population.person", Purpose: "pension-qualification-review"}
		second, err := c.GetFlightInfo(as(tok), cmdDesc(pension))
		if err != nil {
			t.Fatal(err)
		}
		refused, err := c.DoGet(as(tok), second.Endpoint[0].Ticket)
		if err == nil {
			_, err = refused.Recv()
		}
		checkStatus(t, docs, err, "pulls_in_progress")
		// The stalled client reads to the end, so that its batches are freed before
		// the fixture checks its allocator.
		for {
			if _, err := stalled.Recv(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
	})
	covered["pulls_in_progress"] = true
	t.Run("pull_stalled", func(t *testing.T) {
		// A client that stops reading after the first message, reading again once the
		// exchange ended its pull, finds why.
		f := servicetest.New(t, servicetest.Config{Persons: 60000, NamePad: 200,
			Options: []service.Option{service.WithPullStallTimeout(300 * time.Millisecond)}})
		_, lis := serve(t, f, "127.0.0.1:0")
		tok := f.Token(t, "rs-33/pension")
		if err := rawPull(raw(t, lis.Addr().String()), tok, exchange.PullCmd{Dataset: "population.person", Purpose: "pension-qualification-review"},
			func(arrow.Record) bool { return true }); err != nil {
			t.Fatal(err)
		}
		base := f.Mem.CurrentAlloc() // the tables, and the masked columns the pull filled in
		stalled := stallPull(t, smallWindow(t, lis.Addr().String()), tok)
		f.Event(t, "the stalled pull's complete event", func(ev *audit.Event) bool {
			return ev.Kind == audit.KindComplete && ev.Status == audit.StatusAborted
		})
		var err error
		for err == nil {
			_, err = stalled.Recv()
		}
		checkStatus(t, docs, err, "pull_stalled")
		servicetest.WaitFor(t, "the ended pull's batch to be freed", func() bool {
			runtime.GC() // the batch gRPC dropped unsent lets go of the store in a cleanup
			return f.Mem.CurrentAlloc() == base
		})
	})
	covered["pull_stalled"] = true
	t.Run("audit_unavailable", func(t *testing.T) {
		f := servicetest.New(t, servicetest.Config{})
		_, lis := serve(t, f, "127.0.0.1:0")
		c, tok := raw(t, lis.Addr().String()), f.Token(t, "mz-3301/dibao-review")
		f.Spool.Close()
		_, err := c.GetFlightInfo(as(tok), cmdDesc(read(nil)))
		checkStatus(t, docs, err, "audit_unavailable")
	})
	covered["audit_unavailable"] = true
	t.Run("credentials_unavailable", func(t *testing.T) {
		f := servicetest.New(t, servicetest.Config{})
		_, lis := serve(t, f, "127.0.0.1:0")
		c, tok := raw(t, lis.Addr().String()), f.Token(t, "mz-3301/dibao-review")
		if err := os.WriteFile(f.Tokens.Path(), []byte("{damaged"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := c.GetFlightInfo(as(tok), cmdDesc(read(nil)))
		checkStatus(t, docs, err, "credentials_unavailable")
	})
	covered["credentials_unavailable"] = true
	t.Run("cursor_too_old", func(t *testing.T) {
		// A short history: rewriting every record makes the first cursor too old.
		f := servicetest.New(t, servicetest.Config{SegmentRows: 16, StoreOptions: []store.Option{store.WithHistory(30)}})
		_, lis := serve(t, f, "127.0.0.1:0")
		c, tok := raw(t, lis.Addr().String()), f.Token(t, "mz-3301/dibao-review")
		info, err := c.GetFlightInfo(as(tok), cmdDesc(read(nil)))
		if err != nil {
			t.Fatal(err)
		}
		stream, err := c.DoGet(as(tok), info.Endpoint[0].Ticket)
		if err != nil {
			t.Fatal(err)
		}
		schema, _, err := drain(stream)
		if err != nil {
			t.Fatal(err)
		}
		old, _ := schema.Metadata().GetValue(exchange.MetaCursor)
		f.Rewrite(t, 20)
		_, err = c.GetFlightInfo(as(tok), cmdDesc(read(func(c *exchange.PullCmd) { c.Since = old })))
		checkStatus(t, docs, err, "cursor_too_old")
	})
	covered["cursor_too_old"] = true
	t.Run("licence verification", func(t *testing.T) {
		f := servicetest.New(t, servicetest.Config{Registers: true})
		_, lis := serve(t, f, "127.0.0.1:0")
		c, tok := raw(t, lis.Addr().String()), f.Token(t, "gxq-3301/window")
		body := func(no string) map[string]any {
			return map[string]any{"licence_no": no, "digest": f.Registers.Digests[f.Registers.OrgLicence], "purpose": "enterprise-service-window"}
		}
		checkStatus(t, docs, doAction(c, tok, exchange.ActionTypeLicenceVerify, body("")), "bad_key")
		checkStatus(t, docs, doAction(c, tok, exchange.ActionTypeLicenceVerify, body("YYZZ-000000-999999")), "not_found")
		// The shipped key budget: 5 verifies of one key an hour; the 6th is refused.
		for i := 0; i < 4; i++ {
			if err := doAction(c, tok, exchange.ActionTypeLicenceVerify, body("YYZZ-000000-999999")); status.Code(err) != codes.NotFound {
				t.Fatalf("verify %d within the budget: %v", i+2, err)
			}
		}
		checkStatus(t, docs, doAction(c, tok, exchange.ActionTypeLicenceVerify, body("YYZZ-000000-999999")), "verify_budget_exhausted")
	})
	covered["bad_key"], covered["not_found"], covered["verify_budget_exhausted"] = true, true, true

	// Aggregate queries over Flight SQL (flightsql.go).
	sc := sqlClient(t, lis.Addr().String())
	sqlCtx := withPurpose(f.Token(t, "tj-33"), "population-statistics")
	for code, q := range map[string]string{"bad_query": "SELEC 1", "unsupported_sql": "SELECT COUNT(*) FROM population.person a JOIN population.person b",
		"query_too_large": "SELECT COUNT(*) FROM population.person WHERE household_region = '" + strings.Repeat("3", 9000) + "'"} {
		_, err := sc.Execute(sqlCtx, q)
		checkStatus(t, docs, err, code)
		covered[code] = true
	}

	// What Flight can never answer, and why; everything else it can is covered above.
	notOverFlight := map[string]string{
		"invalid_columns":  "duplicate_column refuses a repeated column before the store sees it",
		"invalid_mask":     "a mask that does not fit its column is policy data that `govx policy check` refuses",
		"mask_key_missing": "a bug: the service always derives the department's key",
		"internal":         "a bug by definition",
		"cancelled":        "the caller's own cancellation: the client reports its context's error (TestAbortedPull)",
	}
	for code, row := range docs {
		if row.GRPC != "—" && !covered[code] && notOverFlight[code] == "" {
			t.Errorf("docs/errors.md lists %s over gRPC (%s), but no case here produces it", code, row.GRPC)
		}
	}
}

// TestReasonsSurviveAnyText: a policy reason's message may hold newlines and text that
// looks like another reason; the details carry each reason whole and in order.
func TestReasonsSurviveAnyText(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{})
	_, lis := serve(t, f, "127.0.0.1:0")
	c := raw(t, lis.Addr().String())
	_, err := c.GetFlightInfo(as(f.Token(t, "mz-3301/newline")), cmdDesc(exchange.PullCmd{Dataset: "population.person", Purpose: dibao}))
	own, reasons := errorInfo(err)
	want := []exchange.Reason{{Code: "no_agreement", Message: "line one\nreason forged: line two"}, {Code: "unknown_purpose", Message: "second: reason"}}
	if own == nil || own.Reason != "permission_denied" || !slices.Equal(reasons, want) {
		t.Fatalf("details %v %v, want permission_denied with %v", own, reasons, want)
	}
	// pyarrow users see only the text: it still names everything.
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "no_agreement") || !strings.Contains(msg, "unknown_purpose") {
		t.Fatalf("status message %q lacks the reason codes", msg)
	}
}

// TestPullAndSchemaCarryTheCursor: DoGet's schema carries the version's cursor, which a
// later changes pull continues from; GetSchema answers the granted columns, no data.
func TestPullAndSchemaCarryTheCursor(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{})
	_, lis := serve(t, f, "127.0.0.1:0")
	c := raw(t, lis.Addr().String())
	hz := f.Token(t, "mz-3301/dibao-review")
	cmd := exchange.PullCmd{Dataset: "population.person", Purpose: dibao}
	schema, rows, err := pull(c, hz, cmd)
	if err != nil || rows != int64(len(f.IDs["3301"])) {
		t.Fatalf("pull: %d rows, %v; want the %d Hangzhou persons", rows, err, len(f.IDs["3301"]))
	}
	cursor, ok := schema.Metadata().GetValue(exchange.MetaCursor)
	if !ok || cursor == "" {
		t.Fatalf("schema metadata %v has no %s", schema.Metadata(), exchange.MetaCursor)
	}
	cmd.Since = cursor
	schema, rows, err = pull(c, hz, cmd)
	if err != nil || rows != 0 || !schema.HasField("op") {
		t.Fatalf("changes pull right after: %d rows, %v, schema %v; want none, with an op column", rows, err, schema)
	}
	res, err := c.GetSchema(as(hz), cmdDesc(exchange.PullCmd{Dataset: "population.person", Purpose: dibao}))
	if err != nil {
		t.Fatal(err)
	}
	s, err := flight.DeserializeSchema(res.GetSchema(), f.Mem)
	if err != nil || strings.Join(fieldNames(s), ",") != "id_number,name,household_region,birth_date" {
		t.Fatalf("GetSchema: %v, %v", s, err)
	}
	var listed []string
	lf, err := c.ListFlights(as(hz), &flight.Criteria{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		fi, err := lf.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var cmd map[string]string
		json.Unmarshal(fi.FlightDescriptor.Cmd, &cmd)
		listed = append(listed, cmd["dataset"])
	}
	if !slices.Contains(listed, "population.person") {
		t.Fatalf("ListFlights for mz-3301: %v", listed)
	}
}

func fieldNames(s *arrow.Schema) []string {
	var out []string
	for _, f := range s.Fields() {
		out = append(out, f.Name)
	}
	return out
}

// TestAbortedPull: a client that stops reading a big pull and cancels is recorded as
// aborted (rows sent so far), and the server lets go of the stream.
func TestAbortedPull(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Persons: 20000, NamePad: 1000, SegmentRows: 1024})
	_, lis := serve(t, f, "127.0.0.1:0")
	cl, err := client.New(client.Config{Flight: lis.Addr().String(), Token: f.Token(t, "rs-33/pension")})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	inScope := int64(len(f.IDs["3301"]) + len(f.IDs["3302"]))
	var rid string
	stop := errors.New("enough")
	_, err = cl.Pull(context.Background(), exchange.PullCmd{Dataset: "population.person", Purpose: "pension-qualification-review"},
		func(s *arrow.Schema) error { rid, _ = s.Metadata().GetValue(exchange.MetaRequestID); return nil },
		func(arrow.Record) error { return stop })
	if !errors.Is(err, stop) || rid == "" {
		t.Fatalf("pull: %v (request id %q)", err, rid)
	}
	ev := f.Event(t, "the aborted pull's complete event", func(ev *audit.Event) bool {
		return ev.Kind == audit.KindComplete && ev.RequestID == rid
	})
	if ev.Status != audit.StatusAborted || ev.Rows == 0 || int64(ev.Rows) >= inScope {
		t.Fatalf("complete event: status %s, %d of %d rows; want aborted part way", ev.Status, ev.Rows, inScope)
	}
	// The same client pulls again at once: nothing of the aborted stream is left over.
	rows, _, _, err := servertestPull(cl, exchange.PullCmd{Dataset: "population.person", Purpose: "pension-qualification-review", Limit: 10})
	if err != nil || rows != 10 {
		t.Fatalf("pull after the abort: %d rows, %v", rows, err)
	}
}

func servertestPull(cl *client.Client, cmd exchange.PullCmd) (int64, *arrow.Schema, string, error) {
	res, err := cl.Pull(context.Background(), cmd, nil, func(arrow.Record) error { return nil })
	return res.Rows, res.Schema, res.Cursor, err
}

// TestReconnectAfterRestart: a client outlives the server it first talked to; once an
// exchange listens at the address again, its next pull goes through a new connection.
func TestReconnectAfterRestart(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{})
	srv, lis := serve(t, f, "127.0.0.1:0")
	addr := lis.Addr().String()
	cl, err := client.New(client.Config{Flight: addr, Token: f.Token(t, "mz-3301/dibao-review")})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cmd := exchange.PullCmd{Dataset: "population.person", Purpose: dibao}
	if rows, _, _, err := servertestPull(cl, cmd); err != nil || rows == 0 {
		t.Fatalf("first pull: %d rows, %v", rows, err)
	}
	srv.Shutdown()
	if _, _, _, err := servertestPull(cl, cmd); err == nil {
		t.Fatal("a pull with the exchange down succeeded")
	}
	_, lis2 := serve(t, f, addr)
	servicetest.WaitFor(t, "a pull through the restarted exchange", func() bool {
		rows, _, _, err := servertestPull(cl, cmd)
		return err == nil && rows == int64(len(f.IDs["3301"]))
	})
	if n := lis2.Accepted.Load(); n != 1 {
		t.Fatalf("the restarted exchange accepted %d connections from one client, want 1", n)
	}
}

// TestUnauthenticatedConnectionsBounded: connections that send nothing, or only calls
// with bad credentials, are closed after the auth timeout, and no more than the cap are
// open at once; an authenticated connection stays.
func TestUnauthenticatedConnectionsBounded(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{})
	const timeout = 300 * time.Millisecond
	srv, lis := serve(t, f, "127.0.0.1:0", WithAuthTimeout(timeout), WithMaxUnauthenticated(3))
	addr := lis.Addr().String()
	// closedByServer reads what the server sends (gRPC opens with its settings) until
	// the server closes the connection, or 10 seconds pass.
	closedByServer := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		return err == nil || isReset(err)
	}
	// Three silent connections fill the cap; the fourth is closed on arrival.
	var silent []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	servicetest.WaitFor(t, "three unauthenticated connections", func() bool { n, _, _ := srv.guard.stats(); return n == 3 })
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	start := time.Now()
	if !closedByServer(extra) {
		t.Fatal("a connection over the cap was not closed")
	}
	if _, refused, _ := srv.guard.stats(); refused != 1 {
		t.Fatalf("refused %d connections, want 1", refused)
	}
	// The silent ones go after the timeout, not before.
	for _, c := range silent {
		if !closedByServer(c) {
			t.Fatal("a silent connection outlived the auth timeout")
		}
	}
	if waited := time.Since(start); waited < timeout/2 {
		t.Fatalf("silent connections closed after %v, before the %v timeout", waited, timeout)
	}

	// A client with a bad token: its call is refused, its connection closed in time.
	bad := raw(t, addr)
	if _, err := bad.GetFlightInfo(as("govx_bad"), cmdDesc(exchange.PullCmd{Dataset: "population.person", Purpose: dibao})); status.Code(err).String() != "Unauthenticated" {
		t.Fatalf("bad token: %v", err)
	}
	servicetest.WaitFor(t, "the bad token's connection closed", func() bool { n, _, _ := srv.guard.stats(); return n == 0 })
	if _, _, expired := srv.guard.stats(); expired == 0 {
		t.Fatal("no connection closed for not authenticating in time")
	}

	// An authenticated client keeps its connection past the timeout.
	good := raw(t, addr)
	tok := f.Token(t, "mz-3301/dibao-review")
	if _, _, err := pull(good, tok, exchange.PullCmd{Dataset: "population.person", Purpose: dibao}); err != nil {
		t.Fatal(err)
	}
	before := lis.Accepted.Load()
	probe, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if !closedByServer(probe) { // a full timeout has passed since the pull
		t.Fatal("probe connection not closed")
	}
	if _, _, err := pull(good, tok, exchange.PullCmd{Dataset: "population.person", Purpose: dibao}); err != nil {
		t.Fatal(err)
	}
	if n := lis.Accepted.Load() - before; n != 1 { // the probe; the client's connection stayed
		t.Fatalf("%d connections accepted since the client's first pull, want only the probe's: the client had to reconnect", n)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}

// TestToStatusUnclassified: an error nobody classified says nothing of itself; a
// cancellation is Canceled.
func TestToStatusUnclassified(t *testing.T) {
	err := toStatus(errors.New("disk on fire at /var/lib/govx"))
	if st := status.Convert(err); st.Code().String() != "Internal" || strings.Contains(st.Message(), "disk") {
		t.Fatalf("unclassified error: %v", st)
	}
	if own, _ := errorInfo(err); own == nil || own.Reason != "internal" {
		t.Fatalf("unclassified error's detail %v", own)
	}
	err = toStatus(exchange.ClientGone(io.ErrClosedPipe))
	if own, _ := errorInfo(err); status.Code(err).String() != "Canceled" || own == nil || own.Reason != "cancelled" {
		t.Fatalf("client gone: %v %v", err, own)
	}
}

// TestStalledPullIsEnded: a Flight client that takes nothing of its pull for the stall
// timeout loses it: the exchange ends the stream, the pull's complete event says
// aborted, "client stopped reading", its department's one slot is free for the next
// pull, and the client reading again finds an error, never a short result read as
// whole.
func TestStalledPullIsEnded(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Persons: 200000, NamePad: 200,
		Options: []service.Option{service.WithPullsInProgress(1), service.WithPullStallTimeout(500 * time.Millisecond)}})
	_, lis := serve(t, f, "127.0.0.1:0")
	c := smallWindow(t, lis.Addr().String())
	tok := f.Token(t, "rs-33/pension")
	pension := exchange.PullCmd{Dataset: "population.person", Purpose: "pension-qualification-review"}
	cl, err := client.New(client.Config{Flight: lis.Addr().String(), Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	whole, _, _, err := servertestPull(cl, pension)
	if err != nil || whole == 0 {
		t.Fatalf("a pull: %d rows, %v", whole, err)
	}
	base := f.Mem.CurrentAlloc() // the tables, and the masked columns the pull filled in

	stalled := stallPull(t, c, tok)
	ev := f.Event(t, "the stalled pull's complete event", func(ev *audit.Event) bool {
		return ev.Kind == audit.KindComplete && ev.Department == "rs-33" && ev.Status != audit.StatusOK
	})
	if ev.Status != audit.StatusAborted || ev.Error != "client stopped reading" {
		t.Errorf("the stalled pull's complete event: status %q, error %q; want aborted, client stopped reading", ev.Status, ev.Error)
	}

	// The slot is free: the department's next pull is served whole.
	if n, _, _, err := servertestPull(cl, pension); err != nil || n != whole {
		t.Fatalf("the next pull after the stalled one was ended: %d rows, %v; want %d", n, err, whole)
	}
	// Reading again, the stalled client gets what was queued for it, then an error.
	for msgs := 0; ; msgs++ {
		if _, err := stalled.Recv(); err == io.EOF {
			t.Fatalf("the ended pull read to a clean end after %d more messages", msgs)
		} else if err != nil {
			break
		}
	}
	// Its batches are let go of: those gRPC dropped unsent, in a cleanup.
	servicetest.WaitFor(t, "the ended pull's batches to be freed", func() bool {
		runtime.GC()
		return f.Mem.CurrentAlloc() == base
	})
}

// TestSlowReaderIsNotStalled: a Flight client that reads slowly but steadily (96 KB
// every 50 ms, through a proxy that takes at most 64 KB ahead: 960 KB in the stall
// timeout of 500 ms here, twice the 512 KB docs/configuration.md names) keeps its
// pull although a batch takes it seconds: the stall timeout is for a client that takes
// nothing, not for one slower than a batch.
func TestSlowReaderIsNotStalled(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Persons: 10000, NamePad: 200,
		Options: []service.Option{service.WithPullStallTimeout(500 * time.Millisecond)}})
	_, lis := serve(t, f, "127.0.0.1:0")
	tok := f.Token(t, "rs-33/pension")
	pension := exchange.PullCmd{Dataset: "population.person", Purpose: "pension-qualification-review"}
	count := func(c flight.Client) (rows int64) {
		t.Helper()
		if err := rawPull(c, tok, pension, func(r arrow.Record) bool { rows += r.NumRows(); return true }); err != nil {
			t.Fatalf("a pull after %d rows: %v", rows, err)
		}
		return rows
	}
	whole := count(raw(t, lis.Addr().String()))
	if got := count(raw(t, servicetest.SlowProxy(t, lis.Addr().String(), 96<<10, 50*time.Millisecond))); got != whole {
		t.Fatalf("the slow reader's pull: %d rows, want %d", got, whole)
	}
	for _, ev := range f.Events(t) {
		if ev.Kind == audit.KindComplete && ev.Status != audit.StatusOK {
			t.Errorf("a complete event says %s, %s", ev.Status, ev.Error)
		}
	}
}
