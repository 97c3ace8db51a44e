package schemas

import (
	"strings"
	"testing"
	"testing/fstest"

	"govx/schemas/ident"
)

func citizenID(t testing.TB, body17 string) string {
	t.Helper()
	c, err := ident.CitizenIDCheckChar(body17)
	if err != nil {
		t.Fatal(err)
	}
	return body17 + string(c)
}

func uscc(t testing.TB, body17 string) string {
	t.Helper()
	c, err := ident.USCCCheckChar(body17)
	if err != nil {
		t.Fatal(err)
	}
	return body17 + string(c)
}

func TestLoadShippedDefinitions(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"economy.indicator", "legal_entity.organization", "license.certificate", "population.person", "resource.land_parcel"}
	got := []string{}
	for _, d := range c.Datasets() {
		got = append(got, d.ID)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("datasets = %v, want %v", got, want)
	}
	p, _ := c.Dataset("population.person")
	for _, name := range []string{"id_number", "name", "gender", "birth_date", "ethnicity", "household_region", "address", "phone", "status", "updated_at"} {
		if _, ok := p.Field(name); !ok {
			t.Errorf("population.person lacks field %s", name)
		}
	}
	id, _ := p.Field("id_number")
	if id.Sensitivity != SensitivePersonal || id.Mask != "id_card" || id.Title.Zh != "公民身份号码" {
		t.Errorf("id_number = %+v", id)
	}
	ind, _ := c.Dataset("economy.indicator")
	if strings.Join(ind.Key, ",") != "indicator_code,region_code,period" {
		t.Errorf("indicator key = %v", ind.Key)
	}
}

func TestLoadIsStrict(t *testing.T) {
	good := `dataset: x.y
version: 1
register: x
title: {zh: 甲, en: A}
provider: {code: p}
key: [k]
fields:
  - name: k
    type: string
    sensitivity: public
    mask: "null"
    title: {zh: 键, en: Key}
`
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", good + "colour: red\n", `x.yaml:13: unknown key "colour"`},
		{"unknown field key", strings.Replace(good, "    mask:", "    masc: x\n    mask:", 1), `x.yaml:11: unknown key "masc"`},
		{"bad type of version", strings.Replace(good, "version: 1", "version: one", 1), "x.yaml:2: cannot unmarshal !!str `one` into int"},
		{"unknown field type", strings.Replace(good, "type: string", "type: text", 1), `field "k": unknown type "text"`},
		{"unknown sensitivity", strings.Replace(good, "sensitivity: public", "sensitivity: secret", 1), `sensitivity "secret" is not one of`},
		{"unknown mask", strings.Replace(good, `mask: "null"`, "mask: blur", 1), `mask "blur" is not one of`},
		{"unknown check", strings.Replace(good, `mask: "null"`, "mask: \"null\"\n    check: vin", 1), `check "vin" is not a known validator`},
		{"key names unknown field", strings.Replace(good, "key: [k]", "key: [id]", 1), `key names unknown field "id"`},
		{"missing title", strings.Replace(good, "    title: {zh: 键, en: Key}\n", "", 1), `field "k": title needs both zh and en`},
		{"code without title", strings.Replace(good, `mask: "null"`, "mask: \"null\"\n    codes: [{code: a, title: {zh: 甲}}]", 1), `codes: "a" needs a title with both zh and en`},
		{"code listed twice", strings.Replace(good, `mask: "null"`, "mask: \"null\"\n    codes: [{code: a, title: {zh: 甲, en: A}}, {code: a, title: {zh: 乙, en: B}}]", 1), `codes: "a" is listed twice`},
		{"enum and codes", strings.Replace(good, `mask: "null"`, "mask: \"null\"\n    enum: [a]\n    codes: [{code: a, title: {zh: 甲, en: A}}]", 1), `enum and codes both list`},
		{"unknown code key", strings.Replace(good, `mask: "null"`, "mask: \"null\"\n    codes: [{code: a, name: x, title: {zh: 甲, en: A}}]", 1), `unknown key "name"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadFS(fstest.MapFS{"defs/x.yaml": {Data: []byte(tt.yaml)}}, "defs")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "x.yaml") {
				t.Fatalf("error %v does not name the file", err)
			}
		})
	}
	if _, err := LoadFS(fstest.MapFS{"defs/x.yaml": {Data: []byte(good)}}, "defs"); err != nil {
		t.Fatalf("the good definition fails: %v", err)
	}
}

func validPerson(t testing.TB) map[string]any {
	return map[string]any{
		"id_number":        citizenID(t, "33010619900307123"),
		"name":             "张三",
		"gender":           "1",
		"birth_date":       "1990-03-07",
		"ethnicity":        "01",
		"household_region": "330106",
		"address":          "浙江省杭州市西湖区文三路1号",
		"phone":            "13812345678",
		"status":           "alive",
		"updated_at":       "2026-11-26T04:00:00Z",
	}
}

func TestValidate(t *testing.T) {
	c := MustLoad()
	person, _ := c.Dataset("population.person")
	org, _ := c.Dataset("legal_entity.organization")
	parcel, _ := c.Dataset("resource.land_parcel")

	if errs := person.Validate(validPerson(t)); len(errs) != 0 {
		t.Fatalf("valid person rejected: %v", errs)
	}
	goodID := citizenID(t, "33010619900307123")
	wrongCheck := goodID[:17] + string("0123456789X"[(strings.IndexByte("0123456789X", goodID[17])+1)%11])
	tests := []struct {
		name   string
		change map[string]any
		want   map[string]string // field -> code
	}{
		{"wrong check char", map[string]any{"id_number": wrongCheck}, map[string]string{"id_number": "check_char"}},
		{"impossible date in id", map[string]any{"id_number": citizenID(t, "33010619900230123")}, map[string]string{"id_number": "date"}},
		{"unknown province prefix", map[string]any{"id_number": citizenID(t, "99010619900307123"), "household_region": "990106"},
			map[string]string{"id_number": "province", "household_region": "province"}},
		{"impossible birth date", map[string]any{"birth_date": "2023-02-29"}, map[string]string{"birth_date": "date"}},
		{"wrong type", map[string]any{"gender": 1.0, "updated_at": 17}, map[string]string{"gender": "type", "updated_at": "type"}},
		{"missing key", map[string]any{"id_number": nil}, map[string]string{"id_number": "required"}},
		{"not in enum", map[string]any{"status": "dead"}, map[string]string{"status": "enum"}},
		{"bad pattern", map[string]any{"ethnicity": "57", "phone": "12345"}, map[string]string{"ethnicity": "pattern", "phone": "pattern"}},
		{"unknown field", map[string]any{"blood_type": "A"}, map[string]string{"blood_type": "unknown_field"}},
		{"nullable may be absent", map[string]any{"phone": nil, "address": nil}, map[string]string{}},
		{"year 0000", map[string]any{"birth_date": "0000-01-01", "updated_at": "0000-01-01T00:00:00Z"},
			map[string]string{"birth_date": "year_range", "updated_at": "year_range"}},
		{"year 0000 in UTC", map[string]any{"updated_at": "0001-01-01T00:59:59+01:00"}, map[string]string{"updated_at": "year_range"}},
		{"year 10000 in UTC", map[string]any{"updated_at": "9999-12-31T23:00:00-01:00"}, map[string]string{"updated_at": "year_range"}},
		{"years 0001 and 9999", map[string]any{"birth_date": "0001-01-01", "updated_at": "9999-12-31T23:59:59.999999Z"}, map[string]string{}},
		{"control characters", map[string]any{"name": "张\x00三", "address": "\x1b[31m杭州", "status": "alive\n"},
			// status is confined to its enum, which refuses the value first.
			map[string]string{"name": "control_character", "address": "control_character", "status": "enum"}},
		{"C1 and DEL", map[string]any{"name": "a\u0085b", "address": "a\x7f"}, map[string]string{"name": "control_character", "address": "control_character"}},
		{"bidi controls", map[string]any{"name": "张\u202e三", "address": "\u2066x\u2069"}, map[string]string{"name": "bidi_control", "address": "bidi_control"}},
		{"other punctuation of U+2000", map[string]any{"name": "O\u2019Brien\u2014Jr\u2026", "address": "\u00a0x\u00bf"}, map[string]string{}},
		{"empty required string", map[string]any{"name": ""}, map[string]string{"name": "empty"}},
		{"empty nullable string", map[string]any{"address": ""}, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := validPerson(t)
			for k, v := range tt.change {
				rec[k] = v
			}
			got := map[string]string{}
			for _, e := range person.Validate(rec) {
				got[e.Field] = e.Code
				if e.Message == "" {
					t.Errorf("%s: empty message", e.Field)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("errors = %v, want %v", got, tt.want)
			}
			for f, code := range tt.want {
				if got[f] != code {
					t.Errorf("%s: code %q, want %q (all: %v)", f, got[f], code, got)
				}
			}
		})
	}

	orgRec := map[string]any{
		"uscc": uscc(t, "91330106MA2AXXXX0"), "name": "杭州某某科技有限公司", "org_type": "enterprise",
		"legal_rep_id_number": goodID, "legal_rep_name": "张三", "registered_capital": "100.0000",
		"established_on": "2015-06-01", "status": "active", "region_code": "330106",
		"industry_code": "I6513", "updated_at": "2026-01-01T00:00:00Z",
	}
	if errs := org.Validate(orgRec); len(errs) != 0 {
		t.Fatalf("valid organization rejected: %v", errs)
	}
	orgRec["uscc"] = "91330106MA2AXXXX0I" // I is not in the USCC alphabet
	orgRec["registered_capital"] = "1.23456"
	codes := map[string]string{}
	for _, e := range org.Validate(orgRec) {
		codes[e.Field] = e.Code
	}
	if codes["uscc"] != "charset" || codes["registered_capital"] != "decimal" {
		t.Fatalf("bad USCC characters / decimal: %v", codes)
	}

	parcelRec := map[string]any{
		"parcel_code": "330106001002GB00001", "region_code": "330106", "land_use": "0701",
		"area_m2": "120.50", "right_type": "use_right", "holder_id_number": goodID,
		"longitude": 120.1, "latitude": 30.2, "registered_on": "2010-01-01", "updated_at": "2026-01-01T00:00:00Z",
	}
	if errs := parcel.Validate(parcelRec); len(errs) != 0 {
		t.Fatalf("valid parcel rejected: %v", errs)
	}
	parcelRec["holder_uscc"] = orgRec["uscc"]
	parcelRec["latitude"] = 60.0
	codes = map[string]string{}
	for _, e := range parcel.Validate(parcelRec) {
		codes[e.Field] = e.Code
	}
	if codes["holder_uscc|holder_id_number"] != "exactly_one_of" || codes["latitude"] != "range" {
		t.Fatalf("two holders / latitude out of China: %v", codes)
	}
}

func TestRecordKey(t *testing.T) {
	c := MustLoad()
	ind, _ := c.Dataset("economy.indicator")
	k, err := ind.RecordKey(map[string]any{"indicator_code": "GDP", "region_code": "330100", "period": "2024Q3"})
	if err != nil || k != `["GDP","330100","2024Q3"]` {
		t.Fatalf("composite key = %q, %v", k, err)
	}
	parts, err := ind.ParseKey(k)
	if err != nil || strings.Join(parts, "|") != "GDP|330100|2024Q3" {
		t.Fatalf("ParseKey = %v, %v", parts, err)
	}
	person, _ := c.Dataset("population.person")
	if k, _ := person.RecordKey(map[string]any{"id_number": "11010519491231002X"}); k != "11010519491231002X" {
		t.Fatalf("single key = %q", k)
	}
	if _, err := person.RecordKey(map[string]any{}); err == nil {
		t.Fatal("missing key accepted")
	}
}

func TestArrowSchemaCarriesMetadata(t *testing.T) {
	person, _ := MustLoad().Dataset("population.person")
	s := person.ArrowSchema()
	if s.NumFields() != len(person.Fields) {
		t.Fatalf("%d arrow fields for %d dataset fields", s.NumFields(), len(person.Fields))
	}
	f, _ := s.FieldsByName("id_number")
	md := f[0].Metadata
	get := func(k string) string {
		i := md.FindKey(k)
		if i < 0 {
			return ""
		}
		return md.Values()[i]
	}
	if get(MetaSensitivity) != "sensitive_personal" || get(MetaTitleZh) != "公民身份号码" || get(MetaKey) != "true" {
		t.Fatalf("id_number metadata = %v", md)
	}
	b, _ := s.FieldsByName("birth_date")
	if b[0].Type.ID().String() != "DATE32" {
		t.Fatalf("birth_date type = %v", b[0].Type)
	}
	if i := s.Metadata().FindKey(MetaDataset); i < 0 || s.Metadata().Values()[i] != "population.person" {
		t.Fatalf("schema metadata = %v", s.Metadata())
	}
}

func validLicence(t testing.TB) map[string]any {
	return map[string]any{
		"licence_no": "YYZZ33010620190000123", "licence_type": "business_licence",
		"holder_uscc": uscc(t, "91330106MA2AXXXX0"), "holder_name": "杭州某某科技有限公司",
		"issuer": "scjg-3301", "issuer_region": "330100", "issued_on": "2019-05-20",
		"status":         "valid",
		"content_digest": strings.Repeat("ab", 32), "issuer_signature": strings.Repeat("0f", 64),
		"updated_at": "2025-01-01T00:00:00Z",
	}
}

// TestLicenceCertificate: the licence type is a code list with titles; exactly one
// holder identifier; digests and signatures are lower-case hex of the right length.
func TestLicenceCertificate(t *testing.T) {
	d, ok := MustLoad().Dataset("license.certificate")
	if !ok {
		t.Fatal("no license.certificate")
	}
	if d.Provider.Code != "zwfw" || strings.Join(d.Key, ",") != "licence_no" {
		t.Fatalf("provider %q, key %v", d.Provider.Code, d.Key)
	}
	typ, _ := d.Field("licence_type")
	if tt, ok := typ.CodeTitle("food_business_permit"); !ok || tt.Zh != "食品经营许可证" {
		t.Errorf("food_business_permit title = %+v, %v", tt, ok)
	}
	if _, ok := typ.CodeTitle("fishing_licence"); ok {
		t.Error("a code not on the list has a title")
	}
	for _, c := range []string{"business_licence", "food_business_permit", "construction_permit", "real_estate_certificate", "marriage_certificate", "driving_licence"} {
		if _, ok := typ.CodeTitle(c); !ok {
			t.Errorf("licence type %s is not on the code list", c)
		}
	}
	if errs := d.Validate(validLicence(t)); len(errs) != 0 {
		t.Fatalf("valid licence rejected: %v", errs)
	}
	tests := []struct {
		name   string
		change map[string]any
		want   map[string]string
	}{
		{"type not on the code list", map[string]any{"licence_type": "fishing_licence"}, map[string]string{"licence_type": "enum"}},
		{"both holders", map[string]any{"holder_id_number": citizenID(t, "33010619900307123")}, map[string]string{"holder_uscc|holder_id_number": "exactly_one_of"}},
		{"no holder", map[string]any{"holder_uscc": nil}, map[string]string{"holder_uscc|holder_id_number": "exactly_one_of"}},
		{"a person holds it", map[string]any{"holder_uscc": nil, "holder_id_number": citizenID(t, "33010619900307123")}, map[string]string{}},
		{"upper-case digest", map[string]any{"content_digest": strings.Repeat("AB", 32)}, map[string]string{"content_digest": "pattern"}},
		{"short signature", map[string]any{"issuer_signature": strings.Repeat("0f", 32)}, map[string]string{"issuer_signature": "pattern"}},
		{"unknown status", map[string]any{"status": "lost"}, map[string]string{"status": "enum"}},
		{"issuer not a department code", map[string]any{"issuer": "SCJG 3301"}, map[string]string{"issuer": "pattern"}},
		{"no term", map[string]any{"valid_until": nil}, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := validLicence(t)
			for k, v := range tt.change {
				rec[k] = v
			}
			got := map[string]string{}
			for _, e := range d.Validate(rec) {
				got[e.Field] = e.Code
			}
			if len(got) != len(tt.want) {
				t.Fatalf("errors = %v, want %v", got, tt.want)
			}
			for f, code := range tt.want {
				if got[f] != code {
					t.Errorf("%s: code %q, want %q", f, got[f], code)
				}
			}
		})
	}
}
