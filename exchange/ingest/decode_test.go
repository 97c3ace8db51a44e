package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"govx/exchange/store"
	"govx/schemas"
	"govx/schemas/ident"
)

// validPerson is the i-th valid population.person record.
func validPerson(t *testing.T, i int) map[string]any {
	t.Helper()
	body := fmt.Sprintf("330106%d%02d%02d%03d", 1950+i%60, 1+i%12, 1+i%28, i%1000)
	c, err := ident.CitizenIDCheckChar(body)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"id_number": body + string(c), "name": []string{"张三", "李四", "O'Brien \"Jr\"", "王\u00a0五"}[i%4],
		"gender": "1", "birth_date": fmt.Sprintf("%d-%02d-%02d", 1950+i%60, 1+i%12, 1+i%28),
		"household_region": "330106", "status": "alive", "updated_at": "2026-11-01T00:00:00Z"}
}

// schemaRecord is a record of d with a value of each field's type (not necessarily
// one its checks accept), so every dataset's fields and types go through both decoders.
func schemaRecord(d *schemas.Dataset, r *rand.Rand) map[string]any {
	rec := map[string]any{}
	for i := range d.Fields {
		f := &d.Fields[i]
		switch f.Kind() {
		case schemas.KindInt64:
			rec[f.Name] = float64(r.IntN(100000) - 50)
		case schemas.KindFloat64:
			rec[f.Name] = r.Float64() * 1e6
		case schemas.KindDecimal:
			rec[f.Name] = fmt.Sprintf("%d.%02d", r.IntN(100000), r.IntN(100))
		case schemas.KindDate:
			rec[f.Name] = fmt.Sprintf("20%02d-%02d-%02d", r.IntN(30), 1+r.IntN(12), 1+r.IntN(31))
		case schemas.KindTimestamp:
			rec[f.Name] = fmt.Sprintf("2026-%02d-01T10:00:00.%03dZ", 1+r.IntN(12), r.IntN(1000))
		case schemas.KindBool:
			rec[f.Name] = r.IntN(2) == 0
		default:
			if len(f.Enum) > 0 {
				rec[f.Name] = f.Enum[r.IntN(len(f.Enum))]
			} else {
				rec[f.Name] = fmt.Sprintf("v%d", r.IntN(1000))
			}
		}
	}
	return rec
}

// validRecord is the i-th record of d that its checks accept, built from the schema:
// identifiers with their check characters, values matching the patterns, one of an
// exactly_one_of pair.
func validRecord(t *testing.T, d *schemas.Dataset, i int, r *rand.Rand) map[string]any {
	t.Helper()
	citizen := validPerson(t, i)["id_number"]
	body := fmt.Sprintf("913301%02dMA%07d", 6+2*(i%2), i)
	c, err := ident.USCCCheckChar(body)
	if err != nil {
		t.Fatal(err)
	}
	uscc := body + string(c)
	byCheck := map[string]any{"citizen_id": citizen, "uscc": uscc, "region_code": "330106",
		"parcel_code": fmt.Sprintf("330106%06dGB%05d", r.IntN(1000000), i%100000)}
	byPattern := map[string]string{ // a value per shipped pattern, the i-th where it can vary
		`^(0[1-9]|[1-4][0-9]|5[0-6])$`:               fmt.Sprintf("%02d", 1+i%56),
		`^(1[3-9][0-9]{9}|0[0-9]{2,3}-?[0-9]{7,8})$`: fmt.Sprintf("13%09d", i),
		`^[A-Z][A-Z0-9_]{1,31}$`:                     fmt.Sprintf("IND_%d", i),
		`^[0-9]{4}(Q[1-4]|-(0[1-9]|1[0-2]))?$`:       fmt.Sprintf("20%02dQ%d", i%30, 1+i%4),
		`^[A-T]([0-9]{2}([0-9]{1,2})?)?$`:            fmt.Sprintf("C%02d", i%100),
		`^[0-9A-Z][0-9A-Z-]{7,39}$`:                  fmt.Sprintf("L-%08d", i),
		`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`:              "zj-hz",
		`^[0-9a-f]{64}$`:                             strings.Repeat("ab", 32),
		`^[0-9a-f]{128}$`:                            strings.Repeat("0f", 64),
		`^[0-9]{2}([0-9]{2})?$`:                      fmt.Sprintf("%04d", i%10000),
	}
	rec := schemaRecord(d, r)
	for k := range d.Fields {
		f := &d.Fields[k]
		switch {
		case f.Check != "":
			rec[f.Name] = byCheck[f.Check]
		case f.Pattern != "":
			v, ok := byPattern[f.Pattern]
			if !ok {
				t.Fatalf("%s.%s: no valid value for pattern %s in the test", d.ID, f.Name, f.Pattern)
			}
			rec[f.Name] = v
		case len(f.Codes) > 0:
			rec[f.Name] = f.Codes[i%len(f.Codes)].Code
		case f.Min != nil || f.Max != nil:
			lo, hi := 0.0, 1e6
			if f.Min != nil {
				lo = *f.Min
			}
			if f.Max != nil {
				hi = *f.Max
			}
			if x := lo + (hi-lo)*r.Float64(); f.Kind() == schemas.KindFloat64 {
				rec[f.Name] = x
			} else {
				rec[f.Name] = fmt.Sprintf("%.2f", x)
			}
		case f.Kind() == schemas.KindDate:
			rec[f.Name] = fmt.Sprintf("20%02d-%02d-%02d", r.IntN(30), 1+r.IntN(12), 1+r.IntN(28))
		}
	}
	if len(d.ExactlyOneOf) > 0 {
		for j, name := range d.ExactlyOneOf {
			if j != i%len(d.ExactlyOneOf) {
				rec[name] = nil
			}
		}
	}
	return rec
}

// mutations change a record's decoded form; each keeps it encodable.
var mutations = []func(d *schemas.Dataset, rec map[string]any, r *rand.Rand){
	func(d *schemas.Dataset, rec map[string]any, r *rand.Rand) {
		delete(rec, d.Fields[r.IntN(len(d.Fields))].Name)
	},
	func(d *schemas.Dataset, rec map[string]any, r *rand.Rand) { rec["extra"] = "x" },
	func(d *schemas.Dataset, rec map[string]any, r *rand.Rand) {
		rec[d.Fields[r.IntN(len(d.Fields))].Name] = nil
	},
	func(d *schemas.Dataset, rec map[string]any, r *rand.Rand) {
		rec[d.Fields[r.IntN(len(d.Fields))].Name] = 12.5
	},
	func(d *schemas.Dataset, rec map[string]any, r *rand.Rand) {
		rec[d.Fields[r.IntN(len(d.Fields))].Name] = true
	},
	func(d *schemas.Dataset, rec map[string]any, r *rand.Rand) {
		rec[d.Fields[r.IntN(len(d.Fields))].Name] = ""
	},
	func(d *schemas.Dataset, rec map[string]any, r *rand.Rand) {
		rec[d.Fields[r.IntN(len(d.Fields))].Name] = map[string]any{"a": []any{1.0, "b"}}
	},
	func(d *schemas.Dataset, rec map[string]any, r *rand.Rand) {
		rec[d.Fields[r.IntN(len(d.Fields))].Name] = []any{}
	},
	func(d *schemas.Dataset, rec map[string]any, r *rand.Rand) {
		rec[d.Fields[r.IntN(len(d.Fields))].Name] = strings.Repeat("长", 200)
	},
	func(d *schemas.Dataset, rec map[string]any, r *rand.Rand) {
		rec[d.Fields[r.IntN(len(d.Fields))].Name] = "tab\there \\ \"q\" \u2028 <&>"
	},
	func(d *schemas.Dataset, rec map[string]any, r *rand.Rand) { rec["ünknown\n"] = 1.0 },
	func(d *schemas.Dataset, rec map[string]any, r *rand.Rand) { // control and bidi characters
		rec[d.Fields[r.IntN(len(d.Fields))].Name] = []string{"a\x00b", "\x1b[31mred", "x\u0085y", "abc\u202edcba", "\u2066iso\u2069", "del\x7f", "—…–"}[r.IntN(7)]
	},
	func(d *schemas.Dataset, rec map[string]any, r *rand.Rand) { // years 0000 and 9999
		f := &d.Fields[r.IntN(len(d.Fields))]
		switch f.Kind() {
		case schemas.KindDate:
			rec[f.Name] = []string{"0000-01-01", "0001-01-01", "9999-12-31", "0000-02-29"}[r.IntN(4)]
		case schemas.KindTimestamp:
			rec[f.Name] = []string{"0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00",
				"9999-12-31T23:59:59.999999Z", "9999-12-31T23:30:00-01:00"}[r.IntN(5)]
		}
	},
}

// rawEdits change a record's JSON text, mostly into what is not a valid record.
var rawEdits = []func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte{
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte { return b[:r.IntN(len(b))] },            // truncated
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte { return append(b, " {}"...) },           // a second value
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte { return append(b, " \n\t"...) },         // trailing space
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte { return append([]byte("\r\n "), b...) }, // leading space
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte {
		return append(b[:len(b)-1], `,"id_number":"x"}`...)
	}, // a duplicate name
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte {
		return append(b[:len(b)-1], `,"x":1,"x":1}`...)
	}, // a duplicate unknown name
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte { // a field's number beyond float64
		return append(b[:len(b)-1], fmt.Sprintf(`,"%s":1e999}`, d.Fields[r.IntN(len(d.Fields))].Name)...)
	},
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte { // a lone surrogate in a field
		return append(b[:len(b)-1], fmt.Sprintf(`,"%s":"ab\udc00"}`, d.Fields[r.IntN(len(d.Fields))].Name)...)
	},
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte { return append(b[:len(b)-1], `,"n":1e400}`...) }, // too big a number
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte {
		return append(b[:len(b)-1], `,"n":-0.0e-500}`...)
	}, // underflow
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte {
		return append(b[:len(b)-1], `,"n":[1e999]}`...)
	}, // nested overflow
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte { return append(b[:len(b)-1], `,"n":01}`...) }, // bad number
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte {
		return append(b[:len(b)-1], `,"s":"\ud800"}`...)
	}, // lone surrogate
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte {
		return append(b[:len(b)-1], ",\"s\":\"\xff\xfe\"}"...)
	}, // invalid UTF-8
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte {
		return append(b[:len(b)-1], ",\"\xc3\":1}"...)
	}, // invalid UTF-8 name
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte {
		return append(b[:len(b)-1], ",\"s\":\"a\x01\"}"...)
	}, // control character
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte { // a byte changed
		c := append([]byte(nil), b...)
		const tokens = "{}[]\",:0-e\\ tnfx"
		c[r.IntN(len(c))] = tokens[r.IntN(len(tokens))]
		return c
	},
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte { // a name escaped
		return []byte(strings.Replace(string(b), `"status"`, `"st\u0061tus"`, 1))
	},
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte { return []byte("null") },
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte { return []byte("[]") },
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte { return []byte(`"{}"`) },
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte { return []byte{} },
	func(d *schemas.Dataset, b []byte, r *rand.Rand) []byte { return []byte("{}") },
}

// TestDecodeMatchesEncodingJSON is the differential test of the typed decoder against
// the reference, encoding/json followed by Validate and the store's map path (the
// ingest before it): over valid and generated records of every dataset, mutated and
// malformed ones (nested values, bad UTF-8, out-of-range numbers, bad syntax) and
// tombstones, both give the same reasons, and two tables fed by either path hold the
// same rows and refuse the same changes.
func TestDecodeMatchesEncodingJSON(t *testing.T) {
	cat := schemas.MustLoad()
	r := rand.New(rand.NewPCG(17, 1))
	typed, valid := 0, 0
	for _, d := range cat.Datasets() {
		x := newDecoder(d)
		got, want := store.New(d), store.New(d)
		defer got.Close()
		defer want.Close()
		var gotBatch, wantBatch []store.Change
		var keys []string
		flush := func() {
			gotErr, wantErr := got.Apply(gotBatch), want.Apply(wantBatch)
			if g, w := failedOffsets(t, gotErr), failedOffsets(t, wantErr); !reflect.DeepEqual(g, w) {
				t.Fatalf("%s: the typed path's changes failed at %v (%v), the reference's at %v (%v)", d.ID, g, gotErr, w, wantErr)
			}
			gotBatch, wantBatch = gotBatch[:0], wantBatch[:0]
		}
		for i := range 4000 {
			off := int64(i)
			if i%13 == 12 && len(keys) > 0 { // a tombstone of a key seen
				k := keys[r.IntN(len(keys))]
				gotBatch = append(gotBatch, store.Change{Key: k, Offset: off})
				wantBatch = append(wantBatch, store.Change{Key: k, Offset: off})
				continue
			}
			var rec map[string]any
			switch {
			case d.ID == "population.person" && i%2 == 0:
				rec = validPerson(t, i)
			case i%2 == 0:
				rec = validRecord(t, d, i, r)
			default:
				rec = schemaRecord(d, r)
			}
			if i%3 == 1 {
				mutations[r.IntN(len(mutations))](d, rec, r)
			}
			b, err := json.Marshal(rec)
			if i%4 != 3 { // mostly in schema order, as producers write records
				b, err = marshalInOrder(d, rec)
			}
			if err != nil {
				t.Fatal(err)
			}
			if i%5 == 0 {
				b = rawEdits[r.IntN(len(rawEdits))](d, b, r)
			}
			if i%11 == 5 && len(b) > 0 && b[len(b)-1] == '}' { // a name given twice, both values of its type
				name := d.Fields[r.IntN(len(d.Fields))].Name
				if v, ok := rec[name]; ok {
					again, _ := json.Marshal(v)
					b = append(append(b[:len(b)-1:len(b)-1], fmt.Sprintf(`,%q:`, name)...), append(again, '}')...)
				}
			}
			wantRec, wantReason := decodeStd(d, b)
			gotRow, gotRec, gotReason := x.decode(b)
			if gotReason != wantReason || gotRow == nil && !reflect.DeepEqual(gotRec, wantRec) || (gotReason == "") == (gotRow == nil && gotRec == nil) {
				t.Fatalf("%s: %q\ntyped: %v %v %q\nencoding/json: %v %q", d.ID, b, gotRow, gotRec, gotReason, wantRec, wantReason)
			}
			g := store.Change{Offset: off, Row: gotRow, Record: gotRec}
			w := store.Change{Offset: off, Record: wantRec}
			if wantReason != "" {
				g.Invalid, w.Invalid = errors.New(gotReason), errors.New(wantReason)
			} else if k, err := d.RecordKey(wantRec); err == nil {
				keys = append(keys, k)
				if i%2 == 0 { // with the message key, as connectors send it
					g.Key, w.Key = k, k
				}
			}
			gotBatch, wantBatch = append(gotBatch, g), append(wantBatch, w)
			if x.scan(string(b)) {
				typed++ // read by hand, whether valid or not
			}
			if wantReason == "" {
				valid++
			}
			if len(gotBatch) == 700 {
				flush()
			}
		}
		flush()
		if got.Len() < 100 {
			t.Errorf("%s: %d rows stored; the comparison needs valid records of every dataset", d.ID, got.Len())
		}
		gs, ws := got.Snapshot(), want.Snapshot()
		if gs.Len() != ws.Len() {
			t.Fatalf("%s: the typed path stored %d rows, the reference %d", d.ID, gs.Len(), ws.Len())
		}
		for _, k := range keys {
			gr, gok := gs.Lookup(k)
			wr, wok := ws.Lookup(k)
			if gok != wok || !reflect.DeepEqual(gr, wr) {
				t.Fatalf("%s: key %q: typed path stored %v (%v), the reference %v (%v)", d.ID, k, gr, gok, wr, wok)
			}
		}
		gs.Release()
		ws.Release()
	}
	// The comparison means something only if both paths ran: most records take the
	// typed path, and many are valid.
	if total := 4000 * len(cat.Datasets()); typed < total/2 || valid < 800 {
		t.Errorf("of %d records %d took the typed path and %d were valid; want at least half and 800", total, typed, valid)
	}
}

// marshalInOrder writes rec as a JSON object with d's fields first, in schema order
// (as connectors write records), then any other names.
func marshalInOrder(d *schemas.Dataset, rec map[string]any) ([]byte, error) {
	var names []string
	for _, f := range d.Fields {
		if _, ok := rec[f.Name]; ok {
			names = append(names, f.Name)
		}
	}
	for name := range rec {
		if _, ok := d.Field(name); !ok {
			names = append(names, name)
		}
	}
	b := []byte{'{'}
	for i, name := range names {
		k, err := json.Marshal(name)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(rec[name])
		if err != nil {
			return nil, err
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}

// failedOffsets returns the offsets of the changes Apply's error says it did not apply.
func failedOffsets(t *testing.T, err error) []int64 {
	t.Helper()
	if err == nil {
		return nil
	}
	var ce *store.ChangeError
	if !errors.As(err, &ce) {
		t.Fatalf("apply: %v", err)
	}
	var out []int64
	for _, f := range ce.Failed {
		out = append(out, f.Offset)
	}
	return out
}

// TestDecodeKnownCases pins what a few records decode to, by either path.
func TestDecodeKnownCases(t *testing.T) {
	d, _ := schemas.MustLoad().Dataset("population.person")
	x := newDecoder(d)
	good, _ := json.Marshal(validPerson(t, 3))
	for _, tc := range []struct {
		value  string
		reason string
	}{
		{string(good), ""},
		{`{"id_number":"1"}`, "id_number: length; name: required"},
		{`[1]`, "value is not a JSON object"},
		{`{"name":"a"} x`, "value is not a JSON object"},
		{`{"zz":{"a":1}}`, "id_number: required"},
		// A name given twice is refused, whichever value would pass.
		{strings.Replace(string(good), `"status":"alive"`, `"status":"alive","status":"migrated"`, 1), "status: duplicate_field"},
		{strings.Replace(string(good), `"birth_date":"1953-04-04"`, `"birth_date":"2026-02-30","birth_date":"1985-01-01"`, 1), "birth_date: duplicate_field"},
		{strings.Replace(string(good), `}`, `,"x":1,"x":1}`, 1), "x: duplicate_field"},
		// Years before 0001 (or, in UTC, after 9999) fail Python's datetime.
		{strings.Replace(string(good), `"birth_date":"1953-04-04"`, `"birth_date":"0000-01-01"`, 1), "birth_date: year_range"},
		{strings.Replace(string(good), `"2026-11-01T00:00:00Z"`, `"0000-01-01T00:00:00Z"`, 1), "updated_at: year_range"},
		{strings.Replace(string(good), `"2026-11-01T00:00:00Z"`, `"0001-01-01T00:30:00+01:00"`, 1), "updated_at: year_range"},
		{strings.Replace(string(good), `"2026-11-01T00:00:00Z"`, `"9999-12-31T23:30:00-01:00"`, 1), "updated_at: year_range"},
		{strings.Replace(string(good), `"birth_date":"1953-04-04"`, `"birth_date":"0001-01-01"`, 1), ""},
		{strings.Replace(string(good), `"2026-11-01T00:00:00Z"`, `"9999-12-31T23:59:59.999999Z"`, 1), ""},
		// Invalid UTF-8 and lone surrogates are refused, not stored as U+FFFD.
		{strings.Replace(string(good), `"gender":"1"`, "\"gender\":\"1\",\"name\":\"\xff\xfe\"", 1), "name: invalid_utf8"},
		{strings.Replace(string(good), `"status":"alive"`, `"status":"alive","address":"\ud800"`, 1), "address: invalid_utf8"},
		// Control and bidi characters, and an empty required string.
		{strings.Replace(string(good), `"status":"alive"`, `"status":"alive","address":"a\u0000b"`, 1), "address: control_character"},
		{strings.Replace(string(good), `"status":"alive"`, `"status":"alive","address":"\u001b[2J"`, 1), "address: control_character"},
		{strings.Replace(string(good), `"status":"alive"`, "\"status\":\"alive\",\"address\":\"a\u0085b\"", 1), "address: control_character"},
		{strings.Replace(string(good), `"status":"alive"`, `"status":"alive","address":"x\u202ey"`, 1), "address: bidi_control"},
		{strings.Replace(string(good), `"status":"alive"`, "\"status\":\"alive\",\"address\":\"\u2067x\"", 1), "address: bidi_control"},
		{strings.Replace(string(good), `"status":"alive"`, `"status":"alive","address":""`, 1), ""},
		{strings.Replace(string(good), `"gender":"1"`, `"gender":"1","phone":"13800000000"`, 1), ""},
		{strings.Replace(string(good), `"household_region":"330106"`, `"household_region":""`, 1), "household_region: empty"},
		// A number beyond float64 says so.
		{strings.Replace(string(good), `}`, `,"longitude":1e999}`, 1), "longitude: number_range"},
		{strings.Replace(string(good), `"gender":"1"`, `"gender":1`, 1), "gender: type"},
		{strings.Replace(string(good), `}`, `,"b":1,"a":2}`, 1), "a: unknown_field; b: unknown_field"},
	} {
		row, rec, reason := x.decode([]byte(tc.value))
		if !strings.HasPrefix(reason, tc.reason) || tc.reason == "" && reason != "" {
			t.Errorf("%s: reason %q, want %q", tc.value, reason, tc.reason)
		}
		if (reason == "") != (rec != nil || row != nil) {
			t.Errorf("%s: record %v %v with reason %q: a record is returned exactly when it is valid", tc.value, row, rec, reason)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	d, _ := schemas.MustLoad().Dataset("population.person")
	var tb testing.T
	v, _ := marshalInOrder(d, validPerson(&tb, 7))
	b.Run("typed", func(b *testing.B) {
		x := newDecoder(d)
		b.ReportAllocs()
		for b.Loop() {
			x.reuse() // as ingest does batch after batch
			if _, _, reason := x.decode(v); reason != "" {
				b.Fatal(reason)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, reason := decodeStd(d, v); reason != "" {
				b.Fatal(reason)
			}
		}
	})
}

// TestHasSpecial holds the eight-byte test of decoder.str to the byte-by-byte one.
func TestHasSpecial(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	interesting := []byte{0, 1, 0x1f, 0x20, 0x21, '"', '\\', 0x5b, 0x5d, 0x7f, 0x80, 0x9f, 0xa0, 0xdf, 0xff}
	for range 200000 {
		var b [8]byte
		for k := range b {
			if r.IntN(3) == 0 {
				b[k] = interesting[r.IntN(len(interesting))]
			} else {
				b[k] = byte(r.IntN(256))
			}
		}
		want := false
		var w uint64
		for k, c := range b {
			want = want || stringSpecial[c]
			w |= uint64(c) << (8 * k)
		}
		if got := hasSpecial(w); got != want {
			t.Fatalf("% x: hasSpecial %v, byte by byte %v", b, got, want)
		}
	}
}
