package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"govx/connectors/synth"
	"govx/exchange"
	"govx/exchange/server/servertest"
	"govx/internal/testenv"
	"govx/policies"
	"govx/schemas/ident"
)

// srcRow is a source row under its dataset's field names, as value text ("<null>" for
// NULL), computed from the generator's native rows: the expectation of every allow.
type srcRow map[string]string

// nativeFields maps each dataset field the test compares to its department's native
// column (connectors/examples/*.sqlite.yaml), with the value mapping the config declares.
var nativeFields = map[string]map[string]string{
	synth.DeptPopulation: {"id_number": "sfzh", "name": "xm", "birth_date": "csrq", "household_region": "hjdz_qhdm",
		"address": "hjdz_xz", "phone": "lxdh", "status": "ryzt"},
	synth.DeptMarket: {"uscc": "tyshxydm", "name": "qymc", "legal_rep_id_number": "fddbr_zjhm", "legal_rep_name": "fddbr_xm",
		"region_code": "zs_qhdm", "status": "djzt"},
	synth.DeptLand: {"parcel_code": "zddm", "region_code": "qhdm", "land_use": "tdyt", "right_type": "qllx",
		"holder_uscc": "qlr_tyshxydm", "holder_id_number": "qlr_sfzh"},
	synth.DeptStatistics: {"indicator_code": "zbdm", "region_code": "qhdm", "period": "tjq", "unit": "jldw"},
}

var valueMaps = map[string]map[string]string{
	"population.status":   {"1": "alive", "2": "deceased", "3": "migrated"},
	"organization.status": {"存续": "active", "吊销": "revoked", "注销": "cancelled"},
	"parcel.right_type": {"国有建设用地使用权": "use_right", "国有农用地使用权": "use_right", "集体建设用地使用权": "use_right",
		"宅基地使用权": "use_right", "集体土地所有权": "ownership", "国有土地所有权": "ownership"},
}

// sourceRows returns the valid rows of dept's source table (the generator plants the
// invalid ones and says which; the connectors sent those to the DLQ).
func (e *e2eEnv) sourceRows(dept string) []srcRow {
	tab := synth.TableOf(dept)
	idx := map[string]int{}
	for i, n := range tab.ColumnNames() {
		idx[n] = i
	}
	var out []srcRow
	for i, row := range e.gen.Rows(dept) {
		if e.gen.IsPlantedInvalid(dept, i) {
			continue
		}
		r := srcRow{}
		for field, col := range nativeFields[dept] {
			v := row[idx[col]]
			if v == nil {
				r[field] = "<null>"
				continue
			}
			r[field] = fmt.Sprint(v)
		}
		switch dept {
		case synth.DeptPopulation:
			b := r["birth_date"]
			r["birth_date"] = b[:4] + "-" + b[4:6] + "-" + b[6:]
			r["status"] = valueMaps["population.status"][r["status"]]
		case synth.DeptMarket:
			r["status"] = valueMaps["organization.status"][r["status"]]
		case synth.DeptLand:
			r["right_type"] = valueMaps["parcel.right_type"][r["right_type"]]
		case synth.DeptStatistics:
			r["key"] = r["indicator_code"] + "|" + r["region_code"] + "|" + r["period"]
		}
		out = append(out, r)
	}
	return out
}

// The masks, written again from ARCHITECTURE.md ("Masks") rather than imported, so the
// exchange's own implementation is what is tested.
func wantIDCard(s string) string { return s[:6] + "********" + s[14:] }

func wantName(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return string(r) + strings.Repeat("*", utf8.RuneCountInString(s[n:]))
}

// wantAddress keeps the address up to the county-level name of the row's region.
func wantAddress(t *testing.T, addr, region string) string {
	r, ok := ident.LookupRegion(region)
	if !ok {
		t.Fatalf("region %s is not a demo county", region)
	}
	prefix := r.ProvinceName + r.CityName + r.Name
	if !strings.HasPrefix(addr, prefix) || len(addr) == len(prefix) {
		t.Fatalf("test data: address %q does not continue past %q", addr, prefix)
	}
	return prefix
}

// wantHash is the hash mask of the consumer department dept: HMAC-SHA256 under a key
// derived from the exchange's secret for that department, 32 hex characters.
func (e *e2eEnv) wantHash(dept, v string) string {
	secret, err := os.ReadFile(e.cfg.SecretFile)
	if err != nil {
		e.t.Fatal(err)
	}
	mac := func(key []byte, msg string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	master := mac(secret, "govx-mask-hash")
	return hex.EncodeToString(mac(mac(master, "govx-mask-hash:"+dept), v))[:32]
}

func renderRow(r map[string]string) string {
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + r[k] + "; ")
	}
	return b.String()
}

// expectRows checks that rows are exactly the source rows whose region field starts
// with prefix ("" for all), each as want renders it.
func expectRows(t *testing.T, rows []map[string]string, src []srcRow, regionField, prefix string, want func(srcRow) map[string]string) {
	t.Helper()
	wantSet := map[string]bool{}
	for _, s := range src {
		if strings.HasPrefix(s[regionField], prefix) {
			wantSet[renderRow(want(s))] = true
		}
	}
	if len(wantSet) < 5 {
		t.Fatalf("test data: only %d source rows in scope %q; the check would prove little", len(wantSet), prefix)
	}
	got := map[string]bool{}
	bad := 0
	for _, r := range rows {
		k := renderRow(r)
		if got[k] {
			t.Errorf("row returned twice: %s", k)
		}
		got[k] = true
		if !wantSet[k] {
			if bad++; bad <= 3 {
				t.Errorf("unexpected row (outside scope %q, or masked wrongly): %s", prefix, k)
			}
		}
	}
	missing := 0
	for k := range wantSet {
		if !got[k] {
			if missing++; missing <= 3 {
				t.Errorf("missing row: %s", k)
			}
		}
	}
	if bad > 0 || missing > 0 {
		t.Fatalf("%d rows returned, want the %d source rows with %s prefix %q: %d unexpected, %d missing",
			len(rows), len(wantSet), regionField, prefix, bad, missing)
	}
}

func pick(s srcRow, cols ...string) map[string]string {
	out := map[string]string{}
	for _, c := range cols {
		out[c] = s[c]
	}
	return out
}

func TestIntegrationPolicyRulesEndToEnd(t *testing.T) {
	e := startE2E(t)
	ctx := context.Background()
	persons := e.sourceRows(synth.DeptPopulation)
	orgs := e.sourceRows(synth.DeptMarket)
	parcels := e.sourceRows(synth.DeptLand)
	indicators := e.sourceRows(synth.DeptStatistics)

	// pull pulls as subject and checks the column order of an allowed result.
	pull := func(t *testing.T, subject string, cmd exchange.PullCmd, cols ...string) []map[string]string {
		t.Helper()
		rows, schema, _, err := servertest.Pull(t, e.client(subject), cmd)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		var names []string
		for _, f := range schema.Fields() {
			names = append(names, f.Name)
		}
		if !slices.Equal(names, cols) {
			t.Fatalf("%s got columns %v, want %v", subject, names, cols)
		}
		return rows
	}
	// deny pulls as subject and checks the error's codes and that its text names what
	// the rule says it names.
	deny := func(t *testing.T, subject string, cmd exchange.PullCmd, want string, mentions ...string) {
		t.Helper()
		_, _, _, err := servertest.Pull(t, e.client(subject), cmd)
		checkDenied(t, subject, err, want, mentions...)
	}
	person := func(region string) srcRow {
		for _, p := range persons {
			if strings.HasPrefix(p["household_region"], region) {
				return p
			}
		}
		t.Fatalf("no person in %s", region)
		return nil
	}

	t.Run("denials carry the policy's reason code", func(t *testing.T) {
		for _, c := range []struct {
			rule     string
			as       string
			cmd      exchange.PullCmd
			want     string
			mentions []string
		}{
			{"unknown department", "xx-9999/sys", exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao},
				"permission_denied,unknown_department", []string{"xx-9999"}},
			{"unknown dataset", "mz-3301/dibao-review", exchange.PullCmd{Dataset: "population.people", Purpose: purposeDibao},
				"unknown_dataset", []string{"population.people"}},
			{"unknown column", "mz-3301/dibao-review", exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao, Columns: []string{"name", "blood_type"}},
				"unknown_column", []string{"blood_type"}},
			{"conditional, no agreement", "zj-3205/housing-security", exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao},
				"permission_denied,no_agreement", []string{"苏州市住房和城乡建设局"}},
			{"agreement names another system", "zj-3205/other-system", exchange.PullCmd{Dataset: "resource.land_parcel", Purpose: "housing-security-qualification"},
				"permission_denied,system_not_granted", []string{"other-system"}},
			{"conditional, no purpose", "mz-3301/dibao-review", exchange.PullCmd{Dataset: "population.person"},
				"permission_denied,purpose_required", nil},
			{"unknown purpose", "mz-3301/dibao-review", exchange.PullCmd{Dataset: "population.person", Purpose: "curiosity"},
				"permission_denied,unknown_purpose", []string{"curiosity", "minimum-living-allowance-review, temporary-assistance"}},
			{"purpose of another agreement of the dataset", "mz-3201/case-system", exchange.PullCmd{Dataset: "population.person", Purpose: "pension-qualification-review"},
				"permission_denied,unknown_purpose", []string{"minimum-living-allowance-review, temporary-assistance"}},
			{"agreement not yet valid", "mz-3301/dibao-review", exchange.PullCmd{Dataset: "population.person", Purpose: "temporary-assistance"},
				"permission_denied,agreement_not_yet_valid", []string{"AGR-2027-0001", "2027-01-01"}},
			{"agreement expired", "rs-33/social-insurance", exchange.PullCmd{Dataset: "population.person", Purpose: "social-insurance-enrollment"},
				"permission_denied,agreement_expired", []string{"AGR-2025-0031", "2025-12-31"}},
			{"verify-only agreement, read", "wj-3302/birth-cert", exchange.PullCmd{Dataset: "population.person", Purpose: "birth-certificate-issuance"},
				"permission_denied,verify_only", []string{"AGR-2026-0003"}},
			{"action not granted (changes)", "mz-3201/case-system", exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao,
				Since: e.cursor("mz-3201/case-system", exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao, Limit: 1})},
				"permission_denied,action_not_granted", []string{"AGR-2026-0002", "read, lookup"}},
			{"columns outside the grant", "mz-3301/dibao-review", exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao, Columns: []string{"name", "phone", "address"}},
				"permission_denied,column_not_granted", []string{"phone, address"}},
			{"columns outside the grant (land parcels)", "zj-3205/housing-security", exchange.PullCmd{Dataset: "resource.land_parcel",
				Purpose: "housing-security-qualification", Columns: []string{"parcel_code", "longitude"}},
				"permission_denied,column_not_granted", []string{"longitude"}},
		} {
			t.Run(c.rule, func(t *testing.T) { deny(t, c.as, c.cmd, c.want, c.mentions...) })
		}
	})

	t.Run("verify-only and action rules for lookup and verify", func(t *testing.T) {
		p := person("3302")
		key, _ := json.Marshal(p["id_number"])
		wj := e.client("wj-3302/birth-cert")
		match, err := wj.Verify(ctx, "population.person", exchange.VerifyCmd{Key: key, Purpose: "birth-certificate-issuance",
			Claims: map[string]any{"name": p["name"], "birth_date": "1800-01-01"}})
		if err != nil || len(match) != 2 || !match["name"] || match["birth_date"] {
			t.Fatalf("verify-only agreement, verify: %v, %v; want name true, birth_date false", match, err)
		}
		_, err = wj.Lookup(ctx, "population.person", exchange.LookupCmd{Key: key, Purpose: "birth-certificate-issuance"})
		checkDenied(t, "wj-3302 lookup", err, "permission_denied,verify_only")
		nj := person("3201")
		key, _ = json.Marshal(nj["id_number"])
		_, err = e.client("mz-3201/case-system").Verify(ctx, "population.person", exchange.VerifyCmd{Key: key, Purpose: purposeDibao,
			Claims: map[string]any{"name": nj["name"]}})
		checkDenied(t, "mz-3201 verify", err, "permission_denied,action_not_granted", "read, lookup")
		rec, err := e.client("mz-3201/case-system").Lookup(ctx, "population.person", exchange.LookupCmd{Key: key, Purpose: purposeDibao})
		if err != nil || rec["id_number"] != nj["id_number"] || rec["name"] != nj["name"] || rec["status"] != nj["status"] {
			t.Fatalf("mz-3201 lookup of a Nanjing person: %v, %v", rec, err)
		}
		// Row scope holds for lookups: a Hangzhou person is "not found" for Nanjing.
		key, _ = json.Marshal(person("3301")["id_number"])
		_, err = e.client("mz-3201/case-system").Lookup(ctx, "population.person", exchange.LookupCmd{Key: key, Purpose: purposeDibao})
		checkDenied(t, "mz-3201 lookup outside its city", err, "not_found")
	})

	t.Run("discover: each department's catalog", func(t *testing.T) {
		for as, want := range map[string][]string{
			"mz-3301/dibao-review":     {"economy.indicator", "legal_entity.organization", "license.certificate", "population.person", "resource.land_parcel"},
			"wj-3302/birth-cert":       {"economy.indicator", "legal_entity.organization", "license.certificate", "population.person"}, // verify-only still discovers
			"zj-3205/housing-security": {"economy.indicator", "legal_entity.organization", "license.certificate", "resource.land_parcel"},
			"zj-3205/other-system":     {"economy.indicator", "legal_entity.organization"},
			"mz-3201/case-system":      {"economy.indicator", "legal_entity.organization", "population.person"},
			"xx-9999/sys":              nil,
		} {
			list, err := e.client(as).Catalog(ctx)
			if err != nil {
				t.Fatalf("%s catalog: %v", as, err)
			}
			var got []string
			for _, d := range list {
				got = append(got, d.ID)
			}
			sort.Strings(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s catalog %v, want %v", as, got, want)
			}
		}
	})

	t.Run("conditional, live agreement, city scope: agreement columns and masks", func(t *testing.T) {
		rows := pull(t, "mz-3301/dibao-review", exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao},
			"id_number", "name", "household_region", "birth_date")
		expectRows(t, rows, persons, "household_region", "3301", func(s srcRow) map[string]string {
			r := pick(s, "name", "household_region", "birth_date")
			r["id_number"] = wantIDCard(s["id_number"])
			return r
		})
		// The caller's filter is ANDed with the scope: it narrows, never widens.
		rows = pull(t, "mz-3301/dibao-review", exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao, Columns: []string{"name", "household_region"},
			Filter: []exchange.Filter{{Column: "household_region", Op: "eq", Value: "330106"}}}, "name", "household_region")
		expectRows(t, rows, persons, "household_region", "330106", func(s srcRow) map[string]string { return pick(s, "name", "household_region") })
		rows = pull(t, "mz-3301/dibao-review", exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao, Columns: []string{"name"},
			Filter: []exchange.Filter{{Column: "household_region", Op: "prefix", Value: "33"}}}, "name")
		if want := countPrefix(persons, "household_region", "3301"); len(rows) != want {
			t.Fatalf("filter wider than the scope: %d rows, want the %d of Hangzhou", len(rows), want)
		}
	})

	t.Run("province scope, columns granted unmasked", func(t *testing.T) {
		rows := pull(t, "rs-33/pension", exchange.PullCmd{Dataset: "population.person", Purpose: "pension-qualification-review"},
			"id_number", "name", "birth_date", "status", "household_region")
		expectRows(t, rows, persons, "household_region", "33", func(s srcRow) map[string]string {
			return pick(s, "id_number", "name", "birth_date", "status", "household_region")
		})
	})

	orgCols := []string{"uscc", "name", "legal_rep_id_number", "legal_rep_name", "region_code"}
	orgMasked := func(s srcRow) map[string]string {
		r := pick(s, "uscc", "name", "region_code")
		r["legal_rep_id_number"] = wantIDCard(s["legal_rep_id_number"])
		r["legal_rep_name"] = wantName(s["legal_rep_name"])
		return r
	}
	t.Run("unconditional, county department: its county, personal fields masked", func(t *testing.T) {
		rows := pull(t, "gxq-3301/industry", exchange.PullCmd{Dataset: "legal_entity.organization", Columns: orgCols}, orgCols...)
		expectRows(t, rows, orgs, "region_code", "330108", orgMasked)
	})

	t.Run("unconditional, national department: every row", func(t *testing.T) {
		rows := pull(t, "tjj/analysis", exchange.PullCmd{Dataset: "legal_entity.organization", Columns: orgCols}, orgCols...)
		expectRows(t, rows, orgs, "region_code", "", orgMasked)
	})

	t.Run("unconditional with a live agreement: its unmasked columns and region apply", func(t *testing.T) {
		cols := []string{"uscc", "legal_rep_id_number", "legal_rep_name", "region_code"}
		rows := pull(t, "sw-33/tax", exchange.PullCmd{Dataset: "legal_entity.organization", Purpose: "tax-registration-check", Columns: cols}, cols...)
		expectRows(t, rows, orgs, "region_code", "33", func(s srcRow) map[string]string { return pick(s, cols...) })
		// Without the agreement's purpose, the same department gets the schema's masks.
		rows = pull(t, "sw-33/tax", exchange.PullCmd{Dataset: "legal_entity.organization", Columns: cols}, cols...)
		expectRows(t, rows, orgs, "region_code", "33", func(s srcRow) map[string]string {
			r := orgMasked(s)
			delete(r, "name")
			return r
		})
	})

	t.Run("unconditional, city department: its city", func(t *testing.T) {
		cols := []string{"indicator_code", "region_code", "period", "unit"}
		rows := pull(t, "mz-3301/dibao-review", exchange.PullCmd{Dataset: "economy.indicator", Columns: cols}, cols...)
		expectRows(t, rows, indicators, "region_code", "3301", func(s srcRow) map[string]string { return pick(s, cols...) })
	})

	t.Run("agreement region: nationwide (000000)", func(t *testing.T) {
		// An unconditional dataset: naming no columns gets every column (the agreement
		// grants its region, not a projection).
		rows := pull(t, "fgw-33/compare", exchange.PullCmd{Dataset: "economy.indicator", Purpose: "regional-economic-comparison"},
			"indicator_code", "region_code", "period", "value", "unit", "published_on", "updated_at")
		for _, r := range rows {
			delete(r, "value") // here the scope matters, not the values
			delete(r, "published_on")
			delete(r, "updated_at")
		}
		expectRows(t, rows, indicators, "region_code", "", func(s srcRow) map[string]string {
			return pick(s, "indicator_code", "region_code", "period", "unit")
		})
		if countPrefix(indicators, "region_code", "33") == len(indicators) {
			t.Fatal("test data: every indicator is in Zhejiang; nationwide scope is not shown")
		}
	})

	t.Run("agreement region wider than the county department's own", func(t *testing.T) {
		cols := []string{"parcel_code", "region_code", "land_use", "area_m2", "right_type", "holder_uscc"}
		rows := pull(t, "gxq-3301/land-review", exchange.PullCmd{Dataset: "resource.land_parcel", Purpose: "industrial-land-review"}, cols...)
		for _, r := range rows {
			delete(r, "area_m2")
		}
		expectRows(t, rows, parcels, "region_code", "3301", func(s srcRow) map[string]string {
			return pick(s, "parcel_code", "region_code", "land_use", "right_type", "holder_uscc")
		})
	})

	hashCols := []string{"parcel_code", "region_code", "holder_uscc", "holder_id_number"}
	hashCmd := exchange.PullCmd{Dataset: "resource.land_parcel", Purpose: "housing-security-qualification", Columns: hashCols}
	t.Run("agreement mask override: hash pseudonym per department (HTTP)", func(t *testing.T) {
		cols := hashCols
		rows := e.pullHTTP(t, "zj-3205/housing-security", hashCmd, cols...)
		persons := 0
		expectRows(t, rows, parcels, "region_code", "3205", func(s srcRow) map[string]string {
			r := pick(s, cols...)
			if id := s["holder_id_number"]; id != "<null>" {
				r["holder_id_number"] = e.wantHash("zj-3205", id)
				persons++
			}
			return r
		})
		if persons == 0 {
			t.Fatal("test data: no parcel held by a person in Suzhou; the hash mask is not shown")
		}
	})

	t.Run("agreement mask override: hash pseudonym per department (Flight)", func(t *testing.T) {
		flightRows := pull(t, "zj-3205/housing-security", hashCmd, hashCols...)
		httpRows := e.pullHTTP(t, "zj-3205/housing-security", hashCmd, hashCols...)
		if len(flightRows) != len(httpRows) || len(flightRows) == 0 {
			t.Fatalf("Flight returned %d rows, HTTP %d", len(flightRows), len(httpRows))
		}
		for i := range flightRows {
			if renderRow(flightRows[i]) != renderRow(httpRows[i]) {
				t.Fatalf("row %d differs: Flight %v, HTTP %v", i, flightRows[i], httpRows[i])
			}
		}
	})

	t.Run("validity follows the clock, boundaries at midnight China time", func(t *testing.T) {
		defer e.setClock(time.Time{})
		tmp := exchange.PullCmd{Dataset: "population.person", Purpose: "temporary-assistance"}
		// AGR-2027-0001 starts 2027-01-01 (UTC+8), that is 2026-12-31T16:00Z.
		start := time.Date(2026, 12, 31, 16, 0, 0, 0, time.UTC)
		e.setClock(start.Add(-time.Second))
		deny(t, "mz-3301/dibao-review", tmp, "permission_denied,agreement_not_yet_valid", "2027-01-01")
		e.setClock(start)
		cols := []string{"id_number", "name", "household_region", "address"}
		rows := pull(t, "mz-3301/dibao-review", tmp, cols...)
		expectRows(t, rows, persons, "household_region", "3301", func(s srcRow) map[string]string {
			return map[string]string{"id_number": wantIDCard(s["id_number"]), "name": wantName(s["name"]),
				"household_region": s["household_region"], "address": wantAddress(t, s["address"], s["household_region"])}
		})
		// AGR-2026-0001 ends with 2027-12-31 (UTC+8), that is 2027-12-31T16:00Z exclusive.
		end := time.Date(2027, 12, 31, 16, 0, 0, 0, time.UTC)
		dibao := exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao, Columns: []string{"household_region"}}
		e.setClock(end.Add(-time.Second))
		rows = pull(t, "mz-3301/dibao-review", dibao, "household_region")
		if want := countPrefix(persons, "household_region", "3301"); len(rows) != want {
			t.Fatalf("last second of AGR-2026-0001: %d rows, want %d", len(rows), want)
		}
		e.setClock(end)
		deny(t, "mz-3301/dibao-review", dibao, "permission_denied,agreement_expired", "AGR-2026-0001", "2027-12-31")
		// Back to the present: the decision cache must not carry a decision across.
		e.setClock(time.Time{})
		pull(t, "mz-3301/dibao-review", dibao, "household_region")
		deny(t, "mz-3301/dibao-review", tmp, "permission_denied,agreement_not_yet_valid")
	})

	t.Run("none (不予共享): denied citing the legal basis, whatever agreements say", func(t *testing.T) {
		// A steward reclassifies economy.indicator as not shared (and withdraws its one
		// agreement, which policy check would otherwise reject); the running exchange
		// reloads the policy directory.
		dir := e.cfg.PoliciesDir
		catFile, agrFile := filepath.Join(dir, "catalog.yaml"), filepath.Join(dir, "agreements.yaml")
		origCat, _ := os.ReadFile(catFile)
		origAgr, _ := os.ReadFile(agrFile)
		rev := e.x.Policy().Revision()
		newCat := replaceOnce(t, string(origCat), "  - dataset: economy.indicator\n    share: unconditional", "  - dataset: economy.indicator\n    share: none")
		i := strings.Index(string(origAgr), "  - id: AGR-2026-0008")
		if i < 0 {
			t.Fatal("test fixture: AGR-2026-0008 not found in agreements.yaml")
		}
		newAgr := string(origAgr[:i])
		restore := func() {
			os.WriteFile(catFile, origCat, 0o644)
			os.WriteFile(agrFile, origAgr, 0o644)
			testenv.WaitFor(t, policyReloadWait, "the original policy to be back", func() bool { return e.x.Policy().Revision() == rev })
		}
		defer restore()
		// The agreement goes first: alone it is a valid policy, so no reload sees a
		// half-made edit.
		if err := os.WriteFile(agrFile, []byte(newAgr), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(catFile, []byte(newCat), 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := policies.Load(dir)
		if err != nil {
			t.Fatalf("the edited policy does not load: %v", err)
		}
		testenv.WaitFor(t, policyReloadWait, "the edited policy to take over", func() bool { return e.x.Policy().Revision() == b.Revision })
		for _, as := range []string{"tjj/analysis", "mz-3301/dibao-review"} {
			deny(t, as, exchange.PullCmd{Dataset: "economy.indicator", Purpose: "regional-economic-comparison"},
				"permission_denied,not_shared", "宏观经济基础信息项")
		}
		list, err := e.client("mz-3301/dibao-review").Catalog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range list {
			if d.ID == "economy.indicator" {
				t.Error("a dataset that is not shared is still listed in the catalog")
			}
		}
	})

	t.Run("every decision is in the audit log with its reason", func(t *testing.T) {
		e.flushAudit()
		for _, code := range []string{"unknown_department", "no_agreement", "system_not_granted", "purpose_required", "unknown_purpose",
			"agreement_not_yet_valid", "agreement_expired", "verify_only", "action_not_granted", "column_not_granted", "not_shared"} {
			if n := e.auditCount("decision = 'deny' AND has(reasons, '" + code + "')"); n == 0 {
				t.Errorf("no denial with reason %s in the ClickHouse audit log", code)
			}
		}
		if n := e.auditCount("decision = 'allow' AND agreement = 'AGR-2027-0001'"); n == 0 {
			t.Error("the allow under AGR-2027-0001 (clock moved) is not in the audit log with its agreement")
		}
	})
}

// pullHTTP pulls over HTTP as an Arrow IPC stream and returns the rows as pullRows
// does, checking the column order.
func (e *e2eEnv) pullHTTP(t *testing.T, subject string, cmd exchange.PullCmd, cols ...string) []map[string]string {
	t.Helper()
	body, _ := json.Marshal(cmd)
	req, err := http.NewRequest("POST", "http://"+e.x.HTTPAddr()+"/v1/datasets/"+cmd.Dataset+"/pull", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token(subject))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/vnd.apache.arrow.stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: HTTP pull %s: %s", subject, resp.Status, msg)
	}
	rdr, err := ipc.NewReader(resp.Body, ipc.WithAllocator(memory.NewGoAllocator()))
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Release()
	var names []string
	for _, f := range rdr.Schema().Fields() {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, cols) {
		t.Fatalf("%s got columns %v over HTTP, want %v", subject, names, cols)
	}
	var rows []map[string]string
	for rdr.Next() {
		rows = servertest.Rows(rows, rdr.Record())
	}
	if err := rdr.Err(); err != nil {
		t.Fatalf("%s: reading the HTTP stream: %v", subject, err)
	}
	return rows
}

// cursor pulls as subject and returns the cursor of the version served.
func (e *e2eEnv) cursor(subject string, cmd exchange.PullCmd) string {
	_, _, cur, err := servertest.Pull(e.t, e.client(subject), cmd)
	if err != nil || cur == "" {
		e.t.Fatalf("%s: pull for a cursor: %q, %v", subject, cur, err)
	}
	return cur
}

func checkDenied(t *testing.T, who string, err error, want string, mentions ...string) {
	t.Helper()
	if got := codes(err); got != want {
		t.Fatalf("%s: got %s (%v), want %s", who, got, err, want)
	}
	for _, m := range mentions {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("%s: the error does not name %q: %v", who, m, err)
		}
	}
}

func countPrefix(rows []srcRow, field, prefix string) int {
	n := 0
	for _, r := range rows {
		if strings.HasPrefix(r[field], prefix) {
			n++
		}
	}
	return n
}

func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if strings.Count(s, old) != 1 {
		t.Fatalf("test fixture: %q occurs %d times, want once", old, strings.Count(s, old))
	}
	return strings.Replace(s, old, new, 1)
}

// policyReloadWait bounds the wait for a policy edit to take effect (the exchange checks
// its policy directory every second).
const policyReloadWait = 20 * time.Second
