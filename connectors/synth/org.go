package synth

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"govx/schemas/ident"
)

// orgKind is a USCC registration authority and entity type with the native subject type
// (ztlx) it is registered as.
type orgKind struct {
	auth, typ byte
	ztlx      string
	weight    int
}

// orgKinds: market regulation (9) registers companies (91), individual businesses (92)
// and farmers' cooperatives (93); civil affairs (5) social organizations; the staffing
// office (1) government bodies (11) and public institutions (12).
var orgKinds = []orgKind{
	{'9', '1', "企业", 70}, {'9', '2', "企业", 12}, {'9', '3', "企业", 3},
	{'5', '1', "社会组织", 4}, {'5', '2', "社会组织", 3}, {'5', '3', "社会组织", 1},
	{'1', '1', "机关", 3}, {'1', '2', "事业单位", 4},
}

var orgKindCum = func() []int {
	cum := make([]int, len(orgKinds))
	t := 0
	for i, k := range orgKinds {
		t += k.weight
		cum[i] = t
	}
	return cum
}()

// org is what other registers need to know about an organization.
type org struct {
	uscc   string
	kind   orgKind
	county int
}

// orgCodeWeights are GB 11714's weights for the organization code check character.
var orgCodeWeights = [8]int{3, 7, 9, 10, 5, 8, 4, 2}

func (g *Generator) orgCore(r *rand.Rand, i int) org {
	k := orgKinds[weighted(r, orgKindCum)]
	county := r.IntN(len(g.cinfo))
	code := g.orgSlots.at(uint64(i))
	var b [18]byte
	body := append(b[:0], k.auth, k.typ)
	body = append(body, g.cinfo[county].Code...)
	// Positions 9–17 are the 9-character organization code: 8 digits and a GB 11714
	// MOD 11 check character.
	var d8 [8]byte
	sum := 0
	for p := 7; p >= 0; p-- {
		d8[p] = byte('0' + code%10)
		code /= 10
		sum += int(d8[p]-'0') * orgCodeWeights[p]
	}
	body = append(body, d8[:]...)
	switch c := 11 - sum%11; c {
	case 10:
		body = append(body, 'X')
	case 11:
		body = append(body, '0')
	default:
		body = append(body, byte('0'+c))
	}
	check, _ := ident.USCCCheckChar(string(body))
	body = append(body, check)
	return org{uscc: string(body), kind: k, county: county}
}

func (g *Generator) orgAt(i int) org {
	var rr rowRand
	return g.orgCore(rr.at(g.opts.Seed, kindOrg, i), i)
}

// refOrg picks the organization a parcel row refers to, probing seed-determined
// indexes and skipping planted-invalid ones.
func (g *Generator) refOrg(kind uint64, i int) org {
	return g.orgAt(g.refOrgIndex(kind, i))
}

// refOrgIndex is the index of the organization refOrg picks, for callers that need
// more of it than orgCore gives (its name, its status: regenerate its row).
func (g *Generator) refOrgIndex(kind uint64, i int) int {
	h := hash3(g.opts.Seed, kind, i)
	n := uint64(g.nOrgs)
	for k := uint64(0); k < 64; k++ {
		if j := int(mix(h+k*0x9e3779b97f4a7c15) % n); g.plantedVariant(DeptMarket, j) == 0 {
			return j
		}
	}
	for j := 0; j < g.nOrgs; j++ {
		if g.plantedVariant(DeptMarket, j) == 0 {
			return j
		}
	}
	return int(h % n)
}

var (
	establishedFirst = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)
	establishedDays  = int(time.Date(2025, 6, 30, 0, 0, 0, 0, time.UTC).Sub(establishedFirst).Hours() / 24)
)

func (g *Generator) orgRow(rr *rowRand, i int) []any {
	r := rr.at(g.opts.Seed, kindOrg, i)
	o := g.orgCore(r, i)
	c := g.cinfo[o.county]
	rep := g.refPerson(kindLegalRep, i)
	city := strings.TrimSuffix(c.CityName, "市")
	var name strings.Builder
	var hydm any
	var capitalYuan int64 // registered capital in yuan, i.e. 0.0001 万元
	switch string([]byte{o.kind.auth, o.kind.typ}) {
	case "91":
		line := pick(r, enterpriseLines)
		name.WriteString(city + pick(r, tradeNames) + line.word + pick(r, enterpriseSuffixes))
		hydm = line.code
		capitalYuan = int64(math.Pow(10, 1+4*r.Float64())) * 10000 // 10 to 100,000 万元, log-uniform
	case "92":
		shop := pick(r, shopKinds)
		name.WriteString(c.CityName + c.Name + firstRune(rep.name) + "记" + shop.word)
		hydm = shop.code
		capitalYuan = int64(1+r.IntN(50)) * 10000
	case "93":
		coop := pick(r, coopKinds)
		name.WriteString(c.CityName + c.Name + pick(r, tradeNames) + coop.word + "专业合作社")
		hydm = coop.code
		capitalYuan = int64(10+r.IntN(490)) * 10000
	case "51":
		name.WriteString(c.CityName + c.Name + pick(r, associations))
		hydm = "S9521"
		capitalYuan = int64(3+r.IntN(50)) * 10000
	case "52":
		name.WriteString(c.CityName + c.Name + pick(r, tradeNames) + pick(r, privateNonprofits))
		hydm = "S9522"
		capitalYuan = int64(3+r.IntN(200)) * 10000
	case "53":
		name.WriteString(c.ProvinceName + pick(r, tradeNames) + pick(r, foundations))
		hydm = "S9530"
		capitalYuan = int64(200+r.IntN(2000)) * 10000
	case "11":
		name.WriteString(c.CityName + c.Name + pick(r, agencies))
		hydm = "S9221"
		capitalYuan = -1 // government bodies register no capital
	default: // "12"
		inst := pick(r, institutions)
		name.WriteString(c.CityName + c.Name + inst.word)
		hydm = inst.code
		capitalYuan = int64(10+r.IntN(5000)) * 10000
	}
	if r.IntN(50) == 0 {
		hydm = nil // older registrations predate industry coding
	}
	var zczb any
	if capitalYuan >= 0 {
		capitalYuan += int64(r.IntN(10000)) * int64(r.IntN(2)) // some odd amounts
		zczb = strconv.FormatInt(capitalYuan/10000, 10) + "." + fourDigits(capitalYuan%10000)
	}
	clrq := establishedFirst.AddDate(0, 0, r.IntN(establishedDays))
	djzt := "存续"
	switch x := r.IntN(100); {
	case x < 4:
		djzt = "吊销"
	case x < 12:
		djzt = "注销"
	}
	var zs any = address(r, c)
	if r.IntN(100) == 0 {
		zs = nil
	}
	row := []any{
		o.uscc, name.String(), o.kind.ztlx, rep.id, rep.name, zczb, clrq, djzt, c.Code, zs,
		hydm, updatedAt(r),
	}
	switch g.plantedVariant(DeptMarket, i) {
	case 1:
		row[0] = wrongCheckChar(o.uscc, usccAlphabet)
	case 2:
		row[3] = wrongCheckChar(rep.id, citizenAlphabet)
	}
	return row
}

func fourDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	return strings.Repeat("0", 4-len(s)) + s
}

func firstRune(s string) string {
	for _, r := range s {
		return string(r)
	}
	return ""
}
