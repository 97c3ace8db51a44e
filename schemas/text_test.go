package schemas

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// controlAtByRune is controlAt's rule read rune by rune.
func controlAtByRune(s string) int {
	for i, r := range s {
		if r < 0x20 || r >= 0x7f && r <= 0x9f || isBidiControl(r) {
			if r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD") {
				continue // an invalid byte: not a control character
			}
			return i
		}
	}
	return -1
}

// TestControlAtMatchesRunes holds the eight-byte scan to the rune-by-rune rule over
// text built around the characters at the edges of the ranges.
func TestControlAtMatchesRunes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	parts := []string{"a", "张", "\x00", "\x1f", " ", "\x7e", "\x7f", "\u0080", "\u009f", "\u00a0", "\u00c2",
		"\u2029", "\u202a", "\u202e", "\u202f", "\u2065", "\u2066", "\u2069", "\u206a", "\u2014", "\xc2", "\xe2\x80", "\xff", "abcdefgh"}
	for range 100000 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteString(parts[r.IntN(len(parts))])
		}
		if s := b.String(); controlAt(s) != controlAtByRune(s) {
			t.Fatalf("%q: controlAt %d, rune by rune %d", s, controlAt(s), controlAtByRune(s))
		}
	}
}

// TestDateAndTimestampYears: the date and timestamp checks accept exactly what
// time.Parse reads as a date or instant in the years 0001 to 9999 (of UTC), whichever
// reader — by hand or time.Parse — takes the value.
func TestDateAndTimestampYears(t *testing.T) {
	d := MustLoad()
	person, _ := d.Dataset("population.person")
	birth, _ := person.Field("birth_date")
	updated, _ := person.Field("updated_at")
	r := rand.New(rand.NewPCG(7, 8))
	dates := append(dateSamples(r), "0000-01-01", "0000-12-31", "0001-01-01", "9999-12-31", "0000-02-29")
	for _, s := range dates {
		ref, err := time.Parse(time.DateOnly, s)
		want := err == nil && ref.Year() >= 1 && ref.Year() <= 9999
		if _, fe, ok := birth.CheckDate(s); ok != want || !ok && err == nil && fe.Code != "year_range" {
			t.Fatalf("date %q: %v %v, want %v", s, ok, fe, want)
		}
	}
	stamps := append(timestampSamples(r), "0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:01",
		"0001-01-01T00:00:00-00:01", "9999-12-31T23:59:59.999999999Z", "9999-12-31T23:59:59-00:01", "0000-12-31T23:59:59-01:00")
	for _, s := range stamps {
		ref, err := time.Parse(time.RFC3339Nano, s)
		want := err == nil && ref.UTC().Year() >= 1 && ref.UTC().Year() <= 9999
		if _, fe, ok := updated.CheckTimestamp(s); ok != want || !ok && err == nil && fe.Code != "year_range" {
			t.Fatalf("timestamp %q: %v %v, want %v", s, ok, fe, want)
		}
	}
}

// TestCheckJSONLRefusesWhatEncodingJSONGuesses: govx schemas check refuses a line with a
// name given twice, invalid UTF-8, a lone surrogate, a number beyond float64, or
// anything after the object, each with its code, where encoding/json would pick the last
// value, replace the text, or read only the first value.
func TestCheckJSONLRefusesWhatEncodingJSONGuesses(t *testing.T) {
	person, _ := MustLoad().Dataset("population.person")
	good := `{"id_number":"` + citizenID(t, "33010619900307123") + `","name":"张三","gender":"1","birth_date":"1990-03-07",` +
		`"household_region":"330106","status":"alive","updated_at":"2026-01-01T00:00:00Z"}`
	lines := []struct{ line, field, code string }{
		{good, "", ""},
		{strings.Replace(good, `"birth_date":"1990-03-07"`, `"birth_date":"2026-02-30","birth_date":"1985-01-01"`, 1), "birth_date", "duplicate_field"},
		{strings.Replace(good, `"name":"张三"`, "\"name\":\"\xff\xfe\"", 1), "name", "invalid_utf8"},
		{strings.Replace(good, `"name":"张三"`, `"name":"\ud800"`, 1), "name", "invalid_utf8"},
		{strings.Replace(good, `"name":"张三"`, `"name":"\u202e三张"`, 1), "name", "bidi_control"},
		{strings.Replace(good, `"birth_date":"1990-03-07"`, `"birth_date":"0000-01-01"`, 1), "birth_date", "year_range"},
		{good + ` {}`, "(line)", "json"},
	}
	var in strings.Builder
	for _, l := range lines {
		in.WriteString(l.line + "\n")
	}
	got := map[int]FieldError{}
	total, bad, err := person.CheckJSONL(strings.NewReader(in.String()), func(r LineResult) { got[r.Line] = r.Errors[0] })
	if err != nil || total != len(lines) || bad != len(lines)-1 {
		t.Fatalf("total %d bad %d err %v; want %d, %d", total, bad, err, len(lines), len(lines)-1)
	}
	for i, l := range lines[1:] {
		if fe := got[i+2]; fe.Field != l.field || fe.Code != l.code {
			t.Errorf("line %d: %s %s (%s), want %s %s", i+2, fe.Field, fe.Code, fe.Message, l.field, l.code)
		}
	}
	// A longitude of 1e999 is out of range, not "not a JSON object".
	parcel, _ := MustLoad().Dataset("resource.land_parcel")
	var codes []string
	_, _, _ = parcel.CheckJSONL(strings.NewReader(`{"longitude":1e999}`), func(r LineResult) {
		for _, fe := range r.Errors {
			if fe.Field == "longitude" {
				codes = append(codes, fe.Code)
			}
		}
	})
	if len(codes) != 1 || codes[0] != "number_range" {
		t.Errorf("longitude 1e999: codes %v, want [number_range]", codes)
	}
}
