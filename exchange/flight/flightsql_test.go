package flight

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/flight"
	"github.com/apache/arrow/go/v17/arrow/flight/flightsql"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"govx/exchange/audit"
	"govx/exchange/service/servicetest"
	"govx/internal/testenv"
)

// aggregateFixture serves 600 persons (200 in each of 330106, 320102, 330203) and 3
// more in 330108: a cell below the minimum group size of 10.
func aggregateFixture(t *testing.T) (*servicetest.Fixture, string) {
	f := servicetest.New(t, servicetest.Config{Persons: 600, Registers: true})
	for i, id := range []string{"330108199001010011", "330108199001020016", "330108199001030010"} {
		f.Apply(t, f.Table, map[string]any{"id_number": fixID(t, id), "name": "李四", "gender": "2", "birth_date": fmt.Sprintf("1990-01-0%d", i+1),
			"household_region": "330108", "status": "alive", "updated_at": "2026-11-01T00:00:00Z"})
	}
	_, lis := serve(t, f, "127.0.0.1:0")
	return f, lis.Addr().String()
}

// fixID gives a citizen ID body its check character.
func fixID(t *testing.T, id string) string {
	t.Helper()
	w := []int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2} // GB 11643 weights
	sum := 0
	for i, x := range w {
		sum += int(id[i]-'0') * x
	}
	return id[:17] + string("10X98765432"[sum%11])
}

func sqlClient(t *testing.T, addr string) *flightsql.Client {
	t.Helper()
	c, err := flightsql.NewClient(addr, nil, nil, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fetch redeems info's ticket and renders each row it returns with row.
func fetch(t *testing.T, c *flightsql.Client, ctx context.Context, info *flight.FlightInfo, row func(arrow.Record, int) string) ([]string, *arrow.Schema) {
	t.Helper()
	rdr, err := c.DoGet(ctx, info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Release()
	var out []string
	for rdr.Next() {
		rec := rdr.Record()
		for r := range int(rec.NumRows()) {
			out = append(out, row(rec, r))
		}
	}
	if err := rdr.Err(); err != nil {
		t.Fatal(err)
	}
	return out, rdr.Schema()
}

func withPurpose(token, purpose string) context.Context {
	return metadata.AppendToOutgoingContext(as(token), HeaderPurpose, purpose)
}

func TestFlightSQLAggregate(t *testing.T) {
	f, addr := aggregateFixture(t)
	c := sqlClient(t, addr)
	ctx := withPurpose(f.Token(t, "tj-33"), "population-statistics")
	info, err := c.Execute(ctx, "SELECT household_region, COUNT(*) AS n FROM population.person GROUP BY household_region")
	if err != nil {
		t.Fatal(err)
	}
	got, schema := fetch(t, c, ctx, info, func(rec arrow.Record, r int) string {
		return rec.Column(0).(*array.String).Value(r) + "=" + rec.Column(1).ValueStr(r)
	})
	want := fmt.Sprintf("330106=%d,330203=%d", len(f.IDs["3301"]), len(f.IDs["3302"]))
	if strings.Join(got, ",") != want {
		t.Errorf("answer %v, want %s (330108's 3 persons suppressed, Nanjing out of scope)", got, want)
	}
	if v, ok := schema.Metadata().GetValue("govx.suppressed_cells"); ok {
		t.Errorf("the answer says %s cells were suppressed; only the audit may", v)
	}
	if v, _ := schema.Metadata().GetValue("govx.suppression"); v != "cells of fewer than 10 rows are suppressed: not shown and counted in no group" {
		t.Errorf("suppression note %q", v)
	}
	// A cell of 3 (330108) and an empty one (330199) get the same answer: nothing.
	answers := map[string]bool{}
	for _, county := range []string{"330108", "330199"} {
		info, err := c.Execute(ctx, "SELECT gender, COUNT(*) FROM population.person WHERE household_region = '"+county+"' GROUP BY gender")
		if err != nil {
			t.Fatal(err)
		}
		got, schema := fetch(t, c, ctx, info, func(rec arrow.Record, r int) string { return rec.Column(1).ValueStr(r) })
		md := schema.Metadata()
		var meta []string
		for i, k := range md.Keys() {
			if k != "govx.request_id" {
				meta = append(meta, k+"="+md.Values()[i])
			}
		}
		slices.Sort(meta)
		answers[fmt.Sprint(got, meta)] = true
	}
	if len(answers) != 1 {
		t.Errorf("a small cell and an empty one are told apart: %v", answers)
	}
	f.Svc.Wait()
	done := f.Event(t, "the aggregate's complete event", func(e *audit.Event) bool {
		return e.Kind == audit.KindComplete && e.Action == "aggregate" && e.Rows == 2
	})
	if !slices.Contains(done.Reasons, "suppressed_cells: 1") {
		t.Errorf("complete event reasons %v, want suppressed_cells: 1", done.Reasons)
	}

	// A plain govx descriptor still reaches the plain Flight service.
	if _, n, err := pull(raw(t, addr), f.Token(t, "mz-3301/dibao-review"), map[string]any{"dataset": "population.person", "purpose": "minimum-living-allowance-review"}); err != nil || n != int64(len(f.IDs["3301"])+3) {
		t.Errorf("plain pull next to Flight SQL: %d rows, %v", n, err)
	}

	// Refusals carry the reason.
	for sql, code := range map[string]string{
		"SELECT id_number FROM population.person":                                                                 "row_query",
		"SELECT birth_date, COUNT(*) FROM population.person GROUP BY birth_date":                                  "column_not_granted",
		"SELECT COUNT(*) FROM resource.land_parcel WHERE area_m2 < 100":                                           "filter_not_groupable",
		"SELECT household_region, COUNT(*) FROM population.person GROUP BY household_region HAVING COUNT(*) < 10": "unsupported_sql",
	} {
		pctx := ctx
		if strings.Contains(sql, "land_parcel") {
			pctx = withPurpose(f.Token(t, "tj-33"), "land-resource-statistics")
		}
		_, err := c.Execute(pctx, sql)
		if err == nil || !strings.Contains(err.Error(), code) {
			t.Errorf("%s: %v, want %s", sql, err, code)
		}
	}
}

func TestFlightSQLCatalogListsOnlyAggregatable(t *testing.T) {
	f, addr := aggregateFixture(t)
	c := sqlClient(t, addr)
	tables := func(ctx context.Context) []string {
		t.Helper()
		info, err := c.GetTables(ctx, &flightsql.GetTablesOpts{IncludeSchema: true})
		if err != nil {
			t.Fatal(err)
		}
		out, _ := fetch(t, c, ctx, info, func(rec arrow.Record, r int) string {
			return rec.Column(1).ValueStr(r) + "." + rec.Column(2).ValueStr(r)
		})
		return out
	}
	if got := tables(withPurpose(f.Token(t, "tj-33"), "population-statistics")); !slices.Equal(got, []string{"population.person"}) {
		t.Errorf("statistics bureau's tables %v, want population.person only", got)
	}
	if got := tables(withPurpose(f.Token(t, "tj-33"), "land-resource-statistics")); !slices.Equal(got, []string{"resource.land_parcel"}) {
		t.Errorf("statistics bureau's tables for land statistics %v, want resource.land_parcel only", got)
	}
	if got := tables(withPurpose(f.Token(t, "mz-3301/dibao-review"), "minimum-living-allowance-review")); len(got) != 0 {
		t.Errorf("a department with no aggregate agreement lists %v, want nothing", got)
	}
	info, err := c.GetCatalogs(withPurpose(f.Token(t, "mz-3301/dibao-review"), "minimum-living-allowance-review"))
	if err != nil {
		t.Fatal(err)
	}
	rdr, err := c.DoGet(as(f.Token(t, "mz-3301/dibao-review")), info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(0)
	for rdr.Next() {
		n += rdr.Record().NumRows()
	}
	rdr.Release()
	if n != 0 {
		t.Errorf("catalogs for a department with nothing to aggregate: %d rows, want none", n)
	}
}

// adbcScript is what the README's walkthrough does with pandas through ADBC, and what a
// refusal looks like there; then the same statement through pyarrow's plain Flight
// client, with the Flight SQL command packed by hand (pyarrow has no Flight SQL).
const adbcScript = `
import json, sys
import adbc_driver_flightsql.dbapi as fsql
import pandas as pd
import pyarrow.flight as flight
addr, token, other = sys.argv[1:4]
def connect(tok, purpose):
    return fsql.connect("grpc://" + addr, db_kwargs={
        "adbc.flight.sql.authorization_header": "Bearer " + tok,
        "adbc.flight.sql.rpc.call_header.govx-purpose": purpose})
out = {"errors": {}}
with connect(token, "population-statistics") as conn:
    df = pd.read_sql("SELECT household_region, COUNT(*) AS n FROM population.person GROUP BY household_region ORDER BY household_region", conn)
    out["rows"] = {r: int(n) for r, n in zip(df["household_region"], df["n"])}
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*) AS n FROM population.person WHERE household_region LIKE '3301%'")
    out["city"] = cur.fetchone()[0]
    for name, sql in {"row": "SELECT id_number, name FROM population.person",
                      "column": "SELECT birth_date, COUNT(*) FROM population.person GROUP BY birth_date"}.items():
        try:
            cur.execute(sql)
            cur.fetchall()
        except Exception as e:
            out["errors"][name] = str(e)
    objs = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    info = conn.adbc_get_info()
    out["vendor"] = [info.get("vendor_name"), info.get("vendor_arrow_version")]
    out["tables"] = sorted(s["db_schema_name"] + "." + t["table_name"] for c in objs for s in c["catalog_db_schemas"] for t in s["db_schema_tables"])
with connect(token, "land-resource-statistics") as conn:
    cur = conn.cursor()
    try:
        cur.execute("SELECT COUNT(*) FROM resource.land_parcel WHERE area_m2 < 100")
    except Exception as e:
        out["errors"]["differencing"] = str(e)

def varint(n):
    b = bytearray()
    while True:
        if n < 0x80:
            b.append(n)
            return bytes(b)
        b.append(n & 0x7f | 0x80)
        n >>= 7
def field(no, data):
    return bytes([no << 3 | 2]) + varint(len(data)) + data
query = "SELECT gender, COUNT(*) FROM population.person GROUP BY gender"
cmd = field(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + field(2, field(1, query.encode()))
client = flight.connect("grpc://" + addr)
opts = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer " + token.encode()), (b"govx-purpose", b"population-statistics")])
info = client.get_flight_info(flight.FlightDescriptor.for_command(cmd), opts)
table = client.do_get(info.endpoints[0].ticket, opts).read_all()
out["pyarrow"] = {g: n for g, n in zip(table.column(0).to_pylist(), table.column(1).to_pylist())}
out["pyarrow_suppression"] = table.schema.metadata[b"govx.suppression"].decode()
try:
    client.do_get(info.endpoints[0].ticket, flight.FlightCallOptions(headers=[(b"authorization", b"Bearer " + other.encode())])).read_all()
except flight.FlightError as e:
    out["errors"]["foreign"] = str(e)
print(json.dumps(out))
`

func TestIntegrationADBCAndPyarrowAggregate(t *testing.T) {
	python := testenv.Require(t, testenv.Python)
	f, addr := aggregateFixture(t)
	cmd := exec.Command(python, "-c", adbcScript, addr, f.Token(t, "tj-33"), f.Token(t, "mz-3301/dibao-review"))
	var stderr strings.Builder
	cmd.Stderr = &stderr // ADBC warns there that Flight SQL has no transactions
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s%s", err, out, stderr.String())
	}
	var got struct {
		Rows               map[string]int
		City               int
		Errors             map[string]string
		Tables             []string
		Vendor             []any
		Pyarrow            map[string]int
		PyarrowSuppression string `json:"pyarrow_suppression"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("python printed %q: %v", out, err)
	}
	hz, nb := len(f.IDs["3301"]), len(f.IDs["3302"])
	if len(got.Rows) != 2 || got.Rows["330106"] != hz || got.Rows["330203"] != nb {
		t.Errorf("pandas through ADBC: %v, want 330106=%d and 330203=%d, 330108 suppressed", got.Rows, hz, nb)
	}
	// The nested scope adds nothing: Hangzhou's total is 330106's alone, not 330108's
	// three persons more, so subtracting the two answers recovers nothing.
	if got.City != hz {
		t.Errorf("Hangzhou total %d, want %d (the suppressed cell in no answer)", got.City, hz)
	}
	for name, code := range map[string]string{"row": "row_query", "column": "column_not_granted", "differencing": "filter_not_groupable", "foreign": "foreign_ticket"} {
		if !strings.Contains(got.Errors[name], code) {
			t.Errorf("%s query refused with %q, want reason %s", name, got.Errors[name], code)
		}
	}
	if fmt.Sprint(got.Vendor) != "[govx 17]" {
		t.Errorf("ADBC get_info (GetSqlInfo) says vendor %v, want govx, Arrow 17", got.Vendor)
	}
	if !slices.Equal(got.Tables, []string{"population.person"}) {
		t.Errorf("ADBC get_objects lists %v, want population.person only", got.Tables)
	}
	// By gender: 600 men in scope 33 are 400; the three women of 330108 are a cell of 3.
	if len(got.Pyarrow) != 1 || got.Pyarrow["1"] != hz+nb || got.PyarrowSuppression != "cells of fewer than 10 rows are suppressed: not shown and counted in no group" {
		t.Errorf("pyarrow: %v (%q), want 1=%d and the suppression note", got.Pyarrow, got.PyarrowSuppression, hz+nb)
	}
}

// An aggregate-only department sees no row count of what it may only aggregate: an
// exact count includes suppressed cells, so one person added to a suppressed cell would
// show in it and in no answer.
func TestAggregateOnlyFlightsHaveNoRowCount(t *testing.T) {
	f, addr := aggregateFixture(t)
	counts := func(token string) map[string]int64 {
		t.Helper()
		lf, err := raw(t, addr).ListFlights(as(token), &flight.Criteria{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for {
			fi, err := lf.Recv()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			var cmd map[string]string
			json.Unmarshal(fi.FlightDescriptor.Cmd, &cmd)
			out[cmd["dataset"]] = fi.TotalRecords
		}
	}
	stats, dibao := f.Token(t, "tj-33"), f.Token(t, "mz-3301/dibao-review")
	if n, ok := counts(stats)["population.person"]; !ok || n != -1 {
		t.Errorf("ListFlights gives the aggregate-only department population.person with total_records %d (listed %v), want -1", n, ok)
	}
	if n := counts(dibao)["population.person"]; n != int64(len(f.IDs["3301"])+3) {
		t.Errorf("ListFlights gives a reading department %d records, want %d", n, len(f.IDs["3301"])+3)
	}
	f.Apply(t, f.Table, map[string]any{"id_number": fixID(t, "330108199001040019"), "name": "王五", "gender": "1", "birth_date": "1990-01-04",
		"household_region": "330108", "status": "alive", "updated_at": "2026-11-01T00:00:00Z"})
	if n := counts(stats)["population.person"]; n != -1 {
		t.Errorf("after a person joined a suppressed cell, total_records %d, want -1", n)
	}
	ctx := withPurpose(stats, "population-statistics")
	info, err := sqlClient(t, addr).Execute(ctx, "SELECT gender, COUNT(*) FROM population.person GROUP BY gender")
	if err != nil {
		t.Fatal(err)
	}
	if info.TotalRecords != -1 {
		t.Errorf("GetFlightInfo of an aggregate gives total_records %d, want -1", info.TotalRecords)
	}
}
