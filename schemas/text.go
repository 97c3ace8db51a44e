package schemas

import "unicode/utf8"

// A text value is shown to people: in consoles, terminals, spreadsheets and reports. A
// control character there is never data (a name or an address needs no tab or newline,
// and no schema field holds multi-line text) but can be an attack on whoever reads it:
// NUL cuts strings in C consumers, ESC starts terminal escape sequences, and the
// bidirectional overrides and isolates reorder what is shown (a "Trojan Source" name).

// controlAt returns the byte offset of the first control character in s — C0
// (U+0000–U+001F), DEL and C1 (U+007F–U+009F) — or bidirectional embedding, override or
// isolate (U+202A–U+202E, U+2066–U+2069), or -1. It reads eight bytes at a time and
// decodes only at the lead bytes of C1 (0xC2) and of the bidi controls (0xE2), so text
// without them costs a few operations a word: it runs on every string of every record.
func controlAt(s string) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if mayControl(w) {
			break
		}
	}
	for ; i < len(s); i++ {
		c := s[i]
		if !controlLead[c] {
			continue
		}
		switch {
		case c < 0x20 || c == 0x7f:
			return i
		case c == 0xc2:
			if i+1 < len(s) && s[i+1] >= 0x80 && s[i+1] <= 0x9f {
				return i
			}
		case c == 0xe2:
			if r, _ := utf8.DecodeRuneInString(s[i:]); isBidiControl(r) {
				return i
			}
		}
	}
	return -1
}

// controlLead marks the bytes controlAt looks at closer: C0, DEL, and the lead bytes of
// C1 and of the bidi controls.
var controlLead = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t[0x7f], t[0xc2], t[0xe2] = true, true, true
	return t
}()

// controlAt is controlAt for a value of f: -1 without looking when f is confined to
// values that hold no control character (an enum, a code list, a named check), which
// refuse any other value themselves.
func (f *Field) controlAt(s string) int {
	if f.confined {
		return -1
	}
	return controlAt(s)
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// mayControl reports whether some byte of w is below 0x20, or is 0x7F, 0xC2 or 0xE2:
// the exact tests "some byte is below n" and "some byte is zero" (Hacker's Delight,
// 6-1), which hold for bytes of any value.
func mayControl(w uint64) bool {
	del := w ^ (ones * 0x7f)
	c2 := w ^ (ones * 0xc2)
	e2 := w ^ (ones * 0xe2)
	return ((w-ones*0x20)&^w|(del-ones)&^del|(c2-ones)&^c2|(e2-ones)&^e2)&highs != 0
}

func isBidiControl(r rune) bool {
	return r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069
}
