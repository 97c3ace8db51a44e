// Package mask implements the exchange's column masks (ARCHITECTURE.md, "Masks"): the
// transformations the sharing policy may require before a value leaves the exchange.
// Each mask works on one canonical value (Value, and the string functions IDCard, Name,
// …) and on a whole Arrow array in one pass (Array). A scan masks with Array; a single
// record (a lookup, a subject view) is masked only with Record, which withholds what a
// mask cannot handle. OutputField gives the Arrow field a masked column has in a
// response.
//
// Masks are deliberately simple and total: any input, even invalid UTF-8 or a value in
// the wrong shape, yields valid UTF-8 that reveals no more than the mask allows. A value
// too short to keep anything (an 8-character "ID") is starred completely rather than
// shown.
//
// The address mask keeps the text up to and including the county-level name (区, 县,
// county-level 市, 旗). When the row's region code is known to ident.LookupRegion (a
// county of the shipped table) and its name occurs in the address, the cut is made after
// that name. Otherwise the cut is made after the first 区/县/市/旗 that follows the first
// 市 (浙江省杭州市西湖区文三路1号 → 浙江省杭州市西湖区); with no 市 after the first
// 县 or 旗; failing that after the province (省, 自治区); failing everything "***".
//
// The hash mask is HMAC-SHA256 keyed per consumer department (DeriveKey), truncated to
// 32 hex characters: a stable pseudonym that one department may join on across its own
// pulls, and that two departments cannot join on with each other. It refuses to run
// without a key (ErrNoKey) rather than fall back to a key everyone shares.
//
// Imported by exchange/store and the exchange's edges; it imports only schemas/ident and
// arrow.
package mask

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"unicode"
	"unicode/utf8"

	"govx/schemas/ident"
)

// The mask names, as schemas and policy decisions spell them.
const (
	IDCard  = "id_card"
	Name    = "name"
	Phone   = "phone"
	Address = "address"
	Year    = "year"
	Hash    = "hash"
	Null    = "null"
)

// HashHexLen is the length of a hash pseudonym in hex characters (128 bits).
const HashHexLen = 32

// ErrNoKey is returned when the hash mask is asked for without a department key.
var ErrNoKey = errors.New("mask: the hash mask needs a per-department key (mask.DeriveKey); none was given")

// Names returns every mask name.
func Names() []string { return []string{IDCard, Name, Phone, Address, Year, Hash, Null} }

// Valid reports whether m is a mask name.
func Valid(m string) bool {
	switch m {
	case IDCard, Name, Phone, Address, Year, Hash, Null:
		return true
	}
	return false
}

// DeriveKey returns the hash-mask key of one consumer department:
// HMAC-SHA256(master, "govx-mask-hash:"+department). The master secret must be kept by
// the exchange only (at least 32 random bytes); a department's key never leaves it.
func DeriveKey(master []byte, department string) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte("govx-mask-hash:" + department))
	return m.Sum(nil)
}

// Options carries what some masks need besides the value.
type Options struct {
	// Key is the consumer department's hash key (DeriveKey); required by the hash mask.
	Key []byte
	// Region is the row's region code (GB/T 2260), a hint for the address mask.
	Region string
	// Text returns the canonical text of a value that is not a string
	// (schemas.CanonicalText, which this package may not import): the hash mask hashes
	// it, so a value must have the one text Array hashes for its column type. Hashing a
	// value that is not a string without it is an error.
	Text func(v any) string
}

// IDCardString keeps the first 6 and last 4 characters and stars the rest:
// 330106199001011234 → 330106********1234. Ten characters or fewer are starred entirely.
func IDCardString(s string) string { return string(appendIDCard(nil, s)) }

// NameString keeps the first character and stars each other one: 张三 → 张*, 欧阳娜娜 → 欧***.
// A one-character value is starred, so the result always has as many characters as s.
func NameString(s string) string { return string(appendName(nil, s)) }

// PhoneString keeps a mobile number's first 3 and last 4 digits (138****5678), a landline's
// area code and last 4 digits (0571-****4321), and starred digits elsewhere; the
// separators "+-() " stay, any other character is starred.
func PhoneString(s string) string { return string(appendPhone(nil, s)) }

// AddressString keeps an address up to its county-level name; region, if not empty, is the
// row's region code (see the package documentation).
func AddressString(s, region string) string { return string(appendAddress(nil, s, region)) }

// YearString returns the year of a canonical date ("2024-09-30") or timestamp (RFC 3339,
// UTC), or "" when s does not start with one.
func YearString(s string) string { return string(appendYear(nil, s)) }

// HashString returns the hash pseudonym of s under a department key.
func HashString(key []byte, s string) (string, error) {
	if len(key) == 0 {
		return "", ErrNoKey
	}
	h := newHasher(key)
	return string(h.append(nil, s)), nil
}

// A Withheld is a value Record withheld: its mask could not handle it.
type Withheld struct {
	Column, Mask string
	Err          error
}

// Record projects one canonical record to columns and masks each as masks says (absent
// or "": unmasked), with o for every value (o.Region is the record's region code). It is
// the only way a single record is masked — a lookup's answer, each part of a subject
// view — as Array is for the columns of a scan; exchange/store's TestScanMatchesNaive
// holds the two equal. A value its mask cannot handle is withheld (nil), never returned
// unmasked, and listed in withheld for the caller to log.
func Record(values map[string]any, columns []string, masks map[string]string, o Options) (out map[string]any, withheld []Withheld) {
	out = make(map[string]any, len(columns))
	for _, col := range columns {
		m := masks[col]
		if m == "" {
			out[col] = values[col]
			continue
		}
		v, err := Value(m, values[col], o)
		if err != nil {
			withheld = append(withheld, Withheld{Column: col, Mask: m, Err: err})
			v = nil
		}
		out[col] = v
	}
	return out, withheld
}

// Value masks one canonical value (string, int64, float64, bool; dates, timestamps and
// decimals as strings), as a lookup returns it. Nil stays nil. Masks other than null
// return strings. The hash of a value that is not a string needs o.Text.
func Value(m string, v any, o Options) (any, error) {
	if m == Null || v == nil {
		if !Valid(m) && m != "" {
			return nil, fmt.Errorf("mask: unknown mask %q", m)
		}
		return nil, nil
	}
	switch m {
	case "":
		return v, nil
	case Hash:
		s, ok := v.(string)
		if !ok {
			if o.Text == nil {
				return nil, fmt.Errorf("mask: hashing a %T needs its canonical text (Options.Text)", v)
			}
			s = o.Text(v)
		}
		return HashString(o.Key, s)
	case Year:
		if s, ok := v.(string); ok {
			if y := YearString(s); y != "" {
				return y, nil
			}
			return nil, nil
		}
		return nil, fmt.Errorf("mask: year needs a date or timestamp, got %T", v)
	case IDCard, Name, Phone, Address:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("mask: %s needs a string value, got %T", m, v)
		}
		return string(appendString(nil, m, s, o.Region)), nil
	}
	return nil, fmt.Errorf("mask: unknown mask %q", m)
}

// appendString applies one of the string masks (not hash, not null).
func appendString(dst []byte, m, s, region string) []byte {
	switch m {
	case IDCard:
		return appendIDCard(dst, s)
	case Name:
		return appendName(dst, s)
	case Phone:
		return appendPhone(dst, s)
	case Address:
		return appendAddress(dst, s, region)
	case Year:
		return appendYear(dst, s)
	}
	panic("mask: appendString called with " + m)
}

func appendStars(dst []byte, n int) []byte {
	for ; n > 0; n-- {
		dst = append(dst, '*')
	}
	return dst
}

// appendValid appends s, replacing invalid UTF-8 with U+FFFD, so masked output is
// always valid text even when the input is not.
func appendValid(dst []byte, s string) []byte {
	if utf8.ValidString(s) {
		return append(dst, s...)
	}
	for _, r := range s {
		dst = utf8.AppendRune(dst, r)
	}
	return dst
}

func appendIDCard(dst []byte, s string) []byte {
	if len(s) > 10 && isASCII(s) { // the usual case: one pass, no decoding
		dst = append(dst, s[:6]...)
		dst = appendStars(dst, len(s)-10)
		return append(dst, s[len(s)-4:]...)
	}
	n := utf8.RuneCountInString(s)
	if n <= 10 {
		return appendStars(dst, n)
	}
	i := 0
	for _, r := range s {
		if i < 6 || i >= n-4 {
			dst = utf8.AppendRune(dst, r)
		} else {
			dst = append(dst, '*')
		}
		i++
	}
	return dst
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func appendName(dst []byte, s string) []byte {
	n := utf8.RuneCountInString(s)
	if n <= 1 {
		return appendStars(dst, n)
	}
	r, _ := utf8.DecodeRuneInString(s)
	dst = utf8.AppendRune(dst, r)
	return appendStars(dst, n-1)
}

func isPhoneSep(r rune) bool {
	return r == '-' || r == ' ' || r == '+' || r == '(' || r == ')'
}

func appendPhone(dst []byte, s string) []byte {
	// First pass: the digits, to decide how many to keep at each end.
	var digits [24]byte
	n := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= '0' && c <= '9' {
			if n < len(digits) {
				digits[n] = c
			}
			n++
		}
	}
	head, tail := 0, 0
	d := digits[:min(n, len(digits))]
	switch {
	case n == 11 && d[0] == '1': // mobile
		head, tail = 3, 4
	case n == 13 && d[0] == '8' && d[1] == '6' && d[2] == '1': // +86 mobile
		head, tail = 5, 4
	case n >= 10 && n <= 12 && d[0] == '0': // landline with area code
		head = 4
		if d[1] == '1' || d[1] == '2' { // 010, 02x: three-digit area codes
			head = 3
		}
		tail = 4
	case n >= 7:
		tail = 4
	}
	k := 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			if k < head || k >= n-tail {
				dst = append(dst, byte(r))
			} else {
				dst = append(dst, '*')
			}
			k++
		case isPhoneSep(r):
			dst = append(dst, byte(r))
		default:
			dst = append(dst, '*')
		}
	}
	return dst
}

func appendAddress(dst []byte, s, region string) []byte {
	if region != "" {
		if r, ok := ident.LookupRegion(region); ok && r.CityCode != "" && r.Code != r.CityCode {
			// The county's name counts only among the divisions at the start, not after
			// a street ("…文三路100号西湖区政府旁" must not keep the street).
			if i := strings.Index(s, r.Name); i >= 0 && !strings.ContainsFunc(s[:i], isStreetRune) {
				return appendValid(dst, s[:i+len(r.Name)])
			}
		}
	}
	if n := adminPrefix(s); n > 0 {
		return appendValid(dst, s[:n])
	}
	return append(dst, "***"...)
}

// adminPrefix returns the length of the administrative divisions at the start of an
// address (省/自治区, 市, then 区/县/旗 or a county-level 市), the part an address mask
// keeps. Each division is read only if its name is short and holds nothing street-like:
// a suffix found further along ("…路100号市民中心", "…春晓小区") belongs to the street
// and would leak it.
func adminPrefix(s string) int {
	end, cities := 0, 0
	for {
		n, unit := nextDivision(s[end:])
		if n == 0 {
			return end
		}
		end += n
		switch unit {
		case "区", "县", "旗":
			return end
		case "市":
			if cities++; cities == 2 {
				return end // a county-level city within its prefecture (杭州市建德市)
			}
		}
	}
}

// divisionSuffixes end a division name, longest first.
var divisionSuffixes = []string{"自治区", "自治州", "省", "市", "区", "县", "旗", "盟"}

// streetRunes mark the part of an address below the county.
const streetRunes = "路街道巷弄号村镇乡幢栋楼室里小"

func isStreetRune(r rune) bool { return unicode.IsDigit(r) || strings.ContainsRune(streetRunes, r) }

func nextDivision(s string) (int, string) {
	runes := 0
	for i, r := range s {
		if runes > 0 {
			for _, suf := range divisionSuffixes {
				if strings.HasPrefix(s[i:], suf) {
					return i + len(suf), suf
				}
			}
		}
		if runes == 8 || unicode.IsDigit(r) || strings.ContainsRune(streetRunes, r) {
			return 0, ""
		}
		runes++
	}
	return 0, ""
}

func appendYear(dst []byte, s string) []byte {
	if len(s) < 4 || (len(s) > 4 && s[4] != '-') {
		return dst
	}
	for i := 0; i < 4; i++ {
		if s[i] < '0' || s[i] > '9' {
			return dst
		}
	}
	return append(dst, s[:4]...)
}

// hasher reuses one HMAC state across values: creating one per value would dominate the
// cost of masking a column.
type hasher struct {
	mac hash.Hash
	sum []byte
	buf []byte
}

func newHasher(key []byte) *hasher {
	return &hasher{mac: hmac.New(sha256.New, key), sum: make([]byte, 0, sha256.Size)}
}

func (h *hasher) append(dst []byte, s string) []byte {
	h.buf = append(h.buf[:0], s...)
	return h.appendBytes(dst, h.buf)
}

func (h *hasher) appendBytes(dst, b []byte) []byte {
	h.mac.Reset()
	h.mac.Write(b)
	h.sum = h.mac.Sum(h.sum[:0])
	return hex.AppendEncode(dst, h.sum[:HashHexLen/2])
}
