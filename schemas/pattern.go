package schemas

import (
	"encoding/binary"
	"regexp"
	"regexp/syntax"
	"slices"
)

// pattern is a field's `pattern`: the regular expression, and for a pattern anchored
// at both ends (^…$, as every shipped pattern is) a DFA over ASCII built from the same
// compiled program at load. The DFA answers for ASCII values in one table step per
// byte, where regexp's backtracker costs ~200 ns a value, on every record ingest
// checks; a value with a non-ASCII byte, or a pattern the DFA does not take, is matched
// by regexp. The DFA follows the program's instructions, so it matches exactly what
// regexp matches; pattern_test.go holds the two equal.
type pattern struct {
	re  *regexp.Regexp
	dfa *dfa
}

func compilePattern(expr string) (*pattern, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, err
	}
	return &pattern{re: re, dfa: newDFA(expr)}, nil
}

func (p *pattern) MatchString(s string) bool {
	if p.dfa != nil {
		if ok, decided := p.dfa.match(s); decided {
			return ok
		}
	}
	return p.re.MatchString(s)
}

// dfa is a deterministic automaton over ASCII bytes: next[state][byte] is the next
// state or -1 when no continuation can match; accept says whether the text may end in
// a state. State 0 is the start.
type dfa struct {
	next   [][128]int32
	accept []bool
}

// maxDFAStates bounds the table (512 bytes a state); a pattern needing more is left to
// regexp.
const maxDFAStates = 1024

// newDFA builds the DFA of an expression anchored at both ends, or returns nil when it
// is not one or uses what the DFA does not model (line or word assertions).
func newDFA(expr string) *dfa {
	re, err := syntax.Parse(expr, syntax.Perl) // the flags regexp.Compile uses
	if err != nil || re.Op != syntax.OpConcat || len(re.Sub) < 2 ||
		re.Sub[0].Op != syntax.OpBeginText || re.Sub[len(re.Sub)-1].Op != syntax.OpEndText {
		return nil
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil
	}
	b := &dfaBuilder{prog: prog, ids: map[string]int32{}, m: &dfa{}}
	// A state is the set of instructions about to run (before their empty-width steps),
	// and whether it is the start, where ^ holds.
	queue := [][]uint32{{uint32(prog.Start)}}
	b.id(queue[0], true)
	for n := 0; n < len(queue); n++ {
		kernel, start := queue[n], n == 0
		end, ok := b.closure(kernel, start, true)
		if !ok {
			return nil
		}
		b.m.accept[n] = end.match
		run, ok := b.closure(kernel, start, false)
		if !ok {
			return nil
		}
		for c := range 128 {
			var next []uint32
			for _, pc := range run.runes {
				if in := &prog.Inst[pc]; in.MatchRune(rune(c)) {
					next = append(next, in.Out)
				}
			}
			if len(next) == 0 {
				b.m.next[n][c] = -1
				continue
			}
			next = sortedSet(next)
			id, isNew := b.id(next, false)
			if id < 0 {
				return nil
			}
			if isNew {
				queue = append(queue, next)
			}
			b.m.next[n][c] = id
		}
	}
	return b.m
}

type dfaBuilder struct {
	prog *syntax.Prog
	ids  map[string]int32
	m    *dfa
}

// id returns the state of a kernel, adding it when new; -1 when there are too many.
func (b *dfaBuilder) id(kernel []uint32, start bool) (int32, bool) {
	k := make([]byte, 1, 1+4*len(kernel))
	if start {
		k[0] = '^'
	}
	for _, pc := range kernel {
		k = binary.LittleEndian.AppendUint32(k, pc)
	}
	if id, ok := b.ids[string(k)]; ok {
		return id, false
	}
	if len(b.m.accept) == maxDFAStates {
		return -1, false
	}
	id := int32(len(b.m.accept))
	b.ids[string(k)] = id
	b.m.next = append(b.m.next, [128]int32{})
	b.m.accept = append(b.m.accept, false)
	return id, true
}

// step is the result of following a kernel's empty steps: the instructions that read
// a rune, and whether a match is reached.
type step struct {
	runes []uint32
	match bool
}

// closure follows the empty steps from kernel, where ^ holds when start and $ when end.
// ok is false for an instruction the DFA does not model.
func (b *dfaBuilder) closure(kernel []uint32, start, end bool) (step, bool) {
	var st step
	seen := map[uint32]bool{}
	stack := append([]uint32(nil), kernel...)
	for len(stack) > 0 {
		pc := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[pc] {
			continue
		}
		seen[pc] = true
		in := &b.prog.Inst[pc]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			stack = append(stack, in.Out, in.Arg)
		case syntax.InstCapture, syntax.InstNop:
			stack = append(stack, in.Out)
		case syntax.InstEmptyWidth:
			e := syntax.EmptyOp(in.Arg)
			if e&^(syntax.EmptyBeginText|syntax.EmptyEndText) != 0 {
				return step{}, false
			}
			if (e&syntax.EmptyBeginText == 0 || start) && (e&syntax.EmptyEndText == 0 || end) {
				stack = append(stack, in.Out)
			}
		case syntax.InstMatch:
			st.match = true
		case syntax.InstFail:
		case syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			st.runes = append(st.runes, pc)
		default:
			return step{}, false
		}
	}
	st.runes = sortedSet(st.runes)
	return st, true
}

func sortedSet(s []uint32) []uint32 {
	slices.Sort(s)
	return slices.Compact(s)
}

// match reports whether s matches; decided is false when s has a non-ASCII byte the
// DFA cannot judge (regexp then does).
func (m *dfa) match(s string) (ok, decided bool) {
	st := int32(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return false, false
		}
		if st = m.next[st][c]; st < 0 {
			return false, true
		}
	}
	return m.accept[st], true
}
