package schemas

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The hand-written checks of the validation path (pattern.go's DFA, timetext.go's
// readers, checks.go's parcel code) are held here to their references: regexp,
// time.Parse and the regular expression the parcel check replaced. Each test runs a
// seeded random sweep; the Fuzz functions take the same properties further under
// `go test -fuzz`.

// extraPatterns go beyond the shipped ones: alternation, optional and counted parts,
// case folding, classes with ranges, patterns the DFA must decline.
var extraPatterns = []string{
	`^(?i)ab[c-e]+$`, `^a*$`, `^$`, `^(a|ab)(c|bcd)?$`, `^[^0-9]{2,4}x?$`, `^.{3}$`,
	`^\d+(\.\d{1,2})?$`, `^\w+@\w+\.com$`, `abc`, `^a|b$`, `^\bword\b$`, `^é+$`, `^[a-zé]{2}$`,
}

func catalogPatterns(t testing.TB) []string {
	var out []string
	for _, d := range MustLoad().Datasets() {
		for _, f := range d.Fields {
			if f.Pattern != "" {
				out = append(out, f.Pattern)
			}
		}
	}
	if len(out) < 5 {
		t.Fatalf("the catalog has %d patterns; the test needs the shipped ones", len(out))
	}
	return append(out, extraPatterns...)
}

// randomText is a short string over an alphabet that the patterns care about.
func randomText(r *rand.Rand) string {
	const alphabet = "0123456789abcdefxzABCDEFGJQSXYZ_-.:+ @é\u00a0\n"
	runes := []rune(alphabet)
	var b strings.Builder
	for range r.IntN(24) {
		b.WriteRune(runes[r.IntN(len(runes))])
	}
	return b.String()
}

// nearMatch mutates a string of a pattern's language, where random text rarely lands.
func nearMatch(r *rand.Rand, s string) string {
	b := []byte(s)
	switch r.IntN(4) {
	case 0:
		if len(b) > 0 {
			b[r.IntN(len(b))] = "09aAzZQ-_."[r.IntN(10)]
		}
	case 1:
		if len(b) > 0 {
			b = b[:r.IntN(len(b))]
		}
	case 2:
		b = append(b, "0aQ-"[r.IntN(4)])
	}
	return string(b)
}

func samples(r *rand.Rand) []string {
	out := []string{"", "01", "56", "57", "13812345678", "0571-87654321", "GDP_2024", "2024Q3", "2024-13",
		"330106", "A12", "a-b-c", strings.Repeat("0", 64), strings.Repeat("f", 128), "abc", "abbcd", "é", "éa"}
	for range 4000 {
		out = append(out, randomText(r))
	}
	for i := range 4000 {
		out = append(out, nearMatch(r, out[i%18]))
	}
	return out
}

func TestPatternDFAMatchesRegexp(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	vals := samples(r)
	built := 0
	for _, expr := range catalogPatterns(t) {
		p, err := compilePattern(expr)
		if err != nil {
			t.Fatal(err)
		}
		if p.dfa != nil {
			built++
		}
		for _, s := range vals {
			if got, want := p.MatchString(s), p.re.MatchString(s); got != want {
				t.Fatalf("pattern %s, value %q: DFA says %v, regexp %v", expr, s, got, want)
			}
		}
	}
	// Every shipped pattern is anchored at both ends, so each gets its DFA.
	for _, d := range MustLoad().Datasets() {
		for _, f := range d.Fields {
			if f.re != nil && f.re.dfa == nil {
				t.Errorf("%s.%s: pattern %s has no DFA: every value goes to regexp", d.ID, f.Name, f.Pattern)
			}
		}
	}
	if _, err := compilePattern(`^\bword\b$`); err != nil || newDFA(`^\bword\b$`) != nil || newDFA(`abc`) != nil {
		t.Errorf("patterns with word assertions or without anchors must be left to regexp")
	}
	if built < 10 {
		t.Errorf("only %d patterns got a DFA", built)
	}
}

func FuzzPatternDFA(f *testing.F) {
	f.Add(0, "13812345678")
	f.Add(3, "2024Q3")
	f.Fuzz(func(t *testing.T, i int, s string) {
		exprs := catalogPatterns(t)
		expr := exprs[(i%len(exprs)+len(exprs))%len(exprs)]
		p, err := compilePattern(expr)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := p.MatchString(s), p.re.MatchString(s); got != want {
			t.Fatalf("pattern %s, value %q: DFA says %v, regexp %v", expr, s, got, want)
		}
	})
}

// dateSamples are dates and near-dates: real ones, day 0 and 32, 29 February in leap
// and common years, year 0000, signs, spaces and trailing text.
func dateSamples(r *rand.Rand) []string {
	out := []string{"2024-02-29", "2023-02-29", "1900-02-29", "2000-02-29", "0000-01-01", "9999-12-31",
		"1969-12-31", "1970-01-01", "2024-1-02", "2024-01-2", "+024-01-02", "-024-01-02", " 2024-01-02",
		"2024-01-02 ", "2024-01-02T00:00:00Z", "2024-00-10", "2024-13-01", "2024-04-31", "2024/01/02", ""}
	for range 20000 {
		s := []byte(time.Date(r.IntN(10000), time.Month(1+r.IntN(12)), 1+r.IntN(31), 0, 0, 0, 0, time.UTC).Format(time.DateOnly))
		if r.IntN(3) == 0 {
			s[r.IntN(len(s))] = "0123456789-+ T:"[r.IntN(15)]
		}
		if r.IntN(5) == 0 {
			copy(s[8:], []byte{byte('0' + r.IntN(4)), byte('0' + r.IntN(10))})
		}
		out = append(out, string(s))
	}
	return out
}

func timestampSamples(r *rand.Rand) []string {
	out := []string{"2026-11-01T00:00:00Z", "2026-11-01T00:00:00.5Z", "2026-11-01T00:00:00.123456789Z",
		"2026-11-01T00:00:00.1234567891Z", "2026-11-01T00:00:00.Z", "2026-11-01T24:00:00Z", "2026-11-01T23:60:00Z",
		"2026-11-01T23:59:60Z", "2026-11-01t00:00:00Z", "2026-11-01T00:00:00z", "2026-11-01T00:00:00+08:00",
		"2026-11-01T00:00:00-00:30", "2026-11-01T00:00:00+24:00", "2026-11-01T00:00:00+0800", "2026-11-01 00:00:00Z",
		"0000-01-01T00:00:00+23:59", "9999-12-31T23:59:59.999999999-23:59", "1969-12-31T23:59:59.9999999Z",
		"2026-11-01T00:00:00,5Z", "2026-11-01T00:00:00", "2026-02-29T00:00:00Z", ""}
	zones := []string{"Z", "+08:00", "-05:30", "+00:00", "-23:59", "+14:00"}
	for range 20000 {
		ts := time.Date(r.IntN(10000), time.Month(1+r.IntN(12)), 1+r.IntN(31), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(1e9), time.UTC)
		s := ts.Format("2006-01-02T15:04:05") + []string{"", ".9", ".999", ".999999", ".999999999"}[r.IntN(5)]
		if i := strings.IndexByte(s, '.'); i > 0 {
			s = s[:i+1] + strings.Repeat("7", len(s)-i-1)
		}
		b := []byte(s + zones[r.IntN(len(zones))])
		if r.IntN(3) == 0 {
			b[r.IntN(len(b))] = "0123456789-+ T:Z."[r.IntN(17)]
		}
		out = append(out, string(b))
	}
	return out
}

func checkDate(t *testing.T, s string) {
	got, gotOK := ParseDate(s)
	ref, err := time.Parse(time.DateOnly, s)
	if gotOK != (err == nil) || gotOK && int64(got) != ref.Unix()/86400 {
		t.Fatalf("date %q: ParseDate gives %d %v, time.Parse %v %v", s, got, gotOK, ref, err)
	}
}

func checkTimestamp(t *testing.T, s string) {
	got, gotOK := ParseTimestamp(s)
	ref, err := time.Parse(time.RFC3339Nano, s)
	if gotOK != (err == nil) || gotOK && got != ref.UnixMicro() {
		t.Fatalf("timestamp %q: ParseTimestamp gives %d %v, time.Parse %v (%d) %v", s, got, gotOK, ref, ref.UnixMicro(), err)
	}
}

func TestDateAndTimestampMatchTimeParse(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	hand := 0
	for _, s := range dateSamples(r) {
		checkDate(t, s)
		if _, _, _, ok := readDate(s); ok && len(s) == 10 {
			hand++
		}
	}
	for _, s := range timestampSamples(r) {
		checkTimestamp(t, s)
		if _, ok := readTimestamp(s); ok {
			hand++
		}
	}
	// Most samples must be decided by the hand readers, or the test says little.
	if hand < 20000 {
		t.Errorf("the hand readers took %d of 40000 samples; want at least half", hand)
	}
}

func FuzzParseDate(f *testing.F) {
	f.Add("2024-02-29")
	f.Add("0000-01-01")
	f.Fuzz(checkDate)
}

func FuzzParseTimestamp(f *testing.F) {
	f.Add("2026-11-01T00:00:00.123456789+08:00")
	f.Add("1969-12-31T23:59:59.9999999Z")
	f.Fuzz(checkTimestamp)
}

// parcelCodeRE is the regular expression checkParcelCode replaced.
var parcelCodeRE = regexp.MustCompile(`^[0-9]{12}[GJZ][ABSXCDEFWY][0-9]{5}$`)

func TestParcelCodeMatchesItsExpression(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	good := "330106001002GB00001"
	if !isParcelCode(good) {
		t.Fatalf("%s is a parcel code", good)
	}
	for range 50000 {
		b := []byte(good)
		for range 1 + r.IntN(2) {
			b[r.IntN(len(b))] = "0123456789GJZABSXCDEFWYKa-é"[r.IntN(27)]
		}
		s := string(b)
		if r.IntN(10) == 0 {
			s = s[:r.IntN(len(s))]
		}
		if got, want := isParcelCode(s), parcelCodeRE.MatchString(s); got != want {
			t.Fatalf("%q: hand check %v, expression %v", s, got, want)
		}
	}
}
