package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

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
