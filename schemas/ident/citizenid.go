package ident

import (
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Citizen identity numbers (GB 11643-1999): a 6-digit region code, an 8-digit birth date
// YYYYMMDD, a 3-digit sequence (odd for men, even for women) and an ISO 7064 MOD 11-2
// check character.

// citizenWeights are 2^(17-i) mod 11, the ISO 7064 MOD 11-2 weights of positions 1–17.
var citizenWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

// citizenCheckChars maps the weighted sum mod 11 to the check character.
const citizenCheckChars = "10X98765432"

// minBirthYear rejects dates that cannot belong to a living record: nobody born before
// 1800 was ever issued a GB 11643 number, and the bound catches years typed as 0xxx.
const minBirthYear = 1800

// latestBirth is the latest birth date a number may carry, as YYYYMMDD: today where the
// day starts first (UTC+14), so that no clock a department runs on sees tomorrow's
// births refused or accepted differently. Cached until the next UTC hour: a number is
// checked on every record ingested.
func latestBirth() int {
	now := time.Now()
	if c := birthBound.Load(); c != nil && now.Unix() < c.until {
		return c.ymd
	}
	y, m, d := now.UTC().Add(14 * time.Hour).Date()
	c := &dayBound{ymd: y*10000 + int(m)*100 + d, until: now.Truncate(time.Hour).Add(time.Hour).Unix()}
	birthBound.Store(c)
	return c.ymd
}

type dayBound struct {
	ymd   int
	until int64 // Unix seconds
}

var birthBound atomic.Pointer[dayBound]

// CheckCitizenID reports why s is not a valid citizen identity number, or nil when it
// is. s must already be normalized (no spaces, an upper-case X). The rules are checked in
// this order and the first failure is returned: length (18), charset (17 digits then a
// digit or X), check character, birth date (a calendar date, year >= 1800, not in the
// future), province
// (the first two digits are a province-level code, or 83 for the residence permits of
// Taiwan residents). The check character comes before the date and region so that a
// mistyped digit is reported as a typo rather than as an implausible date.
func CheckCitizenID(s string) error {
	if len(s) != 18 {
		return errorf(KindLength, "citizen ID must have 18 characters, has %d", utf8.RuneCountInString(s))
	}
	for i := 0; i < 17; i++ {
		if !isDigit(s[i]) {
			return errorf(KindCharset, "citizen ID character %d is %s, must be a digit", i+1, quoteAt(s, i))
		}
	}
	if last := s[17]; !isDigit(last) && last != 'X' {
		return errorf(KindCharset, "citizen ID character 18 is %s, must be a digit or upper-case X", quoteAt(s, 17))
	}
	want, _ := CitizenIDCheckChar(s[:17])
	if s[17] != want {
		return checkCharError(s[17], want)
	}
	if _, _, _, err := citizenDate(s); err != nil {
		return err
	}
	if !citizenProvince(s[:2]) {
		return errorf(KindProvince, "citizen ID region %s does not start with a province code", s[:6])
	}
	return nil
}

// CitizenIDCheckChar returns the MOD 11-2 check character ('0'–'9' or 'X') for the first
// 17 digits of a citizen identity number.
func CitizenIDCheckChar(body17 string) (byte, error) {
	if len(body17) != 17 {
		return 0, errorf(KindLength, "citizen ID body must have 17 digits, has %d", utf8.RuneCountInString(body17))
	}
	sum := 0
	for i := 0; i < 17; i++ {
		c := body17[i]
		if !isDigit(c) {
			return 0, errorf(KindCharset, "citizen ID character %d is %s, must be a digit", i+1, quoteAt(body17, i))
		}
		sum += int(c-'0') * citizenWeights[i]
	}
	return citizenCheckChars[sum%11], nil
}

// BirthDate returns the birth date (UTC midnight) encoded in a valid citizen identity
// number; an invalid number returns its *Error.
func BirthDate(id string) (time.Time, error) {
	if err := CheckCitizenID(id); err != nil {
		return time.Time{}, err
	}
	return citizenBirthDate(id)
}

// citizenBirthDate parses positions 7–14, which the caller has checked are digits.
func citizenBirthDate(s string) (time.Time, error) {
	year, month, day, err := citizenDate(s)
	if err != nil {
		return time.Time{}, err
	}
	return time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC), nil
}

// citizenDate checks the birth date at positions 7–14 (digits, as the caller has
// checked) without building a time.Time: CheckCitizenID runs on every record ingested.
func citizenDate(s string) (year, month, day int, err error) {
	year = atoi(s[6:10])
	month = atoi(s[10:12])
	day = atoi(s[12:14])
	if year < minBirthYear {
		return 0, 0, 0, errorf(KindDate, "citizen ID birth year %04d is before %d", year, minBirthYear)
	}
	if month < 1 || month > 12 || day < 1 || day > DaysIn(year, month) {
		return 0, 0, 0, errorf(KindDate, "citizen ID birth date %s-%s-%s is not a calendar date", s[6:10], s[10:12], s[12:14])
	}
	if year*10000+month*100+day > latestBirth() {
		return 0, 0, 0, errorf(KindDate, "citizen ID birth date %s-%s-%s is in the future", s[6:10], s[10:12], s[12:14])
	}
	return year, month, day, nil
}

// citizenProvince reports whether a citizen ID may start with prefix2. Residence permits
// for Hong Kong, Macao and Taiwan residents (2018) use 810000, 820000 and 830000; 83 is
// not a GB/T 2260 province, so it is allowed here and nowhere else. prefix2 is two
// digits (the caller has checked).
func citizenProvince(prefix2 string) bool {
	if prefix2 == "83" {
		return true
	}
	return provinceCode(prefix2)
}

// DaysIn returns the number of days of a month (1–12) of the Gregorian calendar.
func DaysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func checkCharError(got, want byte) *Error {
	return errorf(KindCheckChar, "check character is %q, expected %q", string(got), string(want))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// atoi parses a string the caller has checked is all ASCII digits.
func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// quoteAt quotes the character starting at byte i, so a message about non-ASCII input
// shows the character a person typed rather than one byte of it.
func quoteAt(s string, i int) string {
	r, _ := utf8.DecodeRuneInString(s[i:])
	return quoteRune(r)
}

func quoteRune(r rune) string {
	if r == utf8.RuneError {
		return "an invalid UTF-8 byte"
	}
	return strconv.Quote(string(r))
}
