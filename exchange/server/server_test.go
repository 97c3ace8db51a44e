package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/flight"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"govx/exchange"
	"govx/exchange/auth"
	"govx/exchange/client"
	"govx/exchange/server/servertest"
	"govx/internal/testenv"
	"govx/policies"
)

const purposeDibao = "minimum-living-allowance-review"

type testExchange struct {
	t      *testing.T
	cfg    *Config
	x      *Exchange
	mem    *memory.CheckedAllocator
	now    atomic.Int64 // offset added to the real clock, in nanoseconds
	tokens map[string]string
}

func (te *testExchange) clock() time.Time { return time.Now().Add(time.Duration(te.now.Load())) }

func newTestExchange(t *testing.T, dir, brokers, prefix, chDB string) *testExchange {
	te := &testExchange{t: t, tokens: map[string]string{}}
	cfg := Defaults(dir)
	cfg.FlightAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Kafka.Brokers = []string{brokers}
	cfg.Kafka.TopicPrefix = prefix
	cfg.Datasets = []string{"population.person"}
	cfg.PoliciesDir = filepath.Join(dir, "policies")
	cfg.Audit.ClickHouse.Addr = testenv.Require(t, testenv.ClickHouse)
	cfg.Audit.ClickHouse.Database = chDB
	if _, err := os.Stat(cfg.PoliciesDir); err != nil {
		if err := policies.CopyEmbedded(cfg.PoliciesDir); err != nil {
			t.Fatal(err)
		}
	}
	te.cfg = cfg
	te.start()
	return te
}

func (te *testExchange) start() {
	t := te.t
	te.mem = memory.NewCheckedAllocator(memory.NewGoAllocator())
	x, err := Start(context.Background(), te.cfg, WithAllocator(te.mem), WithClock(te.clock))
	if err != nil {
		t.Fatal(err)
	}
	te.x = x
	// A restart binds the same ports, as a real one would, so clients keep working.
	te.cfg.FlightAddr, te.cfg.HTTPAddr = x.FlightAddr(), x.HTTPAddr()
	select {
	case <-x.Ready():
	case <-time.After(60 * time.Second):
		t.Fatalf("exchange not ready after 60s (err: %v)", x.Err())
	}
}

// stop closes the exchange and checks that no Arrow buffer leaked.
func (te *testExchange) stop() {
	if err := te.x.Close(); err != nil {
		te.t.Errorf("close: %v", err)
	}
	te.mem.AssertSize(te.t, 0)
}

func (te *testExchange) token(subject string) string {
	if tok, ok := te.tokens[subject]; ok {
		return tok
	}
	tok := servertest.Token(te.t, te.cfg.TokensFile, subject)
	te.tokens[subject] = tok
	return tok
}

func (te *testExchange) client(subject string) *client.Client {
	c, err := client.New(client.Config{Flight: te.x.FlightAddr(), HTTP: "http://" + te.x.HTTPAddr(), Token: te.token(subject)})
	if err != nil {
		te.t.Fatal(err)
	}
	te.t.Cleanup(func() { c.Close() })
	return c
}

func codeOf(err error) string {
	var ce *client.Error
	if errors.As(err, &ce) {
		codes := []string{ce.Code}
		for _, r := range ce.Reasons {
			codes = append(codes, r.Code)
		}
		return strings.Join(codes, ",")
	}
	if err == nil {
		return "<nil>"
	}
	return "unclassified: " + err.Error()
}

func idMask(id string) string { return id[:6] + "********" + id[14:] }

func TestIntegrationExchange(t *testing.T) {
	brokers := testenv.Require(t, testenv.Kafka)
	chDB, ch := clickhouseDB(t)
	prefix := "govxtest" + randomSuffix() + "."
	topic := prefix + "population.person"
	persons := makePersons(t, 400, 1)
	byID := map[string]person{}
	recs := map[string]any{}
	for _, p := range persons {
		byID[p["id_number"].(string)] = p
		recs[p["id_number"].(string)] = map[string]any(p)
	}
	produce(t, brokers, topic, recs)
	dir := t.TempDir()
	te := newTestExchange(t, dir, brokers, prefix, chDB)
	stopped := false
	defer func() {
		if !stopped {
			te.stop()
		}
	}()
	hz := te.client("mz-3301/dibao-review")
	nj := te.client("mz-3201/case-system")
	ctx := context.Background()

	var hzRows []map[string]string
	var hzCursor string
	t.Run("granted pull: agreement columns, masks, own city only", func(t *testing.T) {
		rows, schema, cursor, err := servertest.Pull(t, hz, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range schema.Fields() {
			names = append(names, f.Name)
		}
		if strings.Join(names, ",") != "id_number,name,household_region,birth_date" {
			t.Fatalf("columns %v, want the agreement's", names)
		}
		want := 0
		masked := map[string]bool{}
		for _, p := range persons {
			if inCity(p, "3301") {
				want++
				masked[idMask(p["id_number"].(string))] = true
			}
		}
		if len(rows) != want {
			t.Fatalf("%d rows, want the %d persons of Hangzhou", len(rows), want)
		}
		for _, r := range rows {
			if !strings.HasPrefix(r["household_region"], "3301") {
				t.Fatalf("row outside the city: %v", r)
			}
			if !masked[r["id_number"]] {
				t.Fatalf("id_number %q is not the id_card mask of a Hangzhou person", r["id_number"])
			}
		}
		if cursor == "" {
			t.Fatal("no cursor returned")
		}
		hzRows, hzCursor = rows, cursor
	})

	t.Run("another city's department sees only its city", func(t *testing.T) {
		rows, _, _, err := servertest.Pull(t, nj, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao})
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, p := range persons {
			if inCity(p, "3201") {
				want++
			}
		}
		if len(rows) != want {
			t.Fatalf("%d rows, want %d", len(rows), want)
		}
		for _, r := range rows {
			p, ok := byID[r["id_number"]] // granted unmasked to this agreement
			if !ok || !inCity(p, "3201") || r["name"] != p["name"] {
				t.Fatalf("row %v is not a Nanjing person as stored", r)
			}
		}
	})

	t.Run("no agreement: permission denied with the policy's reason", func(t *testing.T) {
		_, _, _, err := servertest.Pull(t, te.client("zj-3205/housing"), exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao})
		if got := codeOf(err); !strings.Contains(got, "permission_denied") || !strings.Contains(got, "no_agreement") {
			t.Fatalf("error %v (%s), want permission_denied with no_agreement", err, got)
		}
	})

	var hzPerson, njPerson, nbPerson person
	for _, p := range persons {
		switch {
		case inCity(p, "3301") && hzPerson == nil:
			hzPerson = p
		case inCity(p, "3201") && njPerson == nil:
			njPerson = p
		case inCity(p, "3302") && nbPerson == nil:
			nbPerson = p
		}
	}
	t.Run("lookup in scope, and out of scope answers not found", func(t *testing.T) {
		id := hzPerson["id_number"].(string)
		rec, err := hz.Lookup(ctx, "population.person", exchange.LookupCmd{Key: jsonString(strings.ToLower(id)), Purpose: purposeDibao})
		if err != nil {
			t.Fatal(err)
		}
		if rec["id_number"] != idMask(id) || rec["name"] != hzPerson["name"] || rec["household_region"] != hzPerson["household_region"] {
			t.Fatalf("lookup = %v", rec)
		}
		if _, ok := rec["phone"]; ok {
			t.Fatal("lookup returned a column outside the grant")
		}
		_, err = hz.Lookup(ctx, "population.person", exchange.LookupCmd{Key: jsonString(njPerson["id_number"].(string)), Purpose: purposeDibao})
		if codeOf(err) != "not_found" {
			t.Fatalf("out-of-scope lookup: %v", err)
		}
		_, err = hz.Lookup(ctx, "population.person", exchange.LookupCmd{Key: jsonString("110105194912310029"), Purpose: purposeDibao})
		if codeOf(err) != "not_found" {
			t.Fatalf("missing key: %v", err)
		}
	})

	t.Run("verify answers booleans only", func(t *testing.T) {
		wj := te.client("wj-3302/birth-cert")
		id := nbPerson["id_number"].(string)
		match, err := wj.Verify(ctx, "population.person", exchange.VerifyCmd{Key: jsonString(id), Purpose: "birth-certificate-issuance",
			Claims: map[string]any{"name": " " + nbPerson["name"].(string) + " ", "birth_date": strings.ReplaceAll(nbPerson["birth_date"].(string), "-", "")}})
		if err != nil {
			t.Fatal(err)
		}
		if !match["name"] || !match["birth_date"] || len(match) != 2 {
			t.Fatalf("match = %v, want both true", match)
		}
		match, err = wj.Verify(ctx, "population.person", exchange.VerifyCmd{Key: jsonString(id), Purpose: "birth-certificate-issuance",
			Claims: map[string]any{"name": "冒名顶替"}})
		if err != nil || match["name"] {
			t.Fatalf("wrong name: %v, %v", match, err)
		}
		_, _, _, err = servertest.Pull(t, wj, exchange.PullCmd{Dataset: "population.person", Purpose: "birth-certificate-issuance"})
		if got := codeOf(err); !strings.Contains(got, "permission_denied") {
			t.Fatalf("a verify-only agreement allowed a read: %v", err)
		}
	})

	t.Run("bad requests: each a clear error of the right code", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			cmd  exchange.PullCmd
			want string
		}{
			{"unknown dataset", exchange.PullCmd{Dataset: "population.people", Purpose: purposeDibao}, "unknown_dataset"},
			{"unknown column", exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao, Columns: []string{"blood_type"}}, "unknown_column"},
			{"column outside the grant", exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao, Columns: []string{"name", "phone"}}, "permission_denied,column_not_granted"},
			{"wrongly typed filter", exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao,
				Filter: []exchange.Filter{{Column: "birth_date", Op: "lt", Value: 19900101}}}, "invalid_filter"},
			{"unknown purpose", exchange.PullCmd{Dataset: "population.person", Purpose: "curiosity"}, "permission_denied"},
		} {
			_, _, _, err := servertest.Pull(t, hz, tt.cmd)
			if got := codeOf(err); !strings.HasPrefix(got, tt.want) {
				t.Errorf("%s: got %s (%v), want %s", tt.name, got, err, tt.want)
			}
		}
		// Malformed JSON over HTTP.
		req, _ := http.NewRequest("POST", "http://"+te.x.HTTPAddr()+"/v1/datasets/population.person/pull", strings.NewReader(`{"purpose":`))
		req.Header.Set("Authorization", "Bearer "+te.token("mz-3301/dibao-review"))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb exchange.ErrorBody
		json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != 400 || eb.Error.Code != "malformed_request" {
			t.Fatalf("malformed JSON: %d %+v", resp.StatusCode, eb)
		}
		// No token at all.
		req, _ = http.NewRequest("GET", "http://"+te.x.HTTPAddr()+"/v1/catalog", nil)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("anonymous catalog: %d", resp.StatusCode)
		}
	})

	t.Run("tickets: forged, expired, another department's", func(t *testing.T) {
		conn, err := grpc.NewClient(te.x.FlightAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fc := flight.NewClientFromConn(conn, nil)
		as := func(subject string) context.Context {
			return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+te.token(subject))
		}
		doGet := func(ctx context.Context, ticket []byte) error {
			s, err := fc.DoGet(ctx, &flight.Ticket{Ticket: ticket})
			if err != nil {
				return err
			}
			for {
				if _, err := s.Recv(); err != nil {
					if errors.Is(err, context.Canceled) {
						return err
					}
					if st, ok := status.FromError(err); ok && st.Code() != codes.OK {
						return err
					}
					return nil
				}
			}
		}
		cmd, _ := json.Marshal(exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao, Limit: 3})
		info, err := fc.GetFlightInfo(as("mz-3301/dibao-review"), &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: cmd})
		if err != nil {
			t.Fatal(err)
		}
		ticket := info.Endpoint[0].Ticket.Ticket
		if err := doGet(as("mz-3301/dibao-review"), ticket); err != nil {
			t.Fatalf("own ticket refused: %v", err)
		}
		for name, tc := range map[string]struct {
			ctx    context.Context
			ticket []byte
			code   codes.Code
			text   string
		}{
			"forged":   {as("mz-3301/dibao-review"), append([]byte("x"), ticket...), codes.Unauthenticated, "bad_ticket"},
			"foreign":  {as("mz-3201/case-system"), ticket, codes.PermissionDenied, "foreign_ticket"},
			"no token": {ctx, ticket, codes.Unauthenticated, "unauthenticated"},
		} {
			err := doGet(tc.ctx, tc.ticket)
			if st, _ := status.FromError(err); st.Code() != tc.code || !strings.Contains(st.Message(), tc.text) {
				t.Errorf("%s ticket: %v, want %v %s", name, err, tc.code, tc.text)
			}
		}
		te.now.Store(int64(time.Hour))
		err = doGet(as("mz-3301/dibao-review"), ticket)
		te.now.Store(0)
		if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "ticket_expired") {
			t.Errorf("expired ticket: %v", err)
		}
	})

	t.Run("a revoked token stops working at once", func(t *testing.T) {
		tokens := auth.OpenTokens(te.cfg.TokensFile)
		tok, rec, err := tokens.Issue(exchange.Subject{Department: "mz-3301", System: "dibao-review"}, "to revoke")
		if err != nil {
			t.Fatal(err)
		}
		c, _ := client.New(client.Config{Flight: te.x.FlightAddr(), HTTP: "http://" + te.x.HTTPAddr(), Token: tok})
		defer c.Close()
		if _, err := c.Catalog(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := tokens.Revoke(rec.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Catalog(ctx); codeOf(err) != "unauthenticated" {
			t.Fatalf("revoked token: %v", err)
		}
		if _, _, _, err := servertest.Pull(t, c, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao}); codeOf(err) != "unauthenticated" {
			t.Fatalf("revoked token over Flight: %v", err)
		}
	})

	t.Run("policy edit takes effect on reload; a broken edit changes nothing", func(t *testing.T) {
		file := filepath.Join(te.cfg.PoliciesDir, "agreements.yaml")
		orig, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		rev := te.x.Policy().Revision()
		// Nanjing's agreement: max 10 rows per request, fewer than its city holds.
		edited := strings.Replace(string(orig), "    max_rows: 100000\n    valid_from: 2026-01-01\n    valid_until: 2026-12-31\n    approval: 宁数共〔2026〕7号",
			"    max_rows: 10\n    valid_from: 2026-01-01\n    valid_until: 2026-12-31\n    approval: 宁数共〔2026〕7号", 1)
		if edited == string(orig) {
			t.Fatal("test fixture: the Nanjing agreement was not found in agreements.yaml")
		}
		os.WriteFile(file, []byte(edited), 0o644)
		testenv.WaitFor(t, 30*time.Second, "a new policy revision", func() bool { return te.x.Policy().Revision() != rev })
		_, _, _, err = servertest.Pull(t, nj, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao})
		if got := codeOf(err); got != "max_rows_exceeded" {
			t.Fatalf("after edit: %v, want max_rows_exceeded", err)
		}
		rows, _, _, err := servertest.Pull(t, nj, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao, Limit: 10})
		if err != nil || len(rows) != 10 {
			t.Fatalf("limit within max_rows: %d rows, %v", len(rows), err)
		}
		good := te.x.Policy().Revision()
		os.WriteFile(file, []byte(edited+"\n  - id: [broken\n"), 0o644)
		testenv.WaitFor(t, 30*time.Second, "the broken edit to be seen and rejected", func() bool { return te.x.Policy().ReloadErrors() > 0 })
		if te.x.Policy().Revision() != good {
			t.Fatal("a broken edit changed the revision")
		}
		if _, _, _, err = servertest.Pull(t, nj, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao}); codeOf(err) != "max_rows_exceeded" {
			t.Fatalf("after a broken edit the decision changed: %v", err)
		}
		os.WriteFile(file, orig, 0o644)
		testenv.WaitFor(t, 30*time.Second, "the original policy", func() bool { return te.x.Policy().Revision() == rev })
	})

	t.Run("changes since a pull's cursor; an exchange restart serves the same", func(t *testing.T) {
		var upd, del person
		for _, p := range persons {
			if inCity(p, "3301") {
				if upd == nil {
					upd = p
				} else if del == nil && p["id_number"] != upd["id_number"] {
					del = p
				}
			}
		}
		changed := map[string]any{}
		for k, v := range upd {
			changed[k] = v
		}
		changed["name"] = "改名"
		changed["updated_at"] = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
		produce(t, brokers, topic, map[string]any{upd["id_number"].(string): changed, del["id_number"].(string): nil})
		testenv.WaitFor(t, 30*time.Second, "the update and delete to reach the store", func() bool {
			snap := te.x.Tables()["population.person"].Snapshot()
			defer snap.Release()
			_, gone := snap.Lookup(del["id_number"].(string))
			rec, _ := snap.Lookup(upd["id_number"].(string))
			return !gone && rec["name"] == "改名"
		})
		checkChanges := func() {
			rows, schema, _, err := servertest.Pull(t, hz, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao, Since: hzCursor})
			if err != nil {
				t.Fatal(err)
			}
			if schema.Field(0).Name != "op" {
				t.Fatalf("changes schema %v lacks the op column first", schema)
			}
			got := map[string]string{}
			for _, r := range rows {
				got[r["id_number"]] = r["op"] + ":" + r["name"]
			}
			want := map[string]string{idMask(upd["id_number"].(string)): "upsert:改名", idMask(del["id_number"].(string)): "delete:<null>"}
			if len(got) != 2 || got[idMask(upd["id_number"].(string))] != want[idMask(upd["id_number"].(string))] || !strings.HasPrefix(got[idMask(del["id_number"].(string))], "delete") {
				t.Fatalf("changes = %v, want %v", got, want)
			}
		}
		checkChanges()
		before, _, _, err := servertest.Pull(t, hz, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao})
		if err != nil {
			t.Fatal(err)
		}
		if len(before) != len(hzRows)-1 {
			t.Fatalf("after one delete: %d rows, want %d", len(before), len(hzRows)-1)
		}
		te.stop()
		te.start()
		after, _, _, err := servertest.Pull(t, hz, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao})
		if err != nil {
			t.Fatal(err)
		}
		if rowsKey(before) != rowsKey(after) {
			t.Fatalf("after restart the exchange serves different data: %d rows before, %d after", len(before), len(after))
		}
		checkChanges()
	})

	t.Run("operators see health, readiness and metrics", func(t *testing.T) {
		if _, err := hz.Catalog(ctx); err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]string{
			"/healthz": "ok", "/readyz": "ready",
			"/metrics": "govx_ingest_ready 1",
		} {
			resp, err := http.Get("http://" + te.x.HTTPAddr() + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
				t.Errorf("GET %s: %d, want %q in the body", path, resp.StatusCode, want)
			}
			if path == "/metrics" {
				for _, m := range []string{"govx_policy_decisions_total", "govx_audit_appends_total", "govx_audit_unshipped_events", "govx_http_requests_total", `govx_auth_failures_total{audited="no"}`} {
					if !strings.Contains(string(body), m) {
						t.Errorf("/metrics lacks %s", m)
					}
				}
			}
		}
	})

	t.Run("every request left a decision event in ClickHouse", func(t *testing.T) {
		fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := te.x.Spool().Flush(fctx); err != nil {
			t.Fatal(err)
		}
		rows, err := ch.Query(ctx, "SELECT error, decision, count() FROM "+chDB+".access_log WHERE kind = 'decision' GROUP BY error, decision")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]uint64{}
		for rows.Next() {
			var e, d string
			var n uint64
			rows.Scan(&e, &d, &n)
			got[d+":"+e] += n
		}
		rows.Close()
		for _, want := range []string{"allow:", "deny:unknown_dataset", "deny:unknown_column", "deny:permission_denied", "deny:invalid_filter",
			"deny:malformed_request", "deny:bad_ticket", "deny:foreign_ticket", "deny:ticket_expired", "deny:max_rows_exceeded", "deny:not_found"} {
			if got[want] == 0 {
				t.Errorf("no decision event %q in ClickHouse; have %v", want, got)
			}
		}
	})
	stopped = true
	te.stop()
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

func rowsKey(rows []map[string]string) string {
	var lines []string
	for _, r := range rows {
		keys := make([]string, 0, len(r))
		for k := range r {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			b.WriteString(k + "=" + r[k] + ";")
		}
		lines = append(lines, b.String())
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
