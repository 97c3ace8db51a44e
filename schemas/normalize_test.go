package schemas

import (
	"testing"
	"time"
)

func TestNormalizeText(t *testing.T) {
	for in, want := range map[string]string{
		"  张三 ": "张三",
		"３３０１０６１９９００３０７１２３ｘ": "33010619900307123x",
		"\u3000浙江省\u3000":    "浙江省",
		"ＡＢＣ－１":              "ABC-1",
	} {
		if got := NormalizeText(in); got != want {
			t.Errorf("NormalizeText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFieldNormalize(t *testing.T) {
	c := MustLoad()
	person, _ := c.Dataset("population.person")
	org, _ := c.Dataset("legal_entity.organization")
	parcel, _ := c.Dataset("resource.land_parcel")
	field := func(d *Dataset, name string) *Field {
		f, ok := d.Field(name)
		if !ok {
			t.Fatalf("no field %s", name)
		}
		return f
	}
	tests := []struct {
		f    *Field
		in   any
		want any
	}{
		{field(person, "id_number"), " 11010519491231002x ", "11010519491231002X"},
		{field(person, "id_number"), []byte("１１０１０５１９４９１２３１００２Ｘ"), "11010519491231002X"},
		{field(person, "name"), "  ", nil},
		{field(person, "birth_date"), "19900307", "1990-03-07"},
		{field(person, "birth_date"), "1990/03/07", "1990-03-07"},
		{field(person, "birth_date"), "1990年3月7日", "1990-03-07"},
		{field(person, "birth_date"), time.Date(1990, 3, 7, 0, 0, 0, 0, time.UTC), "1990-03-07"},
		{field(person, "updated_at"), "2026-11-26 12:00:00", "2026-11-26T04:00:00Z"},
		{field(person, "updated_at"), time.Date(2026, 11, 26, 12, 0, 0, 5000, time.FixedZone("", 8*3600)), "2026-11-26T04:00:00.000005Z"},
		{field(org, "registered_capital"), "100", "100.0000"},
		{field(org, "registered_capital"), []byte("12.5"), "12.5000"},
		{field(org, "registered_capital"), 0.1, "0.1000"},
		{field(parcel, "longitude"), "120.125", 120.125},
		{field(parcel, "area_m2"), int64(7), "7.00"},
	}
	for _, tt := range tests {
		got, err := tt.f.Normalize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("%s.Normalize(%#v) = %#v, %v; want %#v", tt.f.Name, tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []struct {
		f  *Field
		in any
	}{
		{field(person, "birth_date"), "19900230"},
		{field(person, "updated_at"), "yesterday"},
		{field(org, "registered_capital"), "1e5"},
		{field(parcel, "longitude"), "east"},
	} {
		if got, err := bad.f.Normalize(bad.in); err == nil {
			t.Errorf("%s.Normalize(%#v) = %#v, want an error", bad.f.Name, bad.in, got)
		}
	}
	// Custom layouts come first, e.g. a department storing day-first dates.
	if got, err := field(person, "birth_date").Normalize("07.03.1990", "02.01.2006"); err != nil || got != "1990-03-07" {
		t.Errorf("custom layout: %v, %v", got, err)
	}
}

func TestNormalizeThenValidate(t *testing.T) {
	person, _ := MustLoad().Dataset("population.person")
	src := map[string]any{
		"id_number": "１１０１０５１９４９１２３１００２ｘ", "name": " 张三 ", "gender": "1",
		"birth_date": "19491231", "household_region": "110105", "status": "alive",
		"updated_at": "2026-11-26 12:00:00",
	}
	rec, errs := person.NormalizeRecord(src)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if verrs := person.Validate(rec); len(verrs) != 0 {
		t.Fatalf("normalized record invalid: %v (%v)", verrs, rec)
	}
}

// TestCanonicalText: every kind of canonical value, and the source values connectors
// match against value maps, have one text; Append gives the same.
func TestCanonicalText(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{"张三 330106", "张三 330106"},
		{int64(-42), "-42"},
		{float64(0.1), "0.1"},
		{float64(1e21), "1000000000000000000000"},
		{float64(-2.5e-7), "-0.00000025"},
		{"-0.50", "-0.50"},                                             // a decimal, as Normalize writes it
		{"2024-09-30", "2024-09-30"},                                   // a date
		{"2026-11-26T04:00:00.000005Z", "2026-11-26T04:00:00.000005Z"}, // a timestamp
		{true, "true"},
		{false, "false"},
		{nil, ""},
		{[]byte("男"), "男"},
		{time.Date(2026, 11, 26, 12, 0, 0, 5000, ChinaTime), "2026-11-26T12:00:00.000005+08:00"},
		{int32(7), "7"},
	} {
		if got := CanonicalText(tc.v); got != tc.want {
			t.Errorf("CanonicalText(%#v) = %q, want %q", tc.v, got, tc.want)
		}
		if got := string(AppendCanonicalText([]byte("x"), tc.v)); got != "x"+tc.want {
			t.Errorf("AppendCanonicalText(x, %#v) = %q, want %q", tc.v, got, "x"+tc.want)
		}
	}
}
