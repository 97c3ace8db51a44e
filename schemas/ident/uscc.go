package ident

import "unicode/utf8"

// Unified social credit codes (GB 32100-2015): position 1 the registration authority,
// position 2 the entity type, positions 3–8 the registering authority's region code
// (GB/T 2260), positions 9–17 the organization code body (GB 11714) and position 18 a
// MOD 31 check character.

// usccAlphabet is the code's character set: digits and the capital letters other than
// I, O, S, V and Z, which are too easily read as 1, 0, 5, U and 2. A character's index
// is its value in the check sum.
const usccAlphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"

// usccWeights are 3^i mod 31 for positions 1–17.
var usccWeights = [17]int{1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28}

// usccValue maps a byte to its alphabet index, or -1 outside the alphabet; a table keeps
// the per-character check to one load in bulk validation.
var usccValue = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(usccAlphabet); i++ {
		t[usccAlphabet[i]] = int8(i)
	}
	return t
}()

// usccAuthority is table 1 of GB 32100-2015: the registration authorities and the entity
// types each may register. Type 9 is "other" under most authorities.
var usccAuthority = map[byte]struct{ name, types string }{
	'1': {"机构编制", "1239"},
	'2': {"外交", "19"},
	'3': {"司法行政", "123459"},
	'4': {"文化", "19"},
	'5': {"民政", "1239"},
	'6': {"旅游", "129"},
	'7': {"宗教", "129"},
	'8': {"工会", "19"},
	'9': {"工商", "123"},
	'A': {"中央军委改革和编制办公室", "19"},
	'N': {"农业", "1239"},
	'Y': {"其他", "1"},
}

// CheckUSCC reports why s is not a valid unified social credit code, or nil when it is.
// s must already be normalized (no spaces, upper-case letters). The rules are checked in
// this order and the first failure is returned: length (18), charset (every character
// from the code's alphabet), check character, registration authority (position 1), entity
// type for that authority (position 2), region (positions 3–8: see CheckRegion, or
// CentralRegion for bodies registered at the central level). The
// check character comes first so that a mistyped character is reported as a typo.
func CheckUSCC(s string) error {
	if len(s) != 18 {
		return errorf(KindLength, "USCC must have 18 characters, has %d", utf8.RuneCountInString(s))
	}
	for i := 0; i < 18; i++ {
		if usccValue[s[i]] < 0 {
			return errorf(KindCharset, "USCC character %d is %s, must be a digit or a capital letter other than I, O, S, V, Z", i+1, quoteAt(s, i))
		}
	}
	want, _ := USCCCheckChar(s[:17])
	if s[17] != want {
		return checkCharError(s[17], want)
	}
	auth, ok := usccAuthority[s[0]]
	if !ok {
		return errorf(KindAuthority, "USCC registration authority code %q is not in GB 32100 (1–9, A, N, Y)", string(s[0]))
	}
	if !containsByte(auth.types, s[1]) {
		return errorf(KindOrgType, "USCC entity type %q is not one that authority %q (%s) registers", string(s[1]), string(s[0]), auth.name)
	}
	if s[2:8] == CentralRegion {
		return nil
	}
	if err := CheckRegion(s[2:8]); err != nil {
		return errorf(KindRegion, "USCC positions 3–8: %s", err.Error())
	}
	return nil
}

// CentralRegion is the registration-authority code that bodies registered at the central
// level (ministries, central public institutions, national social organizations) carry in
// positions 3–8 of their USCC. It is not a GB/T 2260 region: it is valid in a USCC and
// nowhere else (not in a citizen ID, not as a region_code).
const CentralRegion = "100000"

// USCCCheckChar returns the MOD 31 check character for the first 17 characters of a
// unified social credit code.
func USCCCheckChar(body17 string) (byte, error) {
	if len(body17) != 17 {
		return 0, errorf(KindLength, "USCC body must have 17 characters, has %d", utf8.RuneCountInString(body17))
	}
	sum := 0
	for i := 0; i < 17; i++ {
		v := usccValue[body17[i]]
		if v < 0 {
			return 0, errorf(KindCharset, "USCC character %d is %s, must be a digit or a capital letter other than I, O, S, V, Z", i+1, quoteAt(body17, i))
		}
		sum += int(v) * usccWeights[i]
	}
	return usccAlphabet[(31-sum%31)%31], nil
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}
