package ingest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

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
}

// rawEdits change a record's JSON text, mostly into what is not a valid record.
var rawEdits = []func(b []byte, r *rand.Rand) []byte{
	func(b []byte, r *rand.Rand) []byte { return b[:r.IntN(len(b))] },                              // truncated
	func(b []byte, r *rand.Rand) []byte { return append(b, " {}"...) },                             // a second value
	func(b []byte, r *rand.Rand) []byte { return append(b, " \n\t"...) },                           // trailing space
	func(b []byte, r *rand.Rand) []byte { return append([]byte("\r\n "), b...) },                   // leading space
	func(b []byte, r *rand.Rand) []byte { return append(b[:len(b)-1], `,"id_number":"x"}`...) },    // a duplicate name
	func(b []byte, r *rand.Rand) []byte { return append(b[:len(b)-1], `,"n":1e400}`...) },          // too big a number
	func(b []byte, r *rand.Rand) []byte { return append(b[:len(b)-1], `,"n":-0.0e-500}`...) },      // underflow
	func(b []byte, r *rand.Rand) []byte { return append(b[:len(b)-1], `,"n":[1e999]}`...) },        // nested overflow
	func(b []byte, r *rand.Rand) []byte { return append(b[:len(b)-1], `,"n":01}`...) },             // bad number
	func(b []byte, r *rand.Rand) []byte { return append(b[:len(b)-1], `,"s":"\ud800"}`...) },       // lone surrogate
	func(b []byte, r *rand.Rand) []byte { return append(b[:len(b)-1], ",\"s\":\"\xff\xfe\"}"...) }, // invalid UTF-8
	func(b []byte, r *rand.Rand) []byte { return append(b[:len(b)-1], ",\"\xc3\":1}"...) },         // invalid UTF-8 name
	func(b []byte, r *rand.Rand) []byte { return append(b[:len(b)-1], ",\"s\":\"a\x01\"}"...) },    // control character
	func(b []byte, r *rand.Rand) []byte { // a byte changed
		c := append([]byte(nil), b...)
		const tokens = "{}[]\",:0-e\\ tnfx"
		c[r.IntN(len(c))] = tokens[r.IntN(len(tokens))]
		return c
	},
	func(b []byte, r *rand.Rand) []byte { // a name escaped
		return []byte(strings.Replace(string(b), `"status"`, `"st\u0061tus"`, 1))
	},
	func(b []byte, r *rand.Rand) []byte { return []byte("null") },
	func(b []byte, r *rand.Rand) []byte { return []byte("[]") },
	func(b []byte, r *rand.Rand) []byte { return []byte(`"{}"`) },
	func(b []byte, r *rand.Rand) []byte { return []byte{} },
	func(b []byte, r *rand.Rand) []byte { return []byte("{}") },
}

// TestDecodeMatchesEncodingJSON is the differential test of the streaming decoder
// against encoding/json followed by Validate (the decoding ingest had before):
// over valid and generated records of every dataset, mutated and malformed ones, both
// give the same record and the same reason.
func TestDecodeMatchesEncodingJSON(t *testing.T) {
	cat := schemas.MustLoad()
	r := rand.New(rand.NewPCG(17, 1))
	fast, valid := 0, 0
	for _, d := range cat.Datasets() {
		x := newDecoder(d)
		for i := range 4000 {
			var rec map[string]any
			if d.ID == "population.person" && i%2 == 0 {
				rec = validPerson(t, i)
			} else {
				rec = schemaRecord(d, r)
			}
			if i%3 == 1 {
				mutations[r.IntN(len(mutations))](d, rec, r)
			}
			b, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			if i%5 == 0 {
				b = rawEdits[r.IntN(len(rawEdits))](b, r)
			}
			wantRec, wantReason := decodeStd(d, b)
			gotRec, gotReason := x.decode(b)
			if gotReason != wantReason || !reflect.DeepEqual(gotRec, wantRec) {
				t.Fatalf("%s: %q\nstreaming: %v %q\nencoding/json: %v %q", d.ID, b, gotRec, gotReason, wantRec, wantReason)
			}
			if _, ok := x.parse(b); ok {
				fast++
			}
			if wantReason == "" {
				valid++
			}
		}
	}
	// The comparison means something only if both paths ran: most records take the
	// streaming path, and many are valid.
	if total := 4000 * len(cat.Datasets()); fast < total/2 || valid < 800 {
		t.Errorf("of %d records %d took the streaming path and %d were valid; want at least half and 800", total, fast, valid)
	}
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
		{strings.Replace(string(good), `"status":"alive"`, `"status":"alive","status":"migrated"`, 1), ""},
		{strings.Replace(string(good), `"status":"alive"`, `"status":"alive","status":"gone"`, 1), "status: enum"},
		{strings.Replace(string(good), `"gender":"1"`, `"gender":1`, 1), "gender: type"},
		{strings.Replace(string(good), `}`, `,"b":1,"a":2}`, 1), "a: unknown_field; b: unknown_field"},
	} {
		rec, reason := x.decode([]byte(tc.value))
		if !strings.HasPrefix(reason, tc.reason) || tc.reason == "" && reason != "" {
			t.Errorf("%s: reason %q, want %q", tc.value, reason, tc.reason)
		}
		if (reason == "") != (rec != nil) {
			t.Errorf("%s: record %v with reason %q: a record is returned exactly when it is valid", tc.value, rec, reason)
		}
	}
	rec, _ := x.decode([]byte(strings.Replace(string(good), `"status":"alive"`, `"status":"alive","status":"migrated"`, 1)))
	if rec["status"] != "migrated" {
		t.Errorf("duplicate name: status %v, want the last value, as encoding/json gives", rec["status"])
	}
}

func BenchmarkDecode(b *testing.B) {
	d, _ := schemas.MustLoad().Dataset("population.person")
	var tb testing.T
	v, _ := json.Marshal(validPerson(&tb, 7))
	b.Run("streaming", func(b *testing.B) {
		x := newDecoder(d)
		b.ReportAllocs()
		for b.Loop() {
			if _, reason := x.decode(v); reason != "" {
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
