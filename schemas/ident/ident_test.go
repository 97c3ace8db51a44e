package ident

import (
	"errors"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// withCitizenCheck completes a 17-digit body with its check character, so a case can
// break exactly one other rule.
func withCitizenCheck(t testing.TB, body17 string) string {
	t.Helper()
	c, err := CitizenIDCheckChar(body17)
	if err != nil {
		t.Fatalf("CitizenIDCheckChar(%q): %v", body17, err)
	}
	return body17 + string(c)
}

func withUSCCCheck(t testing.TB, body17 string) string {
	t.Helper()
	c, err := USCCCheckChar(body17)
	if err != nil {
		t.Fatalf("USCCCheckChar(%q): %v", body17, err)
	}
	return body17 + string(c)
}

// kindOf returns the Kind of err, "" for nil, and fails on an error of another type.
func kindOf(t testing.TB, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is %T, want *ident.Error", err, err)
	}
	if e.Msg == "" || e.Error() != e.Msg {
		t.Fatalf("error of kind %q has message %q", e.Kind, e.Error())
	}
	return e.Kind
}

func TestCheckCitizenID(t *testing.T) {
	cases := []struct {
		name, id, kind string
	}{
		// Valid values were confirmed with python-stdnum's cn.ric as well.
		{"published example", "11010519491231002X", ""},
		{"Hangzhou Xihu", "330106199003071236", ""},
		{"leap day 2000", "320508200002290048", ""},
		{"Hong Kong", "810000199712310018", ""},
		{"Taiwan", "710000194910010036", ""},
		{"residence permit 83", "830000201801010029", ""},
		{"1900-01-01", "650102190001010059", ""},
		{"year 1800", withCitizenCheck(t, "33010618000101001"), ""},
		{"born today", withCitizenCheck(t, "330106"+time.Now().UTC().Format("20060102")+"123"), ""},

		{"17 chars", "11010519491231002", KindLength},
		{"19 chars", "11010519491231002X0", KindLength},
		{"empty", "", KindLength},
		{"lower-case x", "11010519491231002x", KindCharset},
		{"X inside", "1101051949123100X2", KindCharset},
		{"letter O", "11010519491231OO2X", KindCharset},
		{"full-width digit", "１１０１０５19491231002X"[:18], KindCharset},
		{"wrong check char", "110105194912310021", KindCheckChar},
		{"transposed digits", "11010519491231020X", KindCheckChar},
		{"Feb 30", withCitizenCheck(t, "33010619900230123"), KindDate},
		{"Feb 29 1900", withCitizenCheck(t, "33010619000229123"), KindDate},
		{"Feb 29 2001", withCitizenCheck(t, "33010620010229123"), KindDate},
		{"Apr 31", withCitizenCheck(t, "33010619900431123"), KindDate},
		{"month 13", withCitizenCheck(t, "33010619901301123"), KindDate},
		{"day 00", withCitizenCheck(t, "33010619900100123"), KindDate},
		{"year 1799", withCitizenCheck(t, "33010617991231123"), KindDate},
		{"born the day after tomorrow", withCitizenCheck(t, "330106"+time.Now().AddDate(0, 0, 2).Format("20060102")+"123"), KindDate},
		{"born in 9999", withCitizenCheck(t, "33010699991231123"), KindDate},
		{"province 99", withCitizenCheck(t, "99010619900101123"), KindProvince},
		{"province 00", withCitizenCheck(t, "00010619900101123"), KindProvince},
		{"province 84", withCitizenCheck(t, "84000019900101123"), KindProvince},
		{"province 16", withCitizenCheck(t, "16010619900101123"), KindProvince},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := kindOf(t, CheckCitizenID(c.id)); got != c.kind {
				t.Errorf("CheckCitizenID(%q) kind = %q, want %q (%v)", c.id, got, c.kind, CheckCitizenID(c.id))
			}
		})
	}
}

func TestCheckCharMessage(t *testing.T) {
	err := CheckCitizenID("110105194912310023")
	if err == nil || err.Error() != `check character is "3", expected "X"` {
		t.Errorf("message = %v", err)
	}
	err = CheckUSCC("91110000600037341A")
	if err == nil || err.Error() != `check character is "A", expected "L"` {
		t.Errorf("message = %v", err)
	}
}

func TestCitizenIDCheckChar(t *testing.T) {
	if c, err := CitizenIDCheckChar("11010519491231002"); err != nil || c != 'X' {
		t.Errorf("CitizenIDCheckChar = %q, %v; want 'X'", c, err)
	}
	for body, kind := range map[string]string{"1101051949123100": KindLength, "1101051949123100A": KindCharset} {
		if _, err := CitizenIDCheckChar(body); kindOf(t, err) != kind {
			t.Errorf("CitizenIDCheckChar(%q) = %v, want kind %q", body, err, kind)
		}
	}
}

func TestBirthDate(t *testing.T) {
	got, err := BirthDate("11010519491231002X")
	if want := time.Date(1949, 12, 31, 0, 0, 0, 0, time.UTC); err != nil || !got.Equal(want) {
		t.Errorf("BirthDate = %v, %v; want %v", got, err, want)
	}
	if _, err := BirthDate(withCitizenCheck(t, "33010619900230123")); kindOf(t, err) != KindDate {
		t.Errorf("BirthDate of Feb 30: %v", err)
	}
	if _, err := BirthDate("110105194912310021"); kindOf(t, err) != KindCheckChar {
		t.Errorf("BirthDate of a bad check char: %v", err)
	}
}

func TestCheckUSCC(t *testing.T) {
	cases := []struct {
		name, code, kind string
	}{
		// The first two are published examples; all were confirmed with
		// python-stdnum's cn.uscc except the A/N/Y ones, which it cannot accept (it
		// requires positions 1–8 to be digits).
		{"published 9-1 Beijing", "91110000600037341L", ""},
		{"published 9-1 Fuzhou", "91350100M000100Y43", ""},
		{"工商 Hangzhou", "91330106MA27XXXX19", ""},
		{"民政 type 3", "53330106MJ0000001L", ""},
		{"外交 type 9", withUSCCCheck(t, "29110000MA0000000"), ""},
		{"司法行政 type 5", withUSCCCheck(t, "35110000MA0000000"), ""},
		{"农业 type 2", "N2330110MA0000001E", ""},
		{"其他 type 1", "Y1320505MA0000000F", ""},
		{"军委编制 type 1", "A1110000MA0000000G", ""},

		{"17 chars", "91110000600037341", KindLength},
		{"19 chars", "91110000600037341L0", KindLength},
		{"letter I", "91110000I00037341L", KindCharset},
		{"letter O", "9111000060003734OL", KindCharset},
		{"letter Z", "91110000Z00037341L", KindCharset},
		{"letter S", "91110000S00037341L", KindCharset},
		{"letter V", "91110000V00037341L", KindCharset},
		{"lower case", "91350100m000100y43", KindCharset},
		{"wrong check char", "91110000600037341A", KindCheckChar},
		{"one char changed", "91110000600037351L", KindCheckChar},
		{"authority 0", withUSCCCheck(t, "01110000600037341"), KindAuthority},
		{"authority B", withUSCCCheck(t, "B1110000600037341"), KindAuthority},
		{"工商 type 4", withUSCCCheck(t, "94110000600037341"), KindOrgType},
		{"工商 type 9", withUSCCCheck(t, "99110000600037341"), KindOrgType},
		{"其他 type 2", withUSCCCheck(t, "Y2110000600037341"), KindOrgType},
		{"外交 type 2", withUSCCCheck(t, "22110000600037341"), KindOrgType},
		{"region prefix 99", withUSCCCheck(t, "91990000600037341"), KindRegion},
		{"region letter", withUSCCCheck(t, "9133A106600037341"), KindRegion},
		{"region 110000 is a province, 100001 is nothing", withUSCCCheck(t, "12100001400001234"), KindRegion},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := kindOf(t, CheckUSCC(c.code)); got != c.kind {
				t.Errorf("CheckUSCC(%q) kind = %q, want %q (%v)", c.code, got, c.kind, CheckUSCC(c.code))
			}
		})
	}
}

func TestUSCCCheckChar(t *testing.T) {
	if c, err := USCCCheckChar("91350100M000100Y4"); err != nil || c != '3' {
		t.Errorf("USCCCheckChar = %q, %v; want '3'", c, err)
	}
	for body, kind := range map[string]string{"9135010": KindLength, "91350100M000100YO": KindCharset, "91350100m000100Y4": KindCharset} {
		if _, err := USCCCheckChar(body); kindOf(t, err) != kind {
			t.Errorf("USCCCheckChar(%q) = %v, want kind %q", body, err, kind)
		}
	}
}

func TestCheckRegion(t *testing.T) {
	for code, kind := range map[string]string{
		"330106": "", "110000": "", "650102": "", "710000": "", "810000": "", "820000": "",
		"330199": "", // not in the shipped table, still a well-formed code
		"830000": KindProvince, "000000": KindProvince, "990000": KindProvince, "100000": KindProvince,
		"33010": KindLength, "3301060": KindLength, "": KindLength,
		"33010a": KindCharset, "３３0106"[:6]: KindCharset,
	} {
		if got := kindOf(t, CheckRegion(code)); got != kind {
			t.Errorf("CheckRegion(%q) kind = %q, want %q", code, got, kind)
		}
	}
}

func TestProvinceName(t *testing.T) {
	prefixes := []string{"11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
		"41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82"}
	if len(provinces) != len(prefixes) {
		t.Errorf("%d provinces in the table, want %d", len(provinces), len(prefixes))
	}
	for _, p := range prefixes {
		name, ok := ProvinceName(p)
		if !ok || name == "" {
			t.Errorf("ProvinceName(%q) = %q, %v", p, name, ok)
		}
		r, ok := LookupRegion(p + "0000")
		if !ok || r.Name != name || r.ProvinceName != name || r.ProvinceCode != p+"0000" || r.CityCode != "" {
			t.Errorf("LookupRegion(%s0000) = %+v, %v", p, r, ok)
		}
	}
	for _, p := range []string{"83", "10", "00", "3", "330"} {
		if name, ok := ProvinceName(p); ok {
			t.Errorf("ProvinceName(%q) = %q, true", p, name)
		}
	}
}

func TestLookupRegion(t *testing.T) {
	want := map[string]Region{
		"330106": {"330106", "西湖区", "330100", "杭州市", "330000", "浙江省"},
		"330213": {"330213", "奉化区", "330200", "宁波市", "330000", "浙江省"},
		"320508": {"320508", "姑苏区", "320500", "苏州市", "320000", "江苏省"},
		"320100": {"320100", "南京市", "320100", "南京市", "320000", "江苏省"},
		"330000": {"330000", "浙江省", "", "", "330000", "浙江省"},
		"110000": {"110000", "北京市", "", "", "110000", "北京市"},
	}
	for code, w := range want {
		if got, ok := LookupRegion(code); !ok || got != w {
			t.Errorf("LookupRegion(%q) = %+v, %v; want %+v", code, got, ok, w)
		}
	}
	for _, code := range []string{"330199", "330107", "990106", "3301", "", "830000"} {
		if r, ok := LookupRegion(code); ok {
			t.Errorf("LookupRegion(%q) = %+v, true", code, r)
		}
	}
}

func TestDemoCounties(t *testing.T) {
	got := DemoCounties()
	codes := []string{"320102", "320104", "320106", "320505", "320506", "320508",
		"330102", "330105", "330106", "330108", "330110", "330203", "330212", "330213"}
	if len(got) != len(codes) {
		t.Fatalf("DemoCounties has %d rows, want %d: %+v", len(got), len(codes), got)
	}
	for i, r := range got {
		if r.Code != codes[i] {
			t.Errorf("row %d is %s, want %s (sorted by code)", i, r.Code, codes[i])
		}
		if err := CheckRegion(r.Code); err != nil {
			t.Errorf("%s: %v", r.Code, err)
		}
		if r.Name == "" || r.CityName == "" || r.ProvinceName == "" || r.CityCode != r.Code[:4]+"00" || r.ProvinceCode != r.Code[:2]+"0000" {
			t.Errorf("incomplete row %+v", r)
		}
	}
	// Every city- or county-level entry must be reachable, or the table has a row with
	// no city above it.
	for code := range demoDivisions {
		if _, ok := LookupRegion(code); !ok {
			t.Errorf("table entry %s is not found by LookupRegion", code)
		}
	}
}

// TestImportsNothingOfOurs keeps ident at the bottom of govx's import graph: schemas,
// connectors and the exchange all import it, so it must import none of them.
func TestImportsNothingOfOurs(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if path := strings.Trim(imp.Path.Value, `"`); strings.Contains(path, ".") || strings.HasPrefix(path, "govx") {
				t.Errorf("%s imports %s; ident may import only the standard library", name, path)
			}
		}
	}
}

// TestUSCCCentralBodies: bodies registered at the central level carry region 100000 in
// their USCC (real codes, e.g. central public institutions 121000…), which is no GB/T 2260
// region: valid in a USCC, still refused as a region or in a citizen ID.
func TestUSCCCentralBodies(t *testing.T) {
	for _, body := range []string{"12100000400001234", "11100000000013127", "51100000500000123"} {
		code := withUSCCCheck(t, body)
		if err := CheckUSCC(code); err != nil {
			t.Errorf("central-level USCC %s refused: %v", code, err)
		}
	}
	if err := CheckRegion(CentralRegion); err == nil {
		t.Errorf("CheckRegion(%s) accepted the central registration code as a region", CentralRegion)
	}
	if err := CheckCitizenID(withCitizenCheck(t, "10000019900101123")); err == nil {
		t.Error("a citizen ID with region 100000 was accepted")
	}
}
