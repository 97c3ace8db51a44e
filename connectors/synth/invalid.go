package synth

// Planted invalid rows. Whether row i of a department is invalid depends only on the
// seed, the department and i (a hash below InvalidRate), never on other rows, so the
// same seed plants the same rows in every target. What is wrong with a planted row:
//
//	gab   rk_jbxx  variant 1: sfzh has a wrong check character
//	               variant 2: csrq has month 13 (not a calendar date)
//	scjgj scztdj   variant 1: tyshxydm has a wrong check character
//	               variant 2: fddbr_zjhm (the legal representative) has a wrong check character
//	zrzyb bdc_zd   variant 1: djrq is 30 February
//	               variant 2: neither qlr_tyshxydm nor qlr_sfzh is set (no holder)
//	tjj   tj_zbsj  tjq is a period that does not exist (2024Q0, 2024Q5, 2024-13, …)
//	zwfw  dzzz_zzxx variant 1: the holder's identifier (czzt_sfzh or czzt_tyshxydm) has a
//	               wrong check character
//	               variant 2: zzwjzy (the content digest) is cut to 63 characters
//
// Planted persons and organizations are never referenced by other registers, so
// references stay intact. Each planted row fails exactly one check of its dataset.

const (
	citizenAlphabet = "0123456789X"
	usccAlphabet    = "0123456789ABCDEFGHJKLMNPQRTUWXY"
)

var deptKinds = map[string]uint64{DeptPopulation: 1, DeptMarket: 2, DeptLand: 3, DeptStatistics: 4, DeptLicence: 5}

// plantedVariant returns 0 for a valid row, else which way row i is invalid (1 or 2).
func (g *Generator) plantedVariant(dept string, i int) int {
	if g.opts.InvalidRate <= 0 {
		return 0
	}
	h := hash3(g.opts.Seed, kindInvalid<<8|deptKinds[dept], i)
	if unit(h) >= g.opts.InvalidRate {
		return 0
	}
	return 1 + int(h&1)
}

// IsPlantedInvalid reports whether row i of dept was made invalid on purpose.
func (g *Generator) IsPlantedInvalid(dept string, i int) bool {
	return g.plantedVariant(dept, i) != 0
}

// PlantedInvalid returns the indexes of dept's planted invalid rows, ascending.
func (g *Generator) PlantedInvalid(dept string) []int {
	var out []int
	for i, n := 0, g.Count(dept); i < n; i++ {
		if g.plantedVariant(dept, i) != 0 {
			out = append(out, i)
		}
	}
	return out
}

// wrongCheckChar replaces the last character of a valid code by the next one of its
// alphabet, which is never the right check character.
func wrongCheckChar(code, alphabet string) string {
	last := code[len(code)-1]
	for k := 0; k < len(alphabet); k++ {
		if alphabet[k] == last {
			return code[:len(code)-1] + string(alphabet[(k+1)%len(alphabet)])
		}
	}
	return code[:len(code)-1] + string(alphabet[0])
}
