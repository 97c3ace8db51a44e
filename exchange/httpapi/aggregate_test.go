package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/ipc"

	"govx/exchange/service/servicetest"
)

func aggregatePath(ds string) string { return "/v1/datasets/" + ds + "/aggregate" }

func TestAggregateOverHTTP(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Persons: 600})
	a := serve(t, f, "127.0.0.1:0")
	tok := f.Token(t, "tj-33")
	resp := a.do(t, req{path: aggregatePath("population.person"), token: tok, accept: "application/x-ndjson", body: map[string]string{
		"sql": "SELECT household_region AS county, COUNT(*) AS persons FROM population.person GROUP BY household_region", "purpose": "population-statistics"}})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	want := `{"county":"330106","persons":200}` + "\n" + `{"county":"330203","persons":200}`
	if got := strings.TrimSpace(string(body)); got != want {
		t.Errorf("answer\n%s\nwant\n%s", got, want)
	}
	if _, ok := resp.Header["Govx-Suppressed-Cells"]; ok {
		t.Errorf("the answer says how many cells were suppressed: %v", resp.Header)
	}
	if resp.Header.Get("Govx-Suppression") != "cells of fewer than 10 rows are suppressed: not shown and counted in no group" || resp.Header.Get("Govx-Min-Group-Size") != "10" || resp.Header.Get("Govx-Agreement") != "AGR-2026-0016" {
		t.Errorf("headers %v", resp.Header)
	}

	for _, tc := range []struct {
		path, sql, token, purpose string
		status                    int
		code, reason              string
	}{
		{aggregatePath("population.person"), "SELECT name, id_number FROM population.person", tok, "population-statistics", 403, "permission_denied", "row_query"},
		{aggregatePath("population.person"), "SELECT phone, COUNT(*) FROM population.person GROUP BY phone", tok, "population-statistics", 403, "permission_denied", "column_not_granted"},
		{aggregatePath("resource.land_parcel"), "SELECT COUNT(*) FROM population.person", tok, "population-statistics", 400, "dataset_mismatch", ""},
		{aggregatePath("population.person"), "SELECT COUNT(*) FROM population.person", f.Token(t, "mz-3301/dibao-review"), dibao, 403, "permission_denied", "action_not_granted"},
		{aggregatePath("population.person"), "SELECT COUNT(*) FROM population.person; DROP TABLE person", tok, "population-statistics", 400, "bad_query", ""},
	} {
		status, eb := errorOf(t, a.do(t, req{path: tc.path, token: tc.token, body: map[string]string{"sql": tc.sql, "purpose": tc.purpose}}))
		reason := ""
		if len(eb.Error.Reasons) > 0 {
			reason = eb.Error.Reasons[0].Code
		}
		if status != tc.status || eb.Error.Code != tc.code || reason != tc.reason {
			t.Errorf("%s: %d %s %q, want %d %s %q", tc.sql, status, eb.Error.Code, reason, tc.status, tc.code, tc.reason)
		}
	}
	// A body that is no JSON object is malformed, not a query left empty.
	for _, body := range []string{"null", " [] ", `"SELECT 1"`} {
		status, eb := errorOf(t, a.do(t, req{path: aggregatePath("population.person"), token: tok, body: body}))
		if status != 400 || eb.Error.Code != "malformed_request" {
			t.Errorf("body %s: %d %s, want 400 malformed_request", body, status, eb.Error.Code)
		}
	}
}

// An aggregate-only department's catalog gives no row count of what it may only
// aggregate (it would count suppressed cells); a reading department's does.
func TestAggregateOnlyCatalogHasNoRowCount(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Persons: 600})
	a := serve(t, f, "127.0.0.1:0")
	rows := func(token, path string) (json.RawMessage, bool) {
		t.Helper()
		resp := a.do(t, req{method: "GET", path: path, token: token})
		defer resp.Body.Close()
		var d map[string]json.RawMessage
		if err := json.NewDecoder(resp.Body).Decode(&d); resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		n, ok := d["rows"]
		return n, ok
	}
	if n, ok := rows(f.Token(t, "tj-33"), "/v1/datasets/population.person"); ok {
		t.Errorf("the aggregate-only department is told population.person has %s rows", n)
	}
	if n, ok := rows(f.Token(t, "mz-3301/dibao-review"), "/v1/datasets/population.person"); !ok || string(n) != strconv.Itoa(len(f.IDs["3301"])) {
		t.Errorf("a reading department is told %s rows, want %d", n, len(f.IDs["3301"]))
	}
	resp := a.do(t, req{method: "GET", path: "/v1/catalog", token: f.Token(t, "tj-33")})
	defer resp.Body.Close()
	var list struct{ Datasets []map[string]json.RawMessage }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Datasets) == 0 {
		t.Fatalf("catalog: %v %v", list, err)
	}
	for _, d := range list.Datasets {
		if n, ok := d["rows"]; ok && string(d["id"]) == `"population.person"` {
			t.Errorf("the catalog tells the aggregate-only department population.person has %s rows", n)
		}
	}
}

// Decimal sums come as the exact text of their scale in every text format, as the Arrow
// stream holds them: 843952.20, not 843952.19999999999998863131622783839703.
func TestAggregateDecimalsExact(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Persons: 30, Registers: true})
	parcels := f.Tables["resource.land_parcel"]
	for i := range 12 {
		f.Apply(t, parcels, map[string]any{"parcel_code": fmt.Sprintf("330106002001GB%05d", i+1), "region_code": "330106", "land_use": "05",
			"area_m2": "70329.35", "right_type": "use_right",
			"holder_id_number": f.Registers.Person, "longitude": 120.1, "latitude": 30.2, "registered_on": "2016-05-01", "updated_at": "2026-11-01T00:00:00Z"})
	}
	a := serve(t, f, "127.0.0.1:0")
	body := map[string]string{"sql": "SELECT land_use, SUM(area_m2) AS s, MAX(area_m2) AS m FROM resource.land_parcel WHERE land_use = '05' GROUP BY land_use",
		"purpose": "land-resource-statistics"}
	answer := func(accept string) string {
		resp := a.do(t, req{path: aggregatePath("resource.land_parcel"), token: f.Token(t, "tj-33"), accept: accept, body: body})
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", accept, resp.StatusCode, b)
		}
		return strings.TrimSpace(string(b))
	}
	if got, want := answer("text/csv"), "land_use,s,m\n05,843952.20,70329.35"; got != want {
		t.Errorf("CSV\n%s\nwant\n%s", got, want)
	}
	if got, want := answer("application/x-ndjson"), `{"land_use":"05","m":"70329.35","s":"843952.20"}`; got != want {
		t.Errorf("NDJSON %s, want %s", got, want)
	}
	rdr, err := ipc.NewReader(strings.NewReader(answer("application/vnd.apache.arrow.stream")))
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Release()
	if !rdr.Next() {
		t.Fatal("no record in the Arrow answer")
	}
	s := rdr.Record().Column(1).(*array.Decimal128)
	if got := s.Value(0).ToString(s.DataType().(*arrow.Decimal128Type).Scale); got != "843952.20" {
		t.Errorf("Arrow sum %s, want 843952.20", got)
	}
}
