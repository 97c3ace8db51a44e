package servicetest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"testing"

	"govx/exchange/service"
	"govx/exchange/store"
	"govx/schemas"
	"govx/schemas/ident"
	"govx/schemas/license"
)

// Registers are the linked records a fixture built with Config.Registers holds about
// its first Hangzhou person: an organization they represent, a parcel they hold, a
// driving licence of theirs and the organization's business licence, each licence
// signed by its issuer's test key (the service's keyring holds those keys).
type Registers struct {
	Person  string // the citizen ID (IDs["3301"][0])
	Org     string // USCC of the organization the person represents (Hangzhou)
	Parcel  string // parcel code of the parcel the person holds (Hangzhou)
	Licence string // the person's driving licence
	// OrgLicence is the organization's business licence.
	OrgLicence string
	// Digests are the licences' content digests, by licence number.
	Digests map[string]string
	// Records are the records as applied, by dataset and key: change one and Apply it
	// with Fixture.Apply.
	Records map[string]map[string]map[string]any
}

// testIssuers are the issuers the fixture signs licences as.
var testIssuers = map[string]ed25519.PrivateKey{"ga-3301": testKey("ga-3301"), "scjg-3301": testKey("scjg-3301")}

func testKey(code string) ed25519.PrivateKey {
	sum := sha256.Sum256([]byte("govx servicetest issuer " + code))
	return ed25519.NewKeyFromSeed(sum[:])
}

// keyring holds the test issuers' public keys.
func keyring() *license.Keyring {
	pub := map[string]ed25519.PublicKey{}
	for code, k := range testIssuers {
		pub[code] = k.Public().(ed25519.PublicKey)
	}
	k, err := license.NewKeyring(pub)
	if err != nil {
		panic(err)
	}
	return k
}

// Sign signs a licence record as its issuer (one of the fixture's test issuers).
func Sign(t testing.TB, rec map[string]any) {
	t.Helper()
	l, err := license.FromRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := license.Sign(testIssuers[l.Issuer], l)
	if err != nil {
		t.Fatal(err)
	}
	rec["issuer_signature"] = sig
}

func uscc(t testing.TB, body17 string) string {
	c, err := ident.USCCCheckChar(body17)
	if err != nil {
		t.Fatal(err)
	}
	return body17 + string(c)
}

// addRegisters fills the other registers' tables with the records linked to the first
// Hangzhou person, and an organization of Nanjing with another representative.
func (f *Fixture) addRegisters(t testing.TB, cat *schemas.Catalog, tables map[string]*store.Table) []service.Option {
	p := f.IDs["3301"][0]
	r := &Registers{Person: p, Org: uscc(t, "91330106MA2H00001"), Parcel: "330106001001GB00001",
		Licence: "JSZ-330106-000001", OrgLicence: "YYZZ-330106-000001", Digests: map[string]string{},
		Records: map[string]map[string]map[string]any{}}
	other := uscc(t, "91320102MA1N00002")
	stamp := "2026-11-01T00:00:00Z"
	orgs := []map[string]any{
		{"uscc": r.Org, "name": "杭州示例科技有限公司", "org_type": "enterprise", "legal_rep_id_number": p, "legal_rep_name": "张三",
			"established_on": "2015-06-01", "status": "active", "region_code": "330106", "updated_at": stamp},
		{"uscc": other, "name": "南京示例贸易有限公司", "org_type": "enterprise", "legal_rep_id_number": f.IDs["3201"][0], "legal_rep_name": "李四",
			"established_on": "2018-03-01", "status": "active", "region_code": "320102", "updated_at": stamp},
	}
	parcels := []map[string]any{
		{"parcel_code": r.Parcel, "region_code": "330106", "land_use": "0701", "area_m2": "120.50", "right_type": "use_right",
			"holder_id_number": p, "longitude": 120.1, "latitude": 30.2, "registered_on": "2016-05-01", "updated_at": stamp},
	}
	licences := []map[string]any{
		{"licence_no": r.Licence, "licence_type": "driving_licence", "holder_id_number": p, "holder_name": "张三",
			"issuer": "ga-3301", "issuer_region": "330100", "issued_on": "2020-01-01", "valid_until": "2030-01-01", "status": "valid",
			"content_digest": license.ContentDigest([]byte("driving licence " + p)), "updated_at": stamp},
		{"licence_no": r.OrgLicence, "licence_type": "business_licence", "holder_uscc": r.Org, "holder_name": "杭州示例科技有限公司",
			"issuer": "scjg-3301", "issuer_region": "330100", "issued_on": "2015-06-01", "status": "valid",
			"content_digest": license.ContentDigest([]byte("business licence " + r.Org)), "updated_at": stamp},
	}
	for _, l := range licences {
		Sign(t, l)
		r.Digests[l["licence_no"].(string)] = l["content_digest"].(string)
	}
	for id, recs := range map[string][]map[string]any{"legal_entity.organization": orgs, "resource.land_parcel": parcels, "license.certificate": licences} {
		d, _ := cat.Dataset(id)
		tables[id] = store.New(d, store.WithAllocator(f.Mem))
		r.Records[id] = map[string]map[string]any{}
		for _, rec := range recs {
			k, err := d.RecordKey(rec)
			if err != nil {
				t.Fatal(err)
			}
			r.Records[id][k] = rec
			f.Apply(t, tables[id], rec)
		}
	}
	f.Registers = r
	return []service.Option{service.WithKeyring(keyring)}
}

// Apply applies one record to a table at the next offset of the fixture (nil rec with
// key: a delete).
func (f *Fixture) Apply(t testing.TB, tbl *store.Table, rec map[string]any, key ...string) {
	t.Helper()
	f.offset++
	c := store.Change{Partition: 0, Offset: f.offset, Record: rec}
	if len(key) == 1 {
		c.Key = key[0]
	}
	if err := tbl.Apply([]store.Change{c}); err != nil {
		t.Fatal(err)
	}
}
