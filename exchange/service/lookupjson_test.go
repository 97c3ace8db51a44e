package service

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"govx/exchange"
)

// TestFastLookupAgreesWithStrict: whatever body the fast lookup decoder accepts, the
// strict decoder accepts too with the very same command; the usual bodies take the fast
// path; anything unusual is left to the strict decoder.
func TestFastLookupAgreesWithStrict(t *testing.T) {
	usual := []string{
		`{"key":"330106199001011234","purpose":"minimum-living-allowance-review","case_ref":"bench"}`,
		` { "key" : ["3301", "A-1"] , "purpose":"p", "columns": ["name","birth_date"] } `,
		`{"purpose":"p","key":"张三","columns":[]}`,
		`{}`,
	}
	unusual := []string{
		`{"Key":"a","purpose":"p"}`,              // a name in another case
		`{"key":"a","key":"b","purpose":"p"}`,    // twice
		`{"key":"a\u0031","purpose":"p"}`,        // an escape
		`{"key":1,"purpose":"p"}`,                // a number
		`{"key":"a","purpose":"p","extra":true}`, // unknown
		`{"key":"a","purpose":"p"} {}`,           // trailing data
		`{"key":"a","columns":"name"}`,           // not a list
		`{"key":"a","columns":null}`,
		`{"key":"a",}`,
		"{\"key\":\"a\xff\"}", // invalid UTF-8
		`{"key":"a"`,
		``,
	}
	check := func(body string) bool {
		t.Helper()
		fast, ok := fastLookup([]byte(body))
		var strict exchange.LookupCmd
		err := decodeStrict([]byte(body), &strict)
		if ok && (err != nil || !reflect.DeepEqual(fast, strict)) {
			t.Fatalf("%q: fast %+v, strict %+v (err %v)", body, fast, strict, err)
		}
		return ok
	}
	for _, b := range usual {
		if !check(b) {
			t.Errorf("%q: not decoded by the fast path", b)
		}
	}
	for _, b := range unusual {
		if check(b) {
			t.Errorf("%q: decoded by the fast path", b)
		}
	}
	// Mutations of the usual bodies: a byte changed, dropped or doubled.
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte(`{}[],:" \\aKk0é` + "\x00\t")
	for range 20000 {
		b := []byte(usual[r.IntN(len(usual))])
		if len(b) == 0 {
			continue
		}
		i := r.IntN(len(b))
		switch r.IntN(3) {
		case 0:
			b[i] = alphabet[r.IntN(len(alphabet))]
		case 1:
			b = append(b[:i], b[i+1:]...)
		default:
			b = append(b[:i+1], b[i:]...)
		}
		check(string(b))
	}
}

// TestFastLookupAllocations: the usual body costs one allocation per value, not a
// decoder's worth.
func TestFastLookupAllocations(t *testing.T) {
	body := []byte(`{"key":"330106199001011234","purpose":"minimum-living-allowance-review","case_ref":"bench"}`)
	if n := testing.AllocsPerRun(100, func() { fastLookup(body) }); n > 3 {
		t.Fatalf("%v allocations per lookup body, want at most 3", n)
	}
}
