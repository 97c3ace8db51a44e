package ident

import (
	"errors"
	"testing"
	"unicode/utf8"
)

var validKinds = map[string]bool{
	KindLength: true, KindCharset: true, KindProvince: true, KindDate: true,
	KindCheckChar: true, KindAuthority: true, KindOrgType: true, KindRegion: true,
}

// fuzzKind checks that err is nil or an *Error with a known Kind and a message.
func fuzzKind(t *testing.T, input string, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var e *Error
	if !errors.As(err, &e) || !validKinds[e.Kind] || e.Msg == "" {
		t.Fatalf("%q: error %#v is not an *Error with a known kind", input, err)
	}
	if !utf8.ValidString(e.Msg) {
		t.Fatalf("%q: message %q is not valid UTF-8", input, e.Msg)
	}
	return e.Kind
}

// FuzzCitizenID checks arbitrary input and, because random bytes are almost never
// valid, also the input's first 17 bytes completed with their check character, so the
// accepted-value properties are exercised on many dates and regions.
func FuzzCitizenID(f *testing.F) {
	for _, s := range []string{
		"11010519491231002X", "330106199003071236", "320508200002290048", "830000201801010029",
		"11010519491231002x", "110105194912310021", "33010619900230123X", "99010619900101123X",
		"33010617991231123", "", "１１０１０５19491231002X", "330106000002291230",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if fuzzKind(t, s, CheckCitizenID(s)) == "" {
			checkAcceptedCitizenID(t, s)
		}
		if len(s) < 17 {
			return
		}
		c, err := CitizenIDCheckChar(s[:17])
		if fuzzKind(t, s, err) != "" {
			return
		}
		v := s[:17] + string(c)
		switch kind := fuzzKind(t, v, CheckCitizenID(v)); kind {
		case "":
			checkAcceptedCitizenID(t, v)
		case KindCheckChar, KindLength, KindCharset:
			t.Fatalf("%q has its own check character but is rejected with kind %q", v, kind)
		}
	})
}

func checkAcceptedCitizenID(t *testing.T, v string) {
	t.Helper()
	c, err := CitizenIDCheckChar(v[:17])
	if err != nil || c != v[17] {
		t.Fatalf("%q accepted but its check character recomputes as %q, %v", v, c, err)
	}
	for _, other := range []byte("0123456789X") {
		if other == v[17] {
			continue
		}
		w := v[:17] + string(other)
		if kind := fuzzKind(t, w, CheckCitizenID(w)); kind != KindCheckChar {
			t.Fatalf("%q accepted, but %q with another check character has kind %q", v, w, kind)
		}
	}
	born, err := BirthDate(v)
	if err != nil || born.Format("20060102") != v[6:14] || born.Year() < minBirthYear {
		t.Fatalf("%q accepted but BirthDate = %v, %v", v, born, err)
	}
	if _, ok := ProvinceName(v[:2]); !ok && v[:2] != "83" {
		t.Fatalf("%q accepted with province %q", v, v[:2])
	}
}

func FuzzUSCC(f *testing.F) {
	for _, s := range []string{
		"91110000600037341L", "91350100M000100Y43", "A1110000MA0000000G", "Y1320505MA0000000F",
		"91350100m000100y43", "91110000600037341A", "94110000600037341", "9133A106600037341",
		"12100000400001234Y", "", "91110000I00037341L", "ＹＹ330106MA0000000",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if fuzzKind(t, s, CheckUSCC(s)) == "" {
			checkAcceptedUSCC(t, s)
		}
		if len(s) < 17 {
			return
		}
		c, err := USCCCheckChar(s[:17])
		if fuzzKind(t, s, err) != "" {
			return
		}
		v := s[:17] + string(c)
		switch kind := fuzzKind(t, v, CheckUSCC(v)); kind {
		case "":
			checkAcceptedUSCC(t, v)
		case KindCheckChar, KindLength, KindCharset:
			t.Fatalf("%q has its own check character but is rejected with kind %q", v, kind)
		}
	})
}

func checkAcceptedUSCC(t *testing.T, v string) {
	t.Helper()
	c, err := USCCCheckChar(v[:17])
	if err != nil || c != v[17] {
		t.Fatalf("%q accepted but its check character recomputes as %q, %v", v, c, err)
	}
	for _, other := range []byte(usccAlphabet) {
		if other == v[17] {
			continue
		}
		w := v[:17] + string(other)
		if kind := fuzzKind(t, w, CheckUSCC(w)); kind != KindCheckChar {
			t.Fatalf("%q accepted, but %q with another check character has kind %q", v, w, kind)
		}
	}
	if err := CheckRegion(v[2:8]); err != nil && v[2:8] != CentralRegion {
		t.Fatalf("%q accepted with region %q: %v", v, v[2:8], err)
	}
	if a, ok := usccAuthority[v[0]]; !ok || !containsByte(a.types, v[1]) {
		t.Fatalf("%q accepted with authority/type %q", v, v[:2])
	}
}

func FuzzRegion(f *testing.F) {
	for _, s := range []string{"330106", "330000", "330100", "110000", "830000", "100000", "33010", "33010a", "", "３３0106", "330199"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, code string) {
		err := CheckRegion(code)
		if fuzzKind(t, code, err) == "" {
			if len(code) != 6 {
				t.Fatalf("%q accepted with length %d", code, len(code))
			}
			for i := 0; i < 6; i++ {
				if !isDigit(code[i]) {
					t.Fatalf("%q accepted with a non-digit", code)
				}
			}
			if _, ok := ProvinceName(code[:2]); !ok {
				t.Fatalf("%q accepted with province %q", code, code[:2])
			}
		}
		r, ok := LookupRegion(code)
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("LookupRegion(%q) found %+v but CheckRegion says %v", code, r, err)
		}
		prov, _ := ProvinceName(code[:2])
		if r.Code != code || r.Name == "" || r.ProvinceCode != code[:2]+"0000" || r.ProvinceName != prov {
			t.Fatalf("LookupRegion(%q) = %+v", code, r)
		}
		if r.CityCode != "" {
			if city, ok := LookupRegion(r.CityCode); !ok || city.Name != r.CityName || r.CityCode != code[:4]+"00" {
				t.Fatalf("LookupRegion(%q) = %+v, its city row is %+v, %v", code, r, city, ok)
			}
		}
	})
}
