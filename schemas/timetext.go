package schemas

import (
	"time"

	"govx/schemas/ident"
)

// The canonical date and timestamp forms are read by hand on the validation path: a
// record's dates and timestamps are checked on every ingest, and time.Parse costs more
// than the rest of a field's checks together. The hand readers accept exactly the
// strict forms a producer writes (YYYY-MM-DD; YYYY-MM-DDTHH:MM:SS[.fraction] with Z or
// ±hh:mm) and give the same value time.Parse gives; anything else goes to time.Parse,
// which stays the reference for what is a date or a timestamp. The fuzz tests in
// timetext_test.go hold the two to the same answers.

// ParseDate reads a date as time.Parse(time.DateOnly) does and returns it as days since
// 1970-01-01 (Arrow's date32); false when it is not a real date in YYYY-MM-DD form.
func ParseDate(s string) (int32, bool) {
	if y, m, d, ok := readDate(s); ok && len(s) == 10 {
		return int32(daysFromCivil(y, m, d)), true
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return 0, false
	}
	return int32(t.Unix() / 86400), true
}

// ParseTimestamp reads a timestamp as time.Parse(time.RFC3339Nano) does and returns it
// as microseconds since 1970-01-01T00:00:00Z, rounded down as time.Time.UnixMicro does;
// false when it is not an RFC 3339 timestamp.
func ParseTimestamp(s string) (int64, bool) {
	if us, ok := readTimestamp(s); ok {
		return us, true
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, false
	}
	return t.UnixMicro(), true
}

// readDate reads the YYYY-MM-DD at the start of s: four, two and two digits, a month
// and a day of that month.
func readDate(s string) (y, m, d int, ok bool) {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return 0, 0, 0, false
	}
	y, ok1 := digits(s[0:4])
	m, ok2 := digits(s[5:7])
	d, ok3 := digits(s[8:10])
	if !ok1 || !ok2 || !ok3 || m < 1 || m > 12 || d < 1 || d > ident.DaysIn(y, m) {
		return 0, 0, 0, false
	}
	return y, m, d, true
}

// readTimestamp reads the strict RFC 3339 form: a date, T, hh:mm:ss, an optional
// fraction of 1 to 9 digits, and Z or ±hh:mm.
func readTimestamp(s string) (int64, bool) {
	y, mo, d, ok := readDate(s)
	if !ok || len(s) < 20 || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return 0, false
	}
	h, ok1 := digits(s[11:13])
	mi, ok2 := digits(s[14:16])
	sec, ok3 := digits(s[17:19])
	if !ok1 || !ok2 || !ok3 || h > 23 || mi > 59 || sec > 59 {
		return 0, false
	}
	rest := s[19:]
	frac := 0
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return 0, false
		}
		f, _ := digits(rest[1:n])
		for k := n; k < 10; k++ {
			f *= 10
		}
		frac = f // nanoseconds
		rest = rest[n:]
	}
	offset := 0
	switch {
	case rest == "Z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := digits(rest[1:3])
		om, ok2 := digits(rest[4:6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return 0, false
		}
		offset = (oh*60 + om) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return 0, false
	}
	secs := int64(daysFromCivil(y, mo, d))*86400 + int64(h*3600+mi*60+sec) - int64(offset)
	return secs*1_000_000 + int64(frac/1000), true
}

// digits reads s, which must be all ASCII digits.
func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// daysFromCivil returns the days from 1970-01-01 to y-m-d of the proleptic Gregorian
// calendar (H. Hinnant's days_from_civil), for years 0 to 9999.
func daysFromCivil(y, m, d int) int {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// The dates and instants a date or timestamp field holds: the years 0001 to 9999 (of
// UTC, for an instant). Year 0000 parses (RFC 3339 and time.Parse allow it), but
// Python's datetime starts at year 1, so every pyarrow consumer's to_pylist() would
// fail on it; a late offset can push 9999-12-31 into year 10000 the same way.
var (
	minDay   = int32(daysFromCivil(1, 1, 1))
	maxDay   = int32(daysFromCivil(9999, 12, 31))
	minMicro = int64(minDay) * 86400 * 1_000_000
	maxMicro = (int64(maxDay)+1)*86400*1_000_000 - 1
)
