package main

import (
	"database/sql"
	"encoding/csv"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"govx/schemas/ident"
)

// checkAggregatesAtSource runs the statistics bureau's aggregates through `govx
// aggregate` and compares every figure with the same GROUP BY computed independently in
// the providers' own SQLite databases: the cells of the agreement's partition within
// Zhejiang, those under 10 rows dropped, the rest summed per county. Rows the connectors
// refused (the generator's planted invalid rows) are left out on the source side by the
// checks they fail.
func checkAggregatesAtSource(t *testing.T, e *demoEnv) {
	sources := filepath.Join(e.work, "govx-demo", "sources")
	profile := " --profile govx-demo/profiles/tj-33.yaml --format csv"

	// Land parcels: count and area by county, in SQL on the source.
	db := openSource(t, filepath.Join(sources, "zrzyb.db"))
	want := map[string]string{}
	rows, err := db.Query(`WITH valid AS (
	    SELECT qhdm, tdyt, CASE WHEN qllx IN ('集体土地所有权', '国有土地所有权') THEN 'ownership' ELSE 'use_right' END AS rt,
	           CAST(ROUND(zdmj * 100) AS INTEGER) AS cents
	    FROM bdc_zd
	    WHERE date(replace(djrq, '/', '-')) = replace(djrq, '/', '-')
	      AND (coalesce(qlr_tyshxydm, '') <> '' OR coalesce(qlr_sfzh, '') <> '')),
	  cells AS (SELECT qhdm, tdyt, rt, COUNT(*) AS n, SUM(cents) AS cents FROM valid WHERE qhdm LIKE '33%' GROUP BY qhdm, tdyt, rt)
	SELECT qhdm, SUM(n), SUM(cents) FROM cells WHERE n >= 10 GROUP BY qhdm`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var county string
		var n, cents int64
		if err := rows.Scan(&county, &n, &cents); err != nil {
			t.Fatal(err)
		}
		want[county] = fmt.Sprintf("%d,%d.%02d", n, cents/100, cents%100)
	}
	rows.Close()
	got := aggregateCSV(t, e, `govx aggregate "SELECT region_code, COUNT(*) AS n, SUM(area_m2) AS area FROM resource.land_parcel GROUP BY region_code" --purpose land-resource-statistics`+profile)
	if len(want) == 0 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parcels by county through the exchange:\n%v\nfrom the source:\n%v", got, want)
	}

	// Persons: count by county; the cells are county × gender × status.
	db = openSource(t, filepath.Join(sources, "gab.db"))
	cells := map[[3]string]int{}
	rows, err = db.Query(`SELECT sfzh, csrq, hjdz_qhdm, xb, ryzt FROM rk_jbxx WHERE hjdz_qhdm LIKE '33%'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, birth, county, gender, status string
		if err := rows.Scan(&id, &birth, &county, &gender, &status); err != nil {
			t.Fatal(err)
		}
		if _, err := time.Parse("20060102", birth); err != nil || ident.CheckCitizenID(id) != nil {
			continue // planted invalid: in the dead-letter topic, not the exchange
		}
		cells[[3]string{county, gender, status}]++
	}
	rows.Close()
	wantP, suppressed := map[string]string{}, 0
	counts := map[string]int{}
	for c, n := range cells {
		if n < 10 {
			suppressed++
			continue
		}
		counts[c[0]] += n
	}
	for c, n := range counts {
		wantP[c] = fmt.Sprint(n)
	}
	line := `govx aggregate "SELECT household_region, COUNT(*) AS n FROM population.person GROUP BY household_region" --purpose population-statistics` + profile
	gotP := aggregateCSV(t, e, line)
	if len(wantP) == 0 || fmt.Sprint(gotP) != fmt.Sprint(wantP) {
		t.Errorf("persons by county through the exchange:\n%v\nfrom the source:\n%v", gotP, wantP)
	}
	_, errOut, _ := e.run(line)
	if !strings.Contains(errOut, "; cells of fewer than 10 rows are suppressed: not shown and counted in no group") || suppressed == 0 {
		t.Errorf("the command said %q, want the suppression note (the source has %d cells under 10)", errOut, suppressed)
	}

	// Rows, and a predicate that could cut a suppressed cell out, are refused.
	for q, reason := range map[string]string{
		"SELECT id_number, household_region FROM population.person":      "row_query",
		"SELECT COUNT(*) FROM resource.land_parcel WHERE area_m2 > 5000": "filter_not_groupable",
	} {
		purpose := "population-statistics"
		if strings.Contains(q, "land_parcel") {
			purpose = "land-resource-statistics"
		}
		out, errOut, err := e.run(`govx aggregate "` + q + `" --purpose ` + purpose + profile)
		if err == nil || !strings.Contains(errOut, reason) {
			t.Errorf("%s: want refused with %s, got %v\n%s%s", q, reason, err, out, errOut)
		}
	}
}

func openSource(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// aggregateCSV runs a `govx aggregate --format csv` line and returns its rows keyed by
// the first column, the other columns joined by commas.
func aggregateCSV(t *testing.T, e *demoEnv, line string) map[string]string {
	t.Helper()
	out, errOut, err := e.run(line)
	if err != nil {
		t.Fatalf("%s: %v\n%s", line, err, errOut)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("%s printed no CSV: %v\n%s", line, err, out)
	}
	got := map[string]string{}
	for _, r := range recs[1:] {
		got[r[0]] = strings.Join(r[1:], ",")
	}
	return got
}
