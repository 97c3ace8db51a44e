package synth_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"govx/connectors/synth"
	"govx/schemas/license"
)

// keyring returns the issuers' public keys for a seed, as the policy data lists them.
func keyring(t testing.TB, seed uint64) *license.Keyring {
	t.Helper()
	keys := map[string]ed25519.PublicKey{}
	for _, is := range synth.Issuers() {
		keys[is.Code] = synth.IssuerKey(seed, is.Code).Public().(ed25519.PublicKey)
	}
	k, err := license.NewKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestLicences: the e-licence register agrees with the other registers: one
// registration certificate per organization (revoked when the organization is), one
// real-estate certificate per parcel for its holder on its registration date, personal
// licences for distinct adults of the population register; every signature holds
// under its issuer's key for the seed and no other; every type and status occurs.
func TestLicences(t *testing.T) {
	const seed = 11
	g := newGen(t, 4000, seed, 0)
	regs := toDatasets(t, g)
	checkLicences(t, regs, nil)

	ring, other := keyring(t, seed), keyring(t, seed+1)
	issuers := map[string]synth.Issuer{}
	for _, is := range synth.Issuers() {
		issuers[is.Code] = is
	}
	types, statuses := map[string]int{}, map[string]int{}
	for _, rec := range regs["zwfw"] {
		l, err := license.FromRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := ring.Verify(l); err != nil {
			t.Fatalf("licence %s: %v", l.No, err)
		}
		if err := other.Verify(l); !errors.Is(err, license.ErrBadSignature) {
			t.Fatalf("licence %s verifies under seed %d's keys: %v", l.No, seed+1, err)
		}
		is, ok := issuers[l.Issuer]
		if !ok || is.Region != l.IssuerRegion {
			t.Fatalf("licence %s: issuer %s in %s is not a listed issuer (%+v)", l.No, l.Issuer, l.IssuerRegion, is)
		}
		types[l.Type]++
		statuses[rec["status"].(string)]++
		if rec["status"] == "expired" && (rec["valid_until"] == nil || rec["valid_until"].(string) >= "2025-06-30") {
			t.Errorf("licence %s is expired but valid until %v", l.No, rec["valid_until"])
		}
		if rec["status"] == "valid" && rec["valid_until"] != nil && rec["valid_until"].(string) < "2025-06-30" {
			t.Errorf("licence %s is valid but its term ended %v", l.No, rec["valid_until"])
		}
	}
	ds, _ := catalog(t).Dataset("license.certificate")
	typ, _ := ds.Field("licence_type")
	for _, c := range typ.Codes {
		if types[c.Code] == 0 {
			t.Errorf("no licence of type %s (%s)", c.Code, c.Title.Zh)
		}
	}
	for _, s := range []string{"valid", "suspended", "revoked", "expired"} {
		if statuses[s] == 0 {
			t.Errorf("no licence is %s (statuses: %v)", s, statuses)
		}
	}
	t.Logf("%d licences: %v; %v", len(regs["zwfw"]), types, statuses)
}

// checkLicences asserts what the e-licence register owes the other registers. Rows
// listed in skip (planted invalid) are left out on both sides; when licences are
// planted invalid, only their references are checked, not that every organization
// and parcel has its certificate (a planted one may be that certificate).
func checkLicences(t *testing.T, regs registers, skip map[string]map[int]bool) {
	t.Helper()
	complete := len(skip["zwfw"]) == 0
	persons := map[string]map[string]any{}
	for i, p := range regs["gab"] {
		if !skip["gab"][i] {
			persons[p["id_number"].(string)] = p
		}
	}
	orgs := map[string]map[string]any{}
	for i, o := range regs["scjgj"] {
		if !skip["scjgj"][i] {
			orgs[o["uscc"].(string)] = o
		}
	}
	registration := map[string]string{"enterprise": "business_licence", "public_institution": "public_institution_certificate",
		"social_organization": "social_organization_certificate", "government": "uscc_certificate"}
	regCerts := map[string]int{}
	realEstate := map[string]map[string]any{} // holder|issued_on -> licence
	personal := map[string]string{}
	for i, l := range regs["zwfw"] {
		if skip["zwfw"][i] {
			continue
		}
		typ := l["licence_type"].(string)
		if u, ok := l["holder_uscc"].(string); ok {
			o, found := orgs[u]
			if !found {
				t.Fatalf("licence %s: holder %s is not a registered organization", l["licence_no"], u)
			}
			if o["name"] != l["holder_name"] {
				t.Fatalf("licence %s: holder named %s, the register says %s", l["licence_no"], l["holder_name"], o["name"])
			}
			if typ == registration[o["org_type"].(string)] {
				regCerts[u]++
				if (o["status"] == "active") != (l["status"] != "revoked") {
					t.Errorf("licence %s is %s, its organization %s is %s", l["licence_no"], l["status"], u, o["status"])
				}
			}
		} else {
			id := l["holder_id_number"].(string)
			p, found := persons[id]
			if !found {
				t.Fatalf("licence %s: holder %s is not in the population register", l["licence_no"], id)
			}
			if p["name"] != l["holder_name"] {
				t.Fatalf("licence %s: holder named %s, the register says %s", l["licence_no"], l["holder_name"], p["name"])
			}
			if typ != "real_estate_certificate" {
				if prev, dup := personal[id]; dup {
					t.Errorf("person %s holds two personal licences: %s and %s", id, prev, l["licence_no"])
				}
				personal[id] = l["licence_no"].(string)
				if age := yearOf(l["issued_on"]) - yearOf(p["birth_date"]); age < 18 {
					t.Errorf("licence %s (%s) issued to %s at age %d", l["licence_no"], typ, id, age)
				}
			}
		}
		if typ == "real_estate_certificate" {
			holder, _ := l["holder_uscc"].(string)
			if holder == "" {
				holder = l["holder_id_number"].(string)
			}
			realEstate[holder+"|"+l["issued_on"].(string)] = l
		}
	}
	for u := range orgs {
		if regCerts[u] > 1 || complete && regCerts[u] != 1 {
			t.Errorf("organization %s has %d registration certificates, want 1", u, regCerts[u])
		}
	}
	for i, p := range regs["zrzyb"] {
		if skip["zrzyb"][i] {
			continue
		}
		holder, _ := p["holder_uscc"].(string)
		if holder == "" {
			holder = p["holder_id_number"].(string)
		}
		if complete && realEstate[holder+"|"+p["registered_on"].(string)] == nil {
			t.Errorf("parcel %s: no real-estate certificate for %s issued on %s", p["parcel_code"], holder, p["registered_on"])
		}
	}
	if len(personal) == 0 {
		t.Error("no personal licences")
	}
}

func yearOf(v any) int {
	s := v.(string)
	return int(s[0]-'0')*1000 + int(s[1]-'0')*100 + int(s[2]-'0')*10 + int(s[3]-'0')
}

// TestShippedIssuersMatch: the shipped policies/issuers.yaml holds the public keys of
// seed 1, the demo's default, exactly as IssuersYAML writes them.
func TestShippedIssuersMatch(t *testing.T) {
	shipped, err := os.ReadFile(filepath.Join("..", "..", "policies", "issuers.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := synth.IssuersYAML(1); !bytes.Equal(shipped, want) {
		t.Fatalf("policies/issuers.yaml differs from synth.IssuersYAML(1); regenerate it with\n  go run ./cmd/govx gen --seed 1 --issuers policies/issuers.yaml --to csv:/tmp/x --departments zwfw")
	}
	if bytes.Equal(synth.IssuersYAML(1), synth.IssuersYAML(2)) {
		t.Fatal("two seeds give the same issuer keys")
	}
}

// TestLicenceIndex: the licence table gets its (cursor, key) index in SQLite, the
// order connectors page in (the SQL servers are checked by the integration test).
func TestLicenceIndex(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	g, err := synth.New(synth.Options{Scale: 100, Seed: 1, Departments: []string{synth.DeptLicence}})
	if err != nil {
		t.Fatal(err)
	}
	w, err := synth.Open(ctx, "sqlite:"+dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := synth.Generate(ctx, g, w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	db := openSQL(t, "sqlite", "file:"+synth.SQLitePath(dir, synth.DeptLicence)+"?mode=ro")
	var plan string
	row := db.QueryRow("EXPLAIN QUERY PLAN SELECT zzbh FROM dzzz_zzxx WHERE (gxsj, zzbh) > ('2024-01-01 00:00:00', '') ORDER BY gxsj, zzbh LIMIT 10")
	var id, parent, notused int
	if err := row.Scan(&id, &parent, &notused, &plan); err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatal(err)
	}
	if !strings.Contains(plan, "dzzz_zzxx_gxsj_zzbh") {
		t.Fatalf("a connector's page does not use the (gxsj, zzbh) index: %q", plan)
	}
}

// TestEveryTableHasTheCursorIndex: every generated department table is indexed on
// (cursor, key), the order connectors page in, so a snapshot is linear and a poll reads
// only what changed instead of scanning the whole table.
func TestEveryTableHasTheCursorIndex(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	g, err := synth.New(synth.Options{Scale: 200, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	w, err := synth.Open(ctx, "sqlite:"+dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := synth.Generate(ctx, g, w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	for _, tc := range []struct{ dept, table, key string }{
		{synth.DeptPopulation, "rk_jbxx", "sfzh"},
		{synth.DeptMarket, "scztdj", "tyshxydm"},
		{synth.DeptLand, "bdc_zd", "zddm"},
		{synth.DeptStatistics, "tj_zbsj", "zbdm"},
		{synth.DeptLicence, "dzzz_zzxx", "zzbh"},
	} {
		db := openSQL(t, "sqlite", "file:"+synth.SQLitePath(dir, tc.dept)+"?mode=ro")
		var id, parent, notused int
		var plan string
		q := "EXPLAIN QUERY PLAN SELECT " + tc.key + " FROM " + tc.table + " WHERE gxsj > '2024-01-01 00:00:00' ORDER BY gxsj, " + tc.key + " LIMIT 10"
		if err := db.QueryRow(q).Scan(&id, &parent, &notused, &plan); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(plan, "INDEX "+tc.table+"_gxsj_") {
			t.Errorf("%s: a connector's poll does not use a (gxsj, key) index: %q", tc.table, plan)
		}
	}
}
